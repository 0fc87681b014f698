// Internal: the container strategy's parts, one file per kernel concern.
// container_strategy (strategy.cpp) runs them in order; each concern has a
// check of the command (validate), a parent-side step that fills
// `prepared` (before_fork) and a child-side step (in_child: async-signal-
// safe, no allocation) that reads it:
//   network.cpp       the network namespace joined (setns)
//   hostname.cpp      the UTS namespace's hostname
//   root.cpp          the task dir as /: bind, pivot_root (or MS_MOVE +
//                     chroot), the working directory
//   mounts.cpp        mount points, /proc /dev /sys, bind mounts, masked and
//                     read-only paths
//   devices.cpp       /dev's nodes and links, the devices cgroup
//   capabilities.cpp  user, capabilities, no_new_privs
//   init.cpp          taskexec-init (PID 1 of a private PID namespace)
//   enter.cpp         a process started inside a running task (Exec)
//   paths.cpp         paths inside the root, on either side
#pragma once

#include <sys/capability.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/isolation/container.hpp"
#include "taskexec/isolation/launch_plan.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

struct container_strategy::prepared {
  struct node {
    std::string path;
    mode_t mode;
    dev_t rdev;
    uid_t uid;
    gid_t gid;
  };
  struct bind {
    std::string source, rel;  // rel: inside the root
    unsigned long propagation;
    bool readonly;
  };

  std::string root;
  std::string hostname;
  bool private_pid = true;
  bool private_ipc = true;
  bool pivot = true;
  bool device_cgroup = false;  // a devices cgroup restricts the task's devices
  bool binds_nodev = false;    // no device cgroup: nothing but /dev may hold devices
  int netns_fd = -1;
  std::vector<std::string> dev_dirs;                       // relative to /dev, for listed devices
  std::vector<node> nodes;                                 // paths relative to /dev
  std::vector<std::pair<std::string, std::string>> links;  // {target, name in /dev}
  std::vector<bind> binds;
  std::string cwd;                   // inside the root
  std::vector<mount_config> mounts;  // for binary lookup by a later Exec
  bool change_user = false;          // the task's identity, for a later Exec
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool root_user = true;
  cap_t regain = nullptr;  // permitted as the executor's, effective = permitted
  cap_t final_caps = nullptr;
  std::vector<cap_value_t> drop_bound, ambient;
  int status_write = -1;

  prepared() = default;
  prepared(const prepared&) = delete;
  prepared& operator=(const prepared&) = delete;
  ~prepared() {
    if (regain)
      cap_free(regain);
    if (final_caps)
      cap_free(final_caps);
    close_fds();
  }
  void close_fds() noexcept {
    for (int* fd : {&netns_fd, &status_write}) {
      if (*fd >= 0)
        ::close(*fd);
      *fd = -1;
    }
  }
};

namespace container_parts {

using prepared = container_strategy::prepared;

// ---- paths.cpp ----

// Descriptors the child keeps for exec are moved at least this high, above
// every fixed number they are dup2()ed onto.
constexpr int k_high_fd = 10;

/// "a" + "/" + "b", without doubled slashes between them.
std::string join(std::string_view a, std::string_view b);
/// `fd` moved to k_high_fd or above (close-on-exec), the old one closed.
int move_high(int fd);
/// Normalize a path inside the root: relative, no ".", no "..", no "//".
/// Empty when it names the root itself or leaves it.
std::string relative_in_root(std::string_view path);
/// Child side: "/proc/self/fd/<fd>[/<suffix>]" into `out` (PATH_MAX bytes).
void fd_path(char* out, int fd, const char* suffix) noexcept;
/// Child side: an O_PATH descriptor of `rel` beneath `dirfd`, resolved with
/// no symlink followed and never above `dirfd`. -1 with errno on failure.
int open_beneath(int dirfd, const char* rel) noexcept;

// ---- network.cpp ----

result<void> validate_network(const exec_command& cmd);
/// Opens the namespace at network_isolation.path (checked to be a network
/// namespace) into p.netns_fd.
result<void> prepare_network(const exec_command& cmd, prepared& p);
/// Child side: setns into p.netns_fd, if any.
bool join_network(const prepared& p, child_failure& f) noexcept;

// ---- hostname.cpp ----

/// The UTS namespace's hostname for the task `task_id`: cut to 64 bytes.
std::string container_hostname(const std::string& task_id);
/// Child side: sethostname(p.hostname).
bool set_hostname(const prepared& p, child_failure& f) noexcept;

// ---- root.cpp ----

/// The task dir, canonical, into p.root ("/" is refused).
result<void> prepare_root(const exec_command& cmd, prepared& p);
/// work_dir inside the root into p.cwd (and plan.cwd); it must be a directory.
result<void> prepare_cwd(const exec_command& cmd, prepared& p, launch_plan& plan);
/// Child side: / made rslave, the root bound on itself and made nodev; an
/// O_PATH descriptor of it, or -1 (the failure recorded in `f`).
int bind_root(const prepared& p, child_failure& f) noexcept;
/// Child side: the root at `rootfd` (closed) becomes / (pivot_root, else
/// MS_MOVE + chroot); cwd "/".
bool enter_root(const prepared& p, int rootfd, child_failure& f) noexcept;

// ---- mounts.cpp ----

/// Child side: set mount attributes on the mount at `fd`, recursively
/// (mount_setattr; before Linux 5.12 a remount of that mount alone, with
/// `remount_flags`, keeping its nosuid/nodev/noexec).
bool set_mount_attr(int fd, std::uint64_t attrs, unsigned long remount_flags) noexcept;
result<void> validate_mounts(const exec_command& cmd);
/// Mount points for /proc, /dev, /sys and each mount made in the root; the
/// bind mounts into p.binds.
result<void> prepare_mounts(const exec_command& cmd, prepared& p);
/// Child side: /proc, /dev (a tmpfs), /sys (read-only) beneath `rootfd`.
bool mount_kernel_filesystems(int rootfd, child_failure& f) noexcept;
/// Child side: the bind mounts beneath `rootfd`, with their propagation,
/// read-only (verified) and nodev attributes.
bool mount_binds(const prepared& p, int rootfd, child_failure& f) noexcept;
/// Child side, after entering the root: masked and read-only paths.
bool mask_paths(child_failure& f) noexcept;

// ---- devices.cpp ----

result<void> validate_devices(const exec_command& cmd);
/// /dev's nodes and links into `p`; the devices cgroup's rules written (when
/// `devices_dir` is not empty); p.device_cgroup and p.binds_nodev.
result<void> prepare_devices(const exec_command& cmd, prepared& p, const std::string& devices_dir);
/// Child side: /dev (beneath `rootfd`, already a tmpfs) populated: its
/// directories, nodes, links, devpts and shm.
bool populate_dev(const prepared& p, int rootfd, child_failure& f) noexcept;

// ---- capabilities.cpp ----

/// The capability sets of a task that is not root (p.regain, p.final_caps,
/// p.drop_bound, p.ambient); warnings are logged under `task_id`.
result<void> prepare_capabilities(const exec_command& cmd, prepared& p, const std::string& task_id);

// ---- init.cpp ----

/// Parent side: make `plan` exec taskexec-init from its memfd, which starts
/// `exe_in_root` (argv follows) and reports on the launch pipe and on a new
/// status pipe: its read end (non-blocking) in `status_read`, its write end
/// (passed to init as fd 4) in `status_write`.
result<void> run_under_init(launch_plan& plan, const std::string& exe_in_root, int& status_read,
                            int& status_write);
/// The status taskexec-init wrote on its status pipe (read end `fd`, then
/// closed), or, when it wrote none, `reaped`.
int init_status(int& fd, int reaped) noexcept;

}  // namespace container_parts
}  // namespace taskexec
