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
//    User Mode, Percent. The CPU counts the whole tree, also what has ended:
//    for every process of the task, live or zombie, its own time and that of
//    the children it waited for (utime + cutime, stime + cstime of
//    /proc/<pid>/stat), plus the CPU of the task's processes this process
//    reaped itself (the main process, orphans re-parented to it: their
//    wait4() rusage, which holds what they waited for in turn). A process
//    reaped by a parent in the task moves from its own line to the parent's
//    cutime; one whose parent ignores SIGCHLD (the kernel reaps it, nobody
//    waits) takes its CPU along, as does one a parent outside the task
//    reaps. Between the parent's wait and the child leaving /proc lies a
//    window of microseconds in which a reading may count that child twice or
//    miss it: the total is made monotonic (never below an earlier reading of
//    the sampler), so a miss shows as a slower interval and an extra count
//    as a faster one, and the sum over intervals stays true.
// Per-pid entries (every live process of the task) always come from /proc:
// RSS and Swap; System Mode, User Mode, Percent: each process's own CPU,
// without its children's.
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

/// CPU time, nanoseconds.
struct cpu_time {
  std::uint64_t user_ns = 0, system_ns = 0;
  friend bool operator==(const cpu_time&, const cpu_time&) = default;
};

/// The CPU time of a task's processes as /proc shows it: for each of
/// `members` (zombies too, whose times stay in /proc until they are reaped),
/// utime + cutime and stime + cstime, plus `reaped` (what the task's
/// processes reaped by this process had used).
cpu_time tree_cpu(const std::vector<detail::proc_stat>& members, cpu_time reaped);

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
  /// CPU time of the whole task: the cgroup's, else tree_cpu() of the
  /// processes and the reaped total; never below the sampler's earlier
  /// readings (each of the two on its own).
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
  /// The CPU of the task's processes that this process reaped, so far.
  using reaped_fn = std::function<cpu_time()>;

  /// `members` lists the task's processes (zombies too: they count for the
  /// CPU in /proc mode, not as per-pid entries); `cgroup` reads its cgroup,
  /// or returns nullopt (or is empty) for /proc mode; `reaped` (may be
  /// empty: nothing reaped) is called after `members`, with no reap in
  /// between (both on the io_context's thread).
  usage_sampler(members_fn members, cgroup_fn cgroup, reaped_fn reaped = {});

  /// The counters now (the reads: /proc and the cgroup's files). Keeps the
  /// CPU totals' high-water mark: a total never goes below an earlier
  /// reading's, so a rate between two readings is never negative.
  usage_reading read();
  /// read(), with rates since the previous sample() of this sampler.
  task_resource_usage sample();

 private:
  members_fn members_;
  cgroup_fn cgroup_;
  reaped_fn reaped_;
  cpu_time high_water_;
  std::optional<usage_reading> previous_;
  detail::proc_files files_;  // the members' status files, kept open
  std::vector<int> live_;     // the last reading's pids (reused)
};

/// Percent of one core between two readings of a CPU-time counter.
double cpu_percent(std::uint64_t before_ns, std::uint64_t after_ns,
                   std::chrono::steady_clock::duration wall);

/// One core's MHz from /proc/cpuinfo (0 when unknown); read once.
double core_mhz();

}  // namespace taskexec
