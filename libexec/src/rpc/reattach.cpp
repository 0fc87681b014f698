// The reattach config and the daemon's handshake line: pure parsers (no
// I/O), kept apart from the client so the fuzz build needs nothing else.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "taskexec/remote_executor.hpp"

namespace taskexec {
namespace json = boost::json;

std::string to_json(const reattach_config& c) {
  json::object o{{"socket", c.socket}, {"pid", c.pid}, {"pid_start_time", c.pid_start_time}};
  if (!c.exit_file.empty())
    o["exit_file"] = c.exit_file;
  return json::serialize(o);
}

result<reattach_config> parse_reattach_config(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object())
    return make_error(errc::invalid_argument, "reattach config is not a JSON object");
  const auto& o = v.as_object();
  for (const auto& [k, _] : o) {
    if (k != "socket" && k != "pid" && k != "pid_start_time" && k != "exit_file")
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
  if (const auto* f = o.if_contains("exit_file")) {
    if (!f->is_string() || f->as_string().empty() || f->as_string().front() != '/' ||
        f->as_string().size() > 4096)
      return make_error(errc::invalid_argument,
                        "reattach config: exit_file must be an absolute path");
    c.exit_file = f->as_string();
  }
  return c;
}

std::string handshake_exit_file(std::string_view line) {
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  const json::object* h = ec ? nullptr : v.if_object();
  const auto* f = h ? h->if_contains("exit_file") : nullptr;
  if (!f || !f->is_string() || f->as_string().empty() || f->as_string().front() != '/' ||
      f->as_string().size() > 4096)
    return {};
  return std::string(f->as_string());
}

result<int> parse_handshake(std::string_view line) {
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  const json::object* h = ec ? nullptr : v.if_object();
  const auto* proto = h ? h->if_contains("protocol") : nullptr;
  const auto* pid = h ? h->if_contains("pid") : nullptr;
  if (!proto || !proto->is_string() || proto->get_string() != "taskexec-jsonrpc" || !pid ||
      !pid->is_int64() || pid->get_int64() <= 0 || pid->get_int64() > 0x3fffffff)
    return make_error(errc::protocol_error, "not a taskexecd handshake");
  return static_cast<int>(pid->get_int64());
}

}  // namespace taskexec
