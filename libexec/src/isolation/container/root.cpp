// A container's root: the task dir, bound on itself, becomes / by
// pivot_root (the old root detached), or by MS_MOVE + chroot with
// no_pivot_root; the working directory inside it.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "internal.hpp"

namespace taskexec::container_parts {

result<void> prepare_root(const exec_command& cmd, prepared& p) {
  std::error_code ec;
  p.root = std::filesystem::canonical(cmd.task_dir, ec).string();
  if (ec)
    return make_system_error(ec.value(), "task_dir \"" + cmd.task_dir + "\"");
  if (p.root == "/")
    return make_error(errc::invalid_argument, "task_dir \"/\" cannot be a task's root");
  return {};
}

result<void> prepare_cwd(const exec_command& cmd, prepared& p, launch_plan& plan) {
  p.cwd = cmd.work_dir.empty() ? "/" : cmd.work_dir;
  if (p.cwd.front() != '/')
    p.cwd = "/" + p.cwd;
  plan.cwd = p.cwd;  // only named in a failure's message
  {
    struct stat st {};
    const auto on_host = join(p.root, p.cwd);
    if (::stat(on_host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return make_error(errc::invalid_argument,
                        "work_dir \"" + p.cwd + "\" is not a directory in the task's root");
    }
  }
  return {};
}

int bind_root(const prepared& p, child_failure& f) noexcept {
  // Nothing mounted here reaches the host; the host's mounts still reach us.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    fail_step(f, "make / rslave");
    return -1;
  }
  const char* root = p.root.c_str();
  if (::mount(root, root, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    fail_step(f, "bind the root");
    return -1;
  }
  // From here on the root and everything in it are reached through
  // descriptors, resolved without following symlinks: what the task dir
  // holds (or someone swaps in) cannot redirect a mount.
  const int rootfd = ::open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) {
    fail_step(f, "open the root");
    return -1;
  }
  // Device nodes in the task dir are never honoured (devices come through
  // /dev, which is a mount of its own).
  if (!set_mount_attr(rootfd, MOUNT_ATTR_NODEV, 0)) {
    fail_step(f, "make the root nodev");
    return -1;
  }
  return rootfd;
}

bool enter_root(const prepared& p, int rootfd, child_failure& f) noexcept {
  if (::fchdir(rootfd) != 0)
    return fail_step(f, "chdir to the root");
  ::close(rootfd);
  if (p.pivot) {
    if (::syscall(SYS_pivot_root, ".", ".") != 0)
      return fail_step(f, "pivot_root");
    if (::umount2(".", MNT_DETACH) != 0)
      return fail_step(f, "detach the old root");
  } else {
    if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0)
      return fail_step(f, "move the root");
    if (::chroot(".") != 0)
      return fail_step(f, "chroot");
  }
  if (::chdir("/") != 0)
    return fail_step(f, "chdir /");
  return true;
}

}  // namespace taskexec::container_parts
