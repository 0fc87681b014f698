// Internal: the parts of a task's process setup that the host and container
// strategies share.
#pragma once

#include "taskexec/error.hpp"
#include "taskexec/isolation/launch_plan.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// Parent side: parent_pid, task_dir checked, the environment (plus USER,
/// LOGNAME, HOME of the task's user), the user's ids and groups, stdin from
/// /dev/null and stdout/stderr opened, oom_score_adj. Not the binary or cwd.
result<void> prepare_process(const exec_command& cmd, launch_plan& plan);

/// Child side (async-signal-safe): setsid, oom_score_adj, stdio onto 0..2.
bool child_session_and_stdio(const launch_plan& plan, child_failure& f) noexcept;
/// Child side: setgroups, setresgid, setresuid (raw syscalls) when the plan
/// changes user.
bool child_credentials(const launch_plan& plan, child_failure& f) noexcept;
/// Child side: PR_SET_PDEATHSIG(SIGKILL), then (when `check_parent`) that
/// the parent is still the executor.
bool child_parent_death(const launch_plan& plan, child_failure& f, bool check_parent) noexcept;

}  // namespace taskexec
