// The executor's watchdog: a tiny process (taskexec-init -w, from the same
// sealed memfd as a container's init) that outlives a SIGKILLed executor
// just long enough to kill the task's whole tree, through its cgroup, and
// remove the cgroups. See task_executor_options::watchdog.
//
// Lifetime: the watchdog waits on a pipe whose only write end this object
// holds (close-on-exec, so no task process inherits it). Closing it (release(),
// the destructor, or the executor's death) makes the watchdog kill what is
// left in `kill_dir`, remove `remove_dirs` and exit. It is our child: the
// caller must hand its pid to the child reaper.
#pragma once

#include <string>
#include <vector>

#include "taskexec/cgroups.hpp"
#include "taskexec/error.hpp"

namespace taskexec::detail {

class watchdog {
 public:
  watchdog() = default;
  watchdog(watchdog&& o) noexcept : pid_(o.pid_), fd_(o.fd_) { o.pid_ = o.fd_ = -1; }
  watchdog& operator=(watchdog&& o) noexcept;
  ~watchdog() { release(); }

  /// Start one in a session of its own, with stdio on /dev/null and "/" as
  /// its working directory. Errors: the memfd, pipe or spawn's errno.
  static result<watchdog> start(const std::string& kill_dir,
                                const std::vector<std::string>& remove_dirs);

  /// Let it go: it kills what is left in its cgroup, cleans up and exits.
  void release() noexcept;
  int pid() const noexcept { return pid_; }
  bool armed() const noexcept { return fd_ >= 0; }

 private:
  int pid_ = -1;
  int fd_ = -1;
};

/// A kill-only cgroup for a task that has none of its own: on the unified
/// tree (v2, or hybrid's <root>/unified) where cgroup.kill and cgroup.freeze
/// live, else in the v1 freezer hierarchy, at <hierarchy>/<parent>/<name>.
/// Created (parent too) when missing. Errors: no usable hierarchy (not root,
/// no cgroupfs: errc::unsupported), or mkdir's errno naming the path.
result<std::string> make_guard_cgroup(const cgroup::layout& layout, const std::string& parent,
                                      const std::string& name);

/// Of a task's cgroup directories, the one a watchdog kills through: the
/// first with cgroup.kill, else with cgroup.freeze or freezer.state. Empty
/// when none has either.
std::string kill_directory(const std::vector<std::string>& dirs);

}  // namespace taskexec::detail
