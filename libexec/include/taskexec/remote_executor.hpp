// remote_executor: the task_executor API over a taskexecd socket, and the
// way an agent starts a daemon and finds it again after a restart.
//
//   auto created = co_await create_executor(ex, {.socket_path = "/run/t/1.sock"});
//   auto& exe = created->client;                 // a connected remote_executor
//   save(to_json(created->config));              // {socket, pid, pid_start_time}
//   co_await exe.launch(cmd);
//   ... the agent restarts ...
//   auto exe2 = co_await reattach_to_executor(ex, *parse_reattach_config(saved));
//   auto state = co_await exe2->wait();          // the exit status was kept
//
// Errors: every call returns result<T>. A JSON-RPC error from the daemon is
// mapped back to the errc the embedded executor would give (see
// from_rpc_error below) with the daemon's message; a lost connection is
// errc::connection_failed ("connection to taskexecd lost"); a response that
// does not follow docs/protocol.md is errc::protocol_error.
//
// Concurrency: calls on one remote_executor may be outstanding at once (a
// pending wait() does not hold up version() or signal()); they share one
// connection and responses are matched by id. Use from the thread running
// the io_context; none of this is thread-safe.
//
// Cancellation: every call supports terminal cancellation through the
// awaiting coroutine's cancellation slot; it then returns
// errc::operation_canceled at once. The request may already be with the
// daemon, which carries it out regardless (a cancelled shutdown() goes on);
// its late response is dropped.
//
// Awaitables are lazy: the remote_executor must outlive each awaitable it
// returns (parameters are taken by value, so they need not).
//
// Lifetime: destroying (or close()-ing) a remote_executor closes the
// connection and completes its pending calls with errc::connection_failed.
// It never touches the task: the daemon and its task outlive every client.
// Its stats streams then end with errc::connection_failed.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "taskexec/async.hpp"
#include "taskexec/error.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/task_executor.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// What an agent saves to find its daemon again. The start time (field 22 of
/// /proc/<pid>/stat, in clock ticks since boot) tells a live daemon from a
/// process that got its pid later.
struct reattach_config {
  std::string socket;
  int pid = 0;
  std::uint64_t pid_start_time = 0;
  /// The daemon's exit file (taskexecd --exit-dir: its handshake names it),
  /// or empty: where reattach_to_executor learns how the task ended once
  /// the daemon is gone.
  std::string exit_file;

  friend bool operator==(const reattach_config&, const reattach_config&) = default;
};

/// {"socket":"...","pid":N,"pid_start_time":N}, and "exit_file":"..." when set.
std::string to_json(const reattach_config& config);
/// Strict: every field required (exit_file optional: an absolute path of at
/// most 4096 bytes), nothing else allowed; errc::invalid_argument naming the
/// field otherwise.
result<reattach_config> parse_reattach_config(std::string_view json_text);

/// taskexecd's handshake line,
/// {"protocol":"taskexec-jsonrpc","version":"...","socket":"...","pid":N}:
/// the daemon's pid. errc::protocol_error when it is not one.
result<int> parse_handshake(std::string_view line);
/// The handshake's "exit_file" (taskexecd --exit-dir), or empty.
std::string handshake_exit_file(std::string_view line);

/// One page of the daemon's event journal.
struct event_page {
  std::vector<boost::json::object> events;  ///< {seq, time_unix_nano, type, ...}
  std::uint64_t next = 0;                   ///< pass as `since` to get what follows
  bool more = false;  ///< more events are kept after this page: ask again from `next`
  std::uint64_t dropped =
      0;  ///< seqs from `since` up to `next` the bounded journal no longer holds
};

class stats_stream;
class event_stream;
class remote_exec_session;

/// Whom a client trusts to be its daemon. Before a client sends a byte, the
/// server's uid (SO_PEERCRED of the socket: who listens on it) must be root,
/// the client's own effective uid, or `expect_uid`: anyone else may have put
/// a socket of their own at the path, and a Launch (with secrets in its
/// environment) would go to them.
struct connect_options {
  /// A further uid the daemon may run as (a daemon of another user).
  std::optional<unsigned> expect_uid;
};

class remote_executor {
 public:
  /// Connect to the daemon at `socket_path`, check who serves it (see
  /// connect_options) and its Version (the major version must be ours).
  /// errc::connection_failed when nothing listens, and when the socket is
  /// served by a uid not trusted ("socket S is served by uid N, expected
  /// root or uid M"; nothing was sent then), errc::permission_denied when
  /// the daemon refuses our uid, errc::protocol_error when the peer does not
  /// speak taskexec-jsonrpc 2.
  static boost::asio::awaitable<result<remote_executor>> connect(boost::asio::any_io_executor ex,
                                                                 std::string socket_path,
                                                                 connect_options options = {});

  /// An empty client, as a moved-from one (what a failed async_connect
  /// completes with): not connected; only assign to it or destroy it.
  remote_executor() noexcept = default;

  /// A client of a daemon that is gone, which knows how its task ended
  /// (read from its exit file): wait() and wait_for() return `state`,
  /// every other call errc::connection_failed; connected() is false.
  static remote_executor from_exit_state(const boost::asio::any_io_executor& ex,
                                         std::string socket_path, int daemon_pid,
                                         process_state state);

  remote_executor(remote_executor&&) noexcept;
  remote_executor& operator=(remote_executor&&) noexcept;
  ~remote_executor();

  boost::asio::awaitable<result<process_state>> launch(exec_command cmd);
  /// Until the task exits (the daemon keeps the status until destroy()).
  boost::asio::awaitable<result<process_state>> wait();
  /// As wait(), giving up with errc::timed_out after `timeout`.
  boost::asio::awaitable<result<process_state>> wait_for(std::chrono::milliseconds timeout);
  boost::asio::awaitable<result<void>> signal(int signo);
  /// By name: "SIGUSR1" or "USR1".
  boost::asio::awaitable<result<void>> signal(std::string signal_name);
  boost::asio::awaitable<result<void>> shutdown(
      std::string signal_name = "SIGINT",
      std::chrono::milliseconds grace = std::chrono::milliseconds{5000});
  /// Kill the task if it still runs, and end the daemon (which closes this
  /// connection once it has answered).
  boost::asio::awaitable<result<void>> destroy();
  /// New limits for the running task's cgroup (UpdateResources).
  boost::asio::awaitable<result<void>> update_resources(task_resources resources);
  boost::asio::awaitable<result<std::string>> version();
  /// The daemon's counters (Metrics, docs/protocol.md), as the daemon sent
  /// them; openmetrics::from_daemon_metrics turns them into text.
  boost::asio::awaitable<result<boost::json::object>> metrics();
  /// One page of the journal from `since` on (0: from the oldest kept): at
  /// most `limit` events (0: the daemon's default, 256; at most 1024) and
  /// 64 KiB of them. While `more`, ask again from `next`.
  boost::asio::awaitable<result<event_page>> events(std::uint64_t since = 0, std::size_t limit = 0);
  /// Follow the journal (Events with follow): the kept events from `since`
  /// on, then each new one as the daemon records it (see event_stream).
  boost::asio::awaitable<result<event_stream>> follow_events(std::uint64_t since = 0);
  /// Subscribe to resource usage samples every `interval` (first at once).
  boost::asio::awaitable<result<stats_stream>> stats(
      std::chrono::milliseconds interval = std::chrono::milliseconds{1000});
  /// Exec: run a command in the task's context and return its output (the
  /// last 4096 bytes, exactly as written: the daemon's `output_base64`) and
  /// exit code. A timeout is errc::timed_out with the
  /// daemon's message (the command was killed); 0 means none.
  boost::asio::awaitable<result<exec_result>> exec(
      std::string cmd, std::vector<std::string> args,
      std::chrono::milliseconds timeout = std::chrono::milliseconds{60000});
  /// ExecStreaming: an interactive session of a command in the task's
  /// context (see remote_exec_session).
  boost::asio::awaitable<result<remote_exec_session>> exec_streaming(exec_session_options options);
  /// Any method, raw: the result member, or the error mapped as above.
  boost::asio::awaitable<result<boost::json::value>> call(std::string method,
                                                          boost::json::value params = nullptr);

  /// The daemon's pid as the kernel reports it for the socket (SO_PEERCRED).
  int daemon_pid() const noexcept;
  const std::string& socket_path() const noexcept;
  /// False once the connection is closed or lost.
  bool connected() const noexcept;
  /// Close the connection; pending calls complete with connection_failed.
  void close() noexcept;
  /// The executor of the connection (the one given to connect()); empty for
  /// an empty client.
  boost::asio::any_io_executor get_executor() const;

  // ---- Completion tokens (async.hpp) ----------------------------------
  // Each call above as `async_*(args..., token)`, default token
  // asio::deferred, completing with `void(error_code, T)` or
  // `void(error_code)`; an overload with `diagnostics&` before the token
  // also returns the error's message (the daemon's). The work runs on
  // get_executor(). Cancellation: a cancelled call completes with
  // errc::operation_canceled at once and the connection stays usable; the
  // request may already be with the daemon, which carries it out
  // regardless (its late response is dropped). So calls that change the
  // task (launch, signal, shutdown, destroy, update_resources, exec,
  // exec_streaming, stats, call, connect) honour terminal and partial
  // cancellation; those that only read (wait, wait_for, version, metrics,
  // events) honour terminal, partial and total.
  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  static auto async_connect(boost::asio::any_io_executor ex, std::string socket_path,
                            connect_options options, Token&& token = {}) {
    return detail::async_initiate_erased<remote_executor>(
        std::forward<Token>(token),
        [ex_ = std::move(ex), socket_path_ = std::move(socket_path),
         options_ = options](detail::async_handler<remote_executor> h) mutable {
          async_connect_impl(std::move(ex_), std::move(socket_path_), options_, std::move(h),
                             nullptr);
        });
  }
  template <class Token = default_completion_token>
  static auto async_connect(boost::asio::any_io_executor ex, std::string socket_path,
                            connect_options options, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<remote_executor>(
        std::forward<Token>(token),
        [ex_ = std::move(ex), socket_path_ = std::move(socket_path), options_ = options,
         d = &diag](detail::async_handler<remote_executor> h) mutable {
          async_connect_impl(std::move(ex_), std::move(socket_path_), options_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_launch(exec_command cmd, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this, cmd_ = std::move(cmd)](detail::async_handler<process_state> h) mutable {
          async_launch_impl(std::move(cmd_), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_launch(exec_command cmd, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this, cmd_ = std::move(cmd), d = &diag](detail::async_handler<process_state> h) mutable {
          async_launch_impl(std::move(cmd_), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_wait(Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this](detail::async_handler<process_state> h) { async_wait_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_wait(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token), [this, d = &diag](detail::async_handler<process_state> h) {
          async_wait_impl(std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_wait_for(std::chrono::milliseconds timeout, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this, timeout_ = timeout](detail::async_handler<process_state> h) {
          async_wait_for_impl(timeout_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_wait_for(std::chrono::milliseconds timeout, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this, timeout_ = timeout, d = &diag](detail::async_handler<process_state> h) {
          async_wait_for_impl(timeout_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_signal(int signo, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, signo_ = signo](detail::async_handler<void> h) {
          async_signal_impl(signo_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_signal(int signo, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, signo_ = signo, d = &diag](detail::async_handler<void> h) {
          async_signal_impl(signo_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_signal(std::string signal_name, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, signal_name_ = std::move(signal_name)](detail::async_handler<void> h) mutable {
          async_signal_impl(std::move(signal_name_), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_signal(std::string signal_name, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, signal_name_ = std::move(signal_name),
                                     d = &diag](detail::async_handler<void> h) mutable {
          async_signal_impl(std::move(signal_name_), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_shutdown(std::string signal_name, std::chrono::milliseconds grace,
                      Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, signal_name_ = std::move(signal_name),
                                     grace_ = grace](detail::async_handler<void> h) mutable {
          async_shutdown_impl(std::move(signal_name_), grace_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_shutdown(std::string signal_name, std::chrono::milliseconds grace, diagnostics& diag,
                      Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, signal_name_ = std::move(signal_name), grace_ = grace,
                                     d = &diag](detail::async_handler<void> h) mutable {
          async_shutdown_impl(std::move(signal_name_), grace_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_destroy(Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this](detail::async_handler<void> h) { async_destroy_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_destroy(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<void> h) { async_destroy_impl(std::move(h), d); });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_update_resources(task_resources resources, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, resources_ = std::move(resources)](detail::async_handler<void> h) mutable {
          async_update_resources_impl(std::move(resources_), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_update_resources(task_resources resources, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, resources_ = std::move(resources),
                                     d = &diag](detail::async_handler<void> h) mutable {
          async_update_resources_impl(std::move(resources_), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_version(Token&& token = {}) {
    return detail::async_initiate_erased<std::string>(std::forward<Token>(token),
                                                      [this](detail::async_handler<std::string> h) {
                                                        async_version_impl(std::move(h), nullptr);
                                                      });
  }
  template <class Token = default_completion_token>
  auto async_version(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<std::string>(
        std::forward<Token>(token), [this, d = &diag](detail::async_handler<std::string> h) {
          async_version_impl(std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_metrics(Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::object>(
        std::forward<Token>(token), [this](detail::async_handler<boost::json::object> h) {
          async_metrics_impl(std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_metrics(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::object>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<boost::json::object> h) {
          async_metrics_impl(std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_events(std::uint64_t since, std::size_t limit, Token&& token = {}) {
    return detail::async_initiate_erased<event_page>(
        std::forward<Token>(token),
        [this, since_ = since, limit_ = limit](detail::async_handler<event_page> h) {
          async_events_impl(since_, limit_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_events(std::uint64_t since, std::size_t limit, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<event_page>(
        std::forward<Token>(token),
        [this, since_ = since, limit_ = limit, d = &diag](detail::async_handler<event_page> h) {
          async_events_impl(since_, limit_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_stats(std::chrono::milliseconds interval, Token&& token = {}) {
    return detail::async_initiate_erased<stats_stream>(
        std::forward<Token>(token),
        [this, interval_ = interval](detail::async_handler<stats_stream> h) {
          async_stats_impl(interval_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_stats(std::chrono::milliseconds interval, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<stats_stream>(
        std::forward<Token>(token),
        [this, interval_ = interval, d = &diag](detail::async_handler<stats_stream> h) {
          async_stats_impl(interval_, std::move(h), d);
        });
  }

  // async_follow_events honours terminal and partial cancellation (a
  // follower the daemon opened meanwhile is ended, as by the destructor).
  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_follow_events(std::uint64_t since, Token&& token = {}) {
    return detail::async_initiate_erased<event_stream>(
        std::forward<Token>(token), [this, since_ = since](detail::async_handler<event_stream> h) {
          async_follow_events_impl(since_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_follow_events(std::uint64_t since, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<event_stream>(
        std::forward<Token>(token),
        [this, since_ = since, d = &diag](detail::async_handler<event_stream> h) {
          async_follow_events_impl(since_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_exec(std::string cmd, std::vector<std::string> args, std::chrono::milliseconds timeout,
                  Token&& token = {}) {
    return detail::async_initiate_erased<exec_result>(
        std::forward<Token>(token),
        [this, cmd_ = std::move(cmd), args_ = std::move(args),
         timeout_ = timeout](detail::async_handler<exec_result> h) mutable {
          async_exec_impl(std::move(cmd_), std::move(args_), timeout_, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_exec(std::string cmd, std::vector<std::string> args, std::chrono::milliseconds timeout,
                  diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<exec_result>(
        std::forward<Token>(token),
        [this, cmd_ = std::move(cmd), args_ = std::move(args), timeout_ = timeout,
         d = &diag](detail::async_handler<exec_result> h) mutable {
          async_exec_impl(std::move(cmd_), std::move(args_), timeout_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_exec_streaming(exec_session_options options, Token&& token = {}) {
    return detail::async_initiate_erased<remote_exec_session>(
        std::forward<Token>(token), [this, options_ = std::move(options)](
                                        detail::async_handler<remote_exec_session> h) mutable {
          async_exec_streaming_impl(std::move(options_), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_exec_streaming(exec_session_options options, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<remote_exec_session>(
        std::forward<Token>(token), [this, options_ = std::move(options), d = &diag](
                                        detail::async_handler<remote_exec_session> h) mutable {
          async_exec_streaming_impl(std::move(options_), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_call(std::string method, boost::json::value params, Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::value>(
        std::forward<Token>(token),
        [this, method_ = std::move(method),
         params_ = std::move(params)](detail::async_handler<boost::json::value> h) mutable {
          async_call_impl(std::move(method_), std::move(params_), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_call(std::string method, boost::json::value params, diagnostics& diag,
                  Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::value>(
        std::forward<Token>(token),
        [this, method_ = std::move(method), params_ = std::move(params),
         d = &diag](detail::async_handler<boost::json::value> h) mutable {
          async_call_impl(std::move(method_), std::move(params_), std::move(h), d);
        });
  }

  struct impl;  // opaque

 private:
  explicit remote_executor(std::shared_ptr<impl> p);
  // Compiled in async_ops.cpp.
  static void async_connect_impl(boost::asio::any_io_executor ex, std::string socket_path,
                                 connect_options options, detail::async_handler<remote_executor> h,
                                 diagnostics* diag);
  void async_launch_impl(exec_command cmd, detail::async_handler<process_state> h,
                         diagnostics* diag);
  void async_wait_impl(detail::async_handler<process_state> h, diagnostics* diag);
  void async_wait_for_impl(std::chrono::milliseconds timeout,
                           detail::async_handler<process_state> h, diagnostics* diag);
  void async_signal_impl(int signo, detail::async_handler<void> h, diagnostics* diag);
  void async_signal_impl(std::string signal_name, detail::async_handler<void> h, diagnostics* diag);
  void async_shutdown_impl(std::string signal_name, std::chrono::milliseconds grace,
                           detail::async_handler<void> h, diagnostics* diag);
  void async_destroy_impl(detail::async_handler<void> h, diagnostics* diag);
  void async_update_resources_impl(task_resources resources, detail::async_handler<void> h,
                                   diagnostics* diag);
  void async_version_impl(detail::async_handler<std::string> h, diagnostics* diag);
  void async_metrics_impl(detail::async_handler<boost::json::object> h, diagnostics* diag);
  void async_events_impl(std::uint64_t since, std::size_t limit,
                         detail::async_handler<event_page> h, diagnostics* diag);
  void async_follow_events_impl(std::uint64_t since, detail::async_handler<event_stream> h,
                                diagnostics* diag);
  void async_stats_impl(std::chrono::milliseconds interval, detail::async_handler<stats_stream> h,
                        diagnostics* diag);
  void async_exec_impl(std::string cmd, std::vector<std::string> args,
                       std::chrono::milliseconds timeout, detail::async_handler<exec_result> h,
                       diagnostics* diag);
  void async_exec_streaming_impl(exec_session_options options,
                                 detail::async_handler<remote_exec_session> h, diagnostics* diag);
  void async_call_impl(std::string method, boost::json::value params,
                       detail::async_handler<boost::json::value> h, diagnostics* diag);
  std::shared_ptr<impl> impl_;
  friend class stats_stream;
  friend class event_stream;
  friend class taskexec::remote_exec_session;
};

/// A session of ExecStreaming over the connection: the events of
/// exec_session (output chunks in order, one closing chunk per stream, then
/// `exited`) as the daemon's ExecStreaming.Output and .Exited notifications.
///
/// Backpressure: while 1 MiB of a session's output waits unread, the
/// connection reads nothing more from the daemon (which then stops reading
/// the command's output): read() the session, or other calls on the same
/// connection wait too.
///
/// Destroying it before `exited` was read ends the session on the daemon
/// (ExecStreaming.Cancel: the command is killed). When the connection is
/// lost, read() returns errc::connection_failed (the daemon kills the
/// command of a session whose client is gone).
class remote_exec_session {
 public:
  /// An empty session, as a moved-from one: only assign to it or destroy it.
  remote_exec_session() noexcept = default;
  remote_exec_session(remote_exec_session&&) noexcept;
  remote_exec_session& operator=(remote_exec_session&&) noexcept;
  ~remote_exec_session();

  /// The next event; after `exited`, `exited` again. connection_failed once
  /// the connection is gone, operation_canceled on cancellation.
  boost::asio::awaitable<result<exec_event>> read();
  /// Send `data` to the command's stdin (ExecStreaming.Input, in pieces of
  /// at most 1 MiB); completes when the daemon has queued it.
  boost::asio::awaitable<result<void>> write(std::string data);
  /// End the command's stdin (a tty gets its EOF character).
  boost::asio::awaitable<result<void>> close_stdin();
  /// Resize the session's terminal.
  boost::asio::awaitable<result<void>> resize(tty_size size);
  /// Kill the command (ExecStreaming.Cancel); its events still end the session.
  boost::asio::awaitable<result<void>> kill();

  const std::string& id() const noexcept;
  /// The command's pid (in a private PID namespace, its taskexec-init's).
  int pid() const noexcept;
  bool tty() const noexcept;
  /// The connection's executor; empty for an empty session.
  boost::asio::any_io_executor get_executor() const;

  // ---- Completion tokens (async.hpp) ----------------------------------
  // As remote_executor's: async_read honours terminal, partial and total
  // cancellation (no event is consumed); the others terminal and partial
  // (what was sent is carried out by the daemon).
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
        [this, data_ = std::move(data)](detail::async_handler<void> h) mutable {
          async_write_impl(std::move(data_), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_write(std::string data, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, data_ = std::move(data), d = &diag](detail::async_handler<void> h) mutable {
          async_write_impl(std::move(data_), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_close_stdin(Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this](detail::async_handler<void> h) { async_close_stdin_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_close_stdin(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(std::forward<Token>(token),
                                               [this, d = &diag](detail::async_handler<void> h) {
                                                 async_close_stdin_impl(std::move(h), d);
                                               });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_resize(tty_size size, Token&& token = {}) {
    return detail::async_initiate_erased<void>(std::forward<Token>(token),
                                               [this, size_ = size](detail::async_handler<void> h) {
                                                 async_resize_impl(size_, std::move(h), nullptr);
                                               });
  }
  template <class Token = default_completion_token>
  auto async_resize(tty_size size, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, size_ = size, d = &diag](detail::async_handler<void> h) {
          async_resize_impl(size_, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_kill(Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this](detail::async_handler<void> h) { async_kill_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_kill(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<void> h) { async_kill_impl(std::move(h), d); });
  }

  struct state;  // opaque

 private:
  friend class remote_executor;
  remote_exec_session(std::shared_ptr<remote_executor::impl> conn, std::shared_ptr<state> s);
  void end() noexcept;
  // Compiled in async_ops.cpp.
  void async_read_impl(detail::async_handler<exec_event> h, diagnostics* diag);
  void async_write_impl(std::string data, detail::async_handler<void> h, diagnostics* diag);
  void async_close_stdin_impl(detail::async_handler<void> h, diagnostics* diag);
  void async_resize_impl(tty_size size, detail::async_handler<void> h, diagnostics* diag);
  void async_kill_impl(detail::async_handler<void> h, diagnostics* diag);
  std::shared_ptr<remote_executor::impl> conn_;
  std::shared_ptr<state> state_;
};

/// Samples of one Stats subscription. Samples that arrive while nobody reads
/// are queued up to 64; older ones are then dropped (counted in dropped()).
class stats_stream {
 public:
  /// An empty stream, as a moved-from one: only assign to it or destroy it.
  stats_stream() noexcept = default;
  stats_stream(stats_stream&&) noexcept;
  /// Ends this stream's own subscription first, as the destructor does.
  stats_stream& operator=(stats_stream&&) noexcept;
  /// Ends the subscription on the daemon (Stats.Cancel, not awaited).
  ~stats_stream();

  /// The next `usage` object (TaskResourceUsage in docs/protocol.md);
  /// task_exited once the task has exited (Stats.End), connection_failed
  /// when the connection is gone, operation_canceled on cancellation of the
  /// awaiting coroutine or after cancel().
  boost::asio::awaitable<result<boost::json::object>> next();
  /// End the subscription and wait for the daemon's answer.
  boost::asio::awaitable<result<void>> cancel();
  const std::string& subscription() const noexcept;
  std::uint64_t dropped() const noexcept;
  /// The connection's executor; empty for an empty stream.
  boost::asio::any_io_executor get_executor() const;

  // ---- Completion tokens (async.hpp) ----------------------------------
  // async_next honours terminal, partial and total cancellation (no sample
  // is consumed; the subscription goes on); async_cancel terminal and
  // partial (the daemon ends the subscription regardless).
  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_next(Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::object>(
        std::forward<Token>(token), [this](detail::async_handler<boost::json::object> h) {
          async_next_impl(std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_next(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::object>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<boost::json::object> h) {
          async_next_impl(std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_cancel(Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this](detail::async_handler<void> h) { async_cancel_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_cancel(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<void> h) { async_cancel_impl(std::move(h), d); });
  }

  struct state;  // opaque

 private:
  friend class remote_executor;
  stats_stream(std::shared_ptr<remote_executor::impl> conn, std::shared_ptr<state> s);
  void end() noexcept;
  // Compiled in async_ops.cpp.
  void async_next_impl(detail::async_handler<boost::json::object> h, diagnostics* diag);
  void async_cancel_impl(detail::async_handler<void> h, diagnostics* diag);
  std::shared_ptr<remote_executor::impl> conn_;
  std::shared_ptr<state> state_;
};

/// The events of one Events follower, in seq order, each once (a seq the
/// bounded journal evicted before it was sent is skipped). Events that
/// arrive while nobody reads are queued, up to max_queued; past that the
/// stream ends (limit_reached) rather than lose one silently: follow again
/// from next_seq().
class event_stream {
 public:
  static constexpr std::size_t max_queued = 4096;

  /// An empty stream, as a moved-from one (what a failed
  /// async_follow_events completes with): only assign to it or destroy it.
  event_stream() noexcept = default;
  event_stream(event_stream&&) noexcept;
  /// Ends this stream's own follower first, as the destructor does.
  event_stream& operator=(event_stream&&) noexcept;
  /// Ends the follower on the daemon (Events.Cancel, not awaited).
  ~event_stream();

  /// The next event {seq, time_unix_nano, type, ...}. Errors: limit_reached
  /// when the daemon ended the stream because its client read too slowly
  /// (Events.End "overflow") or max_queued events waited here; task_destroyed
  /// when the daemon stopped (Events.End "stopping"); connection_failed when
  /// the connection is gone; operation_canceled on cancellation of the
  /// awaiting coroutine or after cancel(). After an error, the same again.
  boost::asio::awaitable<result<boost::json::object>> next();
  /// End the follower and wait for the daemon's answer.
  boost::asio::awaitable<result<void>> cancel();
  const std::string& subscription() const noexcept;
  /// The seq after the last event next() returned (or the first one due):
  /// `since` for a new follower that takes over where this one ended.
  std::uint64_t next_seq() const noexcept;
  /// The connection's executor; empty for an empty stream.
  boost::asio::any_io_executor get_executor() const;

  // ---- Completion tokens (async.hpp) ----------------------------------
  // async_next honours terminal, partial and total cancellation (no event
  // is consumed; the follower goes on); async_cancel terminal and partial
  // (the daemon ends the follower regardless).
  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_next(Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::object>(
        std::forward<Token>(token), [this](detail::async_handler<boost::json::object> h) {
          async_next_impl(std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_next(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<boost::json::object>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<boost::json::object> h) {
          async_next_impl(std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_cancel(Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this](detail::async_handler<void> h) { async_cancel_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_cancel(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<void> h) { async_cancel_impl(std::move(h), d); });
  }

  struct state;  // opaque

 private:
  friend class remote_executor;
  event_stream(std::shared_ptr<remote_executor::impl> conn, std::shared_ptr<state> s);
  void end() noexcept;
  // Compiled in async_ops.cpp.
  void async_next_impl(detail::async_handler<boost::json::object> h, diagnostics* diag);
  void async_cancel_impl(detail::async_handler<void> h, diagnostics* diag);
  std::shared_ptr<remote_executor::impl> conn_;
  std::shared_ptr<state> state_;
};

struct create_options {
  /// Required. The daemon creates it (mode 0600, missing directories 0700),
  /// and refuses a path that others than root and us could change
  /// (docs/protocol.md, Starting the daemon): e.g. not directly in /tmp.
  std::string socket_path;
  /// taskexecd to run; empty: $TASKEXECD, else taskexecd beside the running
  /// program (/proc/self/exe), else the first one on $PATH.
  std::string daemon_path;
  /// The daemon's log; empty: no log (its startup errors are still reported).
  std::string log_file;
  std::string log_level = "info";
  std::string log_format = "text";
  /// The grace the daemon gives the task when it is stopped by SIGTERM.
  std::chrono::milliseconds kill_grace{5000};
  /// The hostname of a container task (taskexecd --hostname); empty: the
  /// daemon's task id (its socket's absolute path).
  std::string hostname;
  std::vector<unsigned> allowed_uids;
  /// taskexecd --exit-dir: the task's exit state is written to
  /// <exit_dir>/<task_id>.json when it is reaped, and the reattach config
  /// names that file. Needs task_id. Empty: none.
  std::string exit_dir;
  /// taskexecd --task-id: the task's name (logs, cgroup, exit file); empty:
  /// the socket's absolute path.
  std::string task_id;
  /// How long the daemon may take to print its handshake.
  std::chrono::milliseconds handshake_timeout{5000};
};

struct created_executor {
  remote_executor client;
  reattach_config config;
};

/// Start taskexecd in a session of its own, detached from the caller (it
/// outlives it), read its handshake, connect. Failures: binary_not_found,
/// launch_failed with the daemon's own words when it exits before its
/// handshake ("socket ... is in use by a live daemon"), timed_out (the daemon
/// is then killed), plus connect()'s errors.
///
/// The daemon is a grandchild: the intermediate process exits at once. In a
/// process with a child_reaper in adopt_orphans mode (a subreaper), the
/// daemon is re-parented to this process; it is then watched by that
/// reaper, so it is reaped when it exits and never taken for a task's
/// orphan. With an exact-mode reaper (or none) the daemon goes to init.
boost::asio::awaitable<result<created_executor>> create_executor(boost::asio::any_io_executor ex,
                                                                 create_options options);

/// Find a daemon again: its pid must be alive with the saved start time, the
/// socket's peer must be a uid `options` trusts and that very pid
/// (SO_PEERCRED), and Version must answer. Any mismatch is
/// errc::reattach_refused naming it; nothing is ever signalled.
///
/// A daemon that is gone (its pid dead, or another process's) but left an
/// exit file (config.exit_file) written by that very daemon (its pid and
/// start time in the file match the config's): the result is a client that
/// is not connected, whose wait() and wait_for() return the recorded exit
/// state; every other call fails with errc::connection_failed. An exit file
/// that is missing, unreadable or another daemon's gives reattach_refused
/// as before, its reason appended.
boost::asio::awaitable<result<remote_executor>> reattach_to_executor(
    boost::asio::any_io_executor ex, reattach_config config, connect_options options = {});

/// create_executor and reattach_to_executor with a completion token
/// (async.hpp), run on `ex`: `void(error_code, created_executor)` and
/// `void(error_code, remote_executor)`. Cancellation: terminal and partial;
/// a daemon create_executor started is killed when its handshake is
/// abandoned (as on timeout); nothing is signalled by a reattach.
void async_create_executor_impl(boost::asio::any_io_executor ex, create_options options,
                                detail::async_handler<created_executor> h, diagnostics* diag);
void async_reattach_to_executor_impl(boost::asio::any_io_executor ex, reattach_config config,
                                     connect_options options,
                                     detail::async_handler<remote_executor> h, diagnostics* diag);

template <class Token = default_completion_token>
requires detail::async_token<Token>
auto async_create_executor(boost::asio::any_io_executor ex, create_options options,
                           Token&& token = {}) {
  return detail::async_initiate_erased<created_executor>(
      std::forward<Token>(token), [ex_ = std::move(ex), options_ = std::move(options)](
                                      detail::async_handler<created_executor> h) mutable {
        async_create_executor_impl(std::move(ex_), std::move(options_), std::move(h), nullptr);
      });
}
template <class Token = default_completion_token>
auto async_create_executor(boost::asio::any_io_executor ex, create_options options,
                           diagnostics& diag, Token&& token = {}) {
  return detail::async_initiate_erased<created_executor>(
      std::forward<Token>(token), [ex_ = std::move(ex), options_ = std::move(options),
                                   d = &diag](detail::async_handler<created_executor> h) mutable {
        async_create_executor_impl(std::move(ex_), std::move(options_), std::move(h), d);
      });
}

template <class Token = default_completion_token>
requires detail::async_token<Token>
auto async_reattach_to_executor(boost::asio::any_io_executor ex, reattach_config config,
                                connect_options options, Token&& token = {}) {
  return detail::async_initiate_erased<remote_executor>(
      std::forward<Token>(token),
      [ex_ = std::move(ex), config_ = std::move(config),
       options_ = options](detail::async_handler<remote_executor> h) mutable {
        async_reattach_to_executor_impl(std::move(ex_), std::move(config_), options_, std::move(h),
                                        nullptr);
      });
}
template <class Token = default_completion_token>
auto async_reattach_to_executor(boost::asio::any_io_executor ex, reattach_config config,
                                connect_options options, diagnostics& diag, Token&& token = {}) {
  return detail::async_initiate_erased<remote_executor>(
      std::forward<Token>(token),
      [ex_ = std::move(ex), config_ = std::move(config), options_ = options,
       d = &diag](detail::async_handler<remote_executor> h) mutable {
        async_reattach_to_executor_impl(std::move(ex_), std::move(config_), options_, std::move(h),
                                        d);
      });
}

/// The errc for a JSON-RPC error code from taskexecd (-32001 not_launched,
/// -32003 task_exited, -32004 launch_failed, -32602 invalid_argument, ...).
errc from_rpc_error(std::int64_t code) noexcept;

}  // namespace taskexec
