// The JSON-RPC request decoder and every method's params decoder.
//
// Input: byte 0 picks the mode. Below 240, byte 0 % 15 picks: mode 0 treats
// the rest as one NDJSON line from a client (single request or batch): each
// valid request's params go through its method's decoder. Modes 1..14 treat
// the rest as the params of one method, so the fuzzer reaches each
// decoder's depth directly. From 240 on (the duplicate mode), bytes 1..3
// choose an object, a key of it and a spelling, and the rest is JSON: it is
// written back with that key twice (the second time null, and maybe with
// its first character as a \u escape).
// Properties: nothing throws or crashes; in mode 0, a line the daemon's
// fast path (parse_exec_input) takes is the request the parser makes of it; every error is one the
// protocol defines, with data.field naming a member when it is -32602; a decoded Launch or
// UpdateResources encodes back to JSON that decodes again to the same JSON; responses serialise. In
// the duplicate mode: the request holding the duplicate is refused, -32602 when the object is
// inside its params and -32600 anywhere else, the message naming the key; every other request of
// the message gets the verdict it gets without the duplicate.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>

#include <array>
#include <string>
#include <string_view>

#include "fuzz.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/rpc/message.hpp"
#include "taskexec/rpc/params.hpp"

namespace json = boost::json;
namespace rpc = taskexec::rpc;

namespace {

constexpr std::array<std::string_view, 14> methods{"Version",
                                                   "Launch",
                                                   "Wait",
                                                   "Signal",
                                                   "Shutdown",
                                                   "Destroy",
                                                   "Events",
                                                   "Stats",
                                                   "Stats.Cancel",
                                                   "UpdateResources",
                                                   "Exec",
                                                   "ExecStreaming.Start",
                                                   "ExecStreaming.Input",
                                                   "ExecStreaming.Cancel"};

void check_error(const rpc::rpc_error& e) {
  const int c = static_cast<int>(e.error_code);
  FUZZ_CHECK((c <= -32600 && c >= -32603) || c == -32700 || (c <= -32001 && c >= -32009));
  FUZZ_CHECK(!e.message.empty());
  if (const auto* f = e.data.if_contains("field"))
    FUZZ_CHECK(f->is_string());
  // The answer serialises and parses back.
  const auto text = json::serialize(rpc::make_error(nullptr, e));
  FUZZ_CHECK(!json::parse(text).is_null());
}

void check_params(std::string_view method, const json::value& params) {
  if (auto e = rpc::check_request_params(method, params)) {
    check_error(*e);
    return;
  }
  // Round trips: what decoded encodes to JSON that decodes to the same JSON.
  if (method == "Launch") {
    auto cmd = rpc::decode_launch(params);
    FUZZ_CHECK(cmd.has_value());
    const json::value again = json::value_from(*cmd);
    auto re = rpc::decode_launch(again);
    FUZZ_CHECK(re.has_value());
    FUZZ_CHECK(json::value_from(*re) == again);
  } else if (method == "UpdateResources") {
    auto r = rpc::decode_update_resources(params);
    FUZZ_CHECK(r.has_value());
    const json::value again = json::value_from(r->resources);
    auto re = taskexec::decode_resources(again);
    FUZZ_CHECK(re.has_value());
    FUZZ_CHECK(json::value_from(*re) == again);
  }
}

// The duplicate mode's writer: `v` as JSON, with the `which`th object (in
// document order) given its key `key_pick` % size a second time.
struct dup_writer {
  std::size_t which = 0;
  std::size_t key_pick = 0;
  bool escape = false;
  std::size_t seen = 0;
  bool done = false;
  std::string key;         // the key written twice
  std::size_t member = 0;  // the top-level array element holding it (batches)
  bool in_params = false;  // inside the request's params (below the request object)
  std::string out;

  void write(const json::value& v, int depth, bool under_params, std::size_t top_index) {
    if (const auto* o = v.if_object()) {
      const bool here = seen++ == which && !o->empty();
      out += '{';
      bool first = true;
      for (const auto& kv : *o) {
        if (!first)
          out += ',';
        first = false;
        out += json::serialize(json::string(kv.key()));
        out += ':';
        // Below the request object (depth 0, or 1 in a batch) the params
        // member's contents are params.
        write(kv.value(), depth + 1, under_params || (is_request(depth) && kv.key() == "params"),
              top_index);
      }
      if (here) {
        auto it = o->begin() + static_cast<std::ptrdiff_t>(key_pick % o->size());
        key = std::string(it->key());
        std::string spelled = json::serialize(json::string(key));
        // Only a first character that serialises as itself (printable
        // ASCII but " and \) is respelled.
        const unsigned char c0 = key.empty() ? 0 : static_cast<unsigned char>(key[0]);
        if (escape && c0 >= 0x20 && c0 < 0x7f && c0 != '"' && c0 != '\\') {
          static constexpr char hex[] = "0123456789abcdef";
          spelled = std::string("\"\\u00") + hex[c0 >> 4] + hex[c0 & 0xf] + spelled.substr(2);
        }
        out += "," + spelled + ":null";
        done = true;
        member = top_index;
        in_params = under_params;
      }
      out += '}';
    } else if (const auto* a = v.if_array()) {
      out += '[';
      for (std::size_t i = 0; i < a->size(); ++i) {
        if (i)
          out += ',';
        write((*a)[i], depth + 1, under_params, depth == 0 ? i : top_index);
      }
      out += ']';
    } else {
      out += json::serialize(v);
    }
  }
  bool batch = false;
  bool is_request(int depth) const { return batch ? depth == 1 : depth == 0; }
};

void duplicate_mode(const std::uint8_t* data, std::size_t size) {
  if (size < 4)
    return;
  const std::string_view text = as_text(data + 4, size - 4);
  json::parse_options opts;
  opts.max_depth = 64;
  boost::system::error_code ec;
  const json::value v = json::parse(text, ec, {}, opts);  // no duplicates: parse kept one of each
  if (ec)
    return;
  // A number too large for a double parses as infinity, which Boost.JSON
  // (1.81) writes back as "Infinity": not JSON. Such a value cannot be
  // written again with a duplicate, so the mode has nothing to compare.
  boost::system::error_code again;
  (void)json::parse(json::serialize(v), again, {}, opts);
  if (again)
    return;
  dup_writer w;
  w.which = data[1];
  w.key_pick = data[2];
  w.escape = (data[3] & 1) != 0;
  w.batch = v.is_array();
  w.write(v, 0, false, 0);
  if (!w.done)
    return;  // no object (or only empty ones) to give a key twice
  const auto original = rpc::parse_message(json::serialize(v));
  const auto dup = rpc::parse_message(w.out);
  FUZZ_CHECK(dup.batch == original.batch);
  FUZZ_CHECK(dup.items.size() == original.items.size());
  for (std::size_t i = 0; i < dup.items.size(); ++i) {
    const auto* bad = std::get_if<rpc::invalid>(&dup.items[i]);
    if (i != w.member) {
      // The others: the same verdict as without the duplicate.
      FUZZ_CHECK(dup.items[i].index() == original.items[i].index());
      if (bad)
        FUZZ_CHECK(bad->error.message == std::get<rpc::invalid>(original.items[i]).error.message);
      continue;
    }
    FUZZ_CHECK(bad != nullptr);
    check_error(bad->error);
    FUZZ_CHECK(bad->error.error_code ==
               (w.in_params ? rpc::code::invalid_params : rpc::code::invalid_request));
    FUZZ_CHECK(bad->error.message.starts_with("duplicate key \""));
    // Named by its first 64 bytes at most.
    FUZZ_CHECK(bad->error.message.find(w.key.substr(0, std::min<std::size_t>(w.key.size(), 32))) !=
               std::string::npos);
  }
}

// parse_exec_input (the daemon's fast path) against the parser: a line it
// takes is one request, the same id, method, session and decoded data as
// parse_message and decode_exec_input make of it.
void fast_input_agrees(std::string_view line) {
  auto fast = rpc::parse_exec_input(line);
  if (!fast)
    return;
  const auto msg = rpc::parse_message(line);
  FUZZ_CHECK(!msg.batch && msg.items.size() == 1);
  const auto* r = std::get_if<rpc::request>(&msg.items.front());
  FUZZ_CHECK(r != nullptr);
  FUZZ_CHECK(fast->id.has_value() && r->id.has_value() && *fast->id == *r->id &&
             fast->id->kind() == r->id->kind());
  FUZZ_CHECK(fast->method == r->method && r->method == "ExecStreaming.Input");
  FUZZ_CHECK(!r->input_data.has_value());
  auto slow = rpc::decode_exec_input(r->params);
  FUZZ_CHECK(slow.has_value());
  FUZZ_CHECK(slow->data.has_value() && fast->input_data.has_value() &&
             *slow->data == *fast->input_data);
  FUZZ_CHECK(!slow->close && !slow->size.has_value());
  // Its params: the session alone, which decodes as the parser's does.
  const auto* p = fast->params.if_object();
  FUZZ_CHECK(p != nullptr && p->size() == 1);
  auto quick = rpc::decode_exec_input(fast->params);
  FUZZ_CHECK(quick.has_value() && quick->session == slow->session && !quick->data.has_value());
}

}  // namespace

FUZZ_TARGET(data, size) {
  if (size < 1)
    return 0;
  if (data[0] >= 240) {
    duplicate_mode(data, size);
    return 0;
  }
  const std::string_view text = as_text(data + 1, size - 1);
  if (data[0] % 15 == 0) {
    fast_input_agrees(text);
    const auto msg = rpc::parse_message(text);
    FUZZ_CHECK(!msg.items.empty());
    FUZZ_CHECK(msg.batch || msg.items.size() == 1);
    for (const auto& item : msg.items) {
      if (const auto* bad = std::get_if<rpc::invalid>(&item)) {
        check_error(bad->error);
        continue;
      }
      const auto& r = std::get<rpc::request>(item);
      FUZZ_CHECK(r.params.is_null() || r.params.is_object() || r.params.is_array());
      check_params(r.method, r.params);
    }
    return 0;
  }
  boost::system::error_code ec;
  const json::value params = json::parse(text, ec);
  if (ec)
    return 0;
  check_params(methods[data[0] % 15 - 1], params);
  return 0;
}
