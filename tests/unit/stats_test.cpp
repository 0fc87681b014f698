// usage_between: a sample from two readings of a task's counters, so that
// one reading can serve consumers of different intervals (the daemon's
// shared Stats schedules), each with the rates over its own interval.
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include "taskexec/stats.hpp"

using namespace taskexec;
using namespace std::chrono_literals;

namespace {

usage_reading reading_at(std::chrono::steady_clock::time_point at,
                         std::vector<usage_reading::process> procs) {
  usage_reading r;
  r.at = at;
  r.timestamp = std::chrono::system_clock::time_point(std::chrono::seconds(1000)) +
                (at - std::chrono::steady_clock::time_point());
  for (const auto& p : procs) {
    r.user_ns += p.user_ns;
    r.system_ns += p.system_ns;
  }
  r.processes = std::move(procs);
  return r;
}

usage_reading::process proc(int pid, std::uint64_t user_ms, std::uint64_t system_ms,
                            std::uint64_t rss = 4096) {
  usage_reading::process p;
  p.pid = pid;
  p.rss = rss;
  p.user_ns = user_ms * 1'000'000;
  p.system_ns = system_ms * 1'000'000;
  return p;
}

std::uint64_t tick_ns() {
  return 1'000'000'000ull / static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
}

detail::proc_stat stat_of(int pid, char state, std::uint64_t utime, std::uint64_t stime,
                          std::uint64_t cutime = 0, std::uint64_t cstime = 0) {
  detail::proc_stat st;
  st.pid = pid;
  st.state = state;
  st.utime_ticks = utime;
  st.stime_ticks = stime;
  st.cutime_ticks = cutime;
  st.cstime_ticks = cstime;
  return st;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(usage_samples)

// /proc mode counts what ended too: each process's own time and its waited
// children's (a shell looping over short commands spends nearly all of its
// tree's CPU in children that are gone by the next reading), zombies (not
// yet waited for, their times still in /proc), and what we reaped.
BOOST_AUTO_TEST_CASE(the_tree_cpu_counts_waited_children_zombies_and_reaped_members) {
  const auto t = tick_ns();
  const std::vector<detail::proc_stat> members = {
      stat_of(10, 'S', 2, 1, 90, 40),  // a shell: little of its own, much in its children
      stat_of(11, 'R', 3, 1),          // a live child
      stat_of(12, 'Z', 5, 2, 7, 1),    // a zombie child and what it had waited for
  };
  const auto cpu = tree_cpu(members, {.user_ns = 1000, .system_ns = 500});
  BOOST_TEST(cpu.user_ns == (2 + 90 + 3 + 5 + 7) * t + 1000);
  BOOST_TEST(cpu.system_ns == (1 + 40 + 1 + 2 + 1) * t + 500);
  BOOST_TEST((tree_cpu({}, {}) == cpu_time{}));
}

// The sampler's totals in /proc mode through a child's life: running, a
// zombie, waited for by its parent (its time moves to the parent's cutime),
// the parent reaped by us (its rusage into the reaped total); the total
// grows by exactly the CPU used, and a reading caught in the window of a wait
// (the child counted twice, or missed) neither makes a rate negative nor
// counts the dip again afterwards.
BOOST_AUTO_TEST_CASE(the_sampler_total_follows_the_tree_through_waits_and_reaps) {
  const auto t = tick_ns();
  std::vector<detail::proc_stat> members;
  cpu_time reaped;
  usage_sampler sampler([&] { return members; }, {}, [&] { return reaped; });
  auto total = [&] {
    auto r = sampler.read();
    BOOST_TEST(!r.cgroup);
    return r.user_ns + r.system_ns;
  };

  members = {stat_of(10, 'S', 1, 1), stat_of(11, 'R', 10, 5)};
  BOOST_TEST(total() == 17 * t);
  // The child ran 5 more ticks and exited: a zombie, still counted.
  members = {stat_of(10, 'S', 1, 1), stat_of(11, 'Z', 15, 5)};
  const auto zombie = sampler.read();
  BOOST_TEST(zombie.user_ns + zombie.system_ns == 22 * t);
  BOOST_TEST(zombie.processes.size() == 1u);  // per-pid entries: live processes only
  BOOST_TEST(zombie.processes.at(0).pid == 10);
  // Its parent waited for it: gone from /proc, in the parent's cutime.
  members = {stat_of(10, 'S', 1, 1, 15, 5)};
  BOOST_TEST(total() == 22 * t);
  // The window of that wait seen the other way round: counted twice (cutime
  // already updated, the child not yet gone), then as it settles. The total
  // stays where it got, and resumes only with new CPU.
  members = {stat_of(10, 'S', 1, 1, 15, 5), stat_of(11, 'Z', 15, 5)};
  BOOST_TEST(total() == 42 * t);
  members = {stat_of(10, 'S', 1, 1, 15, 5)};
  BOOST_TEST(total() == 42 * t);
  // Missed (the parent's stat read before the wait, the child gone after):
  // a dip, held at the high-water mark.
  members = {stat_of(10, 'S', 1, 1)};
  BOOST_TEST(total() == 42 * t);
  // We reap the parent: wait4 gives its time and its children's (in
  // microseconds, finer than ticks).
  members = {};
  reaped = {.user_ns = 16 * t + 123'000, .system_ns = 6 * t};
  BOOST_TEST(total() == 42 * t);  // 22 ticks and a bit: still under the mark
  // An orphan of the task, reaped by us, used 30 ticks in user mode: user
  // time passes its mark (31 ticks, from the double count) and grows; system
  // time stays at its own (11 ticks) until the tree's catches up.
  reaped.user_ns += 30 * t;
  const auto last = sampler.read();
  BOOST_TEST(last.user_ns == 46 * t + 123'000);
  BOOST_TEST(last.system_ns == 11 * t);
}

// Rates from the sampler's readings are never negative, whatever the tree
// does between them.
BOOST_AUTO_TEST_CASE(rates_from_a_dipping_tree_are_never_negative) {
  const auto t = tick_ns();
  std::vector<detail::proc_stat> members = {stat_of(10, 'S', 50, 50, 100, 0)};
  usage_sampler sampler([&] { return members; }, {});
  auto a = sampler.read();
  members = {stat_of(10, 'S', 50, 50)};  // a dip of 100 ticks
  auto b = sampler.read();
  members = {stat_of(10, 'S', 150, 50, 100, 0)};  // 100 ticks later
  auto c = sampler.read();
  const std::chrono::steady_clock::time_point t0{std::chrono::seconds(9)};
  a.at = t0;
  b.at = t0 + 1s;
  c.at = t0 + 2s;
  BOOST_TEST(usage_between(&a, b).total.cpu.percent == 0.0);
  const double expected = static_cast<double>(100 * t) / 1e9 * 100.0;
  BOOST_TEST(usage_between(&b, c).total.cpu.percent == expected,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(usage_between(&a, c).total.cpu.percent == expected / 2,
             boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(rates_are_over_the_time_between_the_two_readings) {
  const std::chrono::steady_clock::time_point t0{std::chrono::seconds(50)};
  const auto a = reading_at(t0, {proc(10, 100, 50), proc(20, 0, 0)});
  const auto b = reading_at(t0 + 100ms, {proc(10, 150, 60), proc(20, 10, 0)});
  const auto c = reading_at(t0 + 200ms, {proc(10, 200, 60), proc(30, 5, 5)});

  // A first sample has no rates; memory is as read.
  auto first = usage_between(nullptr, a);
  BOOST_TEST(first.total.cpu.percent == 0.0);
  BOOST_TEST(first.pids.at(10).cpu.percent == 0.0);
  BOOST_TEST(first.total.memory.rss == 8192u);
  BOOST_TEST((first.timestamp == a.timestamp));

  // Over 100 ms: pid 10 used 50 ms user and 10 ms system.
  auto ab = usage_between(&a, b);
  BOOST_TEST(ab.pids.at(10).cpu.user_mode == 50.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.pids.at(10).cpu.system_mode == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.pids.at(10).cpu.percent == 60.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.pids.at(20).cpu.percent == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.total.cpu.percent == 70.0, boost::test_tools::tolerance(1e-9));

  // The same reading `c` seen from two consumers: one whose previous was
  // `b` (100 ms before), one whose previous was `a` (200 ms before). Each
  // gets the rate over its own interval.
  auto bc = usage_between(&b, c);
  auto ac = usage_between(&a, c);
  BOOST_TEST(bc.pids.at(10).cpu.percent == 50.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ac.pids.at(10).cpu.percent == 55.0, boost::test_tools::tolerance(1e-9));
  // A process the earlier reading lacks has no rate yet; one gone is gone.
  BOOST_TEST(bc.pids.at(30).cpu.percent == 0.0);
  BOOST_TEST(!bc.pids.contains(20));
  BOOST_TEST((bc.timestamp == ac.timestamp));
}

BOOST_AUTO_TEST_CASE(a_cgroup_gives_the_totals) {
  const std::chrono::steady_clock::time_point t0{std::chrono::seconds(7)};
  auto a = reading_at(t0, {proc(10, 0, 0)});
  auto b = reading_at(t0 + 1s, {proc(10, 100, 0)});
  cgroup_counters cg;
  cg.rss = 1 << 20;
  cg.memory_measured = {"RSS"};
  cg.cpu_measured = {"Percent"};
  a.cgroup = cg;
  a.user_ns = 0;
  cg.user_ns = 500'000'000;  // the cgroup counts more than the processes listed
  b.cgroup = cg;
  b.user_ns = cg.user_ns;
  b.system_ns = 0;
  auto u = usage_between(&a, b);
  BOOST_TEST(u.total.memory.rss == 1u << 20);
  BOOST_TEST(u.total.cpu.percent == 50.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(u.pids.at(10).cpu.percent == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST((u.total.cpu.measured == std::vector<std::string>{"Percent"}));
}

BOOST_AUTO_TEST_SUITE_END()
