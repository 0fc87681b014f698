// exec_session: the command's stdio on pipes or a pty, pumped by coroutines
// on the session's executor. Descriptors are non-blocking and driven with
// raw read/write after async_wait: one syscall per buffer, no copies.
#include "taskexec/exec_session.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <deque>
#include <optional>

#include "exec_launch.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/detail/coro.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/detail/spawn.hpp"
#include "write_no_sigpipe.hpp"

namespace taskexec {
namespace asio = boost::asio;

ssize_t detail::write_no_sigpipe(int fd, const char* data, std::size_t n) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  // A SIGPIPE can be pending for this thread only while it is blocked here
  // (unblocked, it would have been delivered): only then is there one of
  // someone else's not to take back. The common case, SIGPIPE not blocked
  // by the caller, needs no sigpending.
  bool was_pending = false;
  if (sigismember(&old, SIGPIPE) == 1) {
    sigset_t pending;
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE) == 1;
  }
  ssize_t r = ::write(fd, data, n);
  const int saved = errno;
  if (r < 0 && saved == EPIPE && !was_pending) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return r;
}

using namespace asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;
using detail::condition;
using detail::wait_on;
using detail::wake;
using descriptor = asio::posix::stream_descriptor;

namespace {

// Validate and prepare (before_fork) a launch of `c` through `stack`;
// on failure, `prepared` strategies need launch_failed.
result<void> prepare_command(strategy_stack& stack, const exec_command& c, launch_plan& plan,
                             std::size_t& prepared) {
  for (const auto& s : stack) {
    if (auto v = s->validate(c); !v)
      return v.error();
  }
  for (auto& s : stack) {
    if (auto r = s->before_fork(c, plan); !r)
      return r.error();
    ++prepared;
  }
  plan.seal();
  return {};
}

void unprepare_command(strategy_stack& stack, const launch_plan& plan, std::size_t prepared) {
  for (std::size_t i = 0; i < prepared; ++i)
    stack[i]->launch_failed(plan);
}

// The running command: its start time and its exit handed on.
started_command command_started(child_reaper& reaper, strategy_stack& stack,
                                const launch_plan& plan, const detail::spawned_child& child,
                                std::function<void(int)> on_exit) {
  started_command started;
  started.pid = child.pid;
  // Read before the reaper can take it: the start time tells it apart from
  // a later process with the same pid. Not when it was reaped while its
  // launch awaited the report: the pid may be another process's already
  // (0 then matches no later holder of the pid in kill_tree).
  if (!child.exit_status) {
    if (auto st = detail::read_proc_stat(started.pid))
      started.start_ticks = st->start_ticks;
  }
  detail::watch_spawned(reaper, child, [&stack, on_exit = std::move(on_exit)](int, int status) {
    for (auto& s : stack)
      status = s->exit_status(status);
    on_exit(status);
  });
  for (auto& s : stack)
    s->after_start(plan, started.pid);
  return started;
}

}  // namespace

asio::awaitable<result<started_command>> start_command(child_reaper& reaper, strategy_stack& stack,
                                                       const exec_command& c,
                                                       std::function<void(int)> on_exit,
                                                       launch_wait wait) {
  launch_plan plan;
  std::size_t prepared = 0;
  if (auto p = prepare_command(stack, c, plan, prepared); !p) {
    unprepare_command(stack, plan, prepared);
    co_return p.error();
  }
  auto child = co_await detail::spawn(reaper, plan, stack, wait.report_timeout, wait.abort);
  if (!child) {
    unprepare_command(stack, plan, prepared);
    co_return child.error();
  }
  co_return command_started(reaper, stack, plan, *child, std::move(on_exit));
}

namespace {

constexpr std::size_t max_queued_output = 64 * 1024;
constexpr std::size_t read_buffer = 32 * 1024;
static_assert(read_buffer <= exec_event::max_data);
// After the command's exit, how long output from what it left behind (or a
// pty's buffered echo) is still taken.
constexpr auto linger = std::chrono::milliseconds(100);

int exit_code_of(int status) {
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
}

int set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags < 0 ? -1 : ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

struct fd_closer {
  int fd = -1;
  ~fd_closer() {
    if (fd >= 0)
      ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

}  // namespace

struct exec_session::state : std::enable_shared_from_this<state> {
  explicit state(asio::any_io_executor e) : ex(std::move(e)) {}
  asio::any_io_executor ex;
  strategy_stack stack;
  bool tty = false;
  started_command cmd;
  std::optional<int> status;  // the wait status, once reaped
  clock::time_point exited_at;
  condition ended;  // the command exited, or the session was abandoned

  struct source {
    explicit source(const asio::any_io_executor& e, exec_stream s) : fd(e), stream(s) {}
    descriptor fd;
    exec_stream stream;
    std::size_t owed = 0;  // bytes readable when the command exited: always delivered
    // After the exit, output is taken until this deadline; time spent
    // waiting for a slow reader does not count (it is added back), so what
    // the kernel buffered is not lost to backpressure.
    clock::time_point linger_until;
    bool closed = false;
  };
  std::deque<source> sources;  // stdout (the terminal with a tty), stderr
  std::deque<exec_event> queue;
  std::size_t queued_bytes = 0;
  condition readable;  // an event queued, a source closed, the exit
  condition space;     // the queue shrank (or nobody reads any more)

  std::optional<descriptor> in;  // stdin's write end (a dup of the pty master)
  int master = -1;               // the pty master (owned by sources[0]), for resize
  std::deque<std::string> in_queue;
  std::size_t in_offset = 0;  // of in_queue.front() already written
  std::size_t in_bytes = 0;
  std::size_t max_input = exec_session_options::default_max_queued_input;
  bool in_close_requested = false;
  // Concurrent write()s queue their data in call order: each takes a
  // ticket and waits for its turn (a cancelled one gives its turn up).
  std::uint64_t next_ticket = 0, turn = 0;
  std::vector<std::uint64_t> given_up;
  // close_stdin() while writes wait: the close comes after them, at this turn.
  std::optional<std::uint64_t> close_at;
  void next_turn() {
    ++turn;
    while (std::erase(given_up, turn) > 0)
      ++turn;
    if (close_at && turn >= *close_at) {
      close_at.reset();
      in_close_requested = true;
      in_ready.notify_all();
    }
    in_space.notify_all();
  }
  condition in_ready;  // input or a close queued, or the end
  condition in_space;  // input written or discarded

  bool abandoned = false;     // the exec_session is gone: nobody reads
  bool passed = false;        // exec_stdio::passed: the caller does the I/O
  exec_stdio_fds passed_fds;  // until take_stdio()

  bool running() const { return !status.has_value(); }

  void on_exit(int st) {
    status = st;
    exited_at = clock::now();
    // What the command wrote before it exited is in the pipe (or the pty)
    // now: it is delivered whatever the linger.
    for (auto& s : sources) {
      s.linger_until = clock::now() + linger;
      int n = 0;
      if (!s.closed && ::ioctl(s.fd.native_handle(), FIONREAD, &n) == 0 && n > 0)
        s.owed = static_cast<std::size_t>(n);
    }
    ended.notify_all();
    readable.notify_all();
    in_ready.notify_all();
  }

  void kill() noexcept {
    if (running())
      detail::kill_tree(cmd.pid, cmd.start_ticks);
  }

  // Output read from a stream joins the event queued last when it is of
  // the same stream and has room (max_data): a reader then takes it whole,
  // and a burst is copied once, here, not again by next_event's merge (with
  // the regrowth of its string). An event that takes a full read is given
  // room for max_data at once; a small one (interactive output) only what
  // it holds.
  void push(exec_stream s, const char* data, std::size_t n) {
    if (abandoned)
      return;
    queued_bytes += n;
    if (!queue.empty() && queue.back().kind == exec_event::type::output &&
        queue.back().stream == s && !queue.back().closed &&
        queue.back().data.size() + n <= exec_event::max_data) {
      queue.back().data.append(data, n);
    } else {
      exec_event e;
      e.stream = s;
      if (n >= read_buffer)
        e.data.reserve(exec_event::max_data);
      e.data.assign(data, n);
      queue.push_back(std::move(e));
    }
    readable.notify_all();
  }

  static asio::awaitable<void> pump(std::shared_ptr<state> st, source& src) {
    std::array<char, read_buffer> buf;
    const int fd = src.fd.native_handle();
    for (;;) {
      // Backpressure: the command blocks in its writes while nobody reads.
      while (!st->abandoned && st->queued_bytes >= max_queued_output) {
        const auto blocked = clock::now();
        co_await wait_on(st->space, clock::time_point::max());
        if (!st->running())
          src.linger_until += clock::now() - std::max(blocked, st->exited_at);
      }
      const std::size_t room =
          st->abandoned ? buf.size() : std::min(buf.size(), max_queued_output - st->queued_bytes);
      const ssize_t n = ::read(fd, buf.data(), room);
      if (n > 0) {
        src.owed -= std::min(src.owed, static_cast<std::size_t>(n));
        st->push(src.stream, buf.data(), static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      // EOF; EIO from a pty master once no process holds the terminal.
      if (n == 0 || errno != EAGAIN)
        break;
      // Past the exit, the end comes only after a read found nothing: what
      // a pty's slave wrote last may still wait in the kernel's flip buffer,
      // which FIONREAD does not count and a read flushes. A pump that ran
      // late (a loaded machine) must not skip that read.
      if (!st->running() && src.owed == 0 && clock::now() >= src.linger_until)
        break;
      auto readable = src.fd.async_wait(descriptor::wait_read, asio::as_tuple(asio::use_awaitable));
      if (st->running()) {
        co_await (std::move(readable) || wait_on(st->ended, clock::time_point::max()));
      } else {
        co_await (std::move(readable) || wait_on(st->ended, src.linger_until));
      }
    }
    src.closed = true;
    boost::system::error_code ignored;
    src.fd.close(ignored);
    if (!st->abandoned) {
      exec_event e;
      e.stream = src.stream;
      e.closed = true;
      st->queue.push_back(std::move(e));
    }
    st->readable.notify_all();
  }

  static asio::awaitable<void> feed(std::shared_ptr<state> st) {
    const int fd = st->in->native_handle();
    bool eof_queued = false;
    for (;;) {
      if (st->abandoned || !st->running())
        break;
      if (st->in_queue.empty()) {
        if (st->in_close_requested && st->tty && !eof_queued) {
          // A terminal has no half-close: its EOF character ends a read. It
          // is written like any input (the terminal may be full just now).
          termios t{};
          const char eof = ::tcgetattr(fd, &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04';
          st->in_queue.emplace_back(1, eof);
          st->in_bytes += 1;
          eof_queued = true;
          continue;
        }
        if (st->in_close_requested) {
          if (st->tty)
            co_return;  // the descriptor stays: closing it would not hang up
          break;
        }
        co_await wait_on(st->in_ready, clock::time_point::max());
        continue;
      }
      const std::string& front = st->in_queue.front();
      const ssize_t n =
          detail::write_no_sigpipe(fd, front.data() + st->in_offset, front.size() - st->in_offset);
      if (n >= 0) {
        st->in_offset += static_cast<std::size_t>(n);
        st->in_bytes -= static_cast<std::size_t>(n);
        if (st->in_offset == front.size()) {
          st->in_queue.pop_front();
          st->in_offset = 0;
        }
        st->in_space.notify_all();
        continue;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        co_await (st->in->async_wait(descriptor::wait_write, asio::as_tuple(asio::use_awaitable)) ||
                  wait_on(st->ended, clock::time_point::max()));
        continue;
      }
      break;  // EPIPE (the command closed its stdin) or EIO: nobody reads
    }
    // Whatever is left can never be read: discard it.
    st->in_queue.clear();
    st->in_bytes = 0;
    st->in_space.notify_all();
    boost::system::error_code ignored;
    st->in->close(ignored);
  }
};

exec_stdio_fds& exec_stdio_fds::operator=(exec_stdio_fds&& o) noexcept {
  if (this != &o) {
    reset();
    stdin_fd = std::exchange(o.stdin_fd, -1);
    stdout_fd = std::exchange(o.stdout_fd, -1);
    stderr_fd = std::exchange(o.stderr_fd, -1);
    pty_fd = std::exchange(o.pty_fd, -1);
  }
  return *this;
}

void exec_stdio_fds::reset() noexcept {
  for (int* fd : {&stdin_fd, &stdout_fd, &stderr_fd, &pty_fd}) {
    if (*fd >= 0)
      ::close(*fd);
    *fd = -1;
  }
}

exec_session::exec_session(std::shared_ptr<state> s) : state_(std::move(s)) {}
exec_session::exec_session(exec_session&&) noexcept = default;
exec_session& exec_session::operator=(exec_session&& o) noexcept {
  if (this != &o) {
    end();
    state_ = std::move(o.state_);
  }
  return *this;
}
exec_session::~exec_session() {
  end();
}

namespace {
template <class F>
void on_session_strand(const asio::any_io_executor& ex, F f) noexcept {
  try {
    detail::run_on_strand(ex, std::move(f));
  } catch (...) {
    // post allocates: nothing more can be done in a destructor
  }
}
}  // namespace

void exec_session::end() noexcept {
  if (!state_)
    return;
  std::shared_ptr<state> st = std::move(state_);
  state_.reset();
  const asio::any_io_executor ex = st->ex;
  on_session_strand(ex, [st = std::move(st)] {
    auto& s = *st;
    s.kill();
    s.abandoned = true;
    s.queue.clear();
    s.queued_bytes = 0;
    s.space.notify_all();
    s.ended.notify_all();
    s.in_ready.notify_all();
    s.readable.notify_all();
  });
}

void exec_session::kill() noexcept {
  if (state_)
    on_session_strand(state_->ex, [st = state_] { st->kill(); });
}
exec_stdio_fds exec_session::take_stdio() noexcept {
  return state_ ? std::move(state_->passed_fds) : exec_stdio_fds{};
}
int exec_session::pid() const noexcept {
  return state_ ? state_->cmd.pid : 0;
}
bool exec_session::tty() const noexcept {
  return state_ && state_->tty;
}
asio::any_io_executor exec_session::get_executor() const {
  return state_ ? state_->ex : asio::any_io_executor{};
}

namespace {

asio::awaitable<result<exec_event>> next_event(std::shared_ptr<exec_session::state> st) {
  for (;;) {
    if (!st->queue.empty()) {
      exec_event e = std::move(st->queue.front());
      st->queue.pop_front();
      st->queued_bytes -= e.data.size();
      // What else of the same stream has arrived is in it already (push).
      st->space.notify_all();
      co_return e;
    }
    bool all_closed = true;
    for (const auto& s : st->sources)
      all_closed = all_closed && s.closed;
    if (all_closed && st->status) {
      exec_event e;
      e.kind = exec_event::type::exited;
      e.exit_code = exit_code_of(*st->status);
      co_return e;
    }
    if (co_await wait_on(st->readable, clock::time_point::max()) == wake::cancelled)
      co_return make_error(errc::operation_canceled, "exec session read canceled");
  }
}

asio::awaitable<result<void>> queue_input(std::shared_ptr<exec_session::state> st,
                                          std::string data) {
  if (st->passed)
    co_return make_error(errc::unsupported, "the session's descriptors were passed: write to them");
  if (st->in_close_requested || st->close_at)
    co_return make_error(errc::invalid_argument, "the session's stdin is closed");
  const std::uint64_t ticket = st->next_ticket++;
  auto open = [&] { return st->in && st->in->is_open(); };
  auto give_up = [&] {
    if (ticket == st->turn)
      st->next_turn();
    else
      st->given_up.push_back(ticket);
  };
  while (ticket != st->turn) {
    if (co_await wait_on(st->in_space, clock::time_point::max()) == wake::cancelled) {
      give_up();
      co_return make_error(errc::operation_canceled, "exec session write canceled");
    }
  }
  // Our turn: the data goes in as room appears, so that no more than
  // max_input waits however large one write is (the rest stays here, with
  // the caller, which is suspended meanwhile).
  std::size_t offset = 0;
  while (offset < data.size() && open()) {
    if (st->in_bytes >= st->max_input) {
      if (co_await wait_on(st->in_space, clock::time_point::max()) == wake::cancelled) {
        give_up();
        co_return make_error(errc::operation_canceled, "exec session write canceled");
      }
      continue;
    }
    const std::size_t room = st->max_input - st->in_bytes;
    if (offset == 0 && data.size() <= room) {
      st->in_queue.push_back(std::move(data));  // the common case: no copy
      st->in_bytes += st->in_queue.back().size();
      st->in_ready.notify_all();
      break;
    }
    const std::size_t n = std::min(room, data.size() - offset);
    st->in_queue.push_back(data.substr(offset, n));
    st->in_bytes += n;
    offset += n;
    st->in_ready.notify_all();
  }
  // What is left when the command exited or closed its stdin is dropped:
  // nobody will ever read it.
  st->next_turn();
  co_return result<void>{};
}

}  // namespace

asio::awaitable<result<exec_event>> exec_session::read() {
  if (!state_)
    co_return make_error(errc::invalid_argument, "exec session moved from");
  co_return co_await detail::on_strand(state_->ex, next_event(state_));
}

asio::awaitable<result<void>> exec_session::write(std::string data) {
  if (!state_)
    co_return make_error(errc::invalid_argument, "exec session moved from");
  co_return co_await detail::on_strand(state_->ex, queue_input(state_, std::move(data)));
}

result<void> exec_session::close_stdin() {
  if (!state_)
    return make_error(errc::invalid_argument, "exec session moved from");
  if (state_->passed)
    return make_error(errc::unsupported, "the session's descriptors were passed: close stdin");
  on_session_strand(state_->ex, [st = state_] {
    auto& s = *st;
    if (s.in_close_requested || s.close_at)
      return;
    if (s.next_ticket != s.turn) {
      s.close_at = s.next_ticket;  // after the writes still waiting
      return;
    }
    s.in_close_requested = true;
    s.in_ready.notify_all();
  });
  return {};
}

result<void> exec_session::resize(tty_size size) {
  if (!state_)
    return make_error(errc::invalid_argument, "exec session moved from");
  if (!state_->tty)
    return make_error(errc::invalid_argument, "the session has no tty to resize");
  if (state_->passed)
    return make_error(errc::unsupported,
                      "the session's terminal was passed: resize it (TIOCSWINSZ) there");
  if (size.height == 0 || size.width == 0)
    return make_error(errc::invalid_argument, "a tty size needs a height and a width above 0");
  if (state_->sources.front().closed)
    return {};  // the terminal is gone with its command
  winsize ws{};
  ws.ws_row = size.height;
  ws.ws_col = size.width;
  if (::ioctl(state_->master, TIOCSWINSZ, &ws) != 0)
    return make_system_error(errno, "resize the terminal");
  return {};
}

void exec_session_access::end_with_task(exec_session::state& s) noexcept {
  s.kill();
}

namespace {

// A session's descriptors until the command runs: the child's (handed to
// the plan, which duplicates them, and closed here once it runs, so that
// EOF and EPIPE come when the command's side closes) and ours
// (non-blocking, close-on-exec).
struct session_stdio {
  fd_closer child_in, child_out, child_err, our_in, our_out, our_err;
};

result<void> open_stdio(const exec_session_options& o, exec_command& c, session_stdio& io) {
  if (o.tty) {
    fd_closer master{::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)};
    if (master.fd < 0)
      return make_system_error(errno, "open a pseudo-terminal (/dev/ptmx)");
    if (::unlockpt(master.fd) != 0)
      return make_system_error(errno, "unlock the pseudo-terminal");
    // The slave by the master, not by name: no race with another devpts.
    io.child_in.fd = ::ioctl(master.fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (io.child_in.fd < 0)
      return make_system_error(errno, "open the pseudo-terminal's slave");
    if (o.size.height > 0 && o.size.width > 0) {
      winsize ws{};
      ws.ws_row = o.size.height;
      ws.ws_col = o.size.width;
      if (::ioctl(master.fd, TIOCSWINSZ, &ws) != 0)
        return make_system_error(errno, "set the terminal's size");
    }
    io.our_in.fd = ::fcntl(master.fd, F_DUPFD_CLOEXEC, 3);
    if (io.our_in.fd < 0)
      return make_system_error(errno, "dup the pseudo-terminal");
    io.our_out.fd = master.release();
    c.stdin_fd = c.stdout_fd = c.stderr_fd = io.child_in.fd;
    c.controlling_tty = true;
  } else {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
      return make_system_error(errno, "pipe2");
    io.child_in.fd = p[0];
    io.our_in.fd = p[1];
    if (::pipe2(p, O_CLOEXEC) != 0)
      return make_system_error(errno, "pipe2");
    io.our_out.fd = p[0];
    io.child_out.fd = p[1];
    if (::pipe2(p, O_CLOEXEC) != 0)
      return make_system_error(errno, "pipe2");
    io.our_err.fd = p[0];
    io.child_err.fd = p[1];
    c.stdin_fd = io.child_in.fd;
    c.stdout_fd = io.child_out.fd;
    c.stderr_fd = io.child_err.fd;
    c.controlling_tty = false;
  }
  // Passed descriptors stay blocking: the file status flags go with them.
  for (int fd : {io.our_in.fd, io.our_out.fd, io.our_err.fd}) {
    if (fd >= 0 && o.stdio != exec_stdio::passed && set_nonblocking(fd) != 0)
      return make_system_error(errno, "set O_NONBLOCK");
  }
  return {};
}

}  // namespace

asio::awaitable<result<exec_session>> exec_session_access::start(
    child_reaper& reaper, strategy_stack stack, exec_command c, exec_session_options o,
    std::shared_ptr<exec_session::state>& out, launch_wait wait) {
  auto st = std::make_shared<exec_session::state>(reaper.get_executor());
  st->stack = std::move(stack);
  st->tty = o.tty;
  st->max_input = std::max<std::size_t>(o.max_queued_input, 1);
  c.cmd = std::move(o.cmd);
  c.args = std::move(o.args);

  session_stdio io;
  if (auto r = open_stdio(o, c, io); !r)
    co_return r.error();
  std::function<void(int)> on_exit = [st](int status) { st->on_exit(status); };
  auto started = co_await start_command(reaper, st->stack, c, std::move(on_exit), wait);
  if (!started)
    co_return started.error();
  st->cmd = *started;

  if (o.stdio == exec_stdio::passed) {
    // Nothing pumped: the caller takes the descriptors; the session waits
    // for the exit (read() gives `exited` once there are no sources).
    st->passed = true;
    if (o.tty) {
      st->passed_fds.pty_fd = io.our_out.release();  // our_in (its dup) closes here
    } else {
      st->passed_fds.stdin_fd = io.our_in.release();
      st->passed_fds.stdout_fd = io.our_out.release();
      st->passed_fds.stderr_fd = io.our_err.release();
    }
    out = st;
    co_return exec_session(st);
  }
  if (o.tty)
    st->master = io.our_out.fd;
  st->sources.emplace_back(st->ex, exec_stream::stdout_stream);
  st->sources.back().fd.assign(io.our_out.release());
  if (!o.tty) {
    st->sources.emplace_back(st->ex, exec_stream::stderr_stream);
    st->sources.back().fd.assign(io.our_err.release());
  }
  st->in.emplace(st->ex, io.our_in.release());
  auto rethrow = [](const std::exception_ptr& e) {
    if (e)
      std::rethrow_exception(e);
  };
  for (auto& s : st->sources)
    asio::co_spawn(st->ex, exec_session::state::pump(st, s), rethrow);
  asio::co_spawn(st->ex, exec_session::state::feed(st), rethrow);
  out = st;
  co_return exec_session(st);
}

}  // namespace taskexec
