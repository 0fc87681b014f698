// The JSON form of the API types (the protocol's params and results), in
// one place. Field names are snake_case; times are integers in Unix
// nanoseconds with a `_unix_nano` suffix.
//
// Decoding is strict: an unknown field, a wrong type or an out-of-range
// number is a `decode_error` naming the field by its path ("resources.cpu_shares",
// "mounts[1].readonly"), which the daemon turns into JSON-RPC -32602 with
// `error.data.field`. Absent fields keep their defaults.
//
// Boost.JSON customisation: `boost::json::value_from(x)` works for every type
// here, and `boost::json::value_to<exec_command>(v)` throws
// `taskexec::decode_exception` on the first error (use `decode_exec_command`
// to get the error as a value).
#pragma once

#include <boost/json/fwd.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/system/result.hpp>

#include <stdexcept>
#include <string>

#include "taskexec/types.hpp"

namespace taskexec {

struct decode_error {
  std::string field;    ///< path of the offending field; empty for the whole value
  std::string message;  ///< complete, e.g. `unknown field "colour"`

  friend bool operator==(const decode_error&, const decode_error&) = default;
};

class decode_exception : public std::runtime_error {
 public:
  explicit decode_exception(decode_error e) : std::runtime_error(e.message), error_(std::move(e)) {}
  const decode_error& error() const noexcept { return error_; }

 private:
  decode_error error_;
};

[[noreturn]] void throw_exception_from_error(const decode_error& e,
                                             const boost::source_location& loc);

template <class T>
using decode_result = boost::system::result<T, decode_error>;

decode_result<exec_command> decode_exec_command(const boost::json::value& v);
decode_result<task_resources> decode_resources(const boost::json::value& v,
                                               const std::string& path = "resources");

void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v, const task_resources& r);
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v, const mount_config& m);
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v, const device_config& d);
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v,
                const network_isolation_spec& n);
/// Every field but the embedding-only stdout_fd / stderr_fd.
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v, const exec_command& c);
/// {pid, exit_code, signal, time_unix_nano, oom_killed}
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v, const process_state& p);

/// {timestamp_unix_nano, resource_usage: {memory_stats, cpu_stats}, pids: {"<pid>": ...}}
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v,
                const task_resource_usage& u);
void tag_invoke(const boost::json::value_from_tag&, boost::json::value& v, const resource_usage& u);
/// Append to `out` the JSON text of `u`: byte for byte what
/// serialize(value_from(u)) gives, written straight into `out` (no value
/// tree; no allocation once `out` has the room). For the daemon's Stats
/// ticks.
void append_json(std::string& out, const task_resource_usage& u);

exec_command tag_invoke(const boost::json::value_to_tag<exec_command>&,
                        const boost::json::value& v);
task_resources tag_invoke(const boost::json::value_to_tag<task_resources>&,
                          const boost::json::value& v);
process_state tag_invoke(const boost::json::value_to_tag<process_state>&,
                         const boost::json::value& v);

}  // namespace taskexec
