#include <boost/test/unit_test.hpp>

#include "taskexec/shutdown_fsm.hpp"

using namespace taskexec;
using namespace std::chrono_literals;
using A = shutdown_fsm::action_type;
using E = shutdown_fsm::event;

BOOST_AUTO_TEST_SUITE(shutdown_machine)

BOOST_AUTO_TEST_CASE(grace_then_graceful_exit) {
  shutdown_fsm m(15, 5000ms, false);
  auto a = m.resume(E::started);
  BOOST_TEST((a.type == A::send_signal));
  BOOST_TEST(a.signal == 15);
  a = m.resume(E::step_done);
  BOOST_TEST((a.type == A::wait_exit));
  BOOST_TEST(a.wait.count() == 5000);
  a = m.resume(E::task_exited);
  BOOST_TEST((a.type == A::sweep));
  a = m.resume(E::sweep_found_none);
  BOOST_TEST((a.type == A::done));
  BOOST_TEST(!a.failed);
}

BOOST_AUTO_TEST_CASE(grace_expires_then_sigkill) {
  shutdown_fsm m(2, 100ms, false);
  BOOST_TEST((m.resume(E::started).type == A::send_signal));
  BOOST_TEST((m.resume(E::step_done).type == A::wait_exit));
  BOOST_TEST((m.resume(E::wait_timed_out).type == A::kill_task));
  auto a = m.resume(E::step_done);
  BOOST_TEST((a.type == A::wait_exit));
  BOOST_TEST((a.wait == std::chrono::milliseconds::max()));
  BOOST_TEST((m.resume(E::task_exited).type == A::sweep));
  BOOST_TEST((m.resume(E::sweep_found_some).type == A::wait_sweep));
  BOOST_TEST((m.resume(E::step_done).type == A::sweep));
  a = m.resume(E::sweep_found_none);
  BOOST_TEST((a.type == A::done));
  BOOST_TEST(!a.failed);
}

BOOST_AUTO_TEST_CASE(zero_grace_kills_at_once) {
  shutdown_fsm m(2, 0ms, false);
  BOOST_TEST((m.resume(E::started).type == A::kill_task));
}

BOOST_AUTO_TEST_CASE(already_exited_only_sweeps) {
  shutdown_fsm m(2, 1000ms, true);
  BOOST_TEST((m.resume(E::started).type == A::sweep));
  BOOST_TEST((m.resume(E::sweep_found_none).type == A::done));
}

BOOST_AUTO_TEST_CASE(exit_racing_the_signal) {
  shutdown_fsm m(15, 1000ms, false);
  BOOST_TEST((m.resume(E::started).type == A::send_signal));
  BOOST_TEST((m.resume(E::task_exited).type == A::sweep));
}

BOOST_AUTO_TEST_CASE(deadline_during_grace_still_kills) {
  shutdown_fsm m(15, 60000ms, false);
  m.resume(E::started);
  m.resume(E::step_done);
  BOOST_TEST((m.resume(E::deadline_passed).type == A::kill_task));
}

BOOST_AUTO_TEST_CASE(survivor_of_sigkill_fails) {
  shutdown_fsm m(15, 0ms, false);
  m.resume(E::started);
  m.resume(E::step_done);
  auto a = m.resume(E::wait_timed_out);
  BOOST_TEST((a.type == A::done));
  BOOST_TEST(a.failed);
  BOOST_TEST(a.reason == "the task's main process survived SIGKILL");
}

BOOST_AUTO_TEST_CASE(sweep_that_never_empties_fails_at_deadline) {
  shutdown_fsm m(15, 0ms, true);
  m.resume(E::started);
  BOOST_TEST((m.resume(E::sweep_found_some).type == A::wait_sweep));
  auto a = m.resume(E::deadline_passed);
  BOOST_TEST((a.type == A::done));
  BOOST_TEST(a.failed);
  BOOST_TEST(a.reason == "processes of the task survived SIGKILL");
}

BOOST_AUTO_TEST_CASE(unexpected_events_are_bugs) {
  shutdown_fsm m(15, 0ms, false);
  BOOST_CHECK_THROW(m.resume(E::sweep_found_none), std::logic_error);
  shutdown_fsm done(15, 0ms, true);
  done.resume(E::started);
  done.resume(E::sweep_found_none);
  BOOST_CHECK_THROW(done.resume(E::step_done), std::logic_error);
}

BOOST_AUTO_TEST_SUITE_END()
