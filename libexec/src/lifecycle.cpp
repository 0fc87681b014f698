#include "taskexec/lifecycle.hpp"

#include <stdexcept>
#include <string>

namespace taskexec {

std::string_view to_string(task_state s) noexcept {
  switch (s) {
    case task_state::not_launched:
      return "not_launched";
    case task_state::launching:
      return "launching";
    case task_state::running:
      return "running";
    case task_state::exited:
      return "exited";
    case task_state::destroyed:
      return "destroyed";
  }
  return "unknown";
}

std::string_view to_string(task_operation op) noexcept {
  switch (op) {
    case task_operation::launch:
      return "launch";
    case task_operation::wait:
      return "wait";
    case task_operation::signal:
      return "signal";
    case task_operation::shutdown:
      return "shutdown";
    case task_operation::destroy:
      return "destroy";
    case task_operation::stats:
      return "stats";
    case task_operation::exec:
      return "exec";
    case task_operation::update_resources:
      return "update_resources";
  }
  return "unknown";
}

result<void> lifecycle::admit(task_operation op) const {
  using enum task_state;
  using enum task_operation;
  if (state_ == destroyed)
    return make_error(errc::task_destroyed, "task executor destroyed");
  switch (op) {
    case launch:
      if (state_ == not_launched)
        return {};
      return make_error(errc::already_launched, "task already launched");
    case destroy:
      return {};  // from any state but destroyed
    case wait:
    case shutdown:
      // wait and shutdown apply to a running task and to an exited one
      // (wait returns the state, shutdown still sweeps).
      if (state_ == running || state_ == exited)
        return {};
      return make_error(errc::not_launched, "task not yet launched");
    case signal:
    case stats:
    case exec:
    case update_resources:
      if (state_ == running)
        return {};
      if (state_ == exited)
        return make_error(errc::task_exited, "task has exited");
      return make_error(errc::not_launched, "task not yet launched");
  }
  return make_error(errc::invalid_argument, "unknown operation");
}

void lifecycle::on(task_event ev) {
  using enum task_state;
  const task_state from = state_;
  switch (ev) {
    case task_event::launch_started:
      if (from == not_launched)
        state_ = launching;
      break;
    case task_event::launch_succeeded:
      if (from == launching)
        state_ = running;
      break;
    case task_event::launch_failed:
      if (from == launching)
        state_ = not_launched;
      break;
    case task_event::process_exited:
      if (from == running)
        state_ = exited;
      break;
    case task_event::destroyed:
      if (from != destroyed)
        state_ = destroyed;
      break;
  }
  if (state_ == from) {
    throw std::logic_error("lifecycle: event " + std::to_string(static_cast<int>(ev)) +
                           " cannot happen in state " + std::string(to_string(from)));
  }
}

}  // namespace taskexec
