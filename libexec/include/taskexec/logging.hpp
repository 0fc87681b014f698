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

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
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
/// A record is always one line: in text lines every field goes through
/// escape_log_text (records carry what clients sent: a command name, a
/// path); JSON lines quote every string.
void configure_logging(const log_options& options);

/// `s` with nothing that could end a line, forge one or drive a terminal:
/// `\` becomes `\\`; newline, carriage return and tab become `\n`, `\r`,
/// `\t`; every other C0 control, DEL and each byte that is not part of valid
/// UTF-8 becomes `\xNN`; the C1 controls (U+0080 to U+009F) become `\u00NN`.
/// Everything else (printable ASCII, valid UTF-8) is kept as it is.
std::string escape_log_text(std::string_view s);

/// Rate limit for a log line that a peer can cause again and again: per
/// key (a uid, an errno), at most one line per `period`; the others are
/// counted, and the next line that passes says how many were not logged.
/// Memory is bounded: at most `max_keys` keys are tracked; when a new key
/// finds the table full, keys whose period has passed are forgotten (with
/// their counts), and if none has, the line passes untracked. Pure: time is passed in.
/// Thread-safety: none.
class log_throttle {
 public:
  using clock = std::chrono::steady_clock;
  explicit log_throttle(clock::duration period, std::size_t max_keys = 1024)
      : period_(period), max_keys_(max_keys) {}
  /// nullopt: suppressed (and counted). Otherwise log the line now, saying
  /// how many lines of this key were suppressed since its last one.
  std::optional<std::uint64_t> admit(std::uint64_t key, clock::time_point now);

 private:
  struct slot {
    clock::time_point last;
    std::uint64_t suppressed = 0;
  };
  clock::duration period_;
  std::size_t max_keys_;
  std::map<std::uint64_t, slot> slots_;
};

namespace detail {
/// Emit one record (used by the library; cheap when filtered out).
void log(log_level level, std::string_view component, std::string_view task_id,
         std::string_view request_id, std::string_view message);
bool log_enabled(log_level level) noexcept;
}  // namespace detail

}  // namespace taskexec
