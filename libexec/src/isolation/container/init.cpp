// taskexec-init, PID 1 of a container's private PID namespace: its image
// in a sealed memfd, the plan that execs it, and the status it hands back.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <mutex>

#include "internal.hpp"

extern "C" {
extern const unsigned char taskexec_init_image[];
extern const unsigned char taskexec_init_image_end[];
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

namespace taskexec {
namespace container_parts {
namespace {

// Descriptor numbers taskexec-init expects (see libexec/init/taskexec_init.c).
constexpr int k_init_report_fd = 3;
constexpr int k_init_status_fd = 4;

}  // namespace

// The status taskexec-init wrote on its status pipe (read end `fd`, then
// closed), or, when it wrote none, `reaped`: init itself was killed (a
// SIGKILL takes the PID namespace down with it) and its status is the
// command's. Without a pipe (no init), `reaped` as it is.
int init_status(int& fd, int reaped) noexcept {
  if (fd < 0)
    return reaped;
  int status = 0;
  ssize_t n;
  do {
    n = ::read(fd, &status, sizeof status);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  fd = -1;
  return n == static_cast<ssize_t>(sizeof status) ? status : reaped;
}

// Parent side: make `plan` exec taskexec-init from its memfd, which starts
// `exe_in_root` (argv follows) and reports on the launch pipe and on a new
// status pipe: its read end (non-blocking) in `status_read`, its write end
// (passed to init as fd 4) in `status_write`.
result<void> run_under_init(launch_plan& plan, const std::string& exe_in_root, int& status_read,
                            int& status_write) {
  auto image = init_image_fd();
  if (!image)
    return image.error();
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return make_system_error(errno, "pipe2");
  status_read = pipefd[0];
  status_write = move_high(pipefd[1]);
  if (status_write < 0)
    return make_system_error(errno, "dup status pipe");
  ::fcntl(status_read, F_SETFL, O_NONBLOCK);
  plan.exec_fd = *image;
  plan.report_fd = k_init_report_fd;
  plan.fd_map.emplace_back(status_write, k_init_status_fd);
  plan.argv_storage.push_back("taskexec-init");
  if (plan.controlling_tty) {
    // The command gets a session of its own, with the terminal; init keeps none.
    plan.tty_by_init = true;
    plan.argv_storage.push_back("-t");
  }
  plan.argv_storage.push_back(exe_in_root);
  return {};
}

}  // namespace container_parts

using namespace container_parts;

result<int> init_image_fd() {
  static std::mutex mu;
  static int fd = -1;
  std::lock_guard lock(mu);
  if (fd >= 0)
    return fd;
  error failure;
  [&] {
    int m = static_cast<int>(
        ::syscall(SYS_memfd_create, "taskexec-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC));
    if (m < 0 && (errno == EINVAL || errno == EACCES))  // before 6.3: no MFD_EXEC
      m = static_cast<int>(
          ::syscall(SYS_memfd_create, "taskexec-init", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (m < 0) {
      failure = make_system_error(errno, "memfd_create taskexec-init");
      return;
    }
    const auto* p = taskexec_init_image;
    // Two symbols of one blob (init_blob.S): its start and its end.
    // cppcheck-suppress comparePointers
    std::size_t left = static_cast<std::size_t>(taskexec_init_image_end - taskexec_init_image);
    while (left > 0) {
      ssize_t n = ::write(m, p, left);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        failure = make_system_error(errno, "write taskexec-init");
        ::close(m);
        return;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::fchmod(m, 0555);
    if (::fcntl(m, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
      failure = make_system_error(errno, "seal taskexec-init");
      ::close(m);
      return;
    }
    fd = move_high(m);
    if (fd < 0)
      failure = make_system_error(errno, "dup taskexec-init");
  }();
  if (fd < 0)
    return failure;  // tried again on the next launch
  return fd;
}

int container_strategy::signal_target(int pid, int signo) const {
  if (signo != SIGSTOP || !p_ || !p_->private_pid)
    return pid;
  // Init's children in the order they became its: the task first, then
  // any orphans.
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  int task = 0;
  return in >> task && task > 0 ? task : pid;
}

}  // namespace taskexec
