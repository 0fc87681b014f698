// JSON-RPC 2.0 messages: validation of requests (single or batch), result and
// error responses, and the one function that turns a domain error into a
// JSON-RPC error. Pure: no I/O.
#pragma once

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "taskexec/codec.hpp"
#include "taskexec/error.hpp"
#include "taskexec/lifecycle.hpp"

namespace taskexec::rpc {

/// JSON-RPC error codes: the standard ones and taskexec's own.
enum class code : int {
  parse_error = -32700,
  invalid_request = -32600,
  method_not_found = -32601,
  invalid_params = -32602,
  internal_error = -32603,
  task_not_launched = -32001,
  already_launched = -32002,
  task_not_running = -32003,
  launch_failed = -32004,
  permission_denied = -32005,
  timed_out = -32006,
  unsupported = -32007,
  resource_config_failed = -32008,
  unknown_subscription = -32009,
  limit_exceeded = -32010,  ///< data.limit: the limit that was reached
};

struct rpc_error {
  code error_code;
  std::string message;
  boost::json::object data;  ///< may carry "errno" and "field"; omitted when empty
};

/// A valid request. `id` is absent for a notification (which gets no response).
struct request {
  std::optional<boost::json::value> id;
  std::string method;
  boost::json::value params;  ///< object, array, or null when absent
  /// ExecStreaming.Input's data, already decoded by parse_exec_input (its
  /// params then hold only "session"); empty otherwise.
  std::optional<std::string> input_data;
};

/// What a received message holds: one request, a batch of them (each either
/// valid or the error response it must get), or one error response to send
/// as it is (parse error, empty batch).
struct invalid {
  boost::json::value id;  ///< the request's id if it could be read, else null
  rpc_error error;
};
using item = std::variant<request, invalid>;
struct message {
  bool batch = false;
  std::vector<item> items;
};

/// Parse and validate one NDJSON line. Invalid JSON (including invalid UTF-8
/// and nesting deeper than 64) is a single -32700 with id null; an empty
/// batch is a single -32600.
message parse_message(std::string_view text);

/// Validate one decoded request object.
item parse_request(const boost::json::value& v);

/// The fast path of the bulk of a stream's traffic: an ExecStreaming.Input
/// exactly as taskexec's client writes it,
///   {"jsonrpc":"2.0","id":N,"method":"ExecStreaming.Input","params":{"session":"S","data":"B"}}
/// (those members in that order, no white space; N an integer of 1 to 18
/// digits without a leading zero, or 0; S 1 to 256 of [A-Za-z0-9._-]; B
/// base64 that decodes), taken apart without a JSON parser: the request
/// with params {"session":"S"} and input_data the decoded B. nullopt for
/// any other line, which parse_message then reads as usual. A request it
/// returns is the one parse_message and decode_exec_input would make of
/// the line (the fuzz target rpc_request checks this on every input).
std::optional<request> parse_exec_input(std::string_view line);

boost::json::object make_result(const boost::json::value& id, boost::json::value result);
boost::json::object make_error(const boost::json::value& id, const rpc_error& e);

/// THE mapping of domain errors to JSON-RPC errors. `op` gives the context:
/// an OS error (data.errno) while launching the task (launch) or starting a
/// command in it (exec) is a launch failure, -32004; elsewhere -32603.
rpc_error to_rpc_error(const error& e, task_operation op);
/// Params that do not decode: -32602 with data.field.
rpc_error to_rpc_error(const decode_error& e);

}  // namespace taskexec::rpc
