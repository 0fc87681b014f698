#include "taskexec/rpc/message.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>

namespace taskexec::rpc {
namespace json = boost::json;

namespace {

invalid invalid_request(json::value id, std::string message) {
  return {std::move(id), {code::invalid_request, std::move(message), {}}};
}

}  // namespace

item parse_request(const json::value& v) {
  if (!v.is_object())
    return invalid_request(nullptr, "a request must be an object");
  const auto& o = v.get_object();

  // The id first, so every later error can carry it.
  json::value id = nullptr;
  bool has_id = false;
  if (const auto* i = o.if_contains("id")) {
    if (!(i->is_string() || i->is_int64() || i->is_uint64() || i->is_null()))
      return invalid_request(nullptr, "id must be a string, an integer or null");
    id = *i;
    has_id = true;
  }
  const auto* version = o.if_contains("jsonrpc");
  if (!version || !version->is_string() || version->get_string() != "2.0")
    return invalid_request(id, "jsonrpc must be \"2.0\"");
  const auto* method = o.if_contains("method");
  if (!method || !method->is_string())
    return invalid_request(id, "method must be a string");
  json::value params = nullptr;
  if (const auto* p = o.if_contains("params")) {
    if (!p->is_object() && !p->is_array())
      return invalid_request(id, "params must be an object or an array");
    params = *p;
  }
  for (const auto& kv : o) {
    auto k = kv.key();
    if (k != "jsonrpc" && k != "method" && k != "params" && k != "id")
      return invalid_request(id, "unknown member \"" + std::string(k) + "\"");
  }
  request r;
  if (has_id)
    r.id = std::move(id);
  r.method = std::string(method->get_string());
  r.params = std::move(params);
  return r;
}

message parse_message(std::string_view text) {
  json::parse_options opts;
  opts.max_depth = 64;
  std::error_code ec;
  json::value v = json::parse(text, ec, {}, opts);
  message m;
  if (ec) {
    m.items.push_back(invalid{nullptr, {code::parse_error, "parse error: " + ec.message(), {}}});
    return m;
  }
  if (v.is_array()) {
    const auto& a = v.get_array();
    if (a.empty()) {
      m.items.push_back(invalid_request(nullptr, "empty batch"));
      return m;
    }
    m.batch = true;
    m.items.reserve(a.size());
    for (const auto& e : a)
      m.items.push_back(parse_request(e));
    return m;
  }
  m.items.push_back(parse_request(v));
  return m;
}

json::object make_result(const json::value& id, json::value result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json::object make_error(const json::value& id, const rpc_error& e) {
  json::object err{{"code", static_cast<int>(e.error_code)}, {"message", e.message}};
  if (!e.data.empty())
    err["data"] = e.data;
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(err)}};
}

rpc_error to_rpc_error(const error& e, task_operation op) {
  rpc_error out{code::internal_error, e.message, {}};
  if (e.code.category() == taskexec::category()) {
    switch (static_cast<errc>(e.code.value())) {
      case errc::success:
      case errc::operation_canceled:
        out.error_code = code::internal_error;
        break;
      case errc::invalid_argument:
        out.error_code = code::invalid_params;
        break;
      case errc::not_launched:
        out.error_code = code::task_not_launched;
        break;
      case errc::already_launched:
        out.error_code = code::already_launched;
        break;
      case errc::task_exited:
      case errc::task_destroyed:
        out.error_code = code::task_not_running;
        break;
      case errc::binary_not_found:
      case errc::user_not_found:
      case errc::launch_failed:
        out.error_code = code::launch_failed;
        break;
      case errc::unsupported:
        out.error_code = code::unsupported;
        break;
      case errc::shutdown_incomplete:
      case errc::timed_out:
        out.error_code = code::timed_out;
        break;
      case errc::permission_denied:
        out.error_code = code::permission_denied;
        break;
      case errc::resource_config_failed:
        out.error_code = code::resource_config_failed;
        break;
      case errc::unknown_subscription:
        out.error_code = code::unknown_subscription;
        break;
      case errc::limit_reached:
        out.error_code = code::limit_exceeded;
        break;
      case errc::connection_failed:
      case errc::protocol_error:
      case errc::reattach_refused:
      case errc::internal:
        out.error_code = code::internal_error;
        break;
    }
    return out;
  }
  // An OS error: its errno travels in data; while launching it is why the
  // launch failed (opening stdout_path, clone, ...).
  out.data["errno"] = e.code.value();
  out.error_code = op == task_operation::launch ? code::launch_failed : code::internal_error;
  return out;
}

rpc_error to_rpc_error(const decode_error& e) {
  rpc_error out{code::invalid_params, e.message, {}};
  if (!e.field.empty())
    out.data["field"] = e.field;
  return out;
}

}  // namespace taskexec::rpc
