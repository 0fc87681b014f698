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
//  - binary lookup: task_dir/local/<cmd>, task_dir/<cmd>, an absolute host
//    path, then PATH (the task's, else /usr/local/bin:/usr/bin:/bin); a file
//    inside task_dir (resolved through symlinks) without execute bits gets
//    0555 added; host files are never changed (a PATH entry without execute
//    bits is skipped, an absolute one fails at exec with EACCES);
//  - oom_score_adj = exec_command.oom_score_adj, never the executor's value;
//  - PR_SET_PDEATHSIG(SIGKILL), set after the credential change (which would
//    clear it), so the task dies with its executor. The kernel ties it to the
//    *thread* that launched the task: launch from a thread that lives as long
//    as the tasks (the io_context's thread);
//  - every other descriptor closed (by the launcher, close_range).
#pragma once

#include <memory>

#include "taskexec/isolation/cgroup.hpp"
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
/// Adds execute bits (0555) to a found file inside task_dir that lacks them.
result<std::string> lookup_binary(std::string_view cmd, std::string_view task_dir,
                                  std::string_view path_env);

/// What the strategies need to know of the executor.
struct isolation_context {
  std::string task_id;
  cgroup_options cgroups;
  std::string hostname;  ///< of a container task
};

/// The stack of strategies for `cmd.isolation` ("" and "host": host only),
/// with the cgroup strategy first when resource_limits or
/// basic_process_cgroup is set. errc::unsupported for an isolation this
/// build does not have.
result<std::vector<std::unique_ptr<isolation_strategy>>> make_isolation(
    const exec_command& cmd, const isolation_context& ctx);

}  // namespace taskexec
