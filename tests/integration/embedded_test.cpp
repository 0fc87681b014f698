// Embedded in a program that has children of its own (issue 18, items 1 and
// 2): the reaper takes only what is ours, whatever number of threads runs
// the io_context.
//
// The exact-mode cases run taskexec-embed-check (an embedding program of its
// own: one reaper per process, and ours is the harness's, in adopt_orphans
// mode) as a task, and read its one line of figures. The last case is about
// the harness's own mode: the shutdown sweep never takes a child of ours in
// our own session for a task's.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <boost/test/unit_test.hpp>

#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "harness.hpp"

extern char** environ;

using namespace test_support;
using namespace taskexec;

namespace {

// "key value key value ..." -> map.
std::map<std::string, std::string> figures_of(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in(line);
  std::string k, v;
  while (in >> k >> v)
    out[k] = v;
  return out;
}

void check_embedded(const std::string& args, int launches) {
  run(
      [&]() -> asio::awaitable<void> {
        exec_command cmd;
        cmd.cmd = TASKEXEC_EMBED_CHECK;
        std::istringstream in(args);
        for (std::string a; in >> a;)
          cmd.args.push_back(a);
        cmd.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
        int code = -1;
        const std::string out = co_await output_of(cmd, &code);
        BOOST_TEST_INFO("taskexec-embed-check " << args << ": " << out);
        auto f = figures_of(out);
        BOOST_TEST(f["result"] == "ok");
        BOOST_TEST(f["launched"] == std::to_string(launches));
        BOOST_TEST(f["completed"] == std::to_string(launches));  // every wait completed
        BOOST_TEST(f["task_wrong"] == "0");
        BOOST_TEST(f["wait_timed_out"] == "0");
        BOOST_TEST(f["shutdown_failed"] == "0");
        BOOST_TEST(f["foreign_lost"] == "0");       // no foreign exit taken by the reaper
        BOOST_TEST(f["foreign_wrong"] == "0");      // every foreign exit code right
        BOOST_TEST(f["foreign_signalled"] == "0");  // no foreign child signalled
        BOOST_TEST(f["watched_left"] == "0");
        BOOST_TEST(code == 0);
      },
      300s);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(embedded)

// 300 launches (a tenth of them shut down while foreign children live),
// beside 100 std::system, 100 popen and 100 Boost.Process v2 children and
// std::system children that outlive the shutdowns; run() on 1, 2 and 8
// threads. (`taskexec-embed-check --launches 1000` runs the 1000.)
BOOST_AUTO_TEST_CASE(exact_one_thread) {
  check_embedded("--threads 1 --launches 300 --foreign 100", 300);
}
BOOST_AUTO_TEST_CASE(exact_two_threads) {
  check_embedded("--threads 2 --launches 300 --foreign 100", 300);
}
BOOST_AUTO_TEST_CASE(exact_eight_threads) {
  check_embedded("--threads 8 --launches 300 --foreign 100", 300);
}

// adopt_orphans on 8 threads, nothing foreign (that mode reaps every child
// of the process by design): no task's exit is lost between its clone and
// its watch.
BOOST_AUTO_TEST_CASE(adopt_orphans_eight_threads) {
  check_embedded("--threads 8 --launches 300 --foreign 0 --mode adopt", 300);
}

// adopt_orphans (the harness): while one task lives, a child of ours in our
// own session that nobody watches is not the task's: the shutdown sweep
// leaves it alone, and it exits with its own code.
BOOST_AUTO_TEST_CASE(sweep_spares_our_own_session) {
  auto& reaper = harness::get().reaper;
  run([&]() -> asio::awaitable<void> {
    task_executor t(reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 30");
    // Our own child, started after the task (as std::system would).
    const char* argv[] = {"/bin/sh", "-c", "sleep 1; exit 5", nullptr};
    pid_t mine = -1;
    BOOST_REQUIRE(
        ::posix_spawn(&mine, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) == 0);
    std::optional<int> status;
    asio::steady_timer reaped(co_await asio::this_coro::executor, 30s);
    auto sub = reaper.subscribe([&](int pid, int st, bool) {
      if (pid == mine) {
        status = st;
        reaped.cancel();
      }
    });
    auto down = co_await t.shutdown("SIGTERM", 0ms);
    BOOST_TEST(bool(down));
    if (!status)
      co_await reaped.async_wait(asio::as_tuple(asio::use_awaitable));
    sub.reset();
    BOOST_REQUIRE(status.has_value());
    BOOST_TEST(!WIFSIGNALED(*status));
    BOOST_TEST(WIFEXITED(*status));
    BOOST_TEST(WEXITSTATUS(*status) == 5);
  });
}

BOOST_AUTO_TEST_SUITE_END()
