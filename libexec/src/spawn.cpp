#include "taskexec/detail/spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace taskexec::detail {
namespace {

// The child's stack. clone(CLONE_VM) runs the child in our address space, so
// it needs its own stack; one per thread, reused (a launch blocks the thread
// until the child has exec'd or exited, so launches on a thread never overlap).
class child_stack {
 public:
  static constexpr std::size_t size = 128 * 1024;
  child_stack() {
    void* p = ::mmap(nullptr, size + guard, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
      return;
    ::mprotect(p, guard, PROT_NONE);  // stacks grow down: the guard is at the bottom
    base_ = static_cast<char*>(p);
  }
  ~child_stack() {
    if (base_)
      ::munmap(base_, size + guard);
  }
  child_stack(const child_stack&) = delete;
  child_stack& operator=(const child_stack&) = delete;
  void* top() const noexcept { return base_ ? base_ + guard + size : nullptr; }

 private:
  static constexpr std::size_t guard = 4096;
  char* base_ = nullptr;
};

struct child_args {
  const launch_plan* plan;
  std::span<const std::unique_ptr<isolation_strategy>> strategies;
  int err_fd;
};

void copy_step(child_failure& f, const char* step) noexcept {
  std::size_t i = 0;
  for (; step[i] != '\0' && i + 1 < f.step.size(); ++i)
    f.step[i] = step[i];
  f.step[i] = '\0';
}

// Runs in the child, on the private stack, sharing the parent's memory until
// execve. Async-signal-safe only; every signal is blocked on entry.
int child_main(void* arg) noexcept {
  const auto* a = static_cast<const child_args*>(arg);
  child_failure f{};

  // Default dispositions for every signal: handlers are the parent's code,
  // and SIG_IGN (SIGPIPE in a daemon, say) would survive exec.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP)
      ::sigaction(s, &dfl, nullptr);  // EINVAL for glibc's internal ones
  }

  for (const auto& s : a->strategies) {
    if (!s->in_child(*a->plan, f))
      goto failed;
  }

  // Close every descriptor but 0..2 and the error pipe (CLOEXEC, closed by exec).
  if (a->err_fd > 3 &&
      ::syscall(SYS_close_range, 3u, static_cast<unsigned>(a->err_fd - 1), 0u) != 0) {
    f.error = errno;
    copy_step(f, "close_range");
    goto failed;
  }
  if (::syscall(SYS_close_range, static_cast<unsigned>(a->err_fd + 1), ~0u, 0u) != 0) {
    f.error = errno;
    copy_step(f, "close_range");
    goto failed;
  }

  {
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
  }
  ::execve(a->plan->executable.c_str(), a->plan->argv.data(), a->plan->envp.data());
  f.error = errno;
  copy_step(f, "execve");

failed:
  (void)!::write(a->err_fd, &f, sizeof f);
  ::_exit(127);
}

std::string describe(const launch_plan& plan, const child_failure& f) {
  std::string step(f.step.data());
  std::string what = step;
  if (step == "execve")
    what = "exec \"" + plan.executable + "\"";
  if (step == "chdir")
    what = "chdir \"" + plan.cwd + "\"";
  return what + ": " + std::strerror(f.error);
}

}  // namespace

result<int> spawn(const launch_plan& plan,
                  std::span<const std::unique_ptr<isolation_strategy>> strategies,
                  int& failed_pid) {
  failed_pid = -1;
  thread_local child_stack stack;
  if (!stack.top())
    return make_system_error(ENOMEM, "mmap child stack");

  // The child shares our memory, errno included (it is this thread's TLS):
  // whatever the child's calls leave in it must not leak into ours.
  const int saved_errno = errno;
  struct errno_restore {
    int value;
    ~errno_restore() { errno = value; }
  } restore{saved_errno};

  int pipefd[2];
  // The read end is non-blocking: after CLONE_VFORK returns, the child has
  // either exec'd or written its report, so "no data" means success, even
  // if a fork in another thread still holds a copy of the write end.
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return make_system_error(errno, "pipe2");
  // Keep the write end above 2 so the child's dup2 onto 0..2 cannot clobber it.
  if (pipefd[1] < 3) {
    int moved = ::fcntl(pipefd[1], F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    ::close(pipefd[1]);
    if (moved < 0) {
      ::close(pipefd[0]);
      return make_system_error(saved, "dup error pipe");
    }
    pipefd[1] = moved;
  }

  child_args args{&plan, strategies, pipefd[1]};

  // Block every signal across clone: a handler running in the child would run
  // the parent's code on the parent's memory. The child restores an empty mask
  // right before exec.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pid = ::clone(child_main, stack.top(), CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(pipefd[1]);

  if (pid < 0) {
    ::close(pipefd[0]);
    return make_system_error(clone_errno, "clone");
  }

  // CLONE_VFORK: by now the child has exec'd (pipe closed: EOF) or failed
  // (it wrote its failure and exited).
  child_failure f{};
  ::fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
  ssize_t n;
  do {
    n = ::read(pipefd[0], &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n == 0 || (n < 0 && errno == EAGAIN))
    return pid;
  failed_pid = pid;
  if (n != static_cast<ssize_t>(sizeof f))
    return make_error(errc::launch_failed, "launch failed: short report from child");
  return make_error(errc::launch_failed, describe(plan, f));
}

}  // namespace taskexec::detail
