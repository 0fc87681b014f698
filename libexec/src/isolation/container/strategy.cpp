// The container strategy (see taskexec/isolation/container.hpp): its
// lifecycle, and the order in which its parts (internal.hpp: one file per
// kernel concern) check the command, prepare the launch and set up the
// child.
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "../process_setup.hpp"
#include "internal.hpp"
#include "taskexec/isolation/capabilities.hpp"
#include "taskexec/isolation/cgroup.hpp"

namespace taskexec {
using namespace container_parts;

container_strategy::container_strategy(std::string task_id, cgroup_strategy* cgroup)
    : task_id_(std::move(task_id)), cgroup_(cgroup) {}

container_strategy::~container_strategy() {
  (void)teardown();
  delete p_;
}

isolation_features container_strategy::features() const noexcept {
  using f = isolation_feature;
  return static_cast<unsigned>(f::mounts) | static_cast<unsigned>(f::devices) |
         static_cast<unsigned>(f::network_isolation) | static_cast<unsigned>(f::private_pid) |
         static_cast<unsigned>(f::private_ipc) | static_cast<unsigned>(f::capabilities) |
         static_cast<unsigned>(f::no_pivot_root);
}

result<void> container_strategy::validate(const exec_command& cmd) const {
  if (::geteuid() != 0) {
    return make_error(errc::permission_denied,
                      "isolation \"container\" needs root (the executor "
                      "runs as uid " +
                          std::to_string(::geteuid()) + ")");
  }
  if (cmd.task_dir.empty())
    return make_error(errc::invalid_argument,
                      "isolation \"container\" needs task_dir (the task's root)");
  if (cmd.task_dir.front() != '/') {
    return make_error(errc::invalid_argument,
                      "task_dir \"" + cmd.task_dir + "\" is not an absolute path");
  }
  if (auto m = capability_mask(cmd.capabilities); !m)
    return m.error();
  if (auto d = validate_devices(cmd); !d)
    return d;
  if (auto m = validate_mounts(cmd); !m)
    return m;
  return validate_network(cmd);
}

result<void> container_strategy::before_fork(const exec_command& cmd, launch_plan& plan) {
  delete p_;
  p_ = new prepared;
  auto& p = *p_;
  auto fail = [&](error e) -> result<void> {
    launch_failed(plan);
    return e;
  };

  if (auto r = prepare_process(cmd, plan); !r)
    return fail(r.error());

  if (auto r = prepare_root(cmd, p); !r)
    return fail(r.error());
  p.hostname = container_hostname(task_id_);
  p.private_pid = isolation_mode("private", cmd.default_pid_mode) != "host";
  p.private_ipc = isolation_mode("private", cmd.default_ipc_mode) != "host";
  p.pivot = !cmd.no_pivot_root;

  // The binary, inside the root.
  auto bin = lookup_binary_in_root(cmd.cmd, p.root, cmd.mounts,
                                   plan.change_user ? std::optional(plan.uid) : std::nullopt);
  if (!bin)
    return fail(bin.error());

  if (auto r = prepare_network(cmd, p); !r)
    return fail(r.error());
  if (auto r = prepare_mounts(cmd, p); !r)
    return fail(r.error());
  const std::string devices_dir = cgroup_ ? cgroup_->devices_dir() : std::string();
  if (auto r = prepare_devices(cmd, p, devices_dir); !r)
    return fail(r.error());
  if (auto r = prepare_cwd(cmd, p, plan); !r)
    return fail(r.error());

  // Capabilities.
  p.mounts = cmd.mounts;
  p.change_user = plan.change_user;
  p.uid = plan.uid;
  p.gid = plan.gid;
  p.groups = plan.groups;
  p.root_user = !plan.change_user || plan.uid == 0;
  if (auto r = prepare_capabilities(cmd, p, task_id_); !r)
    return fail(r.error());

  // What to exec: the task itself, or taskexec-init, which starts it.
  plan.clone_flags = CLONE_NEWNS | CLONE_NEWUTS | (p.private_pid ? CLONE_NEWPID : 0) |
                     (p.private_ipc ? CLONE_NEWIPC : 0);
  plan.executable = bin->in_root;
  plan.argv_storage.clear();
  if (p.private_pid) {
    if (auto r = run_under_init(plan, bin->in_root, status_read_, p.status_write); !r)
      return fail(r.error());
  }
  plan.argv_storage.push_back(cmd.cmd);
  plan.argv_storage.insert(plan.argv_storage.end(), cmd.args.begin(), cmd.args.end());
  return {};
}

bool container_strategy::in_child(const launch_plan& plan, child_failure& f) const noexcept {
  const auto& p = *p_;
  if (!child_session_and_stdio(plan, f))
    return false;
  if (!join_network(p, f) || !set_hostname(p, f))
    return false;
  const int rootfd = bind_root(p, f);
  if (rootfd < 0)
    return false;
  if (!mount_kernel_filesystems(rootfd, f) || !populate_dev(p, rootfd, f) ||
      !mount_binds(p, rootfd, f))
    return false;
  if (!enter_root(p, rootfd, f) || !mask_paths(f))
    return false;
  if (!take_identity(p, plan, f))
    return false;
  if (::chdir(p.cwd.c_str()) != 0)
    return fail_step(f, "chdir");
  // As PID 1 of a new namespace the parent reads as 0: no check then.
  return child_parent_death(plan, f, !p.private_pid);
}

void container_strategy::after_start(const launch_plan&, int pid) {
  entry_.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  entry_.private_pid = p_ && p_->private_pid;
  entry_.ns_flags = CLONE_NEWNS | CLONE_NEWUTS;
  if (p_ && p_->private_pid)
    entry_.ns_flags |= CLONE_NEWPID;
  if (p_ && p_->private_ipc)
    entry_.ns_flags |= CLONE_NEWIPC;
  if (p_ && p_->netns_fd >= 0)
    entry_.ns_flags |= CLONE_NEWNET;
  if (p_)
    p_->close_fds();
  if (cgroup_)
    entry_.cgroup = cgroup_->membership();
}

void container_strategy::launch_failed(const launch_plan&) noexcept {
  if (p_)
    p_->close_fds();
  if (status_read_ >= 0)
    ::close(status_read_);
  status_read_ = -1;
}

int container_strategy::exit_status(int status) noexcept {
  return init_status(status_read_, status);
}

result<void> container_strategy::teardown() {
  if (entry_.pidfd >= 0)
    ::close(entry_.pidfd);
  entry_.pidfd = -1;
  if (status_read_ >= 0)
    ::close(status_read_);
  status_read_ = -1;
  if (p_)
    p_->close_fds();
  return {};
}

std::unique_ptr<isolation_strategy> container_strategy::enter() const {
  return std::make_unique<container_enter_strategy>(*this);
}

}  // namespace taskexec
