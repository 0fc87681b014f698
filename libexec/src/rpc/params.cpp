#include "taskexec/rpc/params.hpp"

#include <boost/json/value.hpp>
#include <boost/throw_exception.hpp>

#include <array>
#include <initializer_list>
#include <stdexcept>

#include "taskexec/base64.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/rpc/journal.hpp"
#include "taskexec/signals.hpp"

namespace taskexec::rpc {
namespace json = boost::json;

void throw_exception_from_error(const rpc_error& e, const boost::source_location& loc) {
  boost::throw_exception(std::invalid_argument(e.message), loc);
}

rpc_error params_error(const std::string& field, std::string message) {
  rpc_error e{code::invalid_params, std::move(message), {}};
  if (!field.empty())
    e.data["field"] = field;
  return e;
}

namespace {

// params must be absent, or an object with only `known` members.
std::optional<rpc_error> check_members(const json::value& params,
                                       std::initializer_list<std::string_view> known,
                                       std::string_view prefix = {}) {
  if (params.is_null() && prefix.empty())
    return std::nullopt;
  if (!params.is_object())
    return prefix.empty()
               ? params_error("", "params must be an object")
               : params_error(std::string(prefix), std::string(prefix) + " must be an object");
  for (const auto& kv : params.get_object()) {
    bool ok = false;
    for (auto k : known)
      ok = ok || kv.key() == k;
    if (!ok) {
      std::string field = prefix.empty() ? std::string(kv.key())
                                         : std::string(prefix) + "." + std::string(kv.key());
      return params_error(field, "unknown field \"" + std::string(kv.key()) + "\"");
    }
  }
  return std::nullopt;
}

const json::value* member(const json::value& params, std::string_view key) {
  return params.is_object() ? params.get_object().if_contains(key) : nullptr;
}

std::optional<rpc_error> duration(const json::value& params, std::string_view key,
                                  std::int64_t& out) {
  const auto* v = member(params, key);
  if (!v)
    return std::nullopt;
  if (!v->is_int64() || v->get_int64() < 0 || v->get_int64() > max_duration_ms)
    return params_error(std::string(key), std::string(key) + " must be an integer from 0 to " +
                                              std::to_string(max_duration_ms));
  out = v->get_int64();
  return std::nullopt;
}

std::optional<rpc_error> command(const json::value& params, std::string& cmd,
                                 std::vector<std::string>& args) {
  const auto* c = member(params, "cmd");
  if (!c || !c->is_string())
    return params_error("cmd", "cmd must be a string");
  cmd = std::string(c->get_string());
  const auto* a = member(params, "args");
  if (!a)
    return std::nullopt;
  if (!a->is_array())
    return params_error("args", "args must be an array of strings");
  const auto& arr = a->get_array();
  for (std::size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) {
      const std::string at = "args[" + std::to_string(i) + "]";
      return params_error(at, at + " must be a string");
    }
    args.emplace_back(arr[i].get_string());
  }
  return std::nullopt;
}

// tty_size: {"height": rows, "width": columns}, each 1 to 65535.
std::optional<rpc_error> terminal_size(const json::value& t, tty_size& out) {
  if (!t.is_object())
    return params_error("tty_size", "tty_size must be an object {\"height\", \"width\"}");
  if (auto e = check_members(t, {"height", "width"}, "tty_size"))
    return e;
  const std::array<std::pair<std::string_view, std::uint16_t*>, 2> dims{
      {{"height", &out.height}, {"width", &out.width}}};
  for (const auto& [k, dst] : dims) {
    const auto* v = member(t, k);
    const std::string field = "tty_size." + std::string(k);
    if (!v || !v->is_int64() || v->get_int64() < 1 || v->get_int64() > 65535)
      return params_error(field, field + " must be an integer from 1 to 65535");
    *dst = static_cast<std::uint16_t>(v->get_int64());
  }
  return std::nullopt;
}

// A client's string quoted in an error message: at most 64 bytes of it (cut
// at a UTF-8 boundary), so an answer never echoes megabytes back.
std::string quoted(std::string_view s) {
  constexpr std::size_t max = 64;
  if (s.size() <= max)
    return "\"" + std::string(s) + "\"";
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80)
    --n;
  return "\"" + std::string(s.substr(0, n)) + "\"... (" + std::to_string(s.size()) + " bytes)";
}

std::optional<rpc_error> session_name(const json::value& params, std::string& out) {
  const auto* s = member(params, "session");
  if (!s || !s->is_string())
    return params_error("session", "session must be a string");
  out = std::string(s->get_string());
  return std::nullopt;
}

}  // namespace

params_result<no_params> decode_no_params(const json::value& p) {
  if (auto e = check_members(p, {}))
    return *e;
  return no_params{};
}

params_result<exec_command> decode_launch(const json::value& p) {
  auto cmd = decode_exec_command(p);
  if (!cmd)
    return to_rpc_error(cmd.error());
  return std::move(*cmd);
}

params_result<wait_params> decode_wait(const json::value& p) {
  if (auto e = check_members(p, {"timeout_ms"}))
    return *e;
  wait_params out;
  if (member(p, "timeout_ms")) {
    std::int64_t t = 0;
    if (auto e = duration(p, "timeout_ms", t))
      return *e;
    out.timeout_ms = t;
  }
  return out;
}

params_result<signal_params> decode_signal(const json::value& p) {
  if (auto e = check_members(p, {"signal"}))
    return *e;
  const auto* s = member(p, "signal");
  if (!s)
    return params_error("signal", "signal is required");
  signal_params out;
  if (s->is_int64()) {
    out.signal = static_cast<int>(s->get_int64());
    if (s->get_int64() != out.signal)
      return params_error("signal", "invalid signal number");
  } else if (s->is_string()) {
    auto n = signal_from_name(s->get_string());
    if (!n)
      return params_error("signal", "unknown signal " + quoted(s->get_string()));
    out.signal = *n;
  } else {
    return params_error("signal", "signal must be a number or a name");
  }
  return out;
}

params_result<shutdown_params> decode_shutdown(const json::value& p) {
  if (auto e = check_members(p, {"signal", "grace_period_ms"}))
    return *e;
  shutdown_params out;
  if (const auto* s = member(p, "signal")) {
    if (!s->is_string())
      return params_error("signal", "signal must be a name such as \"SIGTERM\"");
    // Checked here, not by the executor: a refused Shutdown never runs (and
    // is never an event), and what is kept is the canonical name.
    auto n = signal_from_name(s->get_string());
    if (!n)
      return params_error("signal", "unknown signal " + quoted(s->get_string()));
    out.signal = signal_name(*n);
  }
  if (member(p, "grace_period_ms")) {
    std::int64_t g = 0;
    if (auto e = duration(p, "grace_period_ms", g))
      return *e;
    out.grace_period_ms = g;
  }
  return out;
}

params_result<events_params> decode_events(const json::value& p) {
  if (auto e = check_members(p, {"since", "limit", "follow"}))
    return *e;
  events_params out;
  if (const auto* f = member(p, "follow")) {
    if (!f->is_bool())
      return params_error("follow", "follow must be a boolean");
    out.follow = f->get_bool();
  }
  if (const auto* s = member(p, "since")) {
    if (!s->is_int64() || s->get_int64() < 0)
      return params_error("since", "since must be a non-negative integer");
    out.since = static_cast<std::uint64_t>(s->get_int64());
  }
  if (const auto* l = member(p, "limit")) {
    constexpr auto max = static_cast<std::int64_t>(event_journal::max_page_events);
    if (!l->is_int64() || l->get_int64() < 1 || l->get_int64() > max)
      return params_error("limit", "limit must be an integer from 1 to " + std::to_string(max));
    out.limit = static_cast<std::size_t>(l->get_int64());
  }
  return out;
}

params_result<stats_params> decode_stats(const json::value& p) {
  if (auto e = check_members(p, {"interval_ms"}))
    return *e;
  stats_params out;
  if (auto e = duration(p, "interval_ms", out.interval_ms))
    return *e;
  if (out.interval_ms < 10)
    return params_error("interval_ms", "interval_ms must be at least 10");
  return out;
}

params_result<stats_cancel_params> decode_stats_cancel(const json::value& p) {
  if (auto e = check_members(p, {"subscription"}))
    return *e;
  const auto* sub = member(p, "subscription");
  if (!sub || !sub->is_string())
    return params_error("subscription", "subscription must be a string");
  return stats_cancel_params{std::string(sub->get_string())};
}

params_result<update_resources_params> decode_update_resources(const json::value& p) {
  if (auto e = check_members(p, {"resources"}))
    return *e;
  const auto* res = member(p, "resources");
  if (!res)
    return params_error("resources", "resources is required");
  auto decoded = decode_resources(*res, "resources");
  if (!decoded)
    return to_rpc_error(decoded.error());
  return update_resources_params{std::move(*decoded)};
}

params_result<exec_params> decode_exec(const json::value& p) {
  if (auto e = check_members(p, {"cmd", "args", "timeout_ms"}))
    return *e;
  exec_params out;
  if (auto e = command(p, out.cmd, out.args))
    return *e;
  if (auto e = duration(p, "timeout_ms", out.timeout_ms))
    return *e;
  return out;
}

params_result<exec_session_options> decode_exec_start(const json::value& p) {
  if (auto e = check_members(p, {"cmd", "args", "tty", "tty_size", "fds"}))
    return *e;
  exec_session_options out;
  if (auto e = command(p, out.cmd, out.args))
    return *e;
  out.stdio = exec_stdio::pumped;
  if (const auto* f = member(p, "fds")) {
    if (!f->is_bool())
      return params_error("fds", "fds must be a boolean");
    if (f->get_bool())
      out.stdio = exec_stdio::passed;
  }
  if (const auto* t = member(p, "tty")) {
    if (!t->is_bool())
      return params_error("tty", "tty must be a boolean");
    out.tty = t->get_bool();
  }
  if (const auto* t = member(p, "tty_size")) {
    if (!out.tty)
      return params_error("tty_size", "tty_size needs \"tty\": true");
    if (auto e = terminal_size(*t, out.size))
      return *e;
  }
  return out;
}

params_result<exec_input_params> decode_exec_input(const json::value& p) {
  if (auto e = check_members(p, {"session", "data", "close", "tty_size"}))
    return *e;
  exec_input_params out;
  if (auto e = session_name(p, out.session))
    return *e;
  if (const auto* d = member(p, "data")) {
    if (!d->is_string())
      return params_error("data", "data must be a base64 string");
    out.data = base64_decode(d->get_string());
    if (!out.data)
      return params_error("data", "data is not base64 (RFC 4648, with padding)");
  }
  if (const auto* cl = member(p, "close")) {
    if (!cl->is_bool())
      return params_error("close", "close must be a boolean");
    out.close = cl->get_bool();
  }
  if (const auto* t = member(p, "tty_size")) {
    tty_size size;
    if (auto e = terminal_size(*t, size))
      return *e;
    out.size = size;
  }
  return out;
}

params_result<exec_cancel_params> decode_exec_cancel(const json::value& p) {
  if (auto e = check_members(p, {"session"}))
    return *e;
  exec_cancel_params out;
  if (auto e = session_name(p, out.session))
    return *e;
  return out;
}

namespace {
template <class T>
std::optional<rpc_error> verdict(const params_result<T>& r) {
  if (r)
    return std::nullopt;
  return r.error();
}
}  // namespace

std::optional<rpc_error> check_request_params(std::string_view m, const json::value& p) {
  if (m == "Version" || m == "Destroy")
    return verdict(decode_no_params(p));
  if (m == "Launch")
    return verdict(decode_launch(p));
  if (m == "Wait")
    return verdict(decode_wait(p));
  if (m == "Signal")
    return verdict(decode_signal(p));
  if (m == "Shutdown")
    return verdict(decode_shutdown(p));
  if (m == "Events")
    return verdict(decode_events(p));
  if (m == "Stats")
    return verdict(decode_stats(p));
  if (m == "Stats.Cancel" || m == "Events.Cancel")
    return verdict(decode_stats_cancel(p));
  if (m == "UpdateResources")
    return verdict(decode_update_resources(p));
  if (m == "Exec")
    return verdict(decode_exec(p));
  if (m == "ExecStreaming.Start")
    return verdict(decode_exec_start(p));
  if (m == "ExecStreaming.Input")
    return verdict(decode_exec_input(p));
  if (m == "ExecStreaming.Cancel")
    return verdict(decode_exec_cancel(p));
  return rpc_error{code::method_not_found, "method not found: \"" + std::string(m) + "\"", {}};
}

}  // namespace taskexec::rpc
