// launch_plan: everything the child needs between fork and exec, prepared by
// the parent. Strategies fill it in `before_fork` (where they may allocate,
// resolve users, open files) so that the child side only reads it.
#pragma once

#include <sys/types.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace taskexec {

/// Where a child-side failure happened, and its errno. Written to the CLOEXEC
/// error pipe by the child, read by the parent. Fixed-size: no allocation.
struct child_failure {
  int error = 0;
  std::array<char, 56> step{};  ///< NUL-terminated, e.g. "setuid" or "chdir"
};

/// Child side: record `step` with the current errno; returns false so that
/// `return fail_step(f, "setuid");` reports the failure. Async-signal-safe.
inline bool fail_step(child_failure& f, const char* step) noexcept {
  f.error = errno;
  std::size_t i = 0;
  for (; step[i] != '\0' && i + 1 < f.step.size(); ++i)
    f.step[i] = step[i];
  f.step[i] = '\0';
  return false;
}

/// fail_step with `step` followed by `detail` (a path, say), cut to fit.
inline bool fail_step(child_failure& f, const char* step, const char* detail) noexcept {
  fail_step(f, step);
  std::size_t i = 0;
  while (f.step[i] != '\0')
    ++i;
  for (std::size_t j = 0; detail[j] != '\0' && i + 1 < f.step.size(); ++j, ++i)
    f.step[i] = detail[j];
  f.step[i] = '\0';
  return false;
}

struct launch_plan {
  // Identity of the parent, for the parent-death check after PR_SET_PDEATHSIG.
  pid_t parent_pid = 0;

  // What to run.
  std::string executable;                 ///< absolute path
  std::vector<std::string> argv_storage;  ///< argv[0] is the command as given
  std::vector<std::string> env_storage;   ///< "K=V"
  std::vector<char*> argv;                ///< pointers into argv_storage, nullptr-terminated
  std::vector<char*> envp;                ///< pointers into env_storage, nullptr-terminated

  // Where.
  std::string cwd;  ///< empty: inherit the executor's

  // Standard descriptors for the child (owned by the plan; >= 3 so the dup2
  // onto 0..2 never aliases; closed by the parent after the launch).
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // stdin is a terminal that becomes the session's controlling terminal
  // (TIOCSCTTY after setsid). With `tty_by_init` taskexec-init takes it for
  // the command it starts instead (the command leads its own session).
  bool controlling_tty = false;
  bool tty_by_init = false;

  // Who.
  bool change_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  ///< supplementary groups (includes gid)

  // oom_score_adj as the decimal text written to /proc/self/oom_score_adj.
  std::array<char, 16> oom_score_adj{};

  // How (see clone_launcher): extra clone flags (namespaces), a descriptor
  // to exec instead of `executable`, descriptors passed through exec at
  // fixed numbers ({from, to}; owned by the strategy that adds them), and
  // the number at which the launch's error pipe is passed on.
  int clone_flags = 0;
  int exec_fd = -1;
  std::vector<std::pair<int, int>> fd_map;
  int report_fd = -1;

  /// Fill argv/envp from the storage vectors (call after the last change).
  void seal();
  /// Close the descriptors the plan owns.
  void close_fds() noexcept;
  ~launch_plan() { close_fds(); }
  launch_plan() = default;
  launch_plan(const launch_plan&) = delete;
  launch_plan& operator=(const launch_plan&) = delete;
};

}  // namespace taskexec
