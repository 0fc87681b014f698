// OpenMetrics text (OpenMetrics 1.0, the Prometheus exposition format's
// successor) of a task's usage and of a daemon's counters, for an agent to
// serve from its own endpoint or to write for node_exporter's textfile
// collector. No I/O: each function builds a string.
//
// - Every family has "# TYPE" and "# HELP" lines ("# UNIT" where it has a
//   unit); counters are "<family>_total" samples; the text ends "# EOF\n".
// - Labels are given by the caller (e.g. {{"task", "web-1"}}) and put on
//   every sample, first; names must match [a-zA-Z_][a-zA-Z0-9_]* (others
//   are an invalid_argument error); values are escaped (\\, \", \n).
// - A memory or CPU figure the sample did not measure (absent from its
//   `measured` list) is not written: 0 would be a lie.
// - Numbers: integers as integers, other values in the shortest form that
//   reads back exactly.
#pragma once

#include <boost/json/fwd.hpp>

#include <string>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/types.hpp"

namespace taskexec::openmetrics {

struct label {
  std::string name, value;
};

/// The task's figures of one Stats sample: taskexec_task_memory_*_bytes,
/// taskexec_task_cpu_*_percent, taskexec_task_cpu_throttled_*,
/// taskexec_task_processes, and per live process (label pid)
/// taskexec_process_memory_rss_bytes and taskexec_process_cpu_percent.
/// Errors: invalid_argument for a bad label name.
result<std::string> from_usage(const task_resource_usage& usage,
                               const std::vector<label>& labels = {});

/// A daemon's Metrics answer (docs/protocol.md "Metrics") as taskexecd_*
/// families. Members the answer lacks are skipped; extra members are
/// ignored. Errors: invalid_argument for a bad label name or a member of
/// the wrong JSON type.
result<std::string> from_daemon_metrics(const boost::json::object& metrics,
                                        const std::vector<label>& labels = {});

}  // namespace taskexec::openmetrics
