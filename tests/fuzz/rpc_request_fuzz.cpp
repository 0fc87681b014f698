// The JSON-RPC request decoder and every method's params decoder.
//
// Input: byte 0 picks the mode. Mode 0 treats the rest as one NDJSON line
// from a client (single request or batch): each valid request's params go
// through its method's decoder. Modes 1..14 treat the rest as the params
// of one method, so the fuzzer reaches each decoder's depth directly.
// Properties: nothing throws or crashes; every error is one the protocol
// defines, with data.field naming a member when it is -32602; a decoded
// Launch or UpdateResources encodes back to JSON that decodes again to the
// same JSON; responses serialise.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>

#include <array>
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

}  // namespace

FUZZ_TARGET(data, size) {
  if (size < 1)
    return 0;
  const std::string_view text = as_text(data + 1, size - 1);
  if (data[0] % 15 == 0) {
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
