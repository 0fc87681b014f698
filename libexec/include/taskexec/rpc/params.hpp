// The params of each JSON-RPC method, decoded and checked. Pure: no I/O and
// no state, so every check a request's params get is here (and fuzzed,
// tests/fuzz/rpc_request_fuzz.cpp); the server adds only the checks that
// need its state (a session that exists, a subscription limit).
//
// Each decoder takes the request's `params` (null when absent) and returns
// the typed params or the -32602 error to answer, with data.field naming
// the offending member. Unknown members are refused.
#pragma once

#include <boost/json/fwd.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "taskexec/exec_session.hpp"
#include "taskexec/rpc/message.hpp"
#include "taskexec/types.hpp"

namespace taskexec::rpc {

[[noreturn]] void throw_exception_from_error(const rpc_error& e, const boost::source_location& loc);

template <class T>
using params_result = boost::system::result<T, rpc_error>;

/// -32602 with data.field = `field` (omitted when empty).
rpc_error params_error(const std::string& field, std::string message);

/// Durations beyond this (about 31 years) are refused: they would overflow
/// the clock arithmetic.
inline constexpr std::int64_t max_duration_ms = 1'000'000'000'000;

struct no_params {};
struct wait_params {
  std::optional<std::int64_t> timeout_ms;
};
struct signal_params {
  int signal = 0;  ///< 0 checks that the task exists
};
struct shutdown_params {
  std::string signal = "SIGINT";                ///< a known signal's canonical name ("SIGTERM")
  std::optional<std::int64_t> grace_period_ms;  ///< absent: the server's kill grace
};
struct events_params {
  std::uint64_t since = 0;
  std::size_t limit = 256;  ///< events per page, 1 to event_journal::max_page_events
  bool follow = false;      ///< then stream what follows the page (Events.Event)
};
struct stats_params {
  std::int64_t interval_ms = 1000;  ///< 10 or more
};
struct stats_cancel_params {
  std::string subscription;
};
struct update_resources_params {
  task_resources resources;
};
struct exec_params {
  std::string cmd;
  std::vector<std::string> args;
  std::int64_t timeout_ms = 60000;
};
struct exec_input_params {
  std::string session;
  std::optional<std::string> data;  ///< decoded from base64
  bool close = false;
  std::optional<tty_size> size;
};
struct exec_cancel_params {
  std::string session;
};

/// Version and Destroy: params absent or {}.
params_result<no_params> decode_no_params(const boost::json::value& params);
params_result<exec_command> decode_launch(const boost::json::value& params);
params_result<wait_params> decode_wait(const boost::json::value& params);
params_result<signal_params> decode_signal(const boost::json::value& params);
params_result<shutdown_params> decode_shutdown(const boost::json::value& params);
params_result<events_params> decode_events(const boost::json::value& params);
params_result<stats_params> decode_stats(const boost::json::value& params);
params_result<stats_cancel_params> decode_stats_cancel(const boost::json::value& params);
params_result<update_resources_params> decode_update_resources(const boost::json::value& params);
params_result<exec_params> decode_exec(const boost::json::value& params);
params_result<exec_session_options> decode_exec_start(const boost::json::value& params);
params_result<exec_input_params> decode_exec_input(const boost::json::value& params);
params_result<exec_cancel_params> decode_exec_cancel(const boost::json::value& params);

/// Run the decoder of `method` and keep only its verdict: nullopt when the
/// params are valid, else the error (-32601 for an unknown method).
std::optional<rpc_error> check_request_params(std::string_view method,
                                              const boost::json::value& params);

}  // namespace taskexec::rpc
