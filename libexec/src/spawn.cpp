#include "taskexec/detail/spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <variant>

#include "taskexec/detail/clone_launcher.hpp"
#include "taskexec/detail/coro.hpp"

#include "child_stack.hpp"

namespace taskexec::detail {

// Close descriptors first..last (close_range; a loop on kernels before 5.9).
static bool close_span(unsigned first, unsigned last) noexcept {
  if (::syscall(SYS_close_range, first, last, 0u) == 0)
    return true;
  if (errno != ENOSYS)
    return false;
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur - 1 < last)
    last = static_cast<unsigned>(rl.rlim_cur - 1);
  for (unsigned fd = first; fd <= last && fd >= first; ++fd)
    ::close(static_cast<int>(fd));
  return true;
}

// Close every descriptor not in the sorted, non-negative `keep` list.
bool close_fds_except(const int* keep, std::size_t n) noexcept {
  unsigned next = 0;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned k = static_cast<unsigned>(keep[i]);
    if (k > next && !close_span(next, k - 1))
      return false;
    next = k + 1;
  }
  return close_span(next, ~0u);
}

void default_signal_dispositions() noexcept {
  // Handlers are the parent's code, and SIG_IGN (SIGPIPE in a daemon, say)
  // would survive exec. The system call itself, not sigaction(): a library
  // that interposes sigaction keeps a table of handlers in user memory, and
  // a child that shares that memory (clone with CLONE_VM) would rewrite the
  // parent's table. ThreadSanitizer's runtime is such a library: through
  // sigaction, every launch reset the handlers the parent had installed.
  // The kernel's struct sigaction, as x86_64 and arm64 lay it out.
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    unsigned long mask;  // the kernel's sigset_t: 64 signals
  } dfl{SIG_DFL, 0, nullptr, 0};
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP)
      ::syscall(SYS_rt_sigaction, s, &dfl, nullptr, sizeof dfl.mask);
  }
}

void child_exit(int code) noexcept {
  for (;;)
    ::syscall(SYS_exit_group, code);
}

namespace {

struct child_args {
  clone_launcher* launcher;
  const char* exe;
  const char* const* argv;
  const char* const* envp;
  bool (*setup)(void*) noexcept;
  void* setup_context;
  const int* keep;  // sorted descriptors to keep open (0..2, the whitelist, the error pipe)
  std::size_t keep_count;
  int err_fd;
  const std::pair<int, int>* fd_map;  // {from, to}: dup2 after the close
  std::size_t fd_map_count;
  int report_fd;  // the error pipe's number across exec, or -1
  int exec_fd;    // execveat this descriptor, or -1
};

void copy_step(child_failure& f, int error, const char* step) noexcept {
  f.error = error;
  std::size_t i = 0;
  for (; step[i] != '\0' && i + 1 < f.step.size(); ++i)
    f.step[i] = step[i];
  f.step[i] = '\0';
}

// Runs in the child, on the private stack, sharing the parent's memory until
// execve (a copy of it under ThreadSanitizer). Async-signal-safe only; every
// signal is blocked on entry.
int child_main(void* arg) noexcept {
  const auto* a = static_cast<const child_args*>(arg);
  child_failure& f = a->launcher->failure;

  default_signal_dispositions();

  if (!a->setup(a->setup_context))
    goto failed;
  if (!close_fds_except(a->keep, a->keep_count)) {
    copy_step(f, errno, "close_range");
    goto failed;
  }
  for (std::size_t i = 0; i < a->fd_map_count; ++i) {
    if (::dup2(a->fd_map[i].first, a->fd_map[i].second) < 0) {
      copy_step(f, errno, "dup2 inherited descriptor");
      goto failed;
    }
  }
  if (a->report_fd >= 0 && ::dup2(a->err_fd, a->report_fd) < 0) {
    copy_step(f, errno, "dup2 report pipe");
    goto failed;
  }
  if (a->exec_fd >= 0) {
    // What runs from a descriptor (taskexec-init) starts with every signal
    // still blocked, and unblocks them itself.
    ::syscall(SYS_execveat, a->exec_fd, "", a->argv, a->envp, AT_EMPTY_PATH);
    copy_step(f, errno, "execveat");
    goto failed;
  }
  {
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
  }
  ::execve(a->exe, const_cast<char* const*>(a->argv), const_cast<char* const*>(a->envp));
  copy_step(f, errno, "execve");

failed:
  (void)!::write(a->err_fd, &f, sizeof f);
  child_exit(127);
}

// Our isolation strategies, as one Boost.Process v2 initializer.
struct strategy_initializer {
  const launch_plan& plan;
  std::span<const std::unique_ptr<isolation_strategy>> strategies;

  boost::system::error_code on_exec_setup(clone_launcher& l, const std::filesystem::path&,
                                          const char* const*) const noexcept {
    for (const auto& s : strategies) {
      if (!s->in_child(plan, l.failure)) {
        if (l.failure.error == 0)
          l.failure.error = EINVAL;  // a failure must never read as success
        return {l.failure.error, boost::system::system_category()};
      }
    }
    return {};
  }
};

}  // namespace

result<clone_launcher::started> clone_launcher::clone_and_exec(const char* exe,
                                                               const char* const* argv,
                                                               child_setup_fn setup,
                                                               void* context) {
  failed_pid = -1;
  failure = child_failure{};
  if (child_pidfd >= 0)
    ::close(child_pidfd);
  child_pidfd = -1;
  thread_local child_stack stack;
  if (!stack.top())
    return make_system_error(ENOMEM, "mmap child stack");
  stack.unpoison();

  // The child shares our memory, errno included (it is this thread's TLS):
  // whatever the child's calls leave in it must not leak into ours.
  struct errno_restore {
    int value;
    ~errno_restore() { errno = value; }
  } restore{errno};

  // The read end is made non-blocking below: after CLONE_VFORK returns, the
  // child has either exec'd or written its report, so "no data" means
  // success, even if a fork in another thread still holds the write end.
  int highest_kept = std::max({2, report_fd, exec_fd});
  for (int fd : fd_whitelist) {
    if (fd < 0)
      return make_system_error(EINVAL, "fd_whitelist holds " + std::to_string(fd));
    highest_kept = std::max(highest_kept, fd);
  }
  for (auto [from, to] : fd_map) {
    if (from < 0 || to < 0)
      return make_system_error(EINVAL, "fd_map holds a negative descriptor");
    highest_kept = std::max({highest_kept, from, to});
  }

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return make_system_error(errno, "pipe2");
  // Keep the write end above every descriptor the child keeps or is given
  // (0..2 and the whitelist), so no dup2 in the child can clobber it.
  if (pipefd[1] <= highest_kept) {
    int moved = ::fcntl(pipefd[1], F_DUPFD_CLOEXEC, highest_kept + 1);
    int saved = errno;
    ::close(pipefd[1]);
    if (moved < 0) {
      ::close(pipefd[0]);
      return make_system_error(saved, "dup error pipe");
    }
    pipefd[1] = moved;
  }

  std::vector<int> keep = fd_whitelist;  // 0..2 by default; initializers may add
  keep.push_back(pipefd[1]);
  for (auto [from, to] : fd_map)
    keep.push_back(from);
  if (exec_fd >= 0)
    keep.push_back(exec_fd);
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());

  child_args args{this,          exe,         argv,        env,       setup,
                  context,       keep.data(), keep.size(), pipefd[1], fd_map.data(),
                  fd_map.size(), report_fd,   exec_fd};

  // Under ThreadSanitizer the child gets a copy of our memory instead of
  // sharing it: its runtime keeps state (descriptors, locks, the thread's
  // clocks) that the child's calls would change under us. The child reports
  // through the pipe either way; CLONE_VFORK still holds us until exec.
#ifdef TASKEXEC_TSAN
  constexpr int shared_vm = 0;
#else
  constexpr int shared_vm = CLONE_VM;
#endif
  // Block every signal across clone: a handler running in the child would run
  // the parent's code on the parent's memory. The child restores an empty mask
  // right before exec.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  // CLONE_PIDFD: the pidfd is made with the child, so the reaper can reap
  // it by pidfd alone (waitid P_PIDFD), with no window in which it is ours
  // and has no descriptor.
  int new_pidfd = -1;
  int child =
      ::clone(child_main, stack.top(),
              shared_vm | CLONE_VFORK | CLONE_PIDFD | SIGCHLD | clone_flags, &args, &new_pidfd);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(pipefd[1]);

  if (child < 0) {
    ::close(pipefd[0]);
    return make_system_error(clone_errno, "clone");
  }
  pid = child;
  child_pidfd = new_pidfd;
  ::fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
  if (report_fd >= 0) {
    // What the child exec'd holds the write end until it has started what
    // it starts: the caller waits for its report or EOF, then finish().
    return started{child, pipefd[0]};
  }
  auto r = read_report(child, pipefd[0], exe, false);
  if (!r)
    return r.error();
  return started{child, -1};
}

clone_launcher::~clone_launcher() {
  if (child_pidfd >= 0)
    ::close(child_pidfd);
}

result<int> clone_launcher::finish(started s, const std::filesystem::path& exe,
                                   const error* abandoned, bool child_gone) {
  if (!abandoned)
    return read_report(s.pid, s.report, exe.c_str(), child_gone);
  ::close(s.report);
  if (!child_gone) {
    ::kill(s.pid, SIGKILL);  // ours and not reaped yet: the pid is still its own
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(s.pid), &info, WEXITED | WNOWAIT) != 0 &&
           errno == EINTR) {
    }
  }
  failed_pid = s.pid;
  return *abandoned;
}

result<int> clone_launcher::read_report(int child, int fd, const char* exe, bool child_gone) {
  child_failure f{};
  ssize_t n;
  do {
    n = ::read(fd, &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n == 0 || (n < 0 && errno == EAGAIN))
    return child;
  failed_pid = child;
  if (n == static_cast<ssize_t>(sizeof f))
    failure = f;  // the child's own copy, when it did not share our memory
  // Return once the child is gone (it has exited, or, after exec, may still
  // be finishing: then it is killed), so that nothing of it is left where
  // the caller cleans up (its cgroup). WNOWAIT: the reaper still reaps it.
  if (!child_gone) {
    if (report_fd >= 0)
      ::kill(child, SIGKILL);
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) != 0 &&
           errno == EINTR) {
    }
  }
  if (n != static_cast<ssize_t>(sizeof f))
    return make_error(errc::launch_failed, "launch failed: short report from the child");
  std::string step(f.step.data());
  std::string what = step;
  if (step == "execve")
    what = "exec \"" + std::string(exe) + "\"";
  else if (step == "execveat")
    what = "exec taskexec-init (for \"" + std::string(exe) + "\")";
  return make_error(errc::launch_failed, what + ": " + std::strerror(f.error));
}

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

error name_directory(const launch_plan& plan, error e) {
  if (e.message.rfind("chdir:", 0) == 0) {
    // Name the directory: the child only knows the step.
    return make_error(errc::launch_failed, "chdir \"" + plan.cwd + "\"" + e.message.substr(5));
  }
  return e;
}

// The clone (no coroutine: the initializer is a braced temporary).
result<clone_launcher::started> start_child(
    clone_launcher& launcher, const launch_plan& plan,
    std::span<const std::unique_ptr<isolation_strategy>> strategies) {
  launcher.env = plan.envp.data();
  launcher.clone_flags = plan.clone_flags;
  launcher.exec_fd = plan.exec_fd;
  launcher.fd_map = plan.fd_map;
  launcher.report_fd = plan.report_fd;
  return launcher.start(plan.executable, plan.argv.data(), strategy_initializer{plan, strategies});
}

asio::awaitable<result<spawned_child>> spawn_and_wait(
    child_reaper& reaper, const launch_plan& plan,
    std::span<const std::unique_ptr<isolation_strategy>> strategies,
    std::chrono::milliseconds report_timeout, condition* abort, int* failed_pid) {
  if (failed_pid)
    *failed_pid = -1;
  clone_launcher launcher;
  // adopt_orphans: the reaper's waitpid(-1) waits from the clone to the
  // watch (we may be on a thread other than the reaper's strand's).
  std::optional<child_reaper::launch_guard> guard(reaper.guard_launch());
  auto s = start_child(launcher, plan, strategies);
  if (!s) {
    if (launcher.failed_pid > 0) {
      // The child exited after reporting: claim it, so that it is not
      // counted as an orphan (the reaper reaps it, the status is dropped).
      reaper.watch(launcher.failed_pid, launcher.take_pidfd(), [](int, int) {});
      if (failed_pid)
        *failed_pid = launcher.failed_pid;
    }
    guard.reset();
    co_return name_directory(plan, s.error());
  }
  // From now on the reaper may run: claim the child at once. Its status, if
  // it is reaped before the launch completes, is kept for the caller.
  auto status = std::make_shared<std::optional<int>>();
  reaper.watch(s->pid, launcher.take_pidfd(), [status](int, int st) { *status = st; });
  guard.reset();
  if (s->report < 0) {
    spawned_child c;
    c.pid = s->pid;
    co_return c;
  }

  // Wait for the report (or EOF) on the io_context: its readability, raced
  // against the timeout, the caller's abort and the caller's cancellation.
  auto ex = co_await asio::this_coro::executor;
  asio::posix::stream_descriptor report(ex, s->report);
  asio::steady_timer timer(ex, report_timeout);
  condition never;
  condition* stop = abort ? abort : &never;
  auto readable = report.async_wait(asio::posix::stream_descriptor::wait_read,
                                    asio::as_tuple(asio::use_awaitable));
  auto expired = timer.async_wait(asio::as_tuple(asio::use_awaitable));
  using outcome = std::variant<std::tuple<boost::system::error_code>,
                               std::tuple<boost::system::error_code>, wake>;
  outcome first(std::in_place_index<2>, wake::cancelled);
  // A cancel that came before this wait is not signalled again: look first.
  auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
  if (cancelled == asio::cancellation_type::none) {
    first = co_await (std::move(readable) || std::move(expired) ||
                      wait_on(*stop, std::chrono::steady_clock::time_point::max()));
    cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
  }
  s->report = report.release();

  std::optional<error> abandoned;
  if (cancelled != asio::cancellation_type::none || first.index() == 2) {
    abandoned = make_error(errc::operation_canceled, "launch canceled while awaiting its report");
  } else if (first.index() == 1) {
    abandoned =
        make_error(errc::timed_out, "launch timed out: no report within " +
                                        std::to_string(report_timeout.count()) + " ms after exec");
  } else if (auto ec = std::get<0>(std::get<0>(first)); ec) {
    abandoned = make_system_error(ec.value(), "wait for the launch report");
  }
  auto r =
      launcher.finish(*s, plan.executable, abandoned ? &*abandoned : nullptr, status->has_value());
  if (!r) {
    if (failed_pid)
      *failed_pid = launcher.failed_pid;
    co_return name_directory(plan, r.error());
  }
  spawned_child c;
  c.pid = *r;
  c.exit_status = *status;
  co_return c;
}

}  // namespace

asio::awaitable<result<spawned_child>> spawn(
    child_reaper& reaper, const launch_plan& plan,
    std::span<const std::unique_ptr<isolation_strategy>> strategies,
    std::chrono::milliseconds report_timeout, condition* abort, int* failed_pid) {
  co_return co_await no_throw_on_cancel(
      spawn_and_wait(reaper, plan, strategies, report_timeout, abort, failed_pid));
}

void watch_spawned(child_reaper& reaper, const spawned_child& child,
                   child_reaper::exit_handler handler) {
  if (!child.exit_status) {
    reaper.watch(child.pid, std::move(handler));
    return;
  }
  asio::post(reaper.get_executor(),
             [pid = child.pid, status = *child.exit_status, h = std::move(handler)] {
               if (h)
                 h(pid, status);
             });
}

void kill_spawned(const spawned_child& child) noexcept {
  if (child.exit_status)
    return;  // reaped: its pid may be another process's now
  ::kill(child.pid, SIGKILL);
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(child.pid), &info, WEXITED | WNOWAIT) != 0 &&
         errno == EINTR) {
  }
}

}  // namespace taskexec::detail
