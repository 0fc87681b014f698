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
#pragma once

#include <iosfwd>

#include "taskexec/logging.hpp"

namespace taskexec {

struct log_options {
  log_level level = log_level::info;
  log_format format = log_format::text;
  /// Where records go; nullptr means std::clog. Must outlive the sink.
  std::ostream* stream = nullptr;
};

/// Replace every sink of Boost.Log's global core with one writing
/// format_log_line(record, options.format) lines to options.stream, and
/// install a taskexec::logger at options.level that feeds the core. With
/// level `off` the core is disabled and the library's logger is silent.
void configure_logging(const log_options& options);

}  // namespace taskexec
