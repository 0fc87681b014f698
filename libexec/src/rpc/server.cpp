#include "taskexec/rpc/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <malloc.h>
#include <poll.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <span>

#include "taskexec/base64.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/rpc/journal.hpp"
#include "taskexec/rpc/message.hpp"
#include "taskexec/rpc/params.hpp"
#include "taskexec/rpc/socket_dir.hpp"
#include "taskexec/signals.hpp"
#include "taskexec/task_executor.hpp"
#include "taskexec/version.hpp"

namespace taskexec::rpc {
namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using namespace asio::experimental::awaitable_operators;

namespace {
void log(log_level l, const std::string& msg) {
  detail::log(l, "rpc", "", "", msg);
}

using outcome = std::variant<json::value, rpc_error>;

// Bytes as JSON text: each byte that is not part of valid UTF-8 becomes U+FFFD.
std::string valid_utf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char b = s[i];
    std::size_t len = b < 0x80           ? 1
                      : (b >> 5) == 0x6  ? 2
                      : (b >> 4) == 0xe  ? 3
                      : (b >> 3) == 0x1e ? 4
                                         : 0;
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k)
      ok = (s[i + k] & 0xc0) == 0x80;
    if (ok && len > 1) {
      // No overlong forms, surrogates or code points above U+10FFFF.
      std::uint32_t cp = b & (0x7f >> len);
      for (std::size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (s[i + k] & 0x3f);
      ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) && !(len == 4 && cp < 0x10000) &&
           !(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff;
    }
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

// `output` is text for reading; `output_base64` is the exact bytes.
json::object exec_result_json(const exec_result& r) {
  json::object o;
  o["output"] = valid_utf8(r.output);
  o["output_base64"] = base64_encode(r.output);
  o["exit_code"] = r.exit_code;
  return o;
}

// -32010: a limit of the daemon was reached; data.limit is the limit.
rpc_error limit_error(std::string what, std::size_t limit) {
  rpc_error e{code::limit_exceeded, std::move(what) + " (limit " + std::to_string(limit) + ")", {}};
  e.data["limit"] = limit;
  return e;
}

json::value launched_state(const process_state& p) {
  json::value v = json::value_from(p);
  v.get_object()["exit_code"] = -1;  // still running
  return v;
}

}  // namespace

// An exec session served on a connection; its pump's cancellation ends it.
struct session_entry {
  explicit session_entry(exec_session s) : session(std::move(s)) {}
  exec_session session;
  asio::cancellation_signal cancel;
};

struct server::state : std::enable_shared_from_this<server::state> {
  state(const asio::any_io_executor& e, task_executor& t) : ex(e), task(t) {}
  asio::any_io_executor ex;
  task_executor& task;
  std::optional<local::acceptor> acceptor;
  std::map<connection*, std::shared_ptr<connection>> connections;
  bool stopping = false;
  bool destroy_requested = false;
  std::optional<server_options> options;  // a copy: outlives the server while calls run
  std::function<void()> on_drained;
  event_journal journal;
  // Lines a peer can cause at will are rate limited: a refused peer is
  // logged once a minute per uid, a failing accept (EMFILE) once a minute
  // per errno, each with how many were not logged.
  log_throttle refusals{std::chrono::minutes(1)};
  log_throttle accept_errors{std::chrono::minutes(1)};
  std::uint64_t accept_failures = 0;  // in a row, until an accept works again
  // Bytes received or queued to send since the heap was last trimmed. After
  // a burst, freed memory stays in malloc's free lists; once connections go
  // idle it is given back (malloc_trim), at most once a second. Answers
  // count too: a client that never reads has up to 1 MiB of them queued,
  // freed only when it goes away.
  std::size_t churn = 0;
  bool trim_armed = false;
  std::optional<asio::steady_timer> trim_timer;
  void note_idle();

  static asio::awaitable<void> record_exit(std::shared_ptr<state> self) {
    auto st = co_await self->task.wait();
    if (st) {
      if (st->oom_killed)
        self->journal.append("oom", {{"pid", st->pid}}, st->time);
      self->journal.append("exited", {{"state", json::value_from(*st)}}, st->time);
    }
  }

  // A Shutdown call's result, posted by run_shutdown.
  struct shutdown_call {
    detail::condition done;
    std::optional<result<void>> res;
  };
  static asio::awaitable<void> run_shutdown(std::shared_ptr<state> self,
                                            std::shared_ptr<shutdown_call> call, std::string sig,
                                            std::int64_t grace) {
    auto res = co_await self->task.shutdown(sig, std::chrono::milliseconds(grace));
    // Only shutdowns that ran are events (not one refused before Launch).
    if (res || res.error().code != make_error_code(errc::not_launched)) {
      json::object ev{{"signal", sig}, {"grace_period_ms", grace}, {"ok", res.has_value()}};
      if (!res)
        ev["error"] = res.error().message;  // bounded by the journal
      self->journal.append("shutdown", std::move(ev));
    }
    call->res = std::move(res);
    call->done.notify_all();
  }

  asio::awaitable<outcome> dispatch(request r, std::weak_ptr<connection> conn);
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
  std::uint64_t next_subscription = 1;
  std::uint64_t next_session = 1;
  static asio::awaitable<void> run_session(std::shared_ptr<state> self,
                                           std::weak_ptr<connection> conn, std::string id,
                                           std::shared_ptr<session_entry> entry);
  void connection_closed(connection* c);
};

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
  /// The methods that may wait (for the task, a command, a shutdown, room in
  /// a session's stdin): only these count against max_pending. Every other
  /// call (Version, Signal, Events, Stats, Stats.Cancel, UpdateResources,
  /// ExecStreaming.Cancel, an unknown method) completes without suspending.
  static bool may_wait(std::string_view method) {
    return method == "Launch" || method == "Wait" || method == "Shutdown" || method == "Destroy" ||
           method == "Exec" || method == "ExecStreaming.Start" || method == "ExecStreaming.Input";
  }
  // Backpressure: the reader stops reading while this many response bytes
  // wait for a client that does not read. Memory per connection stays
  // bounded whatever the client sends.
  static constexpr std::size_t max_out_bytes = 1 << 20;

  std::shared_ptr<server::state> st;
  local::socket socket;
  ndjson_framer framer;
  std::deque<std::string> out;
  std::size_t out_bytes = 0;      // queued and being written
  std::size_t writing_bytes = 0;  // of out_bytes, in the write under way
  asio::steady_timer wake;
  asio::steady_timer resume;                     // wakes a paused reader
  std::list<asio::cancellation_signal> cancels;  // one per request in flight
  bool closing = false;
  bool close_when_idle = false;  // stop(): answer what is pending, then close
  std::size_t pending = 0;       // requests in flight
  std::size_t waiting = 0;       // of them, those that may wait (may_wait)
  // Stats subscriptions of this connection, by id; each ends when cancelled
  // (Stats.Cancel), when the task exits, or when the connection closes.
  static constexpr std::size_t max_subscriptions = 16;
  std::map<std::string, std::shared_ptr<asio::cancellation_signal>> subscriptions;
  std::uint64_t samples_dropped = 0;
  // What starts once a request's answer is queued (a subscription's first
  // sample must follow its answer), by the request's serialized id.
  std::map<std::string, std::function<void()>> after_answer;
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
  bool hung_up() {
    pollfd p{socket.native_handle(), 0, 0};
    return socket.is_open() && ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
  }
  /// Until the peer hangs up (true) or the socket is closed here (false).
  asio::awaitable<bool> wait_hangup() {
    while (socket.is_open() && !closing) {
      auto [ec] = co_await socket.async_wait(local::socket::wait_error,
                                             asio::as_tuple(asio::use_awaitable));
      if (ec)
        co_return false;
      if (hung_up())
        co_return true;
    }
    co_return false;
  }

  void send(const json::value& v) { send_line(json::serialize(v) + "\n"); }
  /// A complete message, '\n' included.
  void send_line(std::string line) {
    if (closing)
      return;
    out_bytes += line.size();
    st->churn += line.size();
    out.push_back(std::move(line));
    wake.cancel();
  }
  bool saturated() const { return out_bytes > max_out_bytes || blocked_inputs > 0; }
  bool idle() const { return pending == 0 && sessions.empty(); }
  void session_ended(const std::string& id) {
    sessions.erase(id);
    if (close_when_idle && idle())
      close_after_flush();
  }
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
    if (close_when_idle && idle())
      close_after_flush();
  }

  asio::awaitable<void> writer() {
    auto self = shared_from_this();
    for (;;) {
      while (!out.empty()) {
        // Several queued messages in one write (a session's output comes in
        // many small notifications), taken out of the queue first: nothing
        // (force_close) can free them while the write is under way.
        std::vector<std::string> batch;
        std::size_t bytes = 0;
        while (!out.empty() && batch.size() < 64 && bytes < 256 * 1024) {
          bytes += out.front().size();
          batch.push_back(std::move(out.front()));
          out.pop_front();
        }
        std::array<asio::const_buffer, 64> bufs;
        for (std::size_t i = 0; i < batch.size(); ++i)
          bufs[i] = asio::buffer(batch[i]);
        writing_bytes = bytes;
        auto [ec, n] = co_await asio::async_write(socket, std::span(bufs.data(), batch.size()),
                                                  asio::as_tuple(asio::use_awaitable));
        (void)n;
        out_bytes -= std::min(out_bytes, writing_bytes);
        writing_bytes = 0;
        if (ec) {
          closing = true;
          out.clear();
          out_bytes = 0;
          resume.cancel();
          break;
        }
        resume.cancel();
        if (out_bytes <= max_out_bytes)
          drained.notify_all();
      }
      if (pending == 0)
        st->note_idle();
      if (closing)
        break;
      co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
      wake.expires_at(std::chrono::steady_clock::time_point::max());
    }
    boost::system::error_code ignored;
    socket.shutdown(local::socket::shutdown_both, ignored);
    socket.close(ignored);
    disconnected();
    st->connection_closed(this);
  }

  asio::awaitable<void> reader() {
    auto self = shared_from_this();
    std::array<char, 65536> buf;
    while (!closing) {
      // Messages already received are taken one at a time, and only while
      // the connection is below its limits.
      while (!closing && !saturated()) {
        auto line = framer.next();
        if (!line)
          break;
        if (waiting >= max_pending) {
          // Calls this read started are only posted yet: let those that
          // complete at once (a Launch refused, ...) finish before the limit
          // judges this one.
          co_await asio::post(socket.get_executor(), asio::use_awaitable);
          if (closing)
            break;
        }
        handle(*line);
      }
      if (framer.overflowed()) {
        send(make_error(nullptr, {code::invalid_request,
                                  "message larger than " +
                                      std::to_string(framer.max_message_bytes()) + " bytes",
                                  {}}));
        // No more input will be read: sessions could never get any.
        end_subscriptions();
        break;
      }
      if (closing)
        break;
      if (saturated()) {
        // Paused (backpressure), yet a client that vanishes is noticed.
        using namespace asio::experimental::awaitable_operators;
        auto woke =
            co_await (resume.async_wait(asio::as_tuple(asio::use_awaitable)) || wait_hangup());
        resume.expires_at(std::chrono::steady_clock::time_point::max());
        if (woke.index() == 1 && std::get<1>(woke)) {
          disconnected();
          break;
        }
        continue;
      }
      auto [ec, n] =
          co_await socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec)
        break;
      st->churn += n;
      framer.feed(std::string_view(buf.data(), n));
    }
    // End of input (or an error). A peer that only half-closed still gets
    // the answers to what it sent, and its sessions' output; a peer that is
    // gone entirely (POLLHUP) gets nothing more, so what it left pending is
    // cancelled and its sessions' commands are killed.
    const bool gone = hung_up();
    if (gone)
      disconnected();
    close_when_idle = true;
    if (idle())
      close_after_flush();
    if (!gone && !closing && co_await wait_hangup())
      disconnected();
  }

  void handle(const std::string& line) {
    auto m = parse_message(line);
    if (!m.batch) {
      auto& it = m.items.front();
      if (auto* bad = std::get_if<invalid>(&it)) {
        send(make_error(bad->id, bad->error));
        return;
      }
      run_one(std::get<request>(std::move(it)));
      return;
    }
    run_batch(std::move(m.items));
  }

  // Each request runs in its own coroutine: a pending Wait blocks nothing.
  void run_one(request r) {
    const bool counted = may_wait(r.method);
    if (counted && waiting >= max_pending) {
      if (r.id)
        send(make_error(*r.id,
                        limit_error("too many requests pending on this connection", max_pending)));
      return;
    }
    auto self = shared_from_this();
    ++pending;
    waiting += counted ? 1 : 0;
    auto cancel = cancels.emplace(cancels.end());
    auto request_id = r.id;
    asio::co_spawn(socket.get_executor(), st->dispatch(std::move(r), self),
                   asio::bind_cancellation_slot(
                       cancel->slot(), [self, cancel, counted, id = std::move(request_id)](
                                           const std::exception_ptr& e, outcome o) {
                         // Answer (below), then close if this was the last one pending.
                         struct done_guard {
                           connection& c;
                           std::list<asio::cancellation_signal>::iterator it;
                           bool counted;
                           ~done_guard() {
                             c.cancels.erase(it);
                             c.waiting -= counted ? 1 : 0;
                             c.request_done();
                           }
                         } done{*self, cancel, counted};
                         if (e)
                           o = rpc_error{code::internal_error, "internal error", {}};
                         if (!id)
                           return;  // a notification: no response
                         if (auto* err = std::get_if<rpc_error>(&o))
                           self->send(make_error(*id, *err));
                         else
                           self->send(make_result(*id, std::get<json::value>(std::move(o))));
                         self->answered(id);
                       }));
  }

  static constexpr std::size_t max_batch = 256;

  void run_batch(std::vector<item> items) {
    if (items.size() > max_batch) {
      send(make_error(nullptr, {code::invalid_request,
                                "batch larger than " + std::to_string(max_batch) + " requests",
                                {}}));
      return;
    }
    auto self = shared_from_this();
    struct batch_state {
      json::array responses;
      std::size_t left;
    };
    auto b = std::make_shared<batch_state>();
    b->left = items.size();
    // The batch is answered as one array once its last member is done; each
    // member counts as a request in flight until then.
    auto ids = std::make_shared<std::vector<std::optional<json::value>>>();
    auto done_one = [self, b, ids] {
      if (--b->left == 0) {
        if (!b->responses.empty())
          self->send(std::move(b->responses));
        for (const auto& id : *ids)
          self->answered(id);
      }
    };
    for (auto& it : items) {
      if (auto* bad = std::get_if<invalid>(&it)) {
        b->responses.push_back(make_error(bad->id, bad->error));
        done_one();
        continue;
      }
      auto r = std::get<request>(std::move(it));
      const bool counted = may_wait(r.method);
      if (counted && waiting >= max_pending) {
        if (r.id)
          b->responses.push_back(make_error(
              *r.id, limit_error("too many requests pending on this connection", max_pending)));
        done_one();
        continue;
      }
      auto request_id = r.id;
      ids->push_back(r.id);
      ++pending;
      waiting += counted ? 1 : 0;
      auto cancel = cancels.emplace(cancels.end());
      asio::co_spawn(
          socket.get_executor(), st->dispatch(std::move(r), self),
          asio::bind_cancellation_slot(
              cancel->slot(), [self, b, done_one, cancel, counted, id = std::move(request_id)](
                                  const std::exception_ptr& e, outcome o) {
                if (e)
                  o = rpc_error{code::internal_error, "internal error", {}};
                if (id) {
                  if (auto* err = std::get_if<rpc_error>(&o))
                    b->responses.push_back(make_error(*id, *err));
                  else
                    b->responses.push_back(make_result(*id, std::get<json::value>(std::move(o))));
                }
                done_one();
                self->cancels.erase(cancel);
                self->waiting -= counted ? 1 : 0;
                self->request_done();
              }));
    }
  }
};

namespace {
// The completion handler of a connection's coroutines: an exception is a bug
// in serving one client; log it and drop that connection, not the daemon.
auto connection_guard(const std::shared_ptr<server::connection>& c) {
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
}  // namespace

void server::state::note_idle() {
  constexpr std::size_t trim_after_bytes = 256 * 1024;
  if (churn < trim_after_bytes || trim_armed)
    return;
  trim_armed = true;
  if (!trim_timer)
    trim_timer.emplace(ex);
  trim_timer->expires_after(std::chrono::seconds(1));
  std::weak_ptr<state> weak = shared_from_this();
  trim_timer->async_wait([weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self)
      return;
    self->trim_armed = false;
    self->churn = 0;
#ifdef __GLIBC__
    ::malloc_trim(0);
#endif
  });
}

void server::state::connection_closed(connection* c) {
  connections.erase(c);
  note_idle();
  if (stopping && connections.empty() && on_drained) {
    auto f = std::move(on_drained);
    on_drained = nullptr;
    asio::post(ex, f);
  }
}

asio::awaitable<void> server::state::watch_exit(std::shared_ptr<state> self,
                                                std::shared_ptr<exit_watch> watch) {
  auto r = co_await self->task.wait();
  if (r || r.error().code != make_error_code(errc::operation_canceled)) {
    watch->exited = true;
    watch->timer.cancel();
  }
}

// The subscribers of one interval, and the timer of their ticks.
struct server::state::stats_schedule {
  stats_schedule(const asio::any_io_executor& ex, std::int64_t ms)
      : interval_ms(ms), watch(std::make_shared<exit_watch>(ex)) {}
  std::int64_t interval_ms;
  std::shared_ptr<exit_watch> watch;  // its timer is the ticks' timer
  // The reading of the last tick: the next tick's rates are since then.
  std::shared_ptr<const usage_reading> previous;
  struct subscriber {
    std::weak_ptr<connection> conn;
    std::string id;
    bool started = false;  // its first sample was sent (after its answer)
  };
  std::vector<subscriber> subscribers;
  bool stopped = false;  // its last subscriber left
};

namespace {
// A Stats.Sample, by hand: the usage is serialized once for every
// subscriber of a tick.
void send_sample(server::connection& c, const std::string& id, const std::string& usage);
void send_end(server::connection& c, const std::string& id);
}  // namespace

std::shared_ptr<const usage_reading> server::state::reading() {
  if (!last_reading || asio::steady_timer::clock_type::now() - last_reading->at >= min_reading_gap)
    last_reading = std::make_shared<const usage_reading>(sampler->read());
  return last_reading;
}

std::shared_ptr<server::state::stats_schedule> server::state::schedule_for(
    std::int64_t interval_ms) {
  if (auto it = schedules.find(interval_ms); it != schedules.end())
    return it->second;
  auto s = std::make_shared<stats_schedule>(ex, interval_ms);
  schedules.emplace(interval_ms, s);
  asio::co_spawn(ex, run_schedule(shared_from_this(), s), [](const std::exception_ptr& e) {
    // A failure ends this schedule's samples, never the daemon.
    if (!e)
      return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      log(log_level::error, std::string("stats schedule ended: ") + x.what());
    }
  });
  return s;
}

void server::state::leave_schedule(std::int64_t interval_ms, const std::string& id) {
  auto it = schedules.find(interval_ms);
  if (it == schedules.end())
    return;
  auto s = it->second;
  std::erase_if(s->subscribers, [&](const auto& sub) { return sub.id == id; });
  if (s->subscribers.empty()) {
    // Nobody left: the schedule ends (and no longer counts as one).
    s->stopped = true;
    schedules.erase(it);
    s->watch->timer.cancel();
  }
}

// The task has exited: each subscriber's stream is over.
void server::state::end_schedule(stats_schedule& s) {
  s.stopped = true;
  if (auto it = schedules.find(s.interval_ms); it != schedules.end() && it->second.get() == &s)
    schedules.erase(it);
  auto subs = std::move(s.subscribers);
  s.subscribers.clear();
  for (auto& sub : subs) {
    auto c = sub.conn.lock();
    // One not yet started is told by its start, after its answer.
    if (!c || !sub.started || !c->subscriptions.erase(sub.id))
      continue;
    if (!c->closing)
      send_end(*c, sub.id);
  }
}

void server::state::start_subscription(const std::weak_ptr<connection>& conn, const std::string& id,
                                       std::int64_t interval_ms) {
  auto c = conn.lock();
  // Cancelled before it started (a Stats.Cancel in the same batch).
  if (!c || c->closing || !c->subscriptions.contains(id))
    return;
  stats_schedule::subscriber* sub = nullptr;
  auto it = schedules.find(interval_ms);
  if (it != schedules.end()) {
    for (auto& x : it->second->subscribers)
      sub = x.id == id ? &x : sub;
  }
  if (!sub || task.state() != task_state::running) {
    // The task exited before the answer went out: the stream is over.
    leave_schedule(interval_ms, id);
    c->subscriptions.erase(id);
    send_end(*c, id);
    return;
  }
  sub->started = true;
  // Its first sample at once (rates 0: it has no earlier one); the next
  // ones come with its schedule's ticks.
  auto r = reading();
  if (!it->second->previous)
    it->second->previous = r;
  send_sample(*c, id, json::serialize(json::value_from(usage_between(nullptr, *r))));
}

asio::awaitable<void> server::state::run_schedule(std::shared_ptr<state> self,
                                                  std::shared_ptr<stats_schedule> s) {
  // One watcher of the task's exit for the whole schedule (not a wait per
  // tick): it wakes the timer early when the task exits, and is cancelled
  // when the schedule ends.
  asio::co_spawn(self->ex, watch_exit(self, s->watch),
                 asio::bind_cancellation_slot(s->watch->stop.slot(), asio::detached));
  auto& timer = s->watch->timer;
  // However the loop ends (an exception too), the watcher is cancelled.
  struct stop_watching {
    exit_watch& w;
    ~stop_watching() { w.stop.emit(asio::cancellation_type::terminal); }
  } stop_guard{*s->watch};
  // A fixed schedule (each subscriber's first sample at its start, then the
  // ticks: created + interval, + 2 intervals, ...): the time a sample takes
  // does not push the later ones back. A tick late by more than an interval
  // restarts the schedule instead of bursting to catch up.
  const auto interval = std::chrono::milliseconds(s->interval_ms);
  auto due = asio::steady_timer::clock_type::now() + interval;
  auto wake = due;
  for (;;) {
    if (s->stopped)
      break;
    if (self->task.state() != task_state::running) {
      self->end_schedule(*s);
      break;
    }
    timer.expires_at(wake);
    // The tick, or the task's exit (the watcher cancels the timer), or the
    // last subscriber leaving (stopped).
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (s->stopped || self->task.state() != task_state::running)
      continue;
    auto r = self->reading();
    if (r == s->previous) {
      // A late tick followed by one on time, within min_reading_gap of the
      // last reading: the sample waits for the next one rather than reading
      // the task once more.
      wake = r->at + min_reading_gap;
      continue;
    }
    const auto usage = json::serialize(json::value_from(usage_between(s->previous.get(), *r)));
    s->previous = r;
    std::erase_if(s->subscribers, [&](const auto& sub) {
      auto c = sub.conn.lock();
      if (!c || c->closing)
        return true;  // gone (its end removes it too)
      if (sub.started)
        send_sample(*c, sub.id, usage);
      return false;
    });
    if (s->subscribers.empty()) {
      s->stopped = true;
      if (auto it = self->schedules.find(s->interval_ms);
          it != self->schedules.end() && it->second == s)
        self->schedules.erase(it);
      break;
    }
    due += interval;
    if (auto now = asio::steady_timer::clock_type::now(); due < now)
      due = now + interval;
    wake = due;
  }
}

namespace {
void send_sample(server::connection& c, const std::string& id, const std::string& usage) {
  if (c.out_bytes > server::connection::max_out_bytes) {
    ++c.samples_dropped;  // a client that does not read gets no backlog
    return;
  }
  std::string line;
  line.reserve(usage.size() + id.size() + 96);
  line += R"({"jsonrpc":"2.0","method":"Stats.Sample","params":{"subscription":")";
  line += id;
  line += R"(","usage":)";
  line += usage;
  line += "}}\n";
  c.send_line(std::move(line));
}

void send_end(server::connection& c, const std::string& id) {
  // No sample follows.
  c.send_line(R"({"jsonrpc":"2.0","method":"Stats.End","params":{"subscription":")" + id +
              R"(","reason":"task exited"}})"
              "\n");
}
}  // namespace

namespace {

// The protocol's bound on the data of one ExecStreaming.Output (Nomad's).
constexpr std::size_t max_output_chunk = 4096;

// Output notifications are written by hand: they are the bulk of a session's
// traffic, and the session id and stream name need no escaping.
std::string output_line(const std::string& id, exec_stream s, std::string_view data, bool close) {
  std::string line;
  line.reserve(112 + id.size() + (data.size() + 2) / 3 * 4);
  line += R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":")";
  line += id;
  line += s == exec_stream::stdout_stream ? R"(","stream":"stdout","data":")"
                                          : R"(","stream":"stderr","data":")";
  base64_append(line, data);
  line += close ? "\",\"close\":true}}\n" : "\"}}\n";
  return line;
}

}  // namespace

asio::awaitable<void> server::state::run_session(std::shared_ptr<state> self,
                                                 std::weak_ptr<connection> conn, std::string id,
                                                 std::shared_ptr<session_entry> entry) {
  (void)self;
  // A cancel (the connection closed) ends the loop; it must not throw.
  co_await asio::this_coro::throw_if_cancelled(false);
  for (;;) {
    if (auto c = conn.lock(); !c || c->closing || !c->sessions.contains(id)) {
      break;  // the connection closed, or ended its sessions
    } else if (c->out_bytes > connection::max_out_bytes) {
      // Backpressure: nothing more is read from the command while a client
      // that does not read has a megabyte of answers waiting.
      if (co_await detail::wait_on(c->drained, std::chrono::steady_clock::time_point::max()) ==
          detail::wake::cancelled)
        break;
      continue;
    }
    auto ev = co_await entry->session.read();
    if (!ev)
      break;  // cancelled
    auto c = conn.lock();
    if (!c || c->closing)
      break;
    if (ev->kind == exec_event::type::output) {
      std::string_view data = ev->data;
      do {
        const auto chunk = data.substr(0, max_output_chunk);
        data.remove_prefix(chunk.size());
        c->send_line(output_line(id, ev->stream, chunk, ev->closed && data.empty()));
      } while (!data.empty());
      continue;
    }
    c->send_line(R"({"jsonrpc":"2.0","method":"ExecStreaming.Exited","params":{"session":")" + id +
                 R"(","exit_code":)" + std::to_string(ev->exit_code) + "}}\n");
    break;
  }
  if (auto c = conn.lock())
    c->session_ended(id);
}

asio::awaitable<outcome> server::state::dispatch(request r, std::weak_ptr<connection> conn) {
  const auto& p = r.params;
  const std::string& m = r.method;
  if (m == "Version") {
    if (auto d = decode_no_params(p); !d)
      co_return d.error();
    co_return json::value{{"version", std::string(executor_version)}};
  }
  if (m == "Launch") {
    auto cmd = decode_launch(p);
    if (!cmd)
      co_return cmd.error();
    auto st = co_await task.launch(std::move(*cmd));
    if (!st)
      co_return to_rpc_error(st.error(), task_operation::launch);
    journal.append("launched", {{"pid", st->pid}}, st->time);
    // Record the exit whenever it comes, whoever is connected then.
    asio::co_spawn(ex, record_exit(shared_from_this()), [](const std::exception_ptr& e) {
      if (e)
        std::rethrow_exception(e);
    });
    co_return launched_state(*st);
  }
  if (m == "Wait") {
    auto d = decode_wait(p);
    if (!d)
      co_return d.error();
    const std::optional<std::int64_t> timeout = d->timeout_ms;
    result<process_state> st;
    if (timeout) {
      asio::steady_timer timer(ex, std::chrono::milliseconds(*timeout));
      auto first = co_await (task.wait() || timer.async_wait(asio::use_awaitable));
      if (first.index() == 1)
        co_return rpc_error{code::timed_out,
                            "the task did not exit within " + std::to_string(*timeout) + " ms",
                            {}};
      st = std::get<0>(std::move(first));
    } else {
      st = co_await task.wait();
    }
    if (!st)
      co_return to_rpc_error(st.error(), task_operation::wait);
    co_return json::value_from(*st);
  }
  if (m == "Signal") {
    auto d = decode_signal(p);
    if (!d)
      co_return d.error();
    const int signo = d->signal;
    auto res = co_await task.signal(signo);
    if (!res)
      co_return to_rpc_error(res.error(), task_operation::signal);
    if (signo != 0)  // an existence check is not an event
      journal.append("signalled", {{"signal", signo}});
    co_return json::object{};
  }
  if (m == "Shutdown") {
    auto d = decode_shutdown(p);  // an unknown signal is refused here: not an event
    if (!d)
      co_return d.error();
    // The shutdown is awaited in a coroutine of its own, which no caller's
    // cancellation reaches: a caller that disconnects stops waiting, the
    // shutdown runs on in the executor, and the journal records how it
    // really ended.
    auto c = std::make_shared<shutdown_call>();
    // The canonical name ("SIGTERM"), never the client's spelling.
    asio::co_spawn(ex,
                   run_shutdown(shared_from_this(), c, d->signal,
                                d->grace_period_ms.value_or(options->kill_grace.count())),
                   [](const std::exception_ptr& e) {
                     if (e)
                       std::rethrow_exception(e);
                   });
    while (!c->res) {
      if (co_await detail::wait_on(c->done, std::chrono::steady_clock::time_point::max()) ==
          detail::wake::cancelled)
        co_return rpc_error{code::internal_error, "shutdown wait canceled", {}};
    }
    if (!*c->res)
      co_return to_rpc_error(c->res->error(), task_operation::shutdown);
    co_return json::object{};
  }
  if (m == "Destroy") {
    if (auto d = decode_no_params(p); !d)
      co_return d.error();
    if (task.state() != task_state::destroyed) {
      auto res = co_await task.destroy();
      if (!res && res.error().code != make_error_code(errc::task_destroyed))
        co_return to_rpc_error(res.error(), task_operation::destroy);
    }
    if (!destroy_requested) {
      destroy_requested = true;
      if (options->on_destroyed)
        asio::post(ex, options->on_destroyed);
    }
    co_return json::object{};
  }
  if (m == "Events") {
    auto d = decode_events(p);
    if (!d)
      co_return d.error();
    co_return journal.since(d->since, d->limit);
  }
  if (m == "Stats") {
    auto d = decode_stats(p);
    if (!d)
      co_return d.error();
    const std::int64_t interval = d->interval_ms;
    auto c = conn.lock();
    if (!c)
      co_return rpc_error{code::internal_error, "connection gone", {}};
    if (c->subscriptions.size() >= connection::max_subscriptions)
      co_return limit_error("too many Stats subscriptions on this connection",
                            connection::max_subscriptions);
    auto task_sampler = task.sampler();
    if (!task_sampler)
      co_return to_rpc_error(task_sampler.error(), task_operation::stats);
    if (r.id && c->after_answer.contains(json::serialize(*r.id)))
      co_return rpc_error{code::invalid_request, "a request with this id is still pending", {}};
    if (!schedules.contains(interval) && schedules.size() >= max_schedules)
      co_return limit_error("too many distinct Stats intervals in use", max_schedules);
    if (!sampler)
      sampler.emplace(std::move(*task_sampler));
    std::string id = "stats-" + std::to_string(next_subscription++);
    auto sig = std::make_shared<asio::cancellation_signal>();
    c->subscriptions[id] = sig;
    // It joins its interval's schedule now (so the limit above holds), and
    // gets samples once started, after this call's answer is queued: its
    // first sample follows the answer at once.
    schedule_for(interval)->subscribers.push_back({conn, id, false});
    // Cancelled (Stats.Cancel, the connection's end), it leaves at once.
    // Plain captures only: GCC 12 mishandles init-captures in lambdas made
    // inside coroutines.
    std::weak_ptr<state> weak = shared_from_this();
    sig->slot().assign([weak, interval, id](asio::cancellation_type) {
      if (auto self = weak.lock())
        self->leave_schedule(interval, id);
    });
    auto self = shared_from_this();
    auto start = [self, conn, id, interval] { self->start_subscription(conn, id, interval); };
    if (r.id)
      c->after_answer[json::serialize(*r.id)] = std::move(start);
    else
      start();  // a notification: no answer to wait for
    json::object out;
    out["subscription"] = id;
    co_return json::value(std::move(out));
  }
  if (m == "Stats.Cancel") {
    auto d = decode_stats_cancel(p);
    if (!d)
      co_return d.error();
    const std::string id = d->subscription;
    auto c = conn.lock();
    if (!c || !c->subscriptions.contains(id))
      co_return rpc_error{code::unknown_subscription, "unknown subscription \"" + id + "\"", {}};
    auto sig = c->subscriptions[id];
    c->subscriptions.erase(id);
    sig->emit(asio::cancellation_type::terminal);
    co_return json::value(json::object{});
  }
  if (m == "UpdateResources") {
    auto d = decode_update_resources(p);
    if (!d)
      co_return d.error();
    if (auto u = task.update_resources(d->resources); !u)
      co_return to_rpc_error(u.error(), task_operation::update_resources);
    co_return json::value(json::object{});
  }
  if (m == "Exec") {
    auto d = decode_exec(p);
    if (!d)
      co_return d.error();
    const std::int64_t timeout = d->timeout_ms;
    auto ran = co_await task.exec(std::move(d->cmd), std::move(d->args),
                                  std::chrono::milliseconds(timeout));
    if (!ran)
      co_return to_rpc_error(ran.error(), task_operation::exec);
    json::object out = exec_result_json(*ran);
    if (ran->timed_out) {
      co_return rpc_error{code::timed_out,
                          "exec timed out after " + std::to_string(timeout) + " ms",
                          std::move(out)};
    }
    co_return json::value(std::move(out));
  }
  if (m == "ExecStreaming.Start") {
    auto o = decode_exec_start(p);
    if (!o)
      co_return o.error();
    auto c = conn.lock();
    if (!c)
      co_return rpc_error{code::internal_error, "connection gone", {}};
    if (c->sessions.size() >= connection::max_sessions)
      co_return limit_error("too many exec sessions on this connection", connection::max_sessions);
    if (!r.id)
      co_return params_error("",
                             "ExecStreaming.Start needs an id: its session is named in the "
                             "answer");
    if (c->after_answer.contains(json::serialize(*r.id)))
      co_return rpc_error{code::invalid_request, "a request with this id is still pending", {}};
    o->max_queued_input = connection::max_session_input;
    auto started = co_await task.exec_streaming(std::move(*o));
    if (!started)
      co_return to_rpc_error(started.error(), task_operation::exec);
    c = conn.lock();  // the start did not suspend, but stay honest
    if (!c || c->closing)
      co_return rpc_error{code::internal_error, "connection gone", {}};
    const int pid = started->pid();
    std::string id = "exec-" + std::to_string(next_session++);
    auto entry = std::make_shared<session_entry>(std::move(*started));
    c->sessions[id] = entry;
    // Its output starts once this answer is queued: the client knows the
    // session's name before its first notification.
    auto self = shared_from_this();
    c->after_answer[json::serialize(*r.id)] = [self, conn, id, entry] {
      asio::co_spawn(self->ex, run_session(self, conn, id, entry),
                     // The entry (its signal holds the coroutine's cancellation
                     // state) lives until the coroutine is done.
                     asio::bind_cancellation_slot(
                         entry->cancel.slot(), [id, entry](const std::exception_ptr& e) {
                           if (!e)
                             return;
                           try {
                             std::rethrow_exception(e);
                           } catch (const std::exception& x) {
                             log(log_level::error, "exec session " + id + " ended: " + x.what());
                           }
                         }));
    };
    json::object out;
    out["session"] = id;
    out["pid"] = pid;
    co_return json::value(std::move(out));
  }
  if (m == "ExecStreaming.Input" || m == "ExecStreaming.Cancel") {
    const bool input = m == "ExecStreaming.Input";
    exec_input_params in;
    if (input) {
      auto d = decode_exec_input(p);
      if (!d)
        co_return d.error();
      in = std::move(*d);
      // The data is decoded: its base64 text (a message may be 4 MiB) need
      // not be held while the input waits for room.
      r.params = nullptr;
    } else {
      auto d = decode_exec_cancel(p);
      if (!d)
        co_return d.error();
      in.session = std::move(d->session);
    }
    const std::string id = in.session;
    auto c = conn.lock();
    auto it = c ? c->sessions.find(id) : decltype(c->sessions.end()){};
    if (!c || it == c->sessions.end())
      co_return rpc_error{code::unknown_subscription, "unknown session \"" + id + "\"", {}};
    auto entry = it->second;
    if (!input) {
      entry->session.kill();
      co_return json::value(json::object{});
    }
    std::optional<std::string>& data = in.data;
    const bool close = in.close;
    if (in.size) {
      if (!entry->session.tty())
        co_return params_error("tty_size", "session \"" + id + "\" has no tty");
      // Not a start (an OS error here is internal, not -32004): a resize
      // signals the running command (SIGWINCH).
      if (auto rs = entry->session.resize(*in.size); !rs)
        co_return to_rpc_error(rs.error(), task_operation::signal);
    }
    if (data && !data->empty()) {
      // While the session's stdin is full this connection reads nothing
      // more: the client's own writes block, nobody else's.
      ++c->blocked_inputs;
      c.reset();
      auto w = co_await entry->session.write(std::move(*data));
      if (auto c2 = conn.lock()) {
        --c2->blocked_inputs;
        c2->resume.cancel();
      }
      if (!w)
        co_return to_rpc_error(w.error(), task_operation::exec);
    }
    if (close) {
      if (auto cs = entry->session.close_stdin(); !cs)
        co_return to_rpc_error(cs.error(), task_operation::exec);
    }
    co_return json::value(json::object{});
  }
  co_return rpc_error{code::method_not_found, "method not found: \"" + m + "\"", {}};
}

server::server(const asio::any_io_executor& ex, task_executor& task, server_options options)
    : state_(std::make_shared<state>(ex, task)), options_(std::move(options)) {
  state_->options = options_;
}

server::~server() {
  stop();
}

result<void> server::listen() {
  const std::string& path = options_.socket_path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    return make_error(errc::invalid_argument, "socket path \"" + path + "\" is empty or too long");
  // A leading NUL would make it an abstract socket, which has no
  // permissions: anyone in the network namespace could connect.
  if (path.find('\0') != std::string::npos)
    return make_error(errc::invalid_argument, "socket path contains a NUL byte");
  // With --allow-uid, other users must reach the socket: it is made 0666 and
  // created directories 0711, and SO_PEERCRED decides who may call.
  const bool shared = !options_.allowed_uids.empty();
  // Only root and we may be able to change the way to the socket: anyone
  // else could rename a directory on it and put an impostor in our place.
  if (auto safe = prepare_socket_directory(path, ::geteuid(), shared ? 0711 : 0700); !safe)
    return safe.error();
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(errc::invalid_argument, "\"" + path + "\" exists and is not a socket");
    local::socket probe(state_->ex);
    boost::system::error_code cec;
    probe.connect(local::endpoint(path), cec);
    if (!cec)
      return make_error(errc::invalid_argument, "a live daemon already owns \"" + path + "\"");
    ::unlink(path.c_str());  // stale: nobody listens
  }
  local::acceptor acc(state_->ex);
  boost::system::error_code aec;
  acc.open(local::endpoint(path).protocol(), aec);
  mode_t old = ::umask(0177);  // the socket is born 0600
  if (!aec)
    acc.bind(local::endpoint(path), aec);
  ::umask(old);
  if (!aec)
    acc.listen(asio::socket_base::max_listen_connections, aec);
  if (aec)
    return make_system_error(aec.value(), "listen on \"" + path + "\"");
  ::chmod(path.c_str(), shared ? 0666 : 0600);
  state_->acceptor.emplace(std::move(acc));
  return {};
}

void server::start() {
  asio::co_spawn(state_->ex, accept_loop(), [](const std::exception_ptr& e) {
    if (e)
      std::rethrow_exception(e);
  });
}

asio::awaitable<void> server::accept_loop() {
  auto st = state_;
  auto self = shared_from_this();
  while (st->acceptor && st->acceptor->is_open()) {
    auto [ec, sock] = co_await st->acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || st->stopping)
      co_return;
    if (ec) {
      ++st->accept_failures;
      const auto now = log_throttle::clock::now();
      if (auto n = st->accept_errors.admit(static_cast<std::uint64_t>(ec.value()), now)) {
        std::string line = "accept: " + ec.message();
        if (ec == asio::error::no_descriptors)
          line += " (retrying every 50 ms; logged once a minute)";
        if (*n > 0)
          line += " (" + std::to_string(*n) + " more since the last line)";
        log(log_level::warning, line);
      }
      if (ec == asio::error::no_descriptors) {
        // Out of descriptors: back off briefly instead of spinning.
        asio::steady_timer t(st->ex, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      continue;
    }
    if (st->accept_failures > 0) {
      log(log_level::warning,
          "accept: accepting again after " + std::to_string(st->accept_failures) + " failures");
      st->accept_failures = 0;
    }
    auto c = std::make_shared<connection>(st, std::move(sock), options_.max_message_bytes);
    st->connections.emplace(c.get(), c);
    asio::co_spawn(st->ex, c->writer(), connection_guard(c));

    ucred cred{};
    socklen_t len = sizeof cred;
    bool allowed =
        ::getsockopt(c->socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
    if (allowed) {
      allowed = cred.uid == 0 || cred.uid == ::geteuid();
      for (auto u : options_.allowed_uids)
        allowed = allowed || cred.uid == u;
    }
    if (!allowed) {
      if (auto n = st->refusals.admit(cred.uid, log_throttle::clock::now())) {
        std::string line = "refused a connection of uid " + std::to_string(cred.uid) +
                           ": not allowed to call this daemon (-32005)";
        if (*n > 0)
          line += "; " + std::to_string(*n) + " more of this uid since its last line";
        log(log_level::warning, line);
      }
      c->send(make_error(nullptr, {code::permission_denied,
                                   "permission denied: uid " + std::to_string(cred.uid) +
                                       " may not call this daemon",
                                   {}}));
      c->close_after_flush();
      continue;
    }
    if (st->connections.size() > options_.max_connections) {
      c->send(make_error(nullptr, limit_error("too many connections", options_.max_connections)));
      c->close_after_flush();
      continue;
    }
    asio::co_spawn(st->ex, c->reader(), connection_guard(c));
  }
}

void server::stop() {
  auto& st = *state_;
  if (st.stopping)
    return;
  st.stopping = true;
  if (st.acceptor) {
    boost::system::error_code ignored;
    st.acceptor->close(ignored);
    ::unlink(options_.socket_path.c_str());
  }
  for (auto& [p, c] : st.connections) {
    c->close_when_idle = true;
    if (c->idle())
      c->close_after_flush();
  }
  // A client that does not read would hold the drain forever: past the
  // deadline, what is left is closed without its answers.
  auto deadline = std::make_shared<asio::steady_timer>(st.ex, options_.drain_timeout);
  deadline->async_wait([deadline, w = std::weak_ptr<state>(state_)](boost::system::error_code ec) {
    auto s = w.lock();
    if (ec || !s)
      return;
    std::vector<std::shared_ptr<connection>> left;
    for (auto& [p, c] : s->connections)
      left.push_back(c);
    for (auto& c : left)
      c->force_close();
  });
}

void server::on_drained(std::function<void()> f) {
  if (state_->stopping && state_->connections.empty()) {
    asio::post(state_->ex, std::move(f));
    return;
  }
  state_->on_drained = std::move(f);
}

std::size_t server::connection_count() const noexcept {
  return state_->connections.size();
}

}  // namespace taskexec::rpc
