#include "taskexec/shutdown_fsm.hpp"

#include <stdexcept>

namespace taskexec {

namespace {
shutdown_fsm::action make(shutdown_fsm::action_type t, int signo = 0,
                          std::chrono::milliseconds wait = std::chrono::milliseconds{0}) {
  shutdown_fsm::action a;
  a.type = t;
  a.signal = signo;
  a.wait = wait;
  return a;
}
}  // namespace

shutdown_fsm::action shutdown_fsm::resume(event ev) {
  using ms = std::chrono::milliseconds;
  auto done = [this](bool failed, std::string reason) {
    phase_ = phase::done;
    auto a = make(action_type::done);
    a.failed = failed;
    a.reason = std::move(reason);
    return a;
  };
  auto sweep = [this] {
    phase_ = phase::sweeping;
    return make(action_type::sweep);
  };
  auto kill = [this] {
    phase_ = phase::killed;
    return make(action_type::kill_task);
  };

  if (ev == event::deadline_passed) {
    switch (phase_) {
      case phase::done:
        break;
      case phase::start:
      case phase::signalled:
      case phase::waiting_grace:
        return kill();  // the grace is cut short; SIGKILL still goes out
      case phase::killed:
      case phase::waiting_kill:
        return done(true, "the task's main process survived SIGKILL");
      case phase::sweeping:
      case phase::sweep_wait:
        return done(true, "processes of the task survived SIGKILL");
    }
    throw std::logic_error("shutdown_fsm: deadline after done");
  }

  switch (phase_) {
    case phase::start:
      if (ev != event::started)
        break;
      if (exited_)
        return sweep();
      if (grace_.count() > 0) {
        phase_ = phase::signalled;
        return make(action_type::send_signal, signal_);
      }
      return kill();

    case phase::signalled:
      if (ev == event::task_exited)
        return sweep();  // gone before we could wait
      if (ev != event::step_done)
        break;
      phase_ = phase::waiting_grace;
      return make(action_type::wait_exit, 0, grace_);

    case phase::waiting_grace:
      if (ev == event::task_exited)
        return sweep();
      if (ev == event::wait_timed_out)
        return kill();
      break;

    case phase::killed:
      if (ev == event::task_exited)
        return sweep();
      if (ev != event::step_done)
        break;
      phase_ = phase::waiting_kill;
      return make(action_type::wait_exit, 0, ms::max());

    case phase::waiting_kill:
      if (ev == event::task_exited)
        return sweep();
      if (ev == event::wait_timed_out)
        return done(true, "the task's main process survived SIGKILL");
      break;

    case phase::sweeping:
      if (ev == event::sweep_found_none)
        return done(false, {});
      if (ev == event::sweep_found_some) {
        phase_ = phase::sweep_wait;
        return make(action_type::wait_sweep);
      }
      break;

    case phase::sweep_wait:
      if (ev == event::step_done)
        return sweep();
      break;

    case phase::done:
      break;
  }
  throw std::logic_error("shutdown_fsm: unexpected event " + std::to_string(static_cast<int>(ev)) +
                         " in phase " + std::to_string(static_cast<int>(phase_)));
}

}  // namespace taskexec
