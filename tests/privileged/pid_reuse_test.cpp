// A shutdown after the task has exited must never hit a process that was
// given the task's old pid. Needs root to steer pid allocation
// (/proc/sys/kernel/ns_last_pid).
#include <boost/test/unit_test.hpp>

#include "harness.hpp"
#include "privileged.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;

namespace {

// A task of `sh -c script` that got pid `wanted` (steered through
// /proc/sys/kernel/ns_last_pid; another fork on the machine may take the pid
// first, so a few attempts). Its stdout is `reader`, one per attempt so a
// killed candidate's lines stay in its own pipe.
struct pid_owner {
  std::unique_ptr<task_executor> task;
  std::unique_ptr<pipe_reader> reader;
};

asio::awaitable<pid_owner> launch_with_pid(int wanted, const std::string& script) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    pid_owner o{std::make_unique<task_executor>(harness::get().reaper),
                std::make_unique<pipe_reader>()};
    {
      std::ofstream last("/proc/sys/kernel/ns_last_pid");
      last << wanted - 1;
    }
    auto cmd = sh(script);
    cmd.stdout_fd = o.reader->write_fd();
    BOOST_REQUIRE(co_await o.task->launch(cmd));
    if (o.task->pid() == wanted) {
      o.reader->close_write();
      co_return o;
    }
    BOOST_TEST((co_await o.task->shutdown("SIGKILL", 0ms)).has_value());
  }
  BOOST_FAIL("could not get pid " << wanted << " again");
  co_return pid_owner{};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pid_reuse, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(sweep_after_exit_spares_the_pids_new_owner) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    task_executor old_task(harness::get().reaper);
    BOOST_REQUIRE(co_await old_task.launch(sh("exit 0")));
    const int old_pid = old_task.pid();
    BOOST_TEST((co_await old_task.wait())->exit_code == 0);  // reaped: the pid is free

    auto owned = co_await launch_with_pid(old_pid, "echo ready; exec sleep 1000");
    auto& owner = owned.task;
    auto& out = *owned.reader;
    BOOST_TEST(co_await out.line() == "ready");

    // The new owner leads a session whose id is the old task's pid.
    BOOST_TEST((co_await old_task.shutdown("SIGTERM", 0ms)).has_value());
    BOOST_TEST(alive(old_pid));
    BOOST_TEST((owner->state() == task_state::running));
    BOOST_TEST((co_await owner->shutdown("SIGKILL", 0ms)).has_value());
    BOOST_TEST(!alive(old_pid));
  });
}

BOOST_AUTO_TEST_CASE(sweep_after_exit_spares_a_session_left_by_the_pids_new_owner) {
  // The new owner of the old pid starts a background process in its session
  // and exits: nobody holds the pid, but session "old pid" is a stranger's.
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    task_executor old_task(harness::get().reaper);
    BOOST_REQUIRE(co_await old_task.launch(sh("exit 0")));
    const int old_pid = old_task.pid();
    BOOST_TEST((co_await old_task.wait())->exit_code == 0);

    // Starts a sleep in its own session, reports it, and exits.
    auto owned = co_await launch_with_pid(old_pid, "sleep 1000 & echo $!; echo ready");
    auto& owner = owned.task;
    auto& out = *owned.reader;
    const int strangers_sleep = std::stoi(co_await out.line());
    BOOST_TEST(co_await out.line() == "ready");
    BOOST_TEST((co_await owner->wait())->exit_code == 0);
    auto st = detail::read_proc_stat(strangers_sleep);
    BOOST_REQUIRE(st);
    BOOST_TEST(st->session == old_pid);  // the stranger's session has the old task's number

    BOOST_TEST((co_await old_task.shutdown("SIGTERM", 0ms)).has_value());
    BOOST_TEST(alive(strangers_sleep));
    BOOST_TEST((co_await owner->shutdown("SIGKILL", 0ms)).has_value());
    BOOST_TEST(co_await wait_gone(strangers_sleep));
  });
}

BOOST_AUTO_TEST_SUITE_END()
