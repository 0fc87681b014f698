// The container isolation strategy (isolation = "container"): the task in
// namespaces of its own, with the task dir as its root. Needs root.
//
//  - Namespaces: always a new mount and UTS namespace (hostname: the
//    executor's hostname option, else the task id; cut to 64 bytes); a new PID namespace unless the
//    PID mode is "host", a new IPC namespace unless the IPC mode is "host" (isolation_mode: the
//    task's value wins, the default is "private"); the network namespace at
//    network_isolation.path joined with setns (checked to be one), else the
//    host's.
//  - Private PID namespace: PID 1 is taskexec-init (a few KiB, freestanding,
//    run from a sealed memfd: the root needs no copy of it). It starts the
//    task as PID 2, reaps every orphan, forwards every signal it gets to the
//    task, and exits with the task, handing the executor the task's own wait
//    status (exit_status). The pid the executor reports and signals is
//    init's; SIGKILL of init kills everything in the namespace; SIGSTOP,
//    which init cannot pass on, goes to the task itself. A failed exec
//    of the task is still a failed launch (init reports it on the launch's
//    error pipe).
//  - Root: / is made rslave (host mounts propagate in, nothing propagates
//    out); the task dir is bind-mounted on itself and becomes / by
//    pivot_root (the old root detached), or by MS_MOVE + chroot with
//    no_pivot_root (ramdisk roots; weaker: a task with SYS_CHROOT can leave).
//    Inside: /proc (nosuid, nodev, noexec) of the task's PID namespace; /dev
//    a tmpfs with null, zero, full, random, urandom, tty, a new devpts
//    instance (ptmx -> pts/ptmx), shm (tmpfs 1777), fd/stdin/stdout/stderr
//    links; /sys read-only; /proc/kcore, keys, timer_list, sched_debug,
//    latency_stats and /sys/firmware, /proc/acpi, /proc/scsi masked;
//    /proc/sys, sysrq-trigger, irq, bus, fs read-only. Mount points are made
//    in the task dir before the launch, without opening what is there (a
//    file target must be a regular file); a symlink on any of their paths is
//    refused, by the parent's walk and again by the child's resolution when
//    it mounts (no mount ever lands outside the root).
//  - Mounts: recursive bind mounts; readonly through mount_setattr
//    (recursive) or a remount, then verified with statfs; propagation
//    "private" (rprivate, default), "host-to-task" (rslave) or
//    "bidirectional" (rshared inside the task, as Nomad's: the host's copy
//    stays a master).
//  - Devices: nodes made in the task's /dev with the host device's type,
//    numbers, mode and owner; with a v1 devices controller the task's devices
//    cgroup denies everything but the standard nodes, mknod of any node, and
//    the listed devices with their permissions. On a pure v2 host a device
//    list is refused (errc::unsupported: BPF device programs are not built)
//    and devices are not restricted beyond what /dev holds.
//  - User: uid, gid and supplementary groups as in the host strategy (the gid
//    is set). Capabilities: root keeps the full set the executor has
//    (bounding, permitted, effective); any other user gets `capabilities`
//    (default: default_caps()) as bounding, permitted, effective,
//    inheritable and ambient. no_new_privs is always set.
//  - Binary lookup: lookup_binary_in_root (a file of the root lacking any of
//    0555 gets them). cwd: work_dir inside the root,
//    default "/". stdout/stderr: opened on the host as in the host strategy.
//  - The cgroup strategy always comes first (accounting, kill, devices).
//  - Teardown: the namespaces and mounts go with the last process; the
//    mount points made in the task dir stay there.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/isolation/strategy.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

class cgroup_strategy;

/// A binary as the task will exec it (inside its root) and where it is on
/// the host now.
struct root_binary {
  std::string in_root;  ///< absolute, inside the task's root: argv[0] for exec
  std::string on_host;  ///< the same file seen from the host
};

/// Find `cmd` for a task whose root is `task_dir`, as Nomad's libcontainer
/// executor does: task_dir/local/<cmd>, task_dir/<cmd> (an absolute `cmd` is
/// taken inside the root), each mount whose task_path holds it (re-rooted to
/// its host_path), then, for a bare name only, usr/local/bin, usr/bin and
/// bin inside the root. Paths inside the root are resolved as the task will
/// resolve them from inside (detail::resolve::in_root: symlinks followed
/// within the root, never out of it). A regular file found inside the root
/// counts, and when it lacks any of 0555 they are added, as in the host
/// strategy's lookup (not to a hard link that `task_uid`, default the
/// executor's euid, does not own: then a file without any execute bit is
/// an EPERM error). A mount's files are the host's: only executable ones
/// count, and they are never changed. A file that exists only on the host
/// is not found:
/// errc::binary_not_found `file <cmd> not found under path <task_dir>`.
result<root_binary> lookup_binary_in_root(std::string_view cmd, const std::string& task_dir,
                                          const std::vector<mount_config>& mounts,
                                          std::optional<uid_t> task_uid = std::nullopt);

/// What a process started later inside a running container task (Exec)
/// needs to join it: the init's (or task's) pidfd, the namespaces to enter,
/// its cgroups, user and capabilities. Filled by container_strategy.
struct container_entry {
  int pidfd = -1;    ///< of the task's main process (init in a private PID namespace)
  int ns_flags = 0;  ///< CLONE_NEW* flags the task has of its own (plus NEWNET if joined)
  bool private_pid = false;
  cgroup_membership cgroup;  ///< the task's cgroups, to join
};

class container_strategy final : public isolation_strategy {
 public:
  /// `hostname` names the UTS namespace (cut to 64 bytes); `cgroup` (may be
  /// null) is the stack's cgroup strategy, for the device rules, and must
  /// outlive this strategy.
  container_strategy(std::string hostname, cgroup_strategy* cgroup);
  ~container_strategy() override;
  container_strategy(const container_strategy&) = delete;
  container_strategy& operator=(const container_strategy&) = delete;

  std::string_view name() const noexcept override { return "container"; }
  isolation_features features() const noexcept override;
  result<void> validate(const exec_command& cmd) const override;
  result<void> before_fork(const exec_command& cmd, launch_plan& plan) override;
  bool in_child(const launch_plan& plan, child_failure& failure) const noexcept override;
  void after_start(const launch_plan& plan, int pid) override;
  void launch_failed(const launch_plan& plan) noexcept override;
  int exit_status(int status) noexcept override;
  /// SIGSTOP (which init can neither catch nor pass on) goes to the task
  /// itself, init's first child; every other signal goes to init.
  int signal_target(int pid, int signo) const override;
  result<void> teardown() override;

  /// After a successful launch: how to join the task (see container_entry).
  const container_entry& entry() const noexcept { return entry_; }

  /// A strategy that starts a process inside this running task (Exec): see
  /// container_enter_strategy. It refers to this strategy, which must
  /// outlive it.
  std::unique_ptr<isolation_strategy> enter() const;

  struct prepared;  ///< everything the child side reads (built in before_fork)

 private:
  friend class container_enter_strategy;
  static bool take_identity(const prepared& p, const launch_plan& plan, child_failure& f) noexcept;
  std::string task_id_;
  cgroup_strategy* cgroup_;
  prepared* p_ = nullptr;
  container_entry entry_;
  int status_read_ = -1;  // init's status pipe
};

/// Starts a process inside a running container task, as Exec needs: the
/// process joins the task's cgroups, then all of its namespaces at once
/// (setns by pidfd: mount, which also gives it the task's root, UTS, IPC, a
/// joined network namespace, PID), takes the task's user, capabilities and
/// no_new_privs, and runs in work_dir (inside the root; default the task's).
/// The binary is looked up inside the root as for the launch. The command's
/// `user`, `isolation` and container fields are ignored: it is the task's.
/// setns moves only the children of a process into a PID namespace, so in a
/// private one the process is taskexec-init, which starts the command inside
/// the task's namespace and hands back its status (exit_status), as for the
/// task. Fails with errc::not_launched when the task is not running.
class container_enter_strategy final : public isolation_strategy {
 public:
  explicit container_enter_strategy(const container_strategy& task);
  ~container_enter_strategy() override;
  container_enter_strategy(const container_enter_strategy&) = delete;
  container_enter_strategy& operator=(const container_enter_strategy&) = delete;

  std::string_view name() const noexcept override { return "container-exec"; }
  isolation_features features() const noexcept override { return 0; }
  result<void> validate(const exec_command& cmd) const override;
  result<void> before_fork(const exec_command& cmd, launch_plan& plan) override;
  bool in_child(const launch_plan& plan, child_failure& failure) const noexcept override;
  void after_start(const launch_plan& plan, int pid) override;
  void launch_failed(const launch_plan& plan) noexcept override;
  int exit_status(int status) noexcept override;

 private:
  const container_strategy& task_;
  std::string cwd_;
  int status_read_ = -1;
  int status_write_ = -1;
};

/// The sealed memfd holding taskexec-init (made once per process, close-on-
/// exec, kept open), or an error.
result<int> init_image_fd();

}  // namespace taskexec
