// The programs' logging (taskexecd, and tests of its lines).
//
// Not part of the library: the library logs through taskexec::logger
// (taskexec/logging.hpp). configure_logging installs a taskexec::logger
// whose sink writes each record as one line (format_log_line) to a stream,
// or sends it to the journal. No logging library is linked: a daemon per
// task keeps its text small (Boost.Log alone was most of it), and never
// touches Boost.Log's global core, which stays an embedder's own.
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

/// The native journal datagram of a record (the protocol of
/// systemd.journal-fields(7) / sd_journal_sendv: KEY=value lines; a value
/// holding a newline as KEY, newline, 64-bit little-endian length, value).
std::string journal_datagram(const log_record& r);

/// Install a taskexec::logger at options.level writing
/// format_log_line(record, options.format) lines to options.stream (or, for
/// journald with its socket reachable, datagrams to the journal), replacing
/// the one installed before. With level `off` the library's logger is silent.
void configure_logging(const log_options& options);

}  // namespace taskexec
