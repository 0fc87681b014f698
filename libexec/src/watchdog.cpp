#include "taskexec/detail/watchdog.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "taskexec/isolation/container.hpp"  // init_image_fd

namespace taskexec::detail {

watchdog& watchdog::operator=(watchdog&& o) noexcept {
  if (this != &o) {
    release();
    pid_ = o.pid_;
    fd_ = o.fd_;
    o.pid_ = o.fd_ = -1;
  }
  return *this;
}

void watchdog::release() noexcept {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

result<watchdog> watchdog::start(const std::string& kill_dir,
                                 const std::vector<std::string>& remove_dirs) {
  auto image = init_image_fd();
  if (!image)
    return image.error();
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    return make_system_error(errno, "watchdog pipe");
  // The read end goes to fd 3 in the watchdog: keep it clear of 0..3 here,
  // so the dup2 always makes a new descriptor (without close-on-exec).
  int read_end = ::fcntl(p[0], F_DUPFD_CLOEXEC, 10);
  const int dup_errno = errno;
  ::close(p[0]);
  if (read_end < 0) {
    ::close(p[1]);
    return make_system_error(dup_errno, "watchdog pipe");
  }
  const std::string exe = "/proc/self/fd/" + std::to_string(*image);
  std::vector<std::string> args{"taskexec-watch", "-w", kill_dir};
  args.insert(args.end(), remove_dirs.begin(), remove_dirs.end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
  ::posix_spawn_file_actions_adddup2(&fa, 0, 1);
  ::posix_spawn_file_actions_adddup2(&fa, 0, 2);
  ::posix_spawn_file_actions_adddup2(&fa, read_end, 3);
  ::posix_spawn_file_actions_addchdir_np(&fa, "/");
  // A session of its own: no signal to the executor's group or terminal
  // reaches it. Signals are reset and unblocked; it blocks them all itself.
  sigset_t none, all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &attr, argv.data(), envp);
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  ::close(read_end);
  if (rc != 0) {
    ::close(p[1]);
    return make_system_error(rc, "spawn watchdog");
  }
  watchdog w;
  w.pid_ = pid;
  w.fd_ = p[1];
  return w;
}

result<std::string> make_guard_cgroup(const cgroup::layout& layout, const std::string& parent,
                                      const std::string& name) {
  std::string base;
  if (!layout.unified.empty())
    base = layout.unified;
  else if (auto it = layout.v1.find("freezer"); it != layout.v1.end())
    base = it->second;
  else
    return make_error(errc::unsupported, "no cgroup hierarchy to guard the task with (cgroups: " +
                                             std::string(cgroup::to_string(layout.kind)) + ")");
  std::string dir = base;
  std::size_t at = 0;
  while (at < parent.size()) {  // each component of the parent, made when missing
    std::size_t end = parent.find('/', at);
    if (end == std::string::npos)
      end = parent.size();
    if (end > at) {
      dir += "/" + parent.substr(at, end - at);
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        return make_system_error(errno, "mkdir " + dir);
    }
    at = end + 1;
  }
  dir += "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return make_system_error(errno, "mkdir " + dir);
  return dir;
}

std::string kill_directory(const std::vector<std::string>& dirs) {
  for (const char* file : {"cgroup.kill", "cgroup.freeze", "freezer.state"}) {
    for (const auto& d : dirs) {
      const std::string path = d + "/" + file;
      if (::access(path.c_str(), W_OK) == 0)
        return d;
    }
  }
  return {};
}

}  // namespace taskexec::detail
