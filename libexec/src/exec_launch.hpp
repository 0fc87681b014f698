// Internal: starting extra commands (Exec, ExecStreaming, ExecScript)
// through an isolation stack, and task_executor's access to exec sessions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

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

/// Launch `c` through `stack`: validate, before_fork, spawn, after_start (or
/// launch_failed on every prepared strategy). `on_exit` gets the raw wait
/// status from the reaper, after every strategy's exit_status; it must keep
/// `stack` alive. The plan's descriptors are closed before this returns.
result<started_command> start_command(child_reaper& reaper, strategy_stack& stack,
                                      const exec_command& c, std::function<void(int)> on_exit);

struct exec_session_access {
  /// A session of `o.cmd` in the context `context` (a copy of the task's
  /// command) through `stack`; its state is also returned in `state` so
  /// that the executor can end it with the task.
  static result<exec_session> start(child_reaper& reaper, strategy_stack stack,
                                    exec_command context, exec_session_options o,
                                    std::shared_ptr<exec_session::state>& state);
  /// The task is gone: kill the command if it still runs.
  static void end_with_task(exec_session::state& s) noexcept;
};

}  // namespace taskexec
