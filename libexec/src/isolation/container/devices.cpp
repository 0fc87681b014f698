// A container's devices: /dev's standard nodes and links, the listed
// devices (nodes made with the host device's type, numbers, mode and owner),
// devpts and shm; with a v1 devices controller, the cgroup's rules.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <set>
#include <tuple>

#include "internal.hpp"
#include "taskexec/cgroups.hpp"

namespace taskexec::container_parts {

result<void> validate_devices(const exec_command& cmd) {
  // What /dev holds already; a listed device may not take one of those
  // names, nor another device's.
  static const std::set<std::string, std::less<>> standard = {
      "null",  "zero",   "full",   "random", "urandom", "tty", "fd",
      "stdin", "stdout", "stderr", "ptmx",   "pts",     "shm"};
  std::set<std::string> seen;
  for (std::size_t i = 0; i < cmd.devices.size(); ++i) {
    const auto& d = cmd.devices[i];
    const std::string at = "devices[" + std::to_string(i) + "]";
    const std::string& in_task = d.task_path.empty() ? d.host_path : d.task_path;
    const auto rel = relative_in_root(in_task);
    if (in_task.front() != '/' || rel.rfind("dev/", 0) != 0) {
      return make_error(errc::invalid_argument,
                        at + ": the task path \"" + in_task + "\" must be a path under /dev");
    }
    const auto name = rel.substr(4);
    if (standard.contains(name.substr(0, name.find('/'))) || !seen.insert(name).second)
      return make_error(errc::invalid_argument,
                        at + ": /" + rel + " is already in the task's /dev");
  }
  return {};
}

result<void> prepare_devices(const exec_command& cmd, prepared& p, const std::string& devices_dir) {
  // /dev: the standard nodes, then the listed devices.
  for (auto [name, major, minor] :
       {std::tuple{"null", 1, 3}, std::tuple{"zero", 1, 5}, std::tuple{"full", 1, 7},
        std::tuple{"random", 1, 8}, std::tuple{"urandom", 1, 9}, std::tuple{"tty", 5, 0}}) {
    p.nodes.push_back({name, static_cast<mode_t>(S_IFCHR | 0666),
                       makedev(static_cast<unsigned>(major), static_cast<unsigned>(minor)), 0, 0});
  }
  for (auto [target, name] :
       {std::pair{"/proc/self/fd", "fd"}, std::pair{"/proc/self/fd/0", "stdin"},
        std::pair{"/proc/self/fd/1", "stdout"}, std::pair{"/proc/self/fd/2", "stderr"},
        std::pair{"pts/ptmx", "ptmx"}}) {
    p.links.emplace_back(target, name);
  }
  std::vector<std::string> device_rules;
  for (const auto& d : cmd.devices) {
    struct stat st {};
    if (::stat(d.host_path.c_str(), &st) != 0)
      return make_system_error(errno, "device \"" + d.host_path + "\"");
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
      return make_error(errc::invalid_argument,
                        "device \"" + d.host_path + "\" is not a character or block device");
    }
    // Relative to /dev; its directories outermost first.
    const auto rel = relative_in_root(d.task_path.empty() ? d.host_path : d.task_path).substr(4);
    for (auto slash = rel.find('/'); slash != std::string::npos; slash = rel.find('/', slash + 1))
      p.dev_dirs.push_back(rel.substr(0, slash));
    p.nodes.push_back({rel, st.st_mode & (S_IFMT | 07777), st.st_rdev, st.st_uid, st.st_gid});
    const std::string perms = d.cgroup_permissions.empty() ? "rwm" : d.cgroup_permissions;
    device_rules.push_back(std::string(S_ISCHR(st.st_mode) ? "c " : "b ") +
                           std::to_string(major(st.st_rdev)) + ":" +
                           std::to_string(minor(st.st_rdev)) + " " + perms);
  }

  // The device cgroup: deny all, allow mknod and the standard nodes, then the list.
  if (devices_dir.empty() && !cmd.devices.empty()) {
    return make_error(errc::unsupported,
                      "devices need the cgroup v1 devices controller (cgroup v2 BPF device "
                      "programs are not built)");
  }
  if (!devices_dir.empty()) {
    std::vector<std::string> rules = {"c *:* m",   "b *:* m",    "c 1:3 rwm", "c 1:5 rwm",
                                      "c 1:7 rwm", "c 1:8 rwm",  "c 1:9 rwm", "c 5:0 rwm",
                                      "c 5:2 rwm", "c 136:* rwm"};
    rules.insert(rules.end(), device_rules.begin(), device_rules.end());
    if (auto w = cgroup::write_file(join(devices_dir, "devices.deny"), "a"); !w)
      return make_error(errc::resource_config_failed, w.error().message);
    for (const auto& rule : rules) {
      if (auto w = cgroup::write_file(join(devices_dir, "devices.allow"), rule); !w)
        return make_error(errc::resource_config_failed, w.error().message);
    }
  }

  // Without a device cgroup nothing but /dev may hold device nodes, and a
  // task that is not root may not make any.
  p.device_cgroup = !devices_dir.empty();
  p.binds_nodev = devices_dir.empty();
  return {};
}

bool populate_dev(const prepared& p, int rootfd, child_failure& f) noexcept {
  char path[PATH_MAX];
  // /dev is ours alone now (a tmpfs only this mount namespace sees).
  const int devfd = open_beneath(rootfd, "dev");
  if (devfd < 0)
    return fail_step(f, "open /dev");
  bool ok = true;
  for (const auto& d : p.dev_dirs)
    ok = ok && (::mkdirat(devfd, d.c_str(), 0755) == 0 || errno == EEXIST ||
                !fail_step(f, "mkdir /dev/", d.c_str()));
  for (const auto& n : p.nodes) {
    ok = ok && (::mknodat(devfd, n.path.c_str(), n.mode, n.rdev) == 0 ||
                !fail_step(f, "mknod /dev/", n.path.c_str()));
    ok = ok && ((::fchmodat(devfd, n.path.c_str(), n.mode & 07777, 0) == 0 &&
                 ::fchownat(devfd, n.path.c_str(), n.uid, n.gid, AT_SYMLINK_NOFOLLOW) == 0) ||
                !fail_step(f, "chmod /dev/", n.path.c_str()));
  }
  for (const auto& [target, link] : p.links)
    ok = ok && (::symlinkat(target.c_str(), devfd, link.c_str()) == 0 ||
                !fail_step(f, "symlink /dev/", link.c_str()));
  ok = ok && (::mkdirat(devfd, "pts", 0755) == 0 || !fail_step(f, "mkdir /dev/pts"));
  ok = ok && (::mkdirat(devfd, "shm", 01777) == 0 || !fail_step(f, "mkdir /dev/shm"));
  if (ok) {
    fd_path(path, devfd, "pts");
    ok = ::mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620") == 0 ||
         !fail_step(f, "mount /dev/pts");
  }
  if (ok) {
    fd_path(path, devfd, "shm");
    ok = ::mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") ==
             0 ||
         !fail_step(f, "mount /dev/shm");
  }
  ::close(devfd);
  return ok;
}

}  // namespace taskexec::container_parts
