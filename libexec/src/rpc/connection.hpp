// Internal: one client's connection to rpc::server: NDJSON framing, the
// reader (which stops reading under backpressure), the writer (answers and
// notifications, batched), the requests in flight and their cancellation,
// and what the client has subscribed to or started (Stats subscriptions,
// exec sessions), which end with it. What each method does is not here:
// a request goes to the method table (methods.hpp).
#pragma once

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server_state.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/rpc/framer.hpp"

namespace taskexec::rpc {

struct server::connection : std::enable_shared_from_this<connection> {
  connection(std::shared_ptr<server::state> s, local::socket sock, std::size_t max_bytes)
      : st(std::move(s)),
        socket(std::move(sock)),
        framer(max_bytes),
        wake(socket.get_executor()),
        resume(socket.get_executor()) {
    wake.expires_at(std::chrono::steady_clock::time_point::max());
    resume.expires_at(std::chrono::steady_clock::time_point::max());
  }

  // Requests in flight that may wait (answer not yet produced): past this
  // many, another such request is answered -32010 at once. Calls that
  // complete without waiting never count against it and are never refused.
  static constexpr std::size_t max_pending = 256;
  // Backpressure: the reader stops reading while this many response bytes
  // wait for a client that does not read. Memory per connection stays
  // bounded whatever the client sends.
  static constexpr std::size_t max_out_bytes = 1 << 20;

  std::shared_ptr<server::state> st;
  local::socket socket;
  ndjson_framer framer;
  // A message to send; `fds` (an ExecStreaming.Start answer with "fds")
  // go with its first byte (SCM_RIGHTS), and are closed here once sent, or
  // with the message when it is dropped.
  struct outgoing {
    std::string line;
    exec_stdio_fds fds;
  };
  std::deque<outgoing> out;
  std::size_t out_peak = 0;       // the most messages queued since the queue was last renewed
  std::size_t out_bytes = 0;      // queued and being written
  std::size_t writing_bytes = 0;  // of out_bytes, in the write under way
  asio::steady_timer wake;
  asio::steady_timer resume;                     // wakes a paused reader
  std::list<asio::cancellation_signal> cancels;  // one per request in flight
  bool closing = false;
  bool close_when_idle = false;  // stop(): answer what is pending, then close
  std::size_t pending = 0;       // requests in flight
  std::size_t waiting = 0;       // of them, those that may wait (method_may_wait)
  // Stats subscriptions of this connection, by id; each ends when cancelled
  // (Stats.Cancel), when the task exits, or when the connection closes.
  static constexpr std::size_t max_subscriptions = 16;
  std::map<std::string, std::shared_ptr<asio::cancellation_signal>> subscriptions;
  std::uint64_t samples_dropped = 0;
  // Events followers of this connection (Events with follow), by id: each
  // ends on Events.Cancel, on overflow (Events.End), when the daemon stops
  // (Events.End) or when the connection closes.
  static constexpr std::size_t max_followers = 16;
  struct follower {
    std::uint64_t next = 0;  // the seq of the next event it is due
    bool started = false;    // caught up after its answer: gets events as appended
  };
  std::map<std::string, follower> followers;
  // What starts once a request's answer is queued (a subscription's first
  // sample must follow its answer), by the request's serialized id.
  std::map<std::string, std::function<void()>> after_answer;
  // Descriptors that go with a request's answer (ExecStreaming.Start with
  // "fds"), by the request's serialized id; closed if the answer is never
  // sent (the connection closed first).
  std::map<std::string, exec_stdio_fds> answer_fds;
  exec_stdio_fds take_answer_fds(const json::value& id) {
    if (answer_fds.empty())
      return {};
    auto it = answer_fds.find(json::serialize(id));
    if (it == answer_fds.end())
      return {};
    auto fds = std::move(it->second);
    answer_fds.erase(it);
    return fds;
  }
  void answered(const std::optional<json::value>& id) {
    if (!id)
      return;
    auto key = json::serialize(*id);
    if (auto it = after_answer.find(key); it != after_answer.end()) {
      auto f = std::move(it->second);
      after_answer.erase(it);
      f();
    }
  }

  // Exec sessions of this connection, by id: each ends when its command
  // exits (ExecStreaming.Exited) or when the connection closes (the command
  // is then killed). While one is live, a connection whose client has only
  // half-closed stays open.
  static constexpr std::size_t max_sessions = 16;
  std::map<std::string, std::shared_ptr<session_entry>> sessions;
  // Input (ExecStreaming.Input) held for the sessions' commands: at most
  // this much per connection, split evenly among its sessions, plus the one
  // message being handled.
  static constexpr std::size_t max_input_bytes = 4 << 20;
  static constexpr std::size_t max_session_input = max_input_bytes / max_sessions;
  // Inputs waiting for room in a session's stdin: the reader takes no more
  // messages meanwhile (a client flooding stdin holds only its own socket).
  std::size_t blocked_inputs = 0;
  // Notified when queued answers drop to max_out_bytes or below (a session's
  // output waits for that), and when the connection closes.
  detail::condition drained;

  /// Stats subscriptions and exec sessions end (their commands killed).
  void end_subscriptions() {
    followers.clear();
    answer_fds.clear();
    auto subs = std::move(subscriptions);
    subscriptions.clear();
    for (auto& [id, sig] : subs)
      sig->emit(asio::cancellation_type::terminal);
    auto live = std::move(sessions);
    sessions.clear();
    for (auto& [id, e] : live) {
      e->session.kill();  // whether or not its pump runs yet
      e->cancel.emit(asio::cancellation_type::terminal);
    }
    drained.notify_all();
  }
  /// The client is gone: what it left pending is cancelled, and what it
  /// subscribed to or started ends.
  void disconnected() {
    for (auto& sig : cancels)
      sig.emit(asio::cancellation_type::terminal);
    end_subscriptions();
  }
  bool hung_up();
  /// Until the peer hangs up (true) or the socket is closed here (false).
  asio::awaitable<bool> wait_hangup();

  void send(const json::value& v, exec_stdio_fds fds = {}) {
    send_line(json::serialize(v) + "\n", std::move(fds));
  }
  /// A request's answer: written at once when nothing is queued or being
  /// written and no descriptors go with it, else queued as send() does.
  void answer(const json::value& v, exec_stdio_fds fds = {});
  /// Complete messages, written at once when nothing is queued or being
  /// written (no wake-up of the writer: a Stats tick's one sample); what the
  /// socket does not take at once, and any error, is left to the writer.
  void send_now(std::string line);
  /// Complete messages, each '\n' included (one or several lines).
  void send_line(std::string line, exec_stdio_fds fds = {}) {
    if (closing)
      return;  // the descriptors close with `fds`
    out_bytes += line.size();
    st->churn += line.size();
    out.push_back({std::move(line), std::move(fds)});
    out_peak = std::max(out_peak, out.size());
    wake.cancel();
  }
  bool saturated() const { return out_bytes > max_out_bytes || blocked_inputs > 0; }
  bool idle() const { return pending == 0 && sessions.empty(); }
  void session_ended(const std::string& id) {
    sessions.erase(id);
    if (close_when_idle && idle())
      close_after_flush();
  }
  asio::awaitable<boost::system::error_code> send_with_fds(outgoing& m);
  void close_after_flush() {
    closing = true;
    wake.cancel();
    resume.cancel();
  }
  /// Close now, unsent answers and all (the drain deadline passed).
  void force_close() {
    closing = true;
    out.clear();
    out_bytes = writing_bytes;  // what the writer has under way
    boost::system::error_code ignored;
    socket.cancel(ignored);
    wake.cancel();
    resume.cancel();
  }
  void request_done() {
    --pending;
    resume.cancel();
    if (pending == 0 && out.empty() && writing_bytes == 0)
      st->note_idle();  // the writer was not woken for the last answers
    if (close_when_idle && idle())
      close_after_flush();
  }

  asio::awaitable<void> writer();
  asio::awaitable<void> reader();
  /// A request to run in place (method_runs_in_place), or none: every
  /// other message is handled here.
  std::optional<request> handle(std::string_view line);
  // Each request runs in its own coroutine: a pending Wait blocks nothing.
  void run_one(request r);
  // ...but one that completes at once runs in the reader's (no post to
  // start it, none to deliver its answer).
  asio::awaitable<void> run_in_place(request r);

  static constexpr std::size_t max_batch = 256;

  void run_batch(std::vector<item> items);
};

// The completion handler of a connection's coroutines: an exception is a bug
// in serving one client; log it and drop that connection, not the daemon.
inline auto connection_guard(const std::shared_ptr<server::connection>& c) {
  return [w = std::weak_ptr<server::connection>(c)](const std::exception_ptr& e) {
    if (!e)
      return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log(log_level::error, std::string("connection dropped: ") + ex.what());
    }
    if (auto c2 = w.lock())
      c2->close_after_flush();
  };
}

}  // namespace taskexec::rpc
