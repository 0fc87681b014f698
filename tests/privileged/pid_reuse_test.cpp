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
    pipe_reader out;
    for (int attempt = 0; attempt < 50 && !owner; ++attempt) {
      {
        std::ofstream last("/proc/sys/kernel/ns_last_pid");
        last << old_pid - 1;
      }
      auto candidate = std::make_unique<task_executor>(harness::get().reaper);
      auto cmd = sh("echo ready; exec sleep 1000");
      cmd.stdout_fd = out.write_fd();
      BOOST_REQUIRE(co_await candidate->launch(cmd));
      if (candidate->pid() == old_pid) {
        owner = std::move(candidate);
      } else {
        BOOST_TEST((co_await candidate->shutdown("SIGKILL", 0ms)).has_value());
      }
    }
    BOOST_REQUIRE_MESSAGE(owner, "could not get pid " << old_pid << " again");
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

BOOST_AUTO_TEST_SUITE_END()
