// Internal: the parts of a task's process setup that the host and container
// strategies share.
#pragma once

#include <sys/stat.h>

#include <string>

#include "taskexec/error.hpp"
#include "taskexec/isolation/launch_plan.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// Parent side: parent_pid, task_dir checked, the environment (plus USER,
/// LOGNAME, HOME of the task's user), the user's ids and groups, stdin from
/// /dev/null and stdout/stderr opened, oom_score_adj. Not the binary or cwd.
result<void> prepare_process(const exec_command& cmd, launch_plan& plan);

/// Whether the executor may change (chmod, append to) a file of the task
/// dir on behalf of a task running as `task_uid`: one with a single link,
/// or owned by that user. A file with more links that belongs to someone
/// else may be a hard link to a file outside the task dir (a task can make
/// one where fs.protected_hardlinks is 0): changing it would change that
/// file. The task's own files it could change itself anyway.
bool task_may_change(const struct stat& st, uid_t task_uid);

/// The binary lookup's rule for a regular file of the task, `fd` (O_PATH,
/// resolved below the task dir or root through no symlink, or in_root):
/// when any of 0555 is missing, it is added (0610 -> 0755, 0700 -> 0755),
/// through the descriptor. When task_may_change() says no, the file is left
/// as it is, and is an error (EPERM, naming `shown`) only when it has no
/// execute bit at all; a failed chmod is likewise an error only then.
result<void> make_task_file_executable(int fd, const std::string& shown, uid_t task_uid);

/// Child side (async-signal-safe): setsid, oom_score_adj, stdio onto 0..2.
bool child_session_and_stdio(const launch_plan& plan, child_failure& f) noexcept;
/// Child side: setgroups, setresgid, setresuid (raw syscalls) when the plan
/// changes user.
bool child_credentials(const launch_plan& plan, child_failure& f) noexcept;
/// Child side: PR_SET_PDEATHSIG(SIGKILL), then (when `check_parent`) that
/// the parent is still the executor.
bool child_parent_death(const launch_plan& plan, child_failure& f, bool check_parent) noexcept;

}  // namespace taskexec
