// The isolation strategy interface: one object per concern (host, cgroups,
// namespaces), composed in order for a task. Each hook has a parent side and
// a child side; setup and teardown come in pairs.
//
// Order of calls for one launch, each over all strategies in order:
//   validate -> before_fork -> [fork] -> in_child (child) -> [exec]
//   -> after_start (success) or launch_failed (any failure after before_fork)
// and, once the task and all its processes are gone, teardown.
#pragma once

#include <string_view>

#include "taskexec/error.hpp"
#include "taskexec/isolation/launch_plan.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// Optional fields of exec_command; a strategy says which it honours so that
/// a field nobody in the stack honours is rejected, never silently ignored.
enum class isolation_feature : unsigned {
  resource_limits = 1u << 0,
  basic_process_cgroup = 1u << 1,
  mounts = 1u << 2,
  devices = 1u << 3,
  network_isolation = 1u << 4,
  private_pid = 1u << 5,
  private_ipc = 1u << 6,
  capabilities = 1u << 7,
  no_pivot_root = 1u << 8,
};
using isolation_features = unsigned;

class isolation_strategy {
 public:
  virtual ~isolation_strategy() = default;

  virtual std::string_view name() const noexcept = 0;
  virtual isolation_features features() const noexcept = 0;

  /// Reject what this strategy cannot do with this command (pure).
  virtual result<void> validate(const exec_command& cmd) const = 0;

  /// Parent side, before the fork: resolve, open, allocate, fill `plan`.
  virtual result<void> before_fork(const exec_command& cmd, launch_plan& plan) = 0;

  /// Child side, between fork and exec. Async-signal-safe calls only: no
  /// allocation, no locks, no logging, no libc wrappers that touch other
  /// threads (setuid & co. go through raw syscalls). The child shares the
  /// parent's memory (CLONE_VM): read `plan`, write nothing but `failure`.
  /// Return true on success; on failure fill `failure` and return false.
  virtual bool in_child(const launch_plan& plan, child_failure& failure) const noexcept = 0;

  /// Parent side, after a successful exec.
  virtual void after_start(const launch_plan& plan, int pid) { (void)plan, (void)pid; }

  /// Parent side, after a failure anywhere past a successful before_fork.
  virtual void launch_failed(const launch_plan& plan) noexcept { (void)plan; }

  /// The task's wait status from the main process's: a strategy that puts a
  /// process of its own between the executor and the task (an init) passes
  /// the task's status on. Called once, when the main process is reaped.
  virtual int exit_status(int status) noexcept { return status; }

  /// The process a signal for the task goes to (the main process `pid`
  /// unless a strategy's own process stands in between and cannot pass
  /// that signal on).
  virtual int signal_target(int pid, int signo) const { return (void)signo, pid; }

  /// After the task and all of its processes are gone. Idempotent, and
  /// never blocks: when what it removes is not free yet (a cgroup whose
  /// killed processes are still exiting) it answers errc::resource_busy and
  /// the executor calls it again later (every 20 ms, for up to 2 s).
  virtual result<void> teardown() { return {}; }
};

}  // namespace taskexec
