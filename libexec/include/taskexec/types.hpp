// Plain data types of the executor API, mirroring Nomad's ExecCommand and
// ProcessState. No behaviour lives here: validation is in validation.hpp and
// in each isolation strategy, the JSON form in the codec.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace taskexec {

/// Resource requests (Nomad's drivers.Resources, flattened). Zero means "not set".
struct task_resources {
  std::int64_t cpu_shares = 0;
  std::int64_t cpu_quota_us = 0;
  std::int64_t cpu_period_us = 0;
  std::string cpuset_cpus;         ///< e.g. "0-1,3"
  std::int64_t memory_mb = 0;      ///< reservation (soft limit) in MiB
  std::int64_t memory_max_mb = 0;  ///< 0: hard = memory_mb; >0: hard limit; -1: no hard limit
  std::int64_t pids_max = 0;

  friend bool operator==(const task_resources&, const task_resources&) = default;
};

/// A bind mount into the task's root (container isolation).
struct mount_config {
  std::string task_path;
  std::string host_path;
  bool readonly = false;
  std::string propagation_mode;  ///< "private" (default), "host-to-task", "bidirectional"

  friend bool operator==(const mount_config&, const mount_config&) = default;
};

/// A device node made available to the task (container isolation).
struct device_config {
  std::string task_path;
  std::string host_path;
  std::string cgroup_permissions;  ///< any of "rwm"

  friend bool operator==(const device_config&, const device_config&) = default;
};

/// The network namespace a task joins (by path), as Nomad's NetworkIsolationSpec.
struct network_isolation_spec {
  std::string mode;  ///< "host", "group", "task" or empty
  std::string path;  ///< a network namespace file, e.g. /var/run/netns/x

  friend bool operator==(const network_isolation_spec&, const network_isolation_spec&) = default;
};

/// Everything needed to launch a task (Nomad's ExecCommand).
struct exec_command {
  std::string cmd;                ///< binary: name, task-relative or absolute path
  std::vector<std::string> args;  ///< argv[1..]
  std::vector<std::string> env;   ///< exactly the task's environment, "KEY=VALUE" each
  std::string user;               ///< user name or numeric uid; empty: the executor's own
  std::string task_dir;           ///< the task directory (lookup root, default cwd)
  std::string work_dir;           ///< the working directory; empty: task_dir
  std::string stdout_path;        ///< file or FIFO; empty or /dev/null discards
  std::string stderr_path;        ///< file or FIFO; empty or /dev/null discards
  std::string isolation;          ///< "host" (default when empty); more strategies later

  bool resource_limits = false;       ///< enforce `resources` (cgroup isolation)
  bool basic_process_cgroup = false;  ///< a cgroup for accounting and kill only
  task_resources resources;

  int oom_score_adj = 0;  ///< the task's oom_score_adj, never the executor's own
  bool no_pivot_root = false;
  std::vector<mount_config> mounts;
  std::vector<device_config> devices;
  std::optional<network_isolation_spec> network_isolation;
  std::string default_pid_mode;  ///< "private" or "host" (container isolation)
  std::string default_ipc_mode;  ///< "private" or "host" (container isolation)
  std::vector<std::string> capabilities;

  /// Embedding only (never serialized): already-open descriptors the task
  /// writes to instead of stdout_path / stderr_path (Nomad's SetWriters). The
  /// executor duplicates them during launch; the caller keeps ownership of
  /// the originals. -1 means "use the path".
  int stdout_fd = -1;
  int stderr_fd = -1;
  /// Embedding only, like stdout_fd: the task's stdin (default /dev/null).
  int stdin_fd = -1;
  /// Embedding only: stdin_fd is a terminal (a pty's slave side) that
  /// becomes the controlling terminal of the task's new session.
  bool controlling_tty = false;

  friend bool operator==(const exec_command&, const exec_command&) = default;
};

/// The state of a task's main process (Nomad's ProcessState).
struct process_state {
  int pid = 0;
  int exit_code = 0;  ///< the exit status, or 128+signal when killed by a signal
  int signal = 0;     ///< the terminating signal, 0 when the task exited normally
  std::chrono::system_clock::time_point time;  ///< when the state was observed
  bool oom_killed = false;

  friend bool operator==(const process_state&, const process_state&) = default;
};

/// Memory usage (Nomad's MemoryStats). Bytes; fields not measured are 0 and
/// absent from `measured` ("RSS", "Cache", "Swap", "Usage", "Max Usage",
/// "Kernel Usage", "Kernel Max Usage").
struct memory_stats {
  std::uint64_t rss = 0, cache = 0, swap = 0, usage = 0, max_usage = 0, kernel_usage = 0,
                kernel_max_usage = 0;
  std::vector<std::string> measured;
  // Beyond Nomad, where the cgroup has them: PSI memory pressure (avg10, %)
  // and memory.events counts, so an agent sees an OOM coming.
  std::optional<double> pressure_some_avg10, pressure_full_avg10;
  std::optional<std::uint64_t> events_high, events_max, events_oom_kill;

  friend bool operator==(const memory_stats&, const memory_stats&) = default;
};

/// CPU usage (Nomad's CpuStats). system_mode, user_mode and percent are
/// percentages of one core over the last interval (0 on a first sample);
/// total_ticks is percent of one core's MHz; throttled_time in nanoseconds.
struct cpu_stats {
  double system_mode = 0, user_mode = 0, total_ticks = 0, percent = 0;
  std::uint64_t throttled_periods = 0, throttled_time = 0;
  std::vector<std::string> measured;

  friend bool operator==(const cpu_stats&, const cpu_stats&) = default;
};

struct resource_usage {
  memory_stats memory;
  cpu_stats cpu;

  friend bool operator==(const resource_usage&, const resource_usage&) = default;
};

/// One Stats sample (Nomad's TaskResourceUsage): the task as a whole and
/// each of its live processes.
struct task_resource_usage {
  resource_usage total;
  std::map<int, resource_usage> pids;
  std::chrono::system_clock::time_point timestamp;

  friend bool operator==(const task_resource_usage&, const task_resource_usage&) = default;
};

}  // namespace taskexec
