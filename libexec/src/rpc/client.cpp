// remote_executor: one connection to taskexecd, shared by concurrent calls.
// A reader coroutine matches responses to calls by id and hands Stats.Sample
// notifications to their streams; a writer coroutine sends queued messages in
// order (Asio allows one write in flight per socket).
#include <sys/socket.h>
#include <sys/un.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <deque>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "taskexec/codec.hpp"
#include "taskexec/detail/coro.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/framer.hpp"
#include "taskexec/signals.hpp"
#include "taskexec/version.hpp"

namespace taskexec {

namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using detail::no_throw_on_cancel;

namespace {

// Responses may be large (Exec output); a peer sending more than this in one
// line is broken.
constexpr std::size_t max_response_bytes = 64 * 1024 * 1024;
constexpr std::size_t max_queued_samples = 64;

error lost_connection() {
  return make_error(errc::connection_failed, "connection to taskexecd lost");
}

void rethrow(std::exception_ptr e) {
  if (e)
    std::rethrow_exception(e);
}

}  // namespace

errc from_rpc_error(std::int64_t code) noexcept {
  switch (code) {
    case -32001:
      return errc::not_launched;
    case -32002:
      return errc::already_launched;
    case -32003:
      return errc::task_exited;
    case -32004:
      return errc::launch_failed;
    case -32005:
      return errc::permission_denied;
    case -32006:
      return errc::timed_out;
    case -32007:
    case -32601:
      return errc::unsupported;
    case -32008:
      return errc::resource_config_failed;
    case -32009:
      return errc::unknown_subscription;
    case -32602:
      return errc::invalid_argument;
    case -32603:
      return errc::internal;
    default:
      return errc::protocol_error;
  }
}

// ---------------------------------------------------------------- reattach

std::string to_json(const reattach_config& c) {
  return json::serialize(
      json::object{{"socket", c.socket}, {"pid", c.pid}, {"pid_start_time", c.pid_start_time}});
}

result<reattach_config> parse_reattach_config(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object())
    return make_error(errc::invalid_argument, "reattach config is not a JSON object");
  const auto& o = v.as_object();
  for (const auto& [k, _] : o) {
    if (k != "socket" && k != "pid" && k != "pid_start_time")
      return make_error(errc::invalid_argument,
                        "reattach config: unknown field \"" + std::string(k) + "\"");
  }
  reattach_config c;
  const auto* s = o.if_contains("socket");
  if (!s || !s->is_string() || s->as_string().empty())
    return make_error(errc::invalid_argument, "reattach config: socket must be a non-empty string");
  c.socket = s->as_string();
  const auto* p = o.if_contains("pid");
  if (!p || !p->is_int64() || p->as_int64() <= 0 || p->as_int64() > 0x3fffffff)
    return make_error(errc::invalid_argument, "reattach config: pid must be a positive integer");
  c.pid = static_cast<int>(p->as_int64());
  const auto* t = o.if_contains("pid_start_time");
  if (!t || !(t->is_int64() || t->is_uint64()) || (t->is_int64() && t->as_int64() < 0))
    return make_error(errc::invalid_argument,
                      "reattach config: pid_start_time must be a non-negative integer");
  c.pid_start_time = t->is_uint64() ? t->as_uint64() : static_cast<std::uint64_t>(t->as_int64());
  return c;
}

// ---------------------------------------------------------------- connection

struct stats_stream::state {
  explicit state(asio::any_io_executor ex) : wake(std::move(ex)) {}
  std::string subscription;
  std::deque<json::object> samples;
  std::uint64_t dropped = 0;
  bool ended = false;
  error end_error;
  asio::steady_timer wake;  // cancelled to wake the reader of next()
};

struct remote_executor::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor ex, std::string path) : sock(ex), socket_path(std::move(path)) {}

  struct pending {
    asio::steady_timer* wake = nullptr;
    std::optional<json::object> response;
    bool done = false;
    // Runs when the response is read, before anything after it: a Stats
    // subscription registers its stream here so no sample is missed.
    std::function<void(const json::object&)> on_response;
  };

  local::socket sock;
  std::string socket_path;
  int peer_pid = 0;
  bool open = true;
  std::int64_t next_id = 1;
  std::unordered_map<std::int64_t, pending*> calls;
  std::unordered_map<std::string, std::weak_ptr<stats_stream::state>> streams;
  std::unordered_set<std::string> unknown_subscriptions;  // already sent Stats.Cancel
  std::deque<std::string> outbox;
  bool writing = false;
  rpc::ndjson_framer framer{max_response_bytes};
  // Why the connection ended, when the daemon said so (e.g. -32005).
  std::optional<error> close_reason;

  void fail(const error& why) {
    if (!open)
      return;
    open = false;
    boost::system::error_code ignored;
    sock.close(ignored);
    outbox.clear();
    const error reason = close_reason.value_or(why);
    auto waiting = std::move(calls);
    calls.clear();
    for (auto& [id, p] : waiting) {
      p->done = true;
      p->wake->cancel();
    }
    auto subscribed = std::move(streams);
    streams.clear();
    for (auto& [sub, w] : subscribed) {
      if (auto s = w.lock()) {
        s->ended = true;
        s->end_error = reason;
        s->wake.cancel();
      }
    }
    close_reason = reason;
  }

  void send(std::string line) {
    if (!open)
      return;
    outbox.push_back(std::move(line));
    if (!writing) {
      writing = true;
      asio::co_spawn(sock.get_executor(), write_loop(shared_from_this()), rethrow);
    }
  }

  static asio::awaitable<void> write_loop(std::shared_ptr<impl> self) {
    while (self->open && !self->outbox.empty()) {
      std::string msg = std::move(self->outbox.front());
      self->outbox.pop_front();
      auto [ec, n] = co_await asio::async_write(self->sock, asio::buffer(msg),
                                                asio::as_tuple(asio::use_awaitable));
      (void)n;
      if (ec) {
        // The peer has closed. What it said before (a refusal, say) may
        // still wait to be read: the reader ends the connection at EOF.
        self->outbox.clear();
        boost::system::error_code ignored;
        self->sock.shutdown(local::socket::shutdown_send, ignored);
      }
    }
    self->writing = false;
  }

  static asio::awaitable<void> read_loop(std::shared_ptr<impl> self) {
    std::vector<char> buf(64 * 1024);
    while (self->open) {
      auto [ec, n] = co_await self->sock.async_read_some(asio::buffer(buf),
                                                         asio::as_tuple(asio::use_awaitable));
      if (ec) {
        self->fail(lost_connection());
        break;
      }
      self->framer.feed(std::string_view(buf.data(), n));
      while (self->open) {
        auto line = self->framer.next();
        if (!line)
          break;
        self->dispatch(*line);
      }
      if (self->framer.overflowed())
        self->fail(make_error(errc::protocol_error, "taskexecd sent a message over 64 MiB"));
    }
  }

  void dispatch(const std::string& line) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (ec || !v.is_object()) {
      fail(make_error(errc::protocol_error, "taskexecd sent something that is not a JSON object"));
      return;
    }
    auto& o = v.as_object();
    if (const auto* method = o.if_contains("method")) {
      on_notification(*method, o);
      return;
    }
    const auto* id = o.if_contains("id");
    if (!id || id->is_null()) {
      // Said to the connection as a whole (a refused peer, or a request of
      // ours it could not read, which no call can be matched to): the
      // connection ends with that error, so no call waits forever.
      const auto* err = o.if_contains("error");
      error reason = make_error(errc::protocol_error, "taskexecd sent a response without an id");
      if (err && err->is_object()) {
        const auto* code = err->as_object().if_contains("code");
        const auto* msg = err->as_object().if_contains("message");
        const auto c = code && code->is_int64() ? code->as_int64() : 0;
        const std::string said =
            msg && msg->is_string() ? std::string(msg->as_string()) : std::string("error");
        reason = c == -32005
                     ? make_error(errc::permission_denied, said)
                     : make_error(errc::protocol_error, "taskexecd refused a request: " + said);
      }
      close_reason = reason;
      fail(reason);
      return;
    }
    if (!id->is_int64())
      return;
    auto it = calls.find(id->as_int64());
    if (it == calls.end())
      return;  // a call whose caller gave up
    auto* p = it->second;
    calls.erase(it);
    if (p->on_response)
      p->on_response(o);
    p->response = std::move(o);
    p->done = true;
    p->wake->cancel();
  }

  void on_notification(const json::value& method, const json::object& o) {
    if (method.is_string() && method.as_string() == "Stats.End") {
      const auto* params = o.if_contains("params");
      const auto* sub =
          params && params->is_object() ? params->as_object().if_contains("subscription") : nullptr;
      if (!sub || !sub->is_string())
        return;
      auto it = streams.find(std::string(sub->as_string()));
      if (it == streams.end())
        return;
      if (auto s = it->second.lock()) {
        s->ended = true;
        s->end_error = make_error(errc::task_exited, "task has exited");
        s->wake.cancel();
      }
      streams.erase(it);
      return;
    }
    if (!method.is_string() || method.as_string() != "Stats.Sample")
      return;  // notifications of later versions are ignored
    const auto* params = o.if_contains("params");
    if (!params || !params->is_object())
      return;
    const auto* sub = params->as_object().if_contains("subscription");
    const auto* usage = params->as_object().if_contains("usage");
    if (!sub || !sub->is_string() || !usage || !usage->is_object())
      return;
    auto it = streams.find(std::string(sub->as_string()));
    if (it == streams.end()) {
      // A subscription nobody reads (its Stats call was cancelled after it
      // was sent): end it on the daemon, once.
      if (unknown_subscriptions.size() > 256)
        unknown_subscriptions.clear();
      if (unknown_subscriptions.insert(std::string(sub->as_string())).second) {
        json::object cancel;
        cancel["subscription"] = sub->as_string();
        json::object note;
        note["jsonrpc"] = "2.0";
        note["method"] = "Stats.Cancel";
        note["params"] = std::move(cancel);
        send(json::serialize(note) + "\n");
      }
      return;
    }
    auto s = it->second.lock();
    if (!s) {
      streams.erase(it);
      return;
    }
    if (s->samples.size() >= max_queued_samples) {
      s->samples.pop_front();
      ++s->dropped;
    }
    s->samples.push_back(usage->as_object());
    s->wake.cancel();
  }

  // One request, its response awaited (cancellable).
  static asio::awaitable<result<json::value>> call(
      std::shared_ptr<impl> self, std::string method, json::value params,
      std::function<void(const json::object&)> on_response = {}) {
    if (!self->open)
      co_return self->close_reason.value_or(lost_connection());
    const auto id = self->next_id++;
    asio::steady_timer wake(self->sock.get_executor(), asio::steady_timer::time_point::max());
    pending p;
    p.wake = &wake;
    p.on_response = std::move(on_response);
    self->calls.emplace(id, &p);
    // However this frame ends (even destroyed while suspended), its entry goes.
    struct erase_guard {
      impl& c;
      std::int64_t id;
      ~erase_guard() { c.calls.erase(id); }
    } guard{*self, id};
    json::object req;
    req["jsonrpc"] = "2.0";
    req["id"] = id;
    req["method"] = method;
    if (!params.is_null())
      req["params"] = std::move(params);
    self->send(json::serialize(req) + "\n");
    while (!p.done) {
      auto [ec] = co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!p.done && ec == asio::error::operation_aborted) {
        // The caller gave up; a late response is dropped (the guard erases).
        co_return make_error(errc::operation_canceled, method + " canceled");
      }
    }
    if (!p.response)
      co_return self->close_reason.value_or(lost_connection());
    auto& r = *p.response;
    if (auto* res = r.if_contains("result"))
      co_return std::move(*res);
    const auto* err = r.if_contains("error");
    if (!err || !err->is_object())
      co_return make_error(errc::protocol_error,
                           method + ": response has neither result nor error");
    const auto* code = err->as_object().if_contains("code");
    const auto* msg = err->as_object().if_contains("message");
    co_return make_error(
        code && code->is_int64() ? from_rpc_error(code->as_int64()) : errc::protocol_error,
        msg && msg->is_string() ? std::string(msg->as_string()) : method + " failed");
  }
};

remote_executor::remote_executor(std::shared_ptr<impl> p) : impl_(std::move(p)) {}
remote_executor::remote_executor(remote_executor&&) noexcept = default;
remote_executor& remote_executor::operator=(remote_executor&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
remote_executor::~remote_executor() {
  close();
}

void remote_executor::close() noexcept {
  if (impl_)
    impl_->fail(lost_connection());
}
bool remote_executor::connected() const noexcept {
  return impl_ && impl_->open;
}
int remote_executor::daemon_pid() const noexcept {
  return impl_ ? impl_->peer_pid : 0;
}
const std::string& remote_executor::socket_path() const noexcept {
  return impl_->socket_path;
}

asio::awaitable<result<remote_executor>> remote_executor::connect(asio::any_io_executor ex,
                                                                  std::string socket_path) {
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un{}.sun_path))
    co_return make_error(errc::invalid_argument,
                         "socket path must have 1 to 107 bytes: \"" + socket_path + "\"");
  auto p = std::make_shared<impl>(ex, socket_path);
  auto [ec] = co_await p->sock.async_connect(local::endpoint(socket_path),
                                             asio::as_tuple(asio::use_awaitable));
  if (ec) {
    co_return make_error(errc::connection_failed,
                         "cannot connect to taskexecd at " + socket_path + ": " + ec.message());
  }
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(p->sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    p->peer_pid = cred.pid;
  asio::co_spawn(ex, impl::read_loop(p), rethrow);
  remote_executor client(p);
  auto v = co_await client.version();
  if (!v)
    co_return v.error();
  const std::string_view ours = executor_version;
  if (v->substr(0, v->find('.')) != ours.substr(0, ours.find('.'))) {
    co_return make_error(errc::protocol_error, "taskexecd at " + socket_path + " speaks version " +
                                                   *v + ", not " + std::string(ours));
  }
  co_return client;
}

namespace {

result<process_state> to_state(result<json::value> r, std::string_view method) {
  if (!r)
    return r.error();
  try {
    return json::value_to<process_state>(*r);
  } catch (const decode_exception& e) {
    return make_error(errc::protocol_error, std::string(method) + " result: " + e.what());
  }
}

// Params built outside coroutines: GCC 12 rejects brace-initialised JSON in
// them ("array used as initializer").
json::object field(std::string_view key, json::value v) {
  json::object o;
  o[key] = std::move(v);
  return o;
}

json::object shutdown_params(const std::string& signal_name, std::chrono::milliseconds grace) {
  json::object o;
  o["signal"] = signal_name;
  o["grace_period_ms"] = grace.count();
  return o;
}

result<void> to_void(result<json::value> r) {
  if (!r)
    return r.error();
  return {};
}

}  // namespace

asio::awaitable<result<json::value>> remote_executor::call(std::string method, json::value params) {
  if (!impl_)
    co_return lost_connection();
  co_return co_await no_throw_on_cancel(impl::call(impl_, std::move(method), std::move(params)));
}

asio::awaitable<result<process_state>> remote_executor::launch(exec_command cmd) {
  if (cmd.stdout_fd >= 0 || cmd.stderr_fd >= 0)
    co_return make_error(errc::unsupported,
                         "stdout_fd and stderr_fd cannot be passed to a daemon; use the paths");
  co_return to_state(co_await call("Launch", json::value_from(cmd)), "Launch");
}

asio::awaitable<result<process_state>> remote_executor::wait() {
  co_return to_state(co_await call("Wait", json::object{}), "Wait");
}

asio::awaitable<result<process_state>> remote_executor::wait_for(
    std::chrono::milliseconds timeout) {
  if (timeout.count() < 0)
    co_return make_error(errc::invalid_argument, "timeout is negative");
  co_return to_state(co_await call("Wait", field("timeout_ms", timeout.count())), "Wait");
}

asio::awaitable<result<void>> remote_executor::signal(int signo) {
  co_return to_void(co_await call("Signal", field("signal", signo)));
}

asio::awaitable<result<void>> remote_executor::signal(std::string name) {
  co_return to_void(co_await call("Signal", field("signal", json::string(name))));
}

asio::awaitable<result<void>> remote_executor::shutdown(std::string signal_name,
                                                        std::chrono::milliseconds grace) {
  if (grace.count() < 0)
    co_return make_error(errc::invalid_argument, "grace period is negative");
  co_return to_void(co_await call("Shutdown", shutdown_params(signal_name, grace)));
}

asio::awaitable<result<void>> remote_executor::update_resources(task_resources resources) {
  co_return to_void(
      co_await call("UpdateResources", field("resources", json::value_from(resources))));
}

asio::awaitable<result<void>> remote_executor::destroy() {
  co_return to_void(co_await call("Destroy"));
}

asio::awaitable<result<std::string>> remote_executor::version() {
  auto r = co_await call("Version");
  if (!r)
    co_return r.error();
  const auto* v = r->is_object() ? r->as_object().if_contains("version") : nullptr;
  if (!v || !v->is_string())
    co_return make_error(errc::protocol_error, "Version result has no version string");
  co_return std::string(v->as_string());
}

asio::awaitable<result<event_page>> remote_executor::events(std::uint64_t since) {
  auto r = co_await call("Events", field("since", since));
  if (!r)
    co_return r.error();
  const auto* o = r->if_object();
  const auto* events = o ? o->if_contains("events") : nullptr;
  const auto* next = o ? o->if_contains("next") : nullptr;
  if (!events || !events->is_array() || !next || !(next->is_int64() || next->is_uint64()))
    co_return make_error(errc::protocol_error, "Events result lacks events or next");
  event_page page;
  page.next = next->to_number<std::uint64_t>();
  if (const auto* dropped = o->if_contains("dropped");
      dropped && (dropped->is_int64() || dropped->is_uint64()))
    page.dropped = dropped->to_number<std::uint64_t>();
  for (const auto& e : events->as_array()) {
    if (!e.is_object())
      co_return make_error(errc::protocol_error, "Events: an event is not an object");
    page.events.push_back(e.as_object());
  }
  co_return page;
}

// ---------------------------------------------------------------- stats

asio::awaitable<result<stats_stream>> remote_executor::stats(std::chrono::milliseconds interval) {
  if (!impl_)
    co_return lost_connection();
  if (interval.count() <= 0)
    co_return make_error(errc::invalid_argument, "interval must be positive");
  auto st = std::make_shared<stats_stream::state>(impl_->sock.get_executor());
  st->wake.expires_at(asio::steady_timer::time_point::max());
  auto conn = impl_;
  auto on_response = [conn, st](const json::object& resp) {
    const auto* res = resp.if_contains("result");
    const auto* sub =
        res && res->is_object() ? res->as_object().if_contains("subscription") : nullptr;
    if (sub && sub->is_string()) {
      st->subscription = sub->as_string();
      conn->streams[st->subscription] = st;
    }
  };
  auto r = co_await no_throw_on_cancel(
      impl::call(impl_, "Stats", field("interval_ms", interval.count()), std::move(on_response)));
  if (!r)
    co_return r.error();
  if (st->subscription.empty())
    co_return make_error(errc::protocol_error, "Stats result has no subscription");
  co_return stats_stream(impl_, st);
}

stats_stream::stats_stream(std::shared_ptr<remote_executor::impl> conn, std::shared_ptr<state> s)
    : conn_(std::move(conn)), state_(std::move(s)) {}
stats_stream::stats_stream(stats_stream&&) noexcept = default;
stats_stream& stats_stream::operator=(stats_stream&& o) noexcept {
  if (this != &o) {
    end();  // the stream replaced ends its subscription, as on destruction
    conn_ = std::move(o.conn_);
    state_ = std::move(o.state_);
  }
  return *this;
}

stats_stream::~stats_stream() {
  end();
}

void stats_stream::end() noexcept {
  if (!state_ || !conn_ || state_->ended)
    return;
  state_->ended = true;
  conn_->streams.erase(state_->subscription);
  // A notification: the daemon ends the subscription and answers nothing.
  try {
    json::object params;
    params["subscription"] = state_->subscription;
    json::object note;
    note["jsonrpc"] = "2.0";
    note["method"] = "Stats.Cancel";
    note["params"] = std::move(params);
    conn_->send(json::serialize(note) + "\n");
  } catch (...) {
    // Out of memory while ending: the connection's close ends it anyway.
  }
}

const std::string& stats_stream::subscription() const noexcept {
  return state_->subscription;
}
std::uint64_t stats_stream::dropped() const noexcept {
  return state_->dropped;
}

namespace {

asio::awaitable<result<json::object>> next_sample(std::shared_ptr<stats_stream::state> s) {
  while (s->samples.empty() && !s->ended) {
    s->wake.expires_at(asio::steady_timer::time_point::max());
    auto [ec] = co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted && s->samples.empty() && !s->ended) {
      // Nothing arrived: our caller was cancelled.
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none)
        co_return make_error(errc::operation_canceled, "stats canceled");
    }
  }
  if (!s->samples.empty()) {
    auto v = std::move(s->samples.front());
    s->samples.pop_front();
    co_return v;
  }
  co_return s->end_error;
}

}  // namespace

asio::awaitable<result<json::object>> stats_stream::next() {
  co_return co_await no_throw_on_cancel(next_sample(state_));
}

asio::awaitable<result<void>> stats_stream::cancel() {
  if (state_->ended)
    co_return result<void>{};
  state_->ended = true;
  state_->end_error = make_error(errc::operation_canceled, "stats subscription ended");
  state_->wake.cancel();
  conn_->streams.erase(state_->subscription);
  auto r = co_await no_throw_on_cancel(remote_executor::impl::call(
      conn_, "Stats.Cancel", field("subscription", json::string(state_->subscription))));
  co_return to_void(std::move(r));
}

}  // namespace taskexec
