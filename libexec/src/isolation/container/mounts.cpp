// A container's mounts: mount points made in the task dir before the
// launch, /proc, /dev (a tmpfs: devices.cpp fills it) and /sys, the bind
// mounts with their propagation and attributes, masked and read-only paths.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "internal.hpp"

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

namespace taskexec::container_parts {
namespace {

struct mount_attr_arg {
  std::uint64_t attr_set, attr_clr, propagation, userns_fd;
};

// Make `rel` (normalized, relative) exist under `root` as a directory (or,
// when !dir, an empty file), creating what is missing. The walk goes through
// descriptors and never follows a symlink: a symlink or a non-directory on
// the way is refused, so nothing is created outside the root.
result<void> make_mount_point(const std::string& root, const std::string& rel, bool dir) {
  int dfd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return make_system_error(errno, "open \"" + root + "\"");
  std::string at = root;
  std::string_view rest = rel;
  result<void> out;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    const std::string part(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    at += "/" + part;
    const bool last = rest.empty();
    if (!last || dir) {
      if (::mkdirat(dfd, part.c_str(), 0755) != 0 && errno != EEXIST) {
        out = make_system_error(errno, "mkdir \"" + at + "\"");
        break;
      }
      int next = ::openat(dfd, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) {
        struct stat st {};
        const bool link =
            ::fstatat(dfd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
        out = link ? make_error(errc::invalid_argument,
                                "mount point \"" + at + "\" is a symlink: refused")
                   : make_system_error(errno, "mount point \"" + at + "\"");
        break;
      }
      ::close(dfd);
      dfd = next;
    } else {
      // Made without opening it, and an existing one only looked at: an
      // open for writing would block on a FIFO planted there, or open a
      // device node.
      if (::mknodat(dfd, part.c_str(), S_IFREG | 0644, 0) != 0 && errno != EEXIST) {
        out = make_system_error(errno, "mount point \"" + at + "\"");
        break;
      }
      struct stat st {};
      if (::fstatat(dfd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        out = make_system_error(errno, "mount point \"" + at + "\"");
        break;
      }
      if (S_ISLNK(st.st_mode)) {
        out =
            make_error(errc::invalid_argument, "mount point \"" + at + "\" is a symlink: refused");
        break;
      }
      if (!S_ISREG(st.st_mode)) {
        out = make_error(errc::invalid_argument, "mount point \"" + at +
                                                     "\" is not a regular file (the mount's "
                                                     "source is a file): refused");
        break;
      }
    }
  }
  ::close(dfd);
  return out;
}

// Child side: the propagation of the mount at `fd` and below.
bool set_propagation(int fd, unsigned long propagation) noexcept {
  char path[PATH_MAX];
  fd_path(path, fd, nullptr);
  return ::mount(nullptr, path, nullptr, MS_REC | propagation, nullptr) == 0;
}

}  // namespace

// Child side.
bool set_mount_attr(int fd, std::uint64_t attrs, unsigned long remount_flags) noexcept {
  if (attrs == 0)
    return true;
  mount_attr_arg attr{attrs, 0, 0, 0};
  if (::syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) == 0)
    return true;
  if (errno != ENOSYS)
    return false;
  struct statfs sf {};
  unsigned long keep = 0;
  if (::fstatfs(fd, &sf) == 0) {
    keep = (sf.f_flags & ST_NOSUID ? MS_NOSUID : 0) | (sf.f_flags & ST_NODEV ? MS_NODEV : 0) |
           (sf.f_flags & ST_NOEXEC ? MS_NOEXEC : 0) | (sf.f_flags & ST_RDONLY ? MS_RDONLY : 0);
  }
  if (attrs & MOUNT_ATTR_NODEV)
    keep |= MS_NODEV;
  char path[PATH_MAX];
  fd_path(path, fd, nullptr);
  return ::mount(nullptr, path, nullptr, MS_BIND | MS_REMOUNT | remount_flags | keep, nullptr) == 0;
}

result<void> validate_mounts(const exec_command& cmd) {
  std::vector<std::string> targets;
  for (std::size_t i = 0; i < cmd.mounts.size(); ++i) {
    const std::string at =
        "mounts[" + std::to_string(i) + "].task_path \"" + cmd.mounts[i].task_path + "\"";
    const auto rel = relative_in_root(cmd.mounts[i].task_path);
    if (rel.empty())
      return make_error(errc::invalid_argument, at + " must name a path below the root");
    for (const char* own : {"proc", "dev", "sys"}) {
      const std::string o(own);
      if (rel == o || rel.rfind(o + "/", 0) == 0) {
        return make_error(errc::invalid_argument,
                          at + " is in /" + o + ", which the container mounts itself");
      }
    }
    for (std::size_t j = 0; j < targets.size(); ++j) {
      const auto& t = targets[j];
      if (rel == t || rel.rfind(t + "/", 0) == 0 || t.rfind(rel + "/", 0) == 0) {
        return make_error(errc::invalid_argument, at + " overlaps mounts[" + std::to_string(j) +
                                                      "] (nested mounts are not supported)");
      }
    }
    targets.push_back(rel);
  }
  return {};
}

result<void> prepare_mounts(const exec_command& cmd, prepared& p) {
  // Mount points in the task dir.
  for (const char* dir : {"proc", "dev", "sys"}) {
    if (auto m = make_mount_point(p.root, dir, true); !m)
      return m.error();
  }

  for (const auto& m : cmd.mounts) {
    struct stat st {};
    if (::stat(m.host_path.c_str(), &st) != 0)
      return make_system_error(errno, "mount source \"" + m.host_path + "\"");
    const auto rel = relative_in_root(m.task_path);
    if (auto made = make_mount_point(p.root, rel, S_ISDIR(st.st_mode)); !made)
      return made.error();
    unsigned long propagation = MS_PRIVATE;
    if (m.propagation_mode == "host-to-task")
      propagation = MS_SLAVE;
    else if (m.propagation_mode == "bidirectional")
      propagation = MS_SHARED;
    p.binds.push_back({m.host_path, rel, propagation, m.readonly});
  }
  return {};
}

bool mount_kernel_filesystems(int rootfd, child_failure& f) noexcept {
  char path[PATH_MAX];
  auto mount_at = [&](const char* rel, const char* source, const char* type, unsigned long flags,
                      const char* data, const char* step) noexcept -> bool {
    int fd = open_beneath(rootfd, rel);
    if (fd < 0)
      return fail_step(f, step, rel);
    fd_path(path, fd, nullptr);
    int rc = ::mount(source, path, type, flags, data);
    int saved = errno;
    ::close(fd);
    errno = saved;
    return rc == 0 || fail_step(f, step, rel);
  };
  if (!mount_at("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, "mount /"))
    return false;
  if (!mount_at("dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
                "mount /"))
    return false;
  if (!mount_at("sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr,
                "mount /"))
    return false;
  return true;
}

bool mount_binds(const prepared& p, int rootfd, child_failure& f) noexcept {
  char path[PATH_MAX];
  for (const auto& b : p.binds) {
    const char* rel = b.rel.c_str();
    int fd = open_beneath(rootfd, rel);
    if (fd < 0)
      return fail_step(f, "mount point /", rel);
    fd_path(path, fd, nullptr);
    int rc = ::mount(b.source.c_str(), path, nullptr, MS_BIND | MS_REC, nullptr);
    int saved = errno;
    ::close(fd);
    errno = saved;
    if (rc != 0)
      return fail_step(f, "bind mount /", rel);
    // Again: now the bind mount itself.
    fd = open_beneath(rootfd, rel);
    if (fd < 0)
      return fail_step(f, "bind mount /", rel);
    const std::uint64_t attrs =
        (b.readonly ? MOUNT_ATTR_RDONLY : 0) | (p.binds_nodev ? MOUNT_ATTR_NODEV : 0);
    bool ok = set_propagation(fd, b.propagation) || !fail_step(f, "mount propagation /", rel);
    ok = ok &&
         (set_mount_attr(fd, attrs, b.readonly ? MS_RDONLY : 0) || !fail_step(f, "remount /", rel));
    if (ok && b.readonly) {
      struct statfs sf {};
      if (::fstatfs(fd, &sf) != 0) {
        ok = fail_step(f, "statfs /", rel);
      } else if ((sf.f_flags & ST_RDONLY) == 0) {
        errno = EROFS;
        ok = fail_step(f, "read-only mount is writable: /", rel);
      }
    }
    ::close(fd);
    if (!ok)
      return false;
  }
  return true;
}

bool mask_paths(child_failure& f) noexcept {
  // Masked and read-only paths (absent ones are skipped).
  for (const char* masked : {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                             "/proc/latency_stats", "/sys/firmware", "/proc/acpi", "/proc/scsi"}) {
    if (::mount("/dev/null", masked, nullptr, MS_BIND, nullptr) == 0 || errno == ENOENT)
      continue;
    if (errno != ENOTDIR || ::mount("tmpfs", masked, "tmpfs",
                                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") != 0)
      return fail_step(f, "mask a path");
  }
  for (const char* ro :
       {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}) {
    if (::mount(ro, ro, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      if (errno == ENOENT)
        continue;
      return fail_step(f, "bind a read-only path");
    }
    if (::mount(nullptr, ro, nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      return fail_step(f, "remount a path read-only");
  }
  return true;
}

}  // namespace taskexec::container_parts
