#include "taskexec/rpc/message.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value_stack.hpp>

#include <map>
#include <set>

#include "taskexec/base64.hpp"

namespace taskexec::rpc {
namespace json = boost::json;

namespace {

invalid invalid_request(json::value id, std::string message) {
  return {std::move(id), {code::invalid_request, std::move(message), {}}};
}

// Boost.JSON (1.81) keeps the last value of a key that appears twice in an
// object: {"method":"Version","method":"Destroy"} would be a Destroy that
// passed for a Version. A request with a duplicate key is refused, so the
// parse counts the members each object has in the text (the handler of
// boost::json::parser, plus a counter); an object built with fewer members
// than that had a duplicate. Only then is the text parsed again to name it.
struct counting_handler {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  json::value_stack st;
  std::size_t members = 0;

  counting_handler(unsigned char* buffer, std::size_t size) : st({}, buffer, size) { st.reset(); }
  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) { return true; }
  bool on_object_end(std::size_t n, json::error_code&) {
    members += n;
    st.push_object(n);
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    st.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    st.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    st.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    st.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    st.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view, json::error_code&) {
    st.push_double(d);
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    st.push_bool(b);
    return true;
  }
  bool on_null(json::error_code&) {
    st.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

std::size_t count_members(const json::value& v) {
  std::size_t n = 0;
  if (const auto* o = v.if_object()) {
    n += o->size();
    for (const auto& kv : *o)
      n += count_members(kv.value());
  } else if (const auto* a = v.if_array()) {
    for (const auto& e : *a)
      n += count_members(e);
  }
  return n;
}

// A key of the client's in a message: at most 64 bytes of it (cut at a
// UTF-8 boundary), so an answer never echoes a huge key back.
std::string shown_key(std::string_view k) {
  constexpr std::size_t max = 64;
  if (k.size() <= max)
    return std::string(k);
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(k[n]) & 0xc0) == 0x80)
    --n;
  return std::string(k.substr(0, n)) + "...";
}

// Where the first duplicate key of one request (a batch member) is.
struct duplicate {
  std::string path;   // from the request object down: "method", "params.resources.cpu_shares"
  std::string field;  // inside params, the path from params down ("resources.cpu_shares")
  bool in_params = false;
  bool is_id = false;  // the request's own "id" member is the duplicate
};

// The second pass (only for a message that has a duplicate): keys as the
// parser decodes them ("a" and "\u0061" are one key), the first duplicate
// of each request, by the request's index in the batch (0 outside one).
struct duplicate_finder {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  struct frame {
    bool object = false;
    std::set<std::string, std::less<>> keys;
    std::string key;        // the member being read (objects)
    std::size_t index = 0;  // the element being read (arrays)
  };
  std::vector<frame> stack;
  std::string key_part;
  bool batch = false;
  std::map<std::size_t, duplicate> found;

  void value_done() {
    if (!stack.empty() && !stack.back().object)
      ++stack.back().index;
  }
  void open(bool object) {
    if (stack.empty())
      batch = !object;
    stack.push_back(frame{object, {}, {}, 0});
  }
  void close() {
    stack.pop_back();
    value_done();
  }
  void key(std::string k) {
    auto& top = stack.back();
    if (top.keys.contains(k)) {
      const std::size_t member = batch ? stack.front().index : 0;
      if (!found.contains(member))
        found.emplace(member, locate(k));
    } else {
      top.keys.insert(k);
    }
    top.key = std::move(k);
  }
  duplicate locate(const std::string& k) const {
    const std::size_t request = batch ? 1 : 0;  // the frame of the request object
    duplicate d;
    std::string path;
    std::string inner;  // the part below the request's first member
    for (std::size_t i = request; i + 1 < stack.size(); ++i) {
      const auto& f = stack[i];
      const std::string name = f.object ? shown_key(f.key) : "[" + std::to_string(f.index) + "]";
      // An empty key is a segment too: "a..b" for {"a":{"":{"b":...}}}.
      path += f.object && i > request ? "." + name : name;
      if (i > request)
        inner += f.object && !inner.empty() ? "." + name : name;
    }
    const std::string last = shown_key(k);
    d.path = path.empty() ? last : path + "." + last;
    const auto& req = stack[request];
    d.in_params = stack.size() > request + 1 && req.object && req.key == "params";
    d.field = inner.empty() ? last : inner + "." + last;
    d.is_id = stack.size() == request + 1 && k == "id";
    return d;
  }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    open(true);
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    close();
    return true;
  }
  bool on_array_begin(json::error_code&) {
    open(false);
    return true;
  }
  bool on_array_end(std::size_t, json::error_code&) {
    close();
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_part.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key_part.append(s.data(), s.size());
    key(std::move(key_part));
    key_part.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) {
    value_done();
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, json::error_code&) {
    value_done();
    return true;
  }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) {
    value_done();
    return true;
  }
  bool on_double(double, json::string_view, json::error_code&) {
    value_done();
    return true;
  }
  bool on_bool(bool, json::error_code&) {
    value_done();
    return true;
  }
  bool on_null(json::error_code&) {
    value_done();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

json::parse_options message_options() {
  json::parse_options opts;
  opts.max_depth = 64;
  return opts;
}

// The text as a value, and whether an object in it had a key twice.
json::value parse_counting(std::string_view text, json::error_code& ec, bool& duplicates) {
  unsigned char temp[BOOST_JSON_STACK_BUFFER_SIZE];
  json::basic_parser<counting_handler> p(message_options(), temp, sizeof temp);
  const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
  if (!ec && n < text.size())
    ec = json::error::extra_data;
  if (ec)
    return nullptr;
  json::value v = p.handler().st.release();
  duplicates = count_members(v) != p.handler().members;
  return v;
}

std::map<std::size_t, duplicate> find_duplicates(std::string_view text) {
  json::basic_parser<duplicate_finder> p(message_options());
  json::error_code ec;
  p.write_some(false, text.data(), text.size(), ec);  // it parsed once: it parses again
  return std::move(p.handler().found);
}

// The answer to a request with a duplicate key: -32602 naming the field
// inside params, -32600 anywhere else; its id when it has a usable one.
invalid duplicate_error(const json::value& member, const duplicate& d) {
  json::value id = nullptr;
  if (const auto* o = member.if_object(); o && !d.is_id) {
    if (const auto* i = o->if_contains("id");
        i && (i->is_string() || i->is_int64() || i->is_uint64()))
      id = *i;
  }
  if (d.in_params) {
    rpc_error e{code::invalid_params, "duplicate key \"" + d.field + "\" in params", {}};
    e.data["field"] = d.field;
    return {std::move(id), std::move(e)};
  }
  return invalid_request(std::move(id), "duplicate key \"" + d.path + "\"");
}

}  // namespace

namespace {

// As parse_request, taking `v` apart: its params are moved out (an
// ExecStreaming.Input's data is the bulk of it), not copied.
item take_request(json::value& v) {
  if (!v.is_object())
    return invalid_request(nullptr, "a request must be an object");
  auto& o = v.get_object();

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
  if (auto* p = o.if_contains("params")) {
    if (!p->is_object() && !p->is_array())
      return invalid_request(id, "params must be an object or an array");
    params = std::move(*p);
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

}  // namespace

item parse_request(const json::value& v) {
  json::value copy = v;
  return take_request(copy);
}

std::optional<request> parse_exec_input(std::string_view line) {
  constexpr std::string_view head = R"({"jsonrpc":"2.0","id":)";
  constexpr std::string_view method = R"(,"method":"ExecStreaming.Input","params":{"session":")";
  constexpr std::string_view data = R"(","data":")";
  constexpr std::string_view tail = R"("}})";
  constexpr std::size_t max_id_digits = 18;  // any such number fits an int64
  constexpr std::size_t max_session = 256;
  if (!line.starts_with(head))
    return std::nullopt;
  line.remove_prefix(head.size());
  std::size_t digits = 0;
  std::int64_t id = 0;
  while (digits < line.size() && line[digits] >= '0' && line[digits] <= '9') {
    if (digits == max_id_digits)
      return std::nullopt;  // before the digit: a 19th would overflow
    id = id * 10 + (line[digits] - '0');
    ++digits;
  }
  if (digits == 0 || (digits > 1 && line[0] == '0'))
    return std::nullopt;
  line.remove_prefix(digits);
  if (!line.starts_with(method))
    return std::nullopt;
  line.remove_prefix(method.size());
  std::size_t n = 0;
  for (; n < line.size() && n <= max_session; ++n) {
    const char c = line[n];
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    if (!plain)
      break;
  }
  if (n == 0 || n > max_session)
    return std::nullopt;
  const std::string_view session = line.substr(0, n);
  line.remove_prefix(n);
  // The size first: `","data":"}}` starts with the one and ends with the
  // other, their '"' shared.
  if (line.size() < data.size() + tail.size() || !line.starts_with(data) || !line.ends_with(tail))
    return std::nullopt;
  line.remove_prefix(data.size());
  line.remove_suffix(tail.size());
  // B: what lies between; base64 has no '"' or '\\', and a B that holds
  // anything but base64 is refused by the decoder below.
  std::string bytes;
  if (!base64_decode_append(bytes, line))
    return std::nullopt;
  request r;
  r.id = json::value(id);
  r.method = "ExecStreaming.Input";
  json::object params;
  params["session"] = session;
  r.params = std::move(params);
  r.input_data = std::move(bytes);
  return r;
}

message parse_message(std::string_view text) {
  json::error_code ec;
  bool duplicates = false;
  json::value v = parse_counting(text, ec, duplicates);
  message m;
  if (ec) {
    m.items.push_back(invalid{nullptr, {code::parse_error, "parse error: " + ec.message(), {}}});
    return m;
  }
  std::map<std::size_t, duplicate> dups;
  if (duplicates)
    dups = find_duplicates(text);
  if (v.is_array()) {
    auto& a = v.get_array();
    if (a.empty()) {
      m.items.push_back(invalid_request(nullptr, "empty batch"));
      return m;
    }
    m.batch = true;
    m.items.reserve(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (auto d = dups.find(i); d != dups.end())
        m.items.push_back(duplicate_error(a[i], d->second));
      else
        m.items.push_back(take_request(a[i]));
    }
    return m;
  }
  if (auto d = dups.find(0); d != dups.end())
    m.items.push_back(duplicate_error(v, d->second));
  else
    m.items.push_back(take_request(v));
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
      case errc::resource_busy:
        out.error_code = code::internal_error;
        break;
    }
    return out;
  }
  // An OS error: its errno travels in data. While launching the task or
  // starting an Exec command (Exec, ExecStreaming.Start) it is why the
  // process could not be started (opening stdout_path, pipe2, clone, ...).
  out.data["errno"] = e.code.value();
  out.error_code = op == task_operation::launch || op == task_operation::exec
                       ? code::launch_failed
                       : code::internal_error;
  return out;
}

rpc_error to_rpc_error(const decode_error& e) {
  rpc_error out{code::invalid_params, e.message, {}};
  if (!e.field.empty())
    out.data["field"] = e.field;
  return out;
}

}  // namespace taskexec::rpc
