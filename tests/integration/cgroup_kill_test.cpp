// cgroup::kill_members with real processes and a listing that changes
// between reads as a live cgroup's does (the stand-in for cgroup.procs is
// the listing function): only pids listed again after their pidfd was
// opened are signalled, and a pid that shows up in a later round (a fork
// that beat the freeze) is killed too. No root: no cgroupfs is touched.
#include <boost/test/unit_test.hpp>

#include "harness.hpp"
#include "taskexec/cgroups.hpp"

using namespace test_support;
using namespace taskexec;

namespace {

// The listing a test plays back: `first` for the first `n` reads, `then`
// after. Counts the reads.
struct playback {
  std::vector<int> first, then;
  int n = 0;
  int reads = 0;
  cgroup::kill_target target() {
    cgroup::kill_target t{{"stand-in"}, {}, {}, {}};
    t.list = [this](const std::string&) { return reads++ < n ? first : then; };
    return t;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(cgroup_kill)

// A pid that left between the listing and the pidfd's open (its number
// may be someone else's by then) is not signalled.
BOOST_AUTO_TEST_CASE(a_pid_not_listed_again_is_not_signalled) {
  run([]() -> asio::awaitable<void> {
    task_executor member(harness::get().reaper);
    task_executor outsider(harness::get().reaper);
    auto m = co_await member.launch(sh("exec sleep 1000"));
    auto o = co_await outsider.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE(m);
    BOOST_REQUIRE(o);
    playback p;
    p.first = {m->pid, o->pid};
    p.then = {m->pid};
    p.n = 1;
    BOOST_TEST(cgroup::kill_members(p.target()) == 1u);
    auto done = co_await member.wait();
    BOOST_REQUIRE(done);
    BOOST_TEST(done->signal == SIGKILL);
    BOOST_TEST(alive(o->pid));
    BOOST_TEST((co_await outsider.shutdown("SIGKILL", 0ms)).has_value());
  });
}

// A member that appears only in a later round (it forked before the freeze
// took hold) is found and killed; the rounds end when one finds nothing new.
BOOST_AUTO_TEST_CASE(a_pid_that_appears_in_a_later_round_is_killed) {
  run([]() -> asio::awaitable<void> {
    task_executor first(harness::get().reaper);
    task_executor late(harness::get().reaper);
    auto a = co_await first.launch(sh("exec sleep 1000"));
    auto b = co_await late.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE(a);
    BOOST_REQUIRE(b);
    playback p;
    p.first = {a->pid};
    p.then = {a->pid, b->pid};
    p.n = 2;
    BOOST_TEST(cgroup::kill_members(p.target()) == 2u);
    BOOST_TEST(p.reads >= 5);  // two rounds of two reads, and a last with nothing new
    auto da = co_await first.wait();
    auto db = co_await late.wait();
    BOOST_REQUIRE(da);
    BOOST_REQUIRE(db);
    BOOST_TEST(da->signal == SIGKILL);
    BOOST_TEST(db->signal == SIGKILL);
  });
}

BOOST_AUTO_TEST_SUITE_END()
