// Internal: what the parts of rpc::server share. The server (server.cpp)
// owns one `state`: the listener, the connections (connection.hpp), the
// event journal, the heap trim, and what methods keep between calls (Stats
// schedules: stats_subscriptions.cpp; exec sessions: exec_sessions.cpp).
// What a method does is in the method table (methods.hpp).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "taskexec/exec_session.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/rpc/journal.hpp"
#include "taskexec/rpc/message.hpp"
#include "taskexec/rpc/server.hpp"
#include "taskexec/stats.hpp"

namespace taskexec::rpc {
namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;

inline void log(log_level l, const std::string& msg) {
  detail::log(l, "rpc", "", "", msg);
}

/// A method's answer: its result, or the error to send.
using outcome = std::variant<json::value, rpc_error>;

/// What the Metrics method reports (docs/protocol.md "Metrics"): counters
/// since the server started, kept on the io_context's thread.
struct server_metrics {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::uint64_t connections_total = 0;    // accepted (refused ones too)
  std::uint64_t connections_refused = 0;  // peer not allowed, or too many
  struct method_counts {
    std::uint64_t calls = 0, errors = 0;
  };
  // By method name: the table's names only, plus "(unknown)" for a method
  // the daemon has not and "(invalid)" for what was not a request; a client
  // cannot grow it.
  std::map<std::string, method_counts, std::less<>> requests;
  // By limit ("connections", "pending", "exec_sessions", "stats_subscriptions",
  // "stats_intervals", "message_bytes", "batch").
  std::map<std::string, std::uint64_t, std::less<>> limits_hit;
  std::uint64_t stats_samples_sent = 0;
  std::uint64_t stats_samples_dropped = 0;  // to a client that did not read
  std::uint64_t stats_ticks_late = 0;       // a tick later than an interval
  std::uint64_t stats_ticks_deferred = 0;   // waited for a fresher reading
  // Logged at info with the limit as a field, at most once a minute per
  // limit (a client can hit one at will), saying how many were not logged.
  log_throttle limit_lines{std::chrono::minutes(1)};
  void note_limit(std::string_view limit);
  // A request of a method that may wait, refused by the pending limit.
  void note_refused(std::string_view method) {
    auto& n = requests[std::string(method)];
    ++n.calls;
    ++n.errors;
  }
  void note_invalid() {
    auto& n = requests["(invalid)"];
    ++n.calls;
    ++n.errors;
  }
};

/// -32010: a limit of the daemon was reached; data.limit is the limit.
/// `name` is the limit's key in Metrics.limits_hit, counted in `m`.
rpc_error limit_error(server_metrics& m, std::string_view name, std::string what,
                      std::size_t limit);

// An exec session served on a connection; its pump's cancellation ends it.
struct session_entry {
  explicit session_entry(exec_session s) : session(std::move(s)) {}
  exec_session session;
  asio::cancellation_signal cancel;
  bool passed = false;  // "fds": the client has the descriptors
};

struct server::state : std::enable_shared_from_this<server::state> {
  state(const asio::any_io_executor& e, task_executor& t) : ex(e), task(t) {}
  asio::any_io_executor ex;
  task_executor& task;
  std::optional<local::acceptor> acceptor;
  std::map<connection*, std::shared_ptr<connection>> connections;
  bool stopping = false;
  bool adopted = false;  // socket activation: the socket file is not ours to remove
  bool destroy_requested = false;
  std::optional<server_options> options;  // a copy: outlives the server while calls run
  std::function<void()> on_drained;
  event_journal journal;
  server_metrics metrics;
  // Lines a peer can cause at will are rate limited: a refused peer is
  // logged once a minute per uid, a failing accept (EMFILE) once a minute
  // per errno, each with how many were not logged.
  log_throttle refusals{std::chrono::minutes(1)};
  log_throttle accept_errors{std::chrono::minutes(1)};
  std::uint64_t accept_failures = 0;  // in a row, until an accept works again
  // Bytes received or queued to send since the heap was last trimmed. After
  // a burst, freed memory stays in malloc's free lists; once connections go
  // idle it is given back (malloc_trim), once they have stayed idle for a
  // second (at most once a second). Answers count too: a client that never
  // reads has up to 1 MiB of them queued, freed only when it goes away.
  std::size_t churn = 0;
  bool trim_armed = false;
  std::chrono::steady_clock::time_point trim_due{};
  std::optional<asio::steady_timer> trim_timer;
  void note_idle();
  void arm_trim();

  // A Stats schedule's watch of the task's exit.
  struct exit_watch {
    asio::steady_timer timer;
    asio::cancellation_signal stop;
    bool exited = false;
    explicit exit_watch(const asio::any_io_executor& ex) : timer(ex) {}
  };
  static asio::awaitable<void> watch_exit(std::shared_ptr<state> self,
                                          std::shared_ptr<exit_watch> watch);
  // Stats sampling, bounded whatever the subscriptions: those of one
  // interval share a schedule that takes one sample per tick and sends it
  // to each of them; every schedule uses the same readings of the task (one
  // younger than min_reading_gap is used again, not read anew); at most
  // max_schedules distinct intervals at once.
  static constexpr std::size_t max_schedules = 16;
  static constexpr std::chrono::milliseconds min_reading_gap{10};
  struct stats_schedule;
  std::map<std::int64_t, std::shared_ptr<stats_schedule>> schedules;  // by interval (ms)
  std::optional<usage_sampler> sampler;
  std::shared_ptr<const usage_reading> last_reading;
  std::shared_ptr<const usage_reading> reading();
  std::shared_ptr<stats_schedule> schedule_for(std::int64_t interval_ms);
  static asio::awaitable<void> run_schedule(std::shared_ptr<state> self,
                                            std::shared_ptr<stats_schedule> s);
  void start_subscription(const std::weak_ptr<connection>& conn, const std::string& id,
                          std::int64_t interval_ms);
  void leave_schedule(std::int64_t interval_ms, const std::string& id);
  void end_schedule(stats_schedule& s);
  // Events followers (event_followers.cpp): each new event of the journal
  // goes to every started follower; one starts (catching up from the
  // journal) once its answer is queued; all end when the server stops.
  void deliver_event(const json::object& event);
  void start_follower(const std::weak_ptr<connection>& conn, const std::string& id);
  void end_followers(std::string_view reason);
  std::uint64_t next_follower = 1;
  std::uint64_t next_subscription = 1;
  std::uint64_t next_session = 1;
  static asio::awaitable<void> run_session(std::shared_ptr<state> self,
                                           std::weak_ptr<connection> conn, std::string id,
                                           std::shared_ptr<session_entry> entry);
  void connection_closed(connection* c);
};

}  // namespace taskexec::rpc
