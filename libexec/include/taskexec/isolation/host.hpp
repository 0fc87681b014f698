// The host isolation strategy: a plain process on the host, confined only by
// what every task gets.
//  - its own session and process group (setsid);
//  - the task's user: uid, primary gid and supplementary groups from the
//    group database (setgroups, so no stray group 0 is inherited); USER,
//    LOGNAME and HOME added to the environment unless given;
//  - the environment exactly as given (plus the three above), never the
//    executor's own;
//  - cwd = work_dir, else task_dir, else the executor's;
//  - stdin from /dev/null; stdout/stderr to the given files (append) or FIFOs,
//    or to descriptors handed over by an embedding program (stdin too; with
//    controlling_tty a terminal on stdin becomes the session's controlling
//    terminal);
//  - stdout/stderr paths in the task dir (relative, or absolute below it)
//    are resolved below it through no symlink (detail::open_beneath); a file
//    made there is the task user's (fchown through the descriptor); an
//    existing one must be a regular file or a FIFO, and not a hard link to
//    someone else's file. Paths outside are the caller's, but a symlink as
//    the last component is refused (except /proc/<pid>/fd/<n>);
//  - binary lookup: task_dir/local/<cmd>, task_dir/<cmd>, an absolute host
//    path, then PATH (the task's, else /usr/local/bin:/usr/bin:/bin); a
//    regular file reached below task_dir through no symlink that lacks any
//    of 0555 gets them added (0610 -> 0755, 0700 -> 0755), unless it is a
//    hard link to someone else's file; host files (outside task_dir, or
//    reached through a symlink) are never changed (a PATH entry without
//    execute bits is skipped, an absolute one fails at exec with EACCES);
//  - oom_score_adj = exec_command.oom_score_adj, never the executor's value;
//  - PR_SET_PDEATHSIG(SIGKILL), set after the credential change (which would
//    clear it), so the task dies with its executor. The kernel ties it to the
//    *thread* that launched the task: launch from a thread that lives as long
//    as the tasks (the io_context's thread);
//  - every other descriptor closed (by the launcher, close_range).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>

#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/isolation/registry.hpp"
#include "taskexec/isolation/strategy.hpp"

namespace taskexec {

class host_strategy final : public isolation_strategy {
 public:
  std::string_view name() const noexcept override { return "host"; }
  isolation_features features() const noexcept override { return 0; }
  result<void> validate(const exec_command& cmd) const override;
  result<void> before_fork(const exec_command& cmd, launch_plan& plan) override;
  bool in_child(const launch_plan& plan, child_failure& failure) const noexcept override;
};

/// The resolved identity of a user.
struct user_identity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  ///< supplementary, from the group database, including gid
  std::string home;
};

/// Look a user up by name or numeric uid. errc::user_not_found names the user.
result<user_identity> lookup_user(std::string_view user);

/// Binary lookup in the host strategy's order; errc::binary_not_found reads
/// `binary "<cmd>" could not be found`. `path_env` is the PATH to search.
/// A regular file found below task_dir through no symlink that lacks any of
/// 0555 gets them added (mode | 0555), through a descriptor; a file with
/// more than one link that `task_uid` (default: the executor's euid, as
/// whom a task without a user runs) does not own is left as it is, and
/// when it has no execute bit at all that is an error (EPERM,
/// `binary "<cmd>": "<path>" is not executable and is not made so: ...`).
/// Files outside task_dir are never changed.
result<std::string> lookup_binary(std::string_view cmd, std::string_view task_dir,
                                  std::string_view path_env,
                                  std::optional<uid_t> task_uid = std::nullopt);

}  // namespace taskexec
