// Logging: the library logs through a logger the program installs.
//
// The library never touches Boost.Log (nor any global logging framework):
// every record goes to the sink of the `logger` installed with set_logger().
// Until a program installs one, records of level `warning` and above are
// written to stderr as text lines (format_log_line). A program that wants
// silence installs `logger{.level = log_level::off}`; one that has its own
// logging (Boost.Log, spdlog, ...) installs a sink that forwards records to it.
//
//   taskexec::set_logger({.level = taskexec::log_level::info,
//                         .sink = [](const taskexec::log_record& r) {
//                           BOOST_LOG_SEV(lg, to_mine(r.level)) << r.component << ": "
//                                                                << r.message;
//                         }});
//
// The daemon (taskexecd) installs a sink of its own (text, JSON or journald
// lines on its log file, or the journal's socket) without Boost.Log; that
// configuration lives with the daemon (apps/common/daemon_logging.hpp), not here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace taskexec {

enum class log_level { trace, debug, info, warning, error, off };
/// text: a line per record; json: a JSON object per line; journald: a text
/// line without the time, prefixed with its syslog priority (`<6>` for
/// info, as sd-daemon(3) reads stderr under systemd). The daemon also sends
/// journald records as native journal fields when the journal's socket is
/// there (apps/common/daemon_logging.hpp).
enum class log_format { text, json, journald };

std::string_view to_string(log_level l) noexcept;
/// "trace", "debug", "info", "warn"/"warning", "error", "off"; false when unknown.
bool parse_log_level(std::string_view s, log_level& out) noexcept;
bool parse_log_format(std::string_view s, log_format& out) noexcept;

/// A structured field of a record (pid, exe, exit_code, signal, duration_ms,
/// ...): the library's own key (lower case, digits, `_`) and its value;
/// `number` values are JSON numbers (unquoted in JSON lines).
struct log_field {
  std::string_view key;
  std::string_view value;
  bool number = false;
};

/// One record, as the library hands it to the sink. The views are valid only
/// during the sink call: copy what you keep.
struct log_record {
  log_level level = log_level::info;
  std::chrono::system_clock::time_point time;
  std::string_view component;         ///< "reaper", "executor", "isolation.host", "rpc", ...
  std::string_view task_id;           ///< empty when the record is not about one task
  std::string_view request_id;        ///< empty outside a request
  std::string_view message;           ///< what happened, without the fields' values
  std::span<const log_field> fields;  ///< in the order the library gave them
};

/// What the library logs through: records below `level` are dropped before
/// any formatting (a relaxed atomic load); the others go to `sink`.
///
/// The sink is called on whichever thread does the library's work (an
/// io_context thread of the program's, the daemon's watchdog), possibly on
/// several threads at once: it must be thread-safe. It is never called
/// between fork and exec. It may call set_logger (the library holds no lock
/// while calling it). It should not throw: an exception from it propagates
/// out of the library operation that logged.
struct logger {
  using sink_type = std::function<void(const log_record&)>;
  log_level level = log_level::warning;
  /// Empty: text lines (format_log_line) on stderr, one write per line.
  sink_type sink{};
};

/// Install `l` for the whole process (every executor, reaper, server and
/// client of the library); replaces the previous one. Thread-safe: a record
/// being logged concurrently goes to the old or the new logger, whole.
/// Default, until called: `logger{}` (warning and above, text on stderr).
void set_logger(logger l);

/// A sink writing format_log_line(record, format) and a newline to `os`,
/// flushed, under a mutex of its own. `os` must outlive every use of the sink.
logger::sink_type stream_sink(std::ostream& os, log_format format = log_format::text);

/// The record as one line (no newline at its end):
/// Text lines: `2026-11-27T20:45:47.123Z info  [executor] task=t1 req=7 launched pid=42
/// exe=/bin/sleep`
///   (each field ` key=value`; a value with a space, `"` or `=` in double
///   quotes with `"` escaped as `\"`)
/// JSON lines: {"ts":"...","level":"info","component":"executor","task_id":"t1",
///             "request_id":"7","pid":42,"exe":"/bin/sleep","msg":"launched"}
///   (each field its own key, after request_id, before msg)
/// journald lines: `<6>[executor] task=t1 req=7 launched pid=42 exe=/bin/sleep`
/// A record is always one line: in text lines every field goes through
/// escape_log_text (records carry what clients sent: a command name, a
/// path); JSON lines quote every string. task_id and request_id appear only
/// when not empty.
std::string format_log_line(const log_record& record, log_format format);

/// `s` with nothing that could end a line, forge one or drive a terminal:
/// `\` becomes `\\`; newline, carriage return and tab become `\n`, `\r`,
/// `\t`; every other C0 control, DEL and each byte that is not part of valid
/// UTF-8 becomes `\xNN`; the C1 controls (U+0080 to U+009F) become `\u00NN`.
/// Everything else (printable ASCII, valid UTF-8) is kept as it is.
std::string escape_log_text(std::string_view s);

/// The syslog priority of a level, as journald reads it: error 3, warn 4,
/// info 6, debug and trace 7.
int syslog_priority(log_level l) noexcept;

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
/// Emit one record to the installed logger (used by the library; cheap when
/// filtered out).
void log(log_level level, std::string_view component, std::string_view task_id,
         std::string_view request_id, std::string_view message,
         std::span<const log_field> fields = {});
bool log_enabled(log_level level) noexcept;

/// Fields for one record, owning their values (build them only when
/// log_enabled): fields f; f.add("pid", 42).add("exe", path); log(..., f.view()).
class log_fields {
 public:
  log_fields& add(std::string_view key, std::string_view value);
  log_fields& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  log_fields& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  log_fields& add(std::string_view key, std::int64_t value);
  log_fields& add(std::string_view key, int value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  log_fields& add(std::string_view key, bool value);
  std::span<const log_field> view();

 private:
  struct owned {
    std::string key, value;
    bool number;
  };
  std::vector<owned> owned_;
  std::vector<log_field> view_;
};
}  // namespace detail

}  // namespace taskexec
