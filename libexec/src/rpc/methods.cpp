// The method table, and the methods of the task: Version, Launch, Wait,
// Signal, Shutdown, Destroy, Events, UpdateResources, Exec.
#include "methods.hpp"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include "connection.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/task_executor.hpp"
#include "taskexec/version.hpp"

namespace taskexec::rpc {
using namespace asio::experimental::awaitable_operators;

namespace {

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

json::value launched_state(const process_state& p) {
  json::value v = json::value_from(p);
  v.get_object()["exit_code"] = -1;  // still running
  return v;
}

asio::awaitable<void> record_exit(std::shared_ptr<server::state> self) {
  auto st = co_await self->task.wait();
  if (st) {
    if (self->options->on_exited)
      self->options->on_exited(*st);
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

asio::awaitable<void> run_shutdown(std::shared_ptr<server::state> self,
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

asio::awaitable<outcome> on_version(server::state&, method_call, no_params) {
  co_return json::value{{"version", std::string(executor_version)}};
}

asio::awaitable<outcome> on_launch(server::state& srv, method_call, exec_command cmd) {
  auto st = co_await srv.task.launch(std::move(cmd));
  if (!st)
    co_return to_rpc_error(st.error(), task_operation::launch);
  srv.journal.append("launched", {{"pid", st->pid}}, st->time);
  // Record the exit whenever it comes, whoever is connected then.
  asio::co_spawn(srv.ex, record_exit(srv.shared_from_this()), [](const std::exception_ptr& e) {
    if (e)
      std::rethrow_exception(e);
  });
  co_return launched_state(*st);
}

asio::awaitable<outcome> on_wait(server::state& srv, method_call, wait_params d) {
  const std::optional<std::int64_t> timeout = d.timeout_ms;
  result<process_state> st;
  if (timeout) {
    asio::steady_timer timer(srv.ex, std::chrono::milliseconds(*timeout));
    auto first = co_await (srv.task.wait() || timer.async_wait(asio::use_awaitable));
    if (first.index() == 1)
      co_return rpc_error{
          code::timed_out, "the task did not exit within " + std::to_string(*timeout) + " ms", {}};
    st = std::get<0>(std::move(first));
  } else {
    st = co_await srv.task.wait();
  }
  if (!st)
    co_return to_rpc_error(st.error(), task_operation::wait);
  co_return json::value_from(*st);
}

asio::awaitable<outcome> on_signal(server::state& srv, method_call, signal_params d) {
  const int signo = d.signal;
  auto res = co_await srv.task.signal(signo);
  if (!res)
    co_return to_rpc_error(res.error(), task_operation::signal);
  if (signo != 0)  // an existence check is not an event
    srv.journal.append("signalled", {{"signal", signo}});
  co_return json::object{};
}

// An unknown signal was refused by decode_shutdown: not an event.
asio::awaitable<outcome> on_shutdown(server::state& srv, method_call, shutdown_params d) {
  // The shutdown is awaited in a coroutine of its own, which no caller's
  // cancellation reaches: a caller that disconnects stops waiting, the
  // shutdown runs on in the executor, and the journal records how it
  // really ended.
  auto c = std::make_shared<shutdown_call>();
  // The canonical name ("SIGTERM"), never the client's spelling.
  asio::co_spawn(srv.ex,
                 run_shutdown(srv.shared_from_this(), c, d.signal,
                              d.grace_period_ms.value_or(srv.options->kill_grace.count())),
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

asio::awaitable<outcome> on_destroy(server::state& srv, method_call, no_params) {
  if (srv.task.state() != task_state::destroyed) {
    auto res = co_await srv.task.destroy();
    if (!res && res.error().code != make_error_code(errc::task_destroyed))
      co_return to_rpc_error(res.error(), task_operation::destroy);
  }
  if (!srv.destroy_requested) {
    srv.destroy_requested = true;
    if (srv.options->on_destroyed)
      asio::post(srv.ex, srv.options->on_destroyed);
  }
  co_return json::object{};
}

asio::awaitable<outcome> on_metrics(server::state& srv, method_call, no_params) {
  const auto& m = srv.metrics;
  json::object out;
  out["uptime_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - m.started)
                         .count();
  out["connections"] = {{"open", srv.connections.size()},
                        {"total", m.connections_total},
                        {"refused", m.connections_refused}};
  json::object requests;
  for (const auto& [name, n] : m.requests)
    requests[name] = {{"calls", n.calls}, {"errors", n.errors}};
  out["requests"] = std::move(requests);
  json::object limits;
  for (const auto& [name, n] : m.limits_hit)
    limits[name] = n;
  out["limits_hit"] = std::move(limits);
  std::size_t followers = 0;
  for (const auto& [c, conn] : srv.connections)
    followers += conn->followers.size();
  out["journal"] = {{"events", srv.journal.size()},
                    {"bytes", srv.journal.bytes()},
                    {"dropped", srv.journal.evicted()},
                    {"next_seq", srv.journal.next_seq()},
                    {"followers", followers}};
  std::size_t subscriptions = 0;
  for (const auto& [c, conn] : srv.connections)
    subscriptions += conn->subscriptions.size();
  out["stats"] = {
      {"subscriptions", subscriptions},       {"intervals", srv.schedules.size()},
      {"samples_sent", m.stats_samples_sent}, {"samples_dropped", m.stats_samples_dropped},
      {"ticks_late", m.stats_ticks_late},     {"ticks_deferred", m.stats_ticks_deferred}};
  const auto sweep = srv.task.sweep_stats();
  out["sweep"] = {{"sweeps", sweep.sweeps}, {"passes", sweep.passes}, {"killed", sweep.killed}};
  if (const auto* r = srv.options->reaper) {
    out["reaper"] = {{"reaped", r->total_reaped()},
                     {"orphans", r->orphans_reaped()},
                     {"watched", r->watched_count()}};
  }
  // The analyzer takes the coroutine frame for a loop around this line.
  co_return json::value(std::move(out));  // NOLINT(clang-analyzer-cplusplus.Move)
}

asio::awaitable<outcome> on_events(server::state& srv, method_call c, events_params d) {
  if (d.follow) {
    auto followed = events_follow(srv, std::move(c), d);
    co_return co_await std::move(followed);
  }
  co_return srv.journal.since(d.since, d.limit);
}

asio::awaitable<outcome> on_update_resources(server::state& srv, method_call,
                                             update_resources_params d) {
  if (auto u = srv.task.update_resources(d.resources); !u)
    co_return to_rpc_error(u.error(), task_operation::update_resources);
  co_return json::value(json::object{});
}

asio::awaitable<outcome> on_exec(server::state& srv, method_call, exec_params d) {
  const std::int64_t timeout = d.timeout_ms;
  auto ran = co_await srv.task.exec(std::move(d.cmd), std::move(d.args),
                                    std::chrono::milliseconds(timeout));
  if (!ran)
    co_return to_rpc_error(ran.error(), task_operation::exec);
  json::object out = exec_result_json(*ran);
  if (ran->timed_out) {
    co_return rpc_error{code::timed_out, "exec timed out after " + std::to_string(timeout) + " ms",
                        std::move(out)};
  }
  co_return json::value(std::move(out));
}

asio::awaitable<outcome> method_not_found(server::state& srv, std::string m) {
  auto& n = srv.metrics.requests["(unknown)"];
  ++n.calls;
  ++n.errors;
  co_return rpc_error{code::method_not_found, "method not found: \"" + m + "\"", {}};
}

// Decode the params (the first check of every method), then call.
template <auto Decode, auto Method>
asio::awaitable<outcome> decoded(server::state& srv, method_call c) {
  auto d = Decode(c.r.params);
  if (!d)
    co_return d.error();
  auto call = Method(srv, std::move(c), std::move(*d));
  co_return co_await std::move(call);
}

// ExecStreaming.Input: its data may have come decoded already
// (parse_exec_input), its params then holding only the session.
asio::awaitable<outcome> exec_input_call(server::state& srv, method_call c) {
  auto d = decode_exec_input(c.r.params);
  if (!d)
    co_return d.error();
  if (c.r.input_data)
    d->data = std::move(c.r.input_data);
  auto call = exec_streaming_input(srv, std::move(c), std::move(*d));
  co_return co_await std::move(call);
}

struct method {
  std::string_view name;
  bool may_wait;  // see method_may_wait
  bool in_place;  // see method_runs_in_place
  asio::awaitable<outcome> (*call)(server::state&, method_call);
};

constexpr std::array<method, 16> methods = {{
    {"Version", false, true, decoded<decode_no_params, on_version>},
    {"Metrics", false, true, decoded<decode_no_params, on_metrics>},
    {"Launch", true, false, decoded<decode_launch, on_launch>},
    {"Wait", true, false, decoded<decode_wait, on_wait>},
    {"Signal", false, false, decoded<decode_signal, on_signal>},
    {"Shutdown", true, false, decoded<decode_shutdown, on_shutdown>},
    {"Destroy", true, false, decoded<decode_no_params, on_destroy>},
    {"Events", false, true, decoded<decode_events, on_events>},
    {"Events.Cancel", false, true, decoded<decode_stats_cancel, events_cancel>},
    {"Stats", false, false, decoded<decode_stats, stats_subscribe>},
    {"Stats.Cancel", false, false, decoded<decode_stats_cancel, stats_cancel>},
    {"UpdateResources", false, false, decoded<decode_update_resources, on_update_resources>},
    {"Exec", true, false, decoded<decode_exec, on_exec>},
    {"ExecStreaming.Start", true, false, decoded<decode_exec_start, exec_streaming_start>},
    {"ExecStreaming.Input", true, false, exec_input_call},
    {"ExecStreaming.Cancel", false, false, decoded<decode_exec_cancel, exec_streaming_cancel>},
}};

const method* find_method(std::string_view name) {
  for (const auto& m : methods) {
    if (m.name == name)
      return &m;
  }
  return nullptr;
}

// Requests that act on the task are logged at info (the others at debug),
// each once answered: method, request_id (the client's id, cut to 64
// bytes), ok or the error code, duration_ms.
bool acts_on_task(std::string_view m) {
  return m == "Launch" || m == "Signal" || m == "Shutdown" || m == "Destroy" ||
         m == "UpdateResources" || m == "Exec" || m == "ExecStreaming.Start";
}

void log_request(std::string_view method, const std::optional<json::value>& id, const outcome& o,
                 std::chrono::steady_clock::duration took) {
  const auto level = acts_on_task(method) ? log_level::info : log_level::debug;
  if (!detail::log_enabled(level))
    return;
  std::string request_id;
  if (id) {
    request_id = id->is_string() ? std::string(id->get_string()) : json::serialize(*id);
    if (request_id.size() > 64) {
      request_id.resize(64);
      request_id += "...";
    }
  }
  detail::log_fields f;
  f.add("method", method);
  if (const auto* e = std::get_if<rpc_error>(&o))
    f.add("error_code", static_cast<int>(e->error_code));
  f.add("duration_ms", static_cast<std::int64_t>(
                           std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  detail::log(level, "rpc", "", request_id,
              std::holds_alternative<rpc_error>(o) ? "request failed" : "request", f.view());
}

// A call, counted in Metrics: its method's calls, and its errors (an
// answer that is an error object); logged once answered.
asio::awaitable<outcome> counted(server::state& srv, const method* m, method_call c) {
  auto& n = srv.metrics.requests[std::string(m->name)];  // a map node: stable
  ++n.calls;
  const auto started = std::chrono::steady_clock::now();
  std::optional<json::value> id = c.r.id;
  auto call = m->call(srv, std::move(c));
  outcome o = co_await std::move(call);
  if (std::holds_alternative<rpc_error>(o))
    ++n.errors;
  log_request(m->name, id, o, std::chrono::steady_clock::now() - started);
  co_return o;
}

}  // namespace

bool method_may_wait(std::string_view method) {
  const auto* m = find_method(method);
  return m && m->may_wait;
}

bool method_runs_in_place(std::string_view method) {
  const auto* m = find_method(method);
  return m && m->in_place;
}

asio::awaitable<outcome> dispatch(server::state& srv, request r,
                                  std::weak_ptr<server::connection> conn, bool batched) {
  const auto* m = find_method(r.method);
  if (!m)
    return method_not_found(srv, std::move(r.method));
  return counted(srv, m, method_call{std::move(r), std::move(conn), batched});
}

}  // namespace taskexec::rpc
