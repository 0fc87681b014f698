// Logging through Boost.Log.
//
// The library emits records to the global Boost.Log core with these
// attributes, so an embedding program can add its own sink (and filter or
// format on them) with boost::log::core::get()->add_sink(...):
//   "Severity"  taskexec::log_level
//   "Component" std::string  ("reaper", "executor", "isolation.host", ...)
//   "TaskID"    std::string  (absent when the record is not about one task)
//   "RequestID" std::string  (absent outside a request)
// Without any sink, Boost.Log's default prints everything to stderr; a
// program that wants silence calls configure_logging with level `off`.
#pragma once

#include <iosfwd>
#include <string>
#include <string_view>

namespace taskexec {

enum class log_level { trace, debug, info, warning, error, off };
enum class log_format { text, json };

std::string_view to_string(log_level l) noexcept;
/// "trace", "debug", "info", "warn"/"warning", "error", "off"; false when unknown.
bool parse_log_level(std::string_view s, log_level& out) noexcept;
bool parse_log_format(std::string_view s, log_format& out) noexcept;

struct log_options {
  log_level level = log_level::info;
  log_format format = log_format::text;
  /// Where records go; nullptr means std::clog. Must outlive the sink.
  std::ostream* stream = nullptr;
};

/// Replace every sink of the global core with one formatted per `options`.
/// Text lines: `2026-11-27T20:45:47.123Z info  [executor] task=t1 req=7 launched pid=42`
/// JSON lines: {"ts":"...","level":"info","component":"executor","task_id":"t1",
///             "request_id":"7","msg":"launched pid=42"}
void configure_logging(const log_options& options);

namespace detail {
/// Emit one record (used by the library; cheap when filtered out).
void log(log_level level, std::string_view component, std::string_view task_id,
         std::string_view request_id, std::string_view message);
bool log_enabled(log_level level) noexcept;
}  // namespace detail

}  // namespace taskexec
