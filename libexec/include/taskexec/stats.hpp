// usage_sampler: turns raw counters (a task's cgroup, or its processes in
// /proc) into TaskResourceUsage samples, in two steps: read() takes a
// usage_reading (the counters at one instant), usage_between() makes a
// sample of two readings (CPU rates need the time between them). One
// reading may thus serve several consumers, each with the rates over its
// own interval (the daemon's Stats subscriptions share readings so).
// sample() does both, with the sampler's own previous reading.
//
// Modes:
//  - cgroup v1: memory RSS, Cache, Swap, Usage, Max Usage, Kernel Usage,
//    Kernel Max Usage; CPU System Mode, User Mode, Throttled Periods,
//    Throttled Time, Percent.
//  - cgroup v2: memory RSS (anon), Cache (file), Swap, Usage; the same CPU.
//  - no cgroup: the task's processes from /proc: RSS and Swap; System Mode,
//    User Mode, Percent.
// Per-pid entries (every live process of the task) always come from /proc:
// RSS and Swap; System Mode, User Mode, Percent.
//
// CPU percent = delta of CPU time / delta of wall time x 100 (one full core
// = 100), 0 without an earlier reading. total_ticks = percent / 100 x one
// core's MHz.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "taskexec/detail/proc.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// The raw counters of a task at one instant.
struct usage_reading {
  std::chrono::system_clock::time_point timestamp;  ///< the sample's timestamp
  std::chrono::steady_clock::time_point at;         ///< for rates
  struct process {
    int pid = 0;
    std::uint64_t rss = 0, swap = 0;  ///< bytes
    std::uint64_t user_ns = 0, system_ns = 0;
  };
  std::vector<process> processes;  ///< live (not zombies), by increasing pid
  std::optional<cgroup_counters> cgroup;
  /// CPU time of the whole task: the cgroup's, else the processes' sum.
  std::uint64_t user_ns = 0, system_ns = 0;
};

/// The sample of `now`: memory as read, CPU rates over the time since
/// `before` (an earlier reading of the same task; for a process or a total
/// `before` lacks, and without `before`, rates are 0).
task_resource_usage usage_between(const usage_reading* before, const usage_reading& now);

class usage_sampler {
 public:
  /// The task's live processes, each with the /proc/<pid>/stat just read
  /// (the sampler takes RSS and CPU times from it, not reading it again).
  using members_fn = std::function<std::vector<detail::proc_stat>()>;
  using cgroup_fn = std::function<std::optional<cgroup_counters>()>;

  /// `members` lists the task's live processes; `cgroup` reads its cgroup, or
  /// returns nullopt (or is empty) for /proc mode.
  usage_sampler(members_fn members, cgroup_fn cgroup);

  /// The counters now (the reads: /proc and the cgroup's files).
  usage_reading read() const;
  /// read(), with rates since the previous sample() of this sampler.
  task_resource_usage sample();

 private:
  members_fn members_;
  cgroup_fn cgroup_;
  std::optional<usage_reading> previous_;
};

/// Percent of one core between two readings of a CPU-time counter.
double cpu_percent(std::uint64_t before_ns, std::uint64_t after_ns,
                   std::chrono::steady_clock::duration wall);

/// One core's MHz from /proc/cpuinfo (0 when unknown); read once.
double core_mhz();

}  // namespace taskexec
