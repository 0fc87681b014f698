// exec_session: an interactive command inside a running task (Nomad's
// ExecStreaming), started by task_executor::exec_streaming.
//
// The command runs in the task's context exactly as task_executor::exec's
// does (user, groups, environment, working directory, cgroup; a container
// task's namespaces, root and capabilities), in a session of its own. Its
// stdio is either three pipes (stdout and stderr come back apart) or, with
// `tty`, a new pseudo-terminal that is the session's controlling terminal
// (stdout and stderr come back merged as "stdout", as a terminal shows them).
//
// Output: read() hands out what the command wrote, in order, in pieces of at
// most exec_event::max_data bytes (what has arrived, merged), then one closing chunk per
// stream, then one `exited` event with the exit code (128+N when signal N
// killed the command); after that read() returns the same `exited` event
// again. When the command exits, what it had written is still delivered;
// what processes it left behind write more than 100 ms after its exit is
// not, and they do not hold the session open (a tty session ends when its
// command does, whoever keeps the terminal open).
//
// Passed stdio (exec_session_options::stdio = exec_stdio::passed): the
// session creates the same pipes or terminal, and the caller takes its ends
// with take_stdio() and does its own I/O; read() then gives only the
// `exited` event, once the command exited; write(), close_stdin() and
// resize() are errc::unsupported (write, close, or TIOCSWINSZ the
// descriptors instead). Descriptors never taken close with the session.
//
// Backpressure: at most 64 KiB of output wait for read(); beyond that the
// session stops reading the command's output and the command blocks in its
// writes. At most 1 MiB of input (exec_session_options::max_queued_input)
// waits to be written to the command's stdin: write() puts its data in as
// room appears and suspends until the last of it is in, so a write larger
// than the bound never queues more than the bound. Memory per session stays
// bounded whatever the command or the caller do.
//
// Ending: the session ends when the command exits, when kill() is called
// (the command, its session and its descendants are SIGKILLed; the exit
// code reads 137), when the task exits or its executor is destroyed (the
// same kill), or when the exec_session is destroyed before its command
// exited (the same kill; nothing is left running and everything is reaped).
//
// Cancellation: read() and write() support terminal cancellation through
// the awaiting coroutine's cancellation slot; they then return
// errc::operation_canceled and the session goes on.
//
// Threads: the session's state lives on the child_reaper's strand. read()
// and write() may be awaited from any thread of the io_context (their work
// runs on the strand, the caller resumes on its own executor); kill(),
// close_stdin() and the destructor post their work to the strand (or do it
// at once when called on it). resize() acts at once: call it on the strand
// or from one thread at a time with no other call in flight. One
// exec_session object is not to be used from two threads at once.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "taskexec/async.hpp"
#include "taskexec/error.hpp"

namespace taskexec {

/// How a session's stdio reaches whoever started it.
enum class exec_stdio {
  /// exec_session: `pumped`. remote_executor: `passed` (a Unix socket is
  /// always on the same host), falling back to `pumped` with a daemon that
  /// does not know ExecStreaming.Start's `fds`.
  automatic,
  /// read() and write() carry the bytes (remotely: ExecStreaming.Output and
  /// .Input, base64 in JSON: any client, any language).
  pumped,
  /// The descriptors themselves: exec_session::take_stdio() (remotely the
  /// daemon sends them over the socket with SCM_RIGHTS, `"fds": true`);
  /// read() gives only the `exited` event.
  passed,
};

/// The descriptors of a session started with exec_stdio::passed, owned
/// (closed on destruction). Pipes: stdin_fd (write end), stdout_fd and
/// stderr_fd (read ends). With a tty: pty_fd, the terminal's master (read
/// its output, write its input), and nothing else. Blocking; close-on-exec.
class exec_stdio_fds {
 public:
  exec_stdio_fds() noexcept = default;
  exec_stdio_fds(exec_stdio_fds&& o) noexcept { *this = std::move(o); }
  exec_stdio_fds& operator=(exec_stdio_fds&& o) noexcept;
  exec_stdio_fds(const exec_stdio_fds&) = delete;
  exec_stdio_fds& operator=(const exec_stdio_fds&) = delete;
  ~exec_stdio_fds() { reset(); }
  /// Close what is held.
  void reset() noexcept;
  bool empty() const noexcept {
    return stdin_fd < 0 && stdout_fd < 0 && stderr_fd < 0 && pty_fd < 0;
  }
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int pty_fd = -1;
};

/// A terminal's size in character cells.
struct tty_size {
  std::uint16_t height = 0;  ///< rows
  std::uint16_t width = 0;   ///< columns
  friend bool operator==(const tty_size&, const tty_size&) = default;
};

struct exec_session_options {
  std::string cmd;                ///< looked up as for exec()
  std::vector<std::string> args;  ///< argv[1..]
  bool tty = false;               ///< a pseudo-terminal instead of pipes
  tty_size size{};                ///< the terminal's initial size (tty only; 0: unset)
  /// At most this many bytes of input wait to be written to the command's
  /// stdin (besides what the kernel's pipe or terminal holds); a write()
  /// of more puts its data in as room appears. 0 counts as 1.
  std::size_t max_queued_input = default_max_queued_input;
  static constexpr std::size_t default_max_queued_input = 1024 * 1024;
  /// Pumped by the session (read(), write()), or passed to the caller.
  exec_stdio stdio = exec_stdio::automatic;
};

enum class exec_stream { stdout_stream, stderr_stream };

/// One event of a session, in order.
struct exec_event {
  enum class type { output, exited };
  type kind = type::output;
  exec_stream stream = exec_stream::stdout_stream;  ///< output: which stream
  std::string data;     ///< output: 1..max_data bytes; empty in the closing chunk
  bool closed = false;  ///< output: the stream's last chunk; nothing more of it follows
  int exit_code = 0;    ///< exited: the exit status, or 128+signal
  static constexpr std::size_t max_data = 64 * 1024;
};

class exec_session {
 public:
  /// An empty session, as a moved-from one (what a failed
  /// async_exec_streaming completes with): only assign to it or destroy it.
  exec_session() noexcept = default;
  exec_session(exec_session&&) noexcept;
  /// Ends the replaced session first, as the destructor does.
  exec_session& operator=(exec_session&&) noexcept;
  /// Kills the command (and everything it started) if it still runs.
  ~exec_session();

  /// The next event (see above). errc::operation_canceled on cancellation.
  boost::asio::awaitable<result<exec_event>> read();

  /// Queue `data` for the command's stdin (errc::unsupported with
  /// exec_stdio::passed, as close_stdin() and resize()), in pieces as room appears below
  /// max_queued_input; completes once the last piece is queued. Writes are
  /// queued in call order. Input the command can no longer read (it closed
  /// its stdin, or exited) is discarded. errc::invalid_argument after
  /// close_stdin(). A write cancelled after its turn came may have queued a
  /// first part of its data (which is then written); the rest is dropped.
  boost::asio::awaitable<result<void>> write(std::string data);

  /// End the input once what is queued is written: the pipe is closed; with
  /// a tty the terminal's end-of-file character (^D unless the command
  /// changed it) is sent instead, as a user at a terminal does. Idempotent.
  result<void> close_stdin();

  /// Resize the terminal (the command gets SIGWINCH). errc::invalid_argument
  /// without a tty or for a zero size.
  result<void> resize(tty_size size);

  /// exec_stdio::passed: the command's descriptors, once (then empty). The
  /// session keeps none: it only waits for the command's exit.
  exec_stdio_fds take_stdio() noexcept;

  /// SIGKILL the command, its session and its descendants (once it has
  /// exited, nothing). The session still ends with its events.
  void kill() noexcept;

  /// The command's pid (in a private PID namespace: its taskexec-init's).
  int pid() const noexcept;
  bool tty() const noexcept;
  /// The executor the session's I/O runs on (its task_executor's).
  boost::asio::any_io_executor get_executor() const;

  // ---- Completion tokens (async.hpp) ----------------------------------
  // async_read: `void(error_code, exec_event)`; cancellation terminal,
  // partial, total: no event is consumed, the session goes on.
  // async_write: `void(error_code)`; cancellation terminal, partial: a
  // write cancelled after its turn came may have queued a first part of its
  // data (which is then written), the rest is dropped; the session goes on.
  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_read(Token&& token = {}) {
    return detail::async_initiate_erased<exec_event>(
        std::forward<Token>(token),
        [this](detail::async_handler<exec_event> h) { async_read_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_read(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<exec_event>(
        std::forward<Token>(token), [this, d = &diag](detail::async_handler<exec_event> h) {
          async_read_impl(std::move(h), d);
        });
  }
  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_write(std::string data, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, b = std::move(data)](detail::async_handler<void> h) mutable {
          async_write_impl(std::move(b), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_write(std::string data, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, b = std::move(data), d = &diag](detail::async_handler<void> h) mutable {
          async_write_impl(std::move(b), std::move(h), d);
        });
  }

  struct state;  // opaque

 private:
  friend struct exec_session_access;
  explicit exec_session(std::shared_ptr<state> s);
  void end() noexcept;
  // Compiled in async_ops.cpp.
  void async_read_impl(detail::async_handler<exec_event> h, diagnostics* diag);
  void async_write_impl(std::string data, detail::async_handler<void> h, diagnostics* diag);
  std::shared_ptr<state> state_;
};

}  // namespace taskexec
