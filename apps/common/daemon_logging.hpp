// The programs' logging (taskexecd, and tests of its lines): Boost.Log.
//
// Not part of the library: the library logs through taskexec::logger
// (taskexec/logging.hpp) and never touches Boost.Log. A program that wants
// Boost.Log for itself calls configure_logging, which takes over Boost.Log's
// global core (the daemon owns its process) and installs a taskexec::logger
// whose sink emits each record to that core with these attributes:
//   "Severity"  taskexec::log_level
//   "TimeStamp" std::chrono::system_clock::time_point
//   "Component" std::string  ("reaper", "executor", "isolation.host", ...)
//   "TaskID"    std::string  (absent when the record is not about one task)
//   "RequestID" std::string  (absent outside a request)
//   "Message"   std::string
//   "Fields"    taskexec::owned_log_fields (absent without fields)
//
// --log-format journald: when the journal's socket (options.journal_socket,
// /run/systemd/journal/socket) takes a datagram at configure time, each
// record is sent there as native journal fields: MESSAGE (the text line
// without time and priority), PRIORITY (syslog_priority), SYSLOG_IDENTIFIER
// ("taskexecd"), TASKEXEC_COMPONENT, TASKEXEC_TASK_ID, TASKEXEC_REQUEST_ID,
// and each field of the record by its key in upper case (pid -> PID: the
// task's pid; the journal's own _PID is the daemon's). A record the socket
// refuses goes to the stream instead. Without the socket: `<N>`-prefixed
// lines on the stream (what systemd reads from a service's stderr).
#pragma once

#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "taskexec/logging.hpp"

namespace taskexec {

struct log_options {
  log_level level = log_level::info;
  log_format format = log_format::text;
  /// Where records go; nullptr means std::clog. Must outlive the sink.
  std::ostream* stream = nullptr;
  /// journald format: the journal's native socket.
  std::string journal_socket = "/run/systemd/journal/socket";
};

/// A record's fields, copied (Boost.Log keeps attribute values).
struct owned_log_fields {
  struct field {
    std::string key, value;
    bool number = false;
  };
  std::vector<field> fields;
};

/// The native journal datagram of a record (the protocol of
/// systemd.journal-fields(7) / sd_journal_sendv: KEY=value lines; a value
/// holding a newline as KEY, newline, 64-bit little-endian length, value).
std::string journal_datagram(const log_record& r);

/// Replace every sink of Boost.Log's global core with one writing
/// format_log_line(record, options.format) lines to options.stream, and
/// install a taskexec::logger at options.level that feeds the core. With
/// level `off` the core is disabled and the library's logger is silent.
void configure_logging(const log_options& options);

}  // namespace taskexec
