// The task lifecycle as a pure state machine: no I/O, no clock. task_executor
// consults it before every operation and feeds it every event; tests step it
// by hand (tests/unit/lifecycle_test.cpp).
//
//   not_launched --launch--> launching --started--> running --exited--> exited
//        |                       |                                         |
//        |                       +--launch_failed--> not_launched          |
//        +------------------------------destroyed----------------------> destroyed
#pragma once

#include <optional>
#include <string_view>

#include "taskexec/error.hpp"

namespace taskexec {

enum class task_state { not_launched, launching, running, exited, destroyed };
enum class task_operation {
  launch,
  wait,
  signal,
  shutdown,
  destroy,
  stats,
  exec,
  update_resources
};
enum class task_event {
  launch_started,
  launch_succeeded,
  launch_failed,
  process_exited,
  destroyed
};

std::string_view to_string(task_state s) noexcept;
std::string_view to_string(task_operation op) noexcept;

class lifecycle {
 public:
  task_state state() const noexcept { return state_; }

  /// Whether `op` applies now; an error with a distinct code and a message
  /// naming the state when it does not. Pure.
  result<void> admit(task_operation op) const;

  /// Apply an event. An event that cannot happen in the current state is a
  /// bug in the caller and throws std::logic_error.
  void on(task_event ev);

 private:
  task_state state_ = task_state::not_launched;
};

}  // namespace taskexec
