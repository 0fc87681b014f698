// create_executor and reattach_to_executor: starting taskexecd detached from
// the caller, and proving a saved daemon is still the same process.
//
// The daemon is a grandchild in a session of its own: the intermediate child
// calls setsid, clones the daemon, reports its pid through a pipe and exits.
// Both clones share our memory and run on stacks of their own, each holding
// its parent until it has exec'd or exited (CLONE_VM | CLONE_VFORK, as
// posix_spawn does): no copy of the caller's page tables, which for a large
// agent was most of a daemon's start, and no atfork handlers (the caller may
// be multi-threaded). Between clone and exec only async-signal-safe calls are
// made, none allocating. The intermediate is reaped through a
// pidfd (no pid-reuse race) unless this process has a child_reaper in
// adopt_orphans mode, which then reaps it and, as the subreaper, the daemon
// too. (An exact-mode reaper reaps only what it watches, and the daemon,
// re-parented to init, is not ours.)
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "../child_stack.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/detail/spawn.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/exit_file.hpp"

extern char** environ;

namespace taskexec {

namespace asio = boost::asio;

namespace {

#ifndef P_PIDFD
constexpr idtype_t P_PIDFD = static_cast<idtype_t>(3);
#endif

class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~unique_fd() { reset(); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// A close-on-exec descriptor numbered 3 or above: the daemon's child side
// dup2s onto 0..2, which must not clobber a source (a caller with stdin
// closed gets 0 back from pipe2).
int above_stdio(int fd) {
  if (fd < 0 || fd > 2)
    return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

result<std::pair<unique_fd, unique_fd>> make_pipe(const char* what) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    return make_system_error(errno, what);
  int r = above_stdio(p[0]);
  int w = above_stdio(p[1]);
  if (r < 0 || w < 0) {
    int e = errno;
    if (r >= 0)
      ::close(r);
    if (w >= 0)
      ::close(w);
    return make_system_error(e, what);
  }
  return std::pair{unique_fd(r), unique_fd(w)};
}

bool executable(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

result<std::string> find_daemon(const std::string& configured) {
  auto search_path = [](const std::string& name) -> std::string {
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!rest.empty()) {
      auto colon = rest.find(':');
      std::string dir(rest.substr(0, colon));
      rest = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
      if (!dir.empty() && executable(dir + "/" + name))
        return dir + "/" + name;
    }
    return {};
  };
  std::string want = configured;
  if (want.empty()) {
    if (const char* env = std::getenv("TASKEXECD"); env && *env)
      want = env;
  }
  if (!want.empty()) {
    std::string found =
        want.find('/') != std::string::npos ? (executable(want) ? want : "") : search_path(want);
    if (found.empty())
      return make_error(errc::binary_not_found, "binary \"" + want + "\" could not be found");
    return found;
  }
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = (self.parent_path() / "taskexecd").string();
    if (executable(beside))
      return beside;
  }
  auto found = search_path("taskexecd");
  if (found.empty())
    return make_error(errc::binary_not_found, "binary \"taskexecd\" could not be found");
  return found;
}

struct child_plan {
  const char* exe;
  char* const* argv;
  char* const* envp;
  int null_fd, out_fd, err_fd, info_fd, errno_fd;
  void* daemon_stack;  // the top of the daemon's stack (the intermediate has the other)
};

// Under ThreadSanitizer the children get a copy of our memory instead of
// sharing it (its runtime keeps state the children's calls would change
// under us), as in spawn.cpp; CLONE_VFORK holds each parent all the same.
#ifdef TASKEXEC_TSAN
constexpr int shared_vm = 0;
#else
constexpr int shared_vm = CLONE_VM;
#endif

// The daemon's side, after the second clone: returns only when it could
// not exec (the errno is in errno_fd). Async-signal-safe only; every signal
// is blocked on entry (the caller's handlers must never run here).
// Both children end by returning from their clone function (glibc's clone
// then calls exit), not through a [[noreturn]] call: under AddressSanitizer
// such a call on a stack of our own makes the runtime warn on stderr.
void exec_daemon(const child_plan& p) noexcept {
  detail::default_signal_dispositions();
  if (::dup2(p.null_fd, 0) < 0 || ::dup2(p.out_fd, 1) < 0 || ::dup2(p.err_fd, 2) < 0) {
    int e = errno;
    (void)!::write(p.errno_fd, &e, sizeof e);
    return;
  }
  const int keep[] = {0, 1, 2, p.errno_fd};  // errno_fd (>= 3) is close-on-exec
  detail::close_fds_except(keep, 4);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(p.exe, p.argv, p.envp);
  int e = errno;
  (void)!::write(p.errno_fd, &e, sizeof e);
}

int daemon_main(void* plan) noexcept {
  exec_daemon(*static_cast<const child_plan*>(plan));
  return 127;
}

// The intermediate: a new session, the daemon, its pid reported, gone. The
// daemon's clone holds it until the daemon has exec'd (or failed to).
int intermediate_main(void* plan) noexcept {
  const auto& p = *static_cast<const child_plan*>(plan);
  detail::default_signal_dispositions();  // signals stay blocked
  ::setsid();
  int pid = ::clone(daemon_main, p.daemon_stack, shared_vm | CLONE_VFORK | SIGCHLD, plan);
  int report = pid > 0 ? pid : -errno;
  (void)!::write(p.info_fd, &report, sizeof report);
  return 0;
}

bool read_all(int fd, void* buf, std::size_t n) {
  auto* out = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::read(fd, out, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    out += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// What the daemon wrote to stderr before it died (bounded, trimmed).
std::string drain(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string text;
  char buf[1024];
  while (text.size() < 4096) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r <= 0)
      break;
    text.append(buf, static_cast<std::size_t>(r));
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

struct started_daemon {
  int pid = 0;
  unique_fd pidfd;  // opened while the daemon could not have been reaped
  unique_fd out, err, exec_errno;
};

result<started_daemon> start_daemon(const std::string& exe, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  unique_fd null_fd(above_stdio(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
  if (null_fd.get() < 0)
    return make_system_error(errno, "open /dev/null");
  auto out = make_pipe("pipe for the daemon's stdout");
  auto err = make_pipe("pipe for the daemon's stderr");
  auto info = make_pipe("pipe for the daemon's pid");
  auto exec_errno = make_pipe("pipe for exec's errno");
  for (auto* p : {&out, &err, &info, &exec_errno}) {
    if (!*p)
      return p->error();
  }
  // A stack each for the intermediate and the daemon (both live at once).
  detail::child_stack mid_stack, daemon_stack;
  if (!mid_stack.top() || !daemon_stack.top())
    return make_system_error(ENOMEM, "mmap the stacks for taskexecd's start");
  child_plan plan{exe.c_str(),
                  argv.data(),
                  environ,
                  null_fd.get(),
                  out->second.get(),
                  err->second.get(),
                  info->second.get(),
                  exec_errno->second.get(),
                  daemon_stack.top()};

  auto* reaper = child_reaper::current();
  if (reaper && reaper->mode() != reaper_mode::adopt_orphans)
    reaper = nullptr;
  // adopt_orphans: its waitpid(-1) waits until both children are watched
  // (the reaper may run on another thread).
  std::optional<child_reaper::launch_guard> guard;
  if (reaper)
    guard.emplace(reaper->guard_launch());
  int mid_pidfd = -1;
  // Every signal blocked across the clone: the children must not run the
  // caller's handlers (asio's would write to a pipe the caller shares).
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  // Returns once the intermediate has exited (CLONE_VFORK): its report is
  // in the pipe by then.
  int mid = ::clone(intermediate_main, mid_stack.top(),
                    shared_vm | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &plan, &mid_pidfd);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  // Both children have exec'd or exited: their frames leave the stacks.
  mid_stack.unpoison();
  daemon_stack.unpoison();
  if (mid < 0)
    return make_system_error(clone_errno, "clone for taskexecd");
  unique_fd mid_fd(mid_pidfd);
  if (reaper)
    reaper->watch(static_cast<int>(mid), ::fcntl(mid_fd.get(), F_DUPFD_CLOEXEC, 3),
                  [](int, int) {});
  out->second.reset();
  err->second.reset();
  info->second.reset();
  exec_errno->second.reset();
  null_fd.reset();

  int report = 0;
  bool got = read_all(info->first.get(), &report, sizeof report);
  if (!reaper) {
    siginfo_t si{};
    while (::waitid(P_PIDFD, static_cast<id_t>(mid_fd.get()), &si, WEXITED) != 0 &&
           errno == EINTR) {
    }
  }
  if (!got)
    return make_error(errc::launch_failed, "taskexecd's launcher died before reporting");
  if (report < 0)
    return make_system_error(-report, "clone for taskexecd");

  started_daemon d;
  d.pid = report;
  // Not reaped yet: with a reaper it is ours (we are the subreaper and have
  // not returned to the io_context); without one, init reaps it only once it
  // has died, which it does not do this early but on a startup error.
  if (reaper)
    reaper->watch(d.pid, [](int, int) {});
  guard.reset();
  d.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, d.pid, 0)));
  d.out = std::move(out->first);
  d.err = std::move(err->first);
  d.exec_errno = std::move(exec_errno->first);
  return d;
}

void kill_daemon(const started_daemon& d) {
  if (d.pidfd.get() >= 0)
    ::syscall(SYS_pidfd_send_signal, d.pidfd.get(), SIGKILL, nullptr, 0);
}

struct handshake_read {
  explicit handshake_read(const asio::any_io_executor& ex, int fd) : sd(ex, fd), timer(ex) {}
  asio::posix::stream_descriptor sd;
  asio::steady_timer timer;
  bool timed_out = false;
};

}  // namespace

asio::awaitable<result<created_executor>> create_executor(asio::any_io_executor ex,
                                                          create_options o) {
  if (o.socket_path.empty())
    co_return make_error(errc::invalid_argument, "socket_path is required");
  if (o.handshake_timeout.count() <= 0 || o.kill_grace.count() < 0)
    co_return make_error(errc::invalid_argument,
                         "handshake_timeout must be positive and kill_grace not negative");
  auto exe = find_daemon(o.daemon_path);
  if (!exe)
    co_return exe.error();
  std::vector<std::string> args{
      "--socket",     o.socket_path, "--log-level",     o.log_file.empty() ? "off" : o.log_level,
      "--log-format", o.log_format,  "--kill-grace-ms", std::to_string(o.kill_grace.count())};
  if (!o.hostname.empty()) {
    args.push_back("--hostname");
    args.push_back(o.hostname);
  }
  if (!o.log_file.empty()) {
    args.push_back("--log-file");
    args.push_back(o.log_file);
  }
  for (unsigned uid : o.allowed_uids) {
    args.push_back("--allow-uid");
    args.push_back(std::to_string(uid));
  }
  if (!o.task_id.empty()) {
    args.push_back("--task-id");
    args.push_back(o.task_id);
  }
  if (!o.exit_dir.empty()) {
    args.push_back("--exit-dir");
    args.push_back(o.exit_dir);
  }
  auto started = start_daemon(*exe, args);
  if (!started)
    co_return started.error();
  auto& d = *started;

  // The handshake line, within the timeout.
  auto rd = std::make_shared<handshake_read>(ex, d.out.release());
  rd->timer.expires_after(o.handshake_timeout);
  rd->timer.async_wait([rd](boost::system::error_code ec) {
    if (!ec) {
      rd->timed_out = true;
      rd->sd.cancel();
    }
  });
  asio::streambuf buf(64 * 1024);
  auto [ec, n] =
      co_await asio::async_read_until(rd->sd, buf, '\n', asio::as_tuple(asio::use_awaitable));
  rd->timer.cancel();
  rd->sd.close();
  if (ec) {
    if (rd->timed_out) {
      kill_daemon(d);
      co_return make_error(errc::timed_out, "taskexecd gave no handshake within " +
                                                std::to_string(o.handshake_timeout.count()) +
                                                " ms; it was killed");
    }
    if (ec == asio::error::operation_aborted) {
      kill_daemon(d);
      co_return make_error(errc::operation_canceled, "create_executor canceled; taskexecd killed");
    }
    int exec_errno = 0;
    ::fcntl(d.exec_errno.get(), F_SETFL, O_NONBLOCK);
    if (::read(d.exec_errno.get(), &exec_errno, sizeof exec_errno) == sizeof exec_errno)
      co_return make_system_error(exec_errno, "cannot run " + *exe);
    auto said = drain(d.err.get());
    co_return make_error(errc::launch_failed, "taskexecd exited before its handshake" +
                                                  (said.empty() ? std::string() : ": " + said));
  }
  std::string line(asio::buffers_begin(buf.data()),
                   asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
  auto said_pid = parse_handshake(line);
  if (!said_pid || *said_pid != d.pid) {
    kill_daemon(d);
    co_return make_error(errc::protocol_error, "unexpected handshake from " + *exe + ": " + line);
  }

  auto st = detail::read_proc_stat(d.pid);
  if (!st || st->state == 'Z')
    co_return make_error(errc::connection_failed, "taskexecd exited right after its handshake");
  reattach_config config{o.socket_path, d.pid, st->start_ticks, handshake_exit_file(line)};
  // From here a failure would leave a daemon nobody can find: kill it.
  auto client = co_await remote_executor::connect(ex, o.socket_path);
  if (!client) {
    kill_daemon(d);
    co_return client.error();
  }
  if (client->daemon_pid() != d.pid) {
    kill_daemon(d);
    co_return make_error(errc::protocol_error, "socket " + o.socket_path + " is served by pid " +
                                                   std::to_string(client->daemon_pid()) +
                                                   ", not by the daemon started");
  }
  co_return created_executor{std::move(*client), std::move(config)};
}

asio::awaitable<result<remote_executor>> reattach_to_executor(asio::any_io_executor ex,
                                                              reattach_config c,
                                                              connect_options options) {
  if (c.socket.empty() || c.pid <= 0)
    co_return make_error(errc::invalid_argument, "reattach config needs a socket and a pid");
  const std::string who = "pid " + std::to_string(c.pid);
  auto st = detail::read_proc_stat(c.pid);
  std::string gone;
  if (!st || st->state == 'Z')
    gone = who + " is gone: the daemon has exited";
  else if (st->start_ticks != c.pid_start_time)
    gone = who + " started at tick " + std::to_string(st->start_ticks) + ", not " +
           std::to_string(c.pid_start_time) + ": it is another process, the daemon has exited";
  if (!gone.empty()) {
    // The daemon is gone: its exit file, if it left one, says how the
    // task ended.
    if (c.exit_file.empty())
      co_return make_error(errc::reattach_refused, gone);
    auto rec = rpc::read_exit_file(c.exit_file);
    if (!rec)
      co_return make_error(errc::reattach_refused,
                           gone + "; no exit state: " + rec.error().message);
    if (rec->daemon_pid != c.pid || rec->daemon_start_time != c.pid_start_time)
      co_return make_error(errc::reattach_refused,
                           gone + "; exit file " + c.exit_file + " was written by pid " +
                               std::to_string(rec->daemon_pid) + " started at tick " +
                               std::to_string(rec->daemon_start_time) + ", another daemon");
    co_return remote_executor::from_exit_state(ex, c.socket, c.pid, rec->state);
  }
  auto client = co_await remote_executor::connect(ex, c.socket, options);
  if (!client) {
    if (client.error().code == make_error_code(errc::connection_failed))
      co_return make_error(errc::reattach_refused,
                           client.error().message + " (" + who + " is alive but not serving it)");
    co_return client.error();
  }
  if (client->daemon_pid() != c.pid) {
    co_return make_error(errc::reattach_refused, "socket " + c.socket + " is served by pid " +
                                                     std::to_string(client->daemon_pid()) +
                                                     ", not " + who);
  }
  co_return std::move(*client);
}

}  // namespace taskexec
