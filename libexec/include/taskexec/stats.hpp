// usage_sampler: turns raw counters (a task's cgroup, or its processes in
// /proc) into TaskResourceUsage samples. Each sampler keeps its own previous
// sample, so independent subscriptions each get their own CPU percentages.
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
// = 100), 0 on the first sample. total_ticks = percent / 100 x one core's MHz.
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

class usage_sampler {
 public:
  /// The task's live processes, each with the /proc/<pid>/stat just read
  /// (the sampler takes RSS and CPU times from it, not reading it again).
  using members_fn = std::function<std::vector<detail::proc_stat>()>;
  using cgroup_fn = std::function<std::optional<cgroup_counters>()>;

  /// `members` lists the task's live processes; `cgroup` reads its cgroup, or
  /// returns nullopt (or is empty) for /proc mode.
  usage_sampler(members_fn members, cgroup_fn cgroup);

  task_resource_usage sample();

 private:
  struct previous {
    std::uint64_t user_ns = 0, system_ns = 0;
    std::chrono::steady_clock::time_point at;
  };
  members_fn members_;
  cgroup_fn cgroup_;
  std::optional<previous> total_;
  std::map<int, previous> pids_;
};

/// Percent of one core between two readings of a CPU-time counter.
double cpu_percent(std::uint64_t before_ns, std::uint64_t after_ns,
                   std::chrono::steady_clock::duration wall);

/// One core's MHz from /proc/cpuinfo (0 when unknown); read once.
double core_mhz();

}  // namespace taskexec
