// A shutdown after the task has exited must never hit a process that was
// given the task's old pid. Needs root to steer pid allocation
// (/proc/sys/kernel/ns_last_pid).
#include <boost/test/unit_test.hpp>

#include "harness.hpp"
#include "privileged.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;

BOOST_AUTO_TEST_SUITE(pid_reuse, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(sweep_after_exit_spares_the_pids_new_owner) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    task_executor old_task(harness::get().reaper);
    BOOST_REQUIRE(co_await old_task.launch(sh("exit 0")));
    const int old_pid = old_task.pid();
    BOOST_TEST((co_await old_task.wait())->exit_code == 0);  // reaped: the pid is free

    // Make the next pid the old one; another fork on the machine may take it
    // first, so try a few times.
    std::unique_ptr<task_executor> owner;
    std::unique_ptr<pipe_reader>
        reader;  // one per attempt: a killed candidate's lines stay in its own
    for (int attempt = 0; attempt < 50 && !owner; ++attempt) {
      reader = std::make_unique<pipe_reader>();
      {
        std::ofstream last("/proc/sys/kernel/ns_last_pid");
        last << old_pid - 1;
      }
      auto candidate = std::make_unique<task_executor>(harness::get().reaper);
      auto cmd = sh("echo ready; exec sleep 1000");
      cmd.stdout_fd = reader->write_fd();
      BOOST_REQUIRE(co_await candidate->launch(cmd));
      if (candidate->pid() == old_pid) {
        owner = std::move(candidate);
      } else {
        BOOST_TEST((co_await candidate->shutdown("SIGKILL", 0ms)).has_value());
      }
    }
    BOOST_REQUIRE_MESSAGE(owner, "could not get pid " << old_pid << " again");
    auto& out = *reader;
    out.close_write();
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

    std::unique_ptr<task_executor> owner;
    std::unique_ptr<pipe_reader>
        reader;  // one per attempt: a killed candidate's lines stay in its own
    for (int attempt = 0; attempt < 50 && !owner; ++attempt) {
      reader = std::make_unique<pipe_reader>();
      {
        std::ofstream last("/proc/sys/kernel/ns_last_pid");
        last << old_pid - 1;
      }
      auto candidate = std::make_unique<task_executor>(harness::get().reaper);
      // Starts a sleep in its own session, reports it, waits for a line on
      // stdin (/dev/null: at once), and exits.
      auto cmd = sh("sleep 1000 & echo $!; echo ready");
      cmd.stdout_fd = reader->write_fd();
      BOOST_REQUIRE(co_await candidate->launch(cmd));
      if (candidate->pid() == old_pid) {
        owner = std::move(candidate);
      } else {
        BOOST_TEST((co_await candidate->shutdown("SIGKILL", 0ms)).has_value());
      }
    }
    BOOST_REQUIRE_MESSAGE(owner, "could not get pid " << old_pid << " again");
    auto& out = *reader;
    out.close_write();
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
