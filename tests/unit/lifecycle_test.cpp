#include <boost/test/unit_test.hpp>

#include "taskexec/lifecycle.hpp"

using namespace taskexec;
using op = task_operation;
using ev = task_event;

namespace {
errc code_of(const result<void>& r) {
  BOOST_REQUIRE(!r);
  return static_cast<errc>(r.error().code.value());
}
}  // namespace

BOOST_AUTO_TEST_SUITE(lifecycle_machine)

BOOST_AUTO_TEST_CASE(before_launch_only_launch_and_destroy_apply) {
  lifecycle l;
  BOOST_TEST((l.state() == task_state::not_launched));
  BOOST_TEST(l.admit(op::launch).has_value());
  BOOST_TEST(l.admit(op::destroy).has_value());
  for (auto o : {op::wait, op::signal, op::shutdown, op::stats, op::exec, op::update_resources}) {
    BOOST_TEST((code_of(l.admit(o)) == errc::not_launched), to_string(o));
    BOOST_TEST(l.admit(o).error().message == "task not yet launched");
  }
}

BOOST_AUTO_TEST_CASE(running_then_exited) {
  lifecycle l;
  l.on(ev::launch_started);
  BOOST_TEST((l.state() == task_state::launching));
  BOOST_TEST((code_of(l.admit(op::launch)) == errc::already_launched));
  BOOST_TEST((code_of(l.admit(op::signal)) == errc::not_launched));
  l.on(ev::launch_succeeded);
  BOOST_TEST((l.state() == task_state::running));
  for (auto o : {op::wait, op::signal, op::shutdown, op::stats, op::exec, op::update_resources,
                 op::destroy}) {
    BOOST_TEST(l.admit(o).has_value(), to_string(o));
  }
  BOOST_TEST((code_of(l.admit(op::launch)) == errc::already_launched));
  l.on(ev::process_exited);
  BOOST_TEST((l.state() == task_state::exited));
  BOOST_TEST(l.admit(op::wait).has_value());
  BOOST_TEST(l.admit(op::shutdown).has_value());
  for (auto o : {op::signal, op::stats, op::exec, op::update_resources}) {
    BOOST_TEST((code_of(l.admit(o)) == errc::task_exited), to_string(o));
  }
}

BOOST_AUTO_TEST_CASE(failed_launch_returns_to_not_launched) {
  lifecycle l;
  l.on(ev::launch_started);
  l.on(ev::launch_failed);
  BOOST_TEST((l.state() == task_state::not_launched));
  BOOST_TEST(l.admit(op::launch).has_value());
}

BOOST_AUTO_TEST_CASE(destroyed_refuses_everything) {
  lifecycle l;
  l.on(ev::launch_started);
  l.on(ev::launch_succeeded);
  l.on(ev::destroyed);
  for (auto o :
       {op::launch, op::wait, op::signal, op::shutdown, op::destroy, op::stats, op::exec}) {
    BOOST_TEST((code_of(l.admit(o)) == errc::task_destroyed), to_string(o));
  }
}

BOOST_AUTO_TEST_CASE(impossible_events_are_bugs) {
  lifecycle l;
  BOOST_CHECK_THROW(l.on(ev::launch_succeeded), std::logic_error);
  BOOST_CHECK_THROW(l.on(ev::process_exited), std::logic_error);
  l.on(ev::launch_started);
  BOOST_CHECK_THROW(l.on(ev::launch_started), std::logic_error);
  l.on(ev::launch_succeeded);
  l.on(ev::process_exited);
  BOOST_CHECK_THROW(l.on(ev::process_exited), std::logic_error);
  l.on(ev::destroyed);
  BOOST_CHECK_THROW(l.on(ev::destroyed), std::logic_error);
}

BOOST_AUTO_TEST_SUITE_END()
