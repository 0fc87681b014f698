// Internal: starting extra commands (Exec, ExecStreaming, ExecScript)
// through an isolation stack, and task_executor's access to exec sessions.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "taskexec/detail/condition.hpp"
#include "taskexec/detail/spawn.hpp"
#include "taskexec/error.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/isolation/strategy.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

class child_reaper;
using strategy_stack = std::vector<std::unique_ptr<isolation_strategy>>;

struct started_command {
  int pid = 0;
  std::uint64_t start_ticks = 0;  ///< for kill_tree: tells it from a later holder of the pid
};

/// How a start waits for the report of a command that has one (an Exec in
/// a container: taskexec-init reports once the command runs).
struct launch_wait {
  std::chrono::milliseconds report_timeout = detail::default_report_timeout;
  /// Notified: give up (the task is gone). May be null.
  detail::condition* abort = nullptr;
};

/// Launch `c` through `stack`: validate, before_fork, spawn, after_start (or
/// launch_failed on every prepared strategy). Suspends only while a report
/// is awaited (never blocking the thread). `on_exit` gets the raw wait
/// status from the reaper, after every strategy's exit_status; it must keep
/// `stack` alive. The plan's descriptors are closed before this returns.
/// Errors: those of detail::spawn (operation_canceled when `wait.abort` is
/// notified or the awaiting coroutine is cancelled: the child is killed).
boost::asio::awaitable<result<started_command>> start_command(child_reaper& reaper,
                                                              strategy_stack& stack,
                                                              const exec_command& c,
                                                              std::function<void(int)> on_exit,
                                                              launch_wait wait = {});

struct exec_session_access {
  /// A session of `o.cmd` in the context `context` (a copy of the task's
  /// command) through `stack`; its state is also returned in `state` so
  /// that the executor can end it with the task.
  /// Suspends only while the command's report is awaited (see start_command).
  static boost::asio::awaitable<result<exec_session>> start(
      child_reaper& reaper, strategy_stack stack, exec_command context, exec_session_options o,
      std::shared_ptr<exec_session::state>& state, launch_wait wait);
  /// The task is gone: kill the command if it still runs.
  static void end_with_task(exec_session::state& s) noexcept;
};

}  // namespace taskexec
