// Entering a running container task (for Exec): see
// container_enter_strategy in taskexec/isolation/container.hpp.
#include <sched.h>
#include <unistd.h>

#include <optional>

#include "../process_setup.hpp"
#include "internal.hpp"
#include "taskexec/isolation/cgroup.hpp"

namespace taskexec {
using namespace container_parts;

container_enter_strategy::container_enter_strategy(const container_strategy& task) : task_(task) {}

container_enter_strategy::~container_enter_strategy() {
  if (status_read_ >= 0)
    ::close(status_read_);
  if (status_write_ >= 0)
    ::close(status_write_);
}

result<void> container_enter_strategy::validate(const exec_command&) const {
  if (!task_.p_ || task_.entry_.pidfd < 0)
    return make_error(errc::not_launched, "the container task is not running");
  return {};
}

result<void> container_enter_strategy::before_fork(const exec_command& cmd, launch_plan& plan) {
  const auto& p = *task_.p_;
  // Stdio, environment and oom_score_adj as for a launch; the user is the task's.
  exec_command own = cmd;
  own.user.clear();
  own.task_dir = p.root;
  if (auto r = prepare_process(own, plan); !r)
    return r;
  plan.change_user = p.change_user;
  plan.uid = p.uid;
  plan.gid = p.gid;
  plan.groups = p.groups;
  auto bin = lookup_binary_in_root(cmd.cmd, p.root, p.mounts,
                                   p.change_user ? std::optional(p.uid) : std::nullopt);
  if (!bin)
    return bin.error();
  cwd_ = cmd.work_dir.empty() ? p.cwd : (cmd.work_dir.front() == '/' ? "" : "/") + cmd.work_dir;
  plan.cwd = cwd_;
  plan.executable = bin->in_root;
  plan.argv_storage.clear();
  if (p.private_pid) {
    // setns(CLONE_NEWPID) moves only children: taskexec-init starts the
    // command as its child, inside the task's PID namespace.
    if (auto r = run_under_init(plan, bin->in_root, status_read_, status_write_); !r)
      return r;
  }
  plan.argv_storage.push_back(cmd.cmd);
  plan.argv_storage.insert(plan.argv_storage.end(), cmd.args.begin(), cmd.args.end());
  return {};
}

bool container_enter_strategy::in_child(const launch_plan& plan, child_failure& f) const noexcept {
  const auto& e = task_.entry_;
  if (!child_session_and_stdio(plan, f))
    return false;
  // The cgroups first: their paths are the host's.
  if (!join_cgroups(e.cgroup, f))
    return false;
  // All namespaces at once; the mount namespace's root becomes ours.
  if (::setns(e.pidfd, e.ns_flags) != 0)
    return fail_step(f, "setns into the task");
  if (!container_strategy::take_identity(*task_.p_, plan, f))
    return false;
  if (::chdir(cwd_.c_str()) != 0)
    return fail_step(f, "chdir");
  return child_parent_death(plan, f, true);
}

void container_enter_strategy::after_start(const launch_plan&, int) {
  if (status_write_ >= 0)
    ::close(status_write_);
  status_write_ = -1;
}

void container_enter_strategy::launch_failed(const launch_plan& plan) noexcept {
  after_start(plan, 0);
}

int container_enter_strategy::exit_status(int status) noexcept {
  return init_status(status_read_, status);
}

}  // namespace taskexec
