// The cgroup isolation strategy: one cgroup per task, composed before the
// host strategy (it must place the child while it is still root).
//
//  - Chosen when exec_command.resource_limits or basic_process_cgroup is set.
//  - One cgroup per task at <parent>/<task id> in every hierarchy used: on v1
//    and hybrid hosts every mounted v1 hierarchy but rdma and misc (the
//    memory, cpu, cpuacct, cpuset and pids controllers carry limits and
//    stats, the freezer freezes for kills, devices takes the container
//    strategy's rules; blkio, name=systemd and the others hold membership),
//    and on hybrid hosts the unified tree too (cgroup.kill, cgroup.events,
//    PSI); on v2 hosts the unified tree with the controllers enabled along
//    the path.
//  - Processes found in the task's cgroup before the launch are killed first.
//  - The child moves itself into each cgroup (writes "0" to cgroup.procs)
//    between clone and exec, before the credential change: the executor is
//    never in (or charged to) the task's cgroup.
//  - resource_limits: see cgroup::apply_v1 / apply_v2; a failure fails the
//    launch with errc::resource_config_failed naming the file and errno.
//  - Without root or without cgroupfs the strategy degrades to nothing (a
//    warning is logged): the task runs with the host strategy alone, and stats
//    come from /proc.
//  - Shutdown: kill_members() kills everything in the cgroup
//    (cgroup::kill_members: cgroup.kill, freeze, pidfds checked against a
//    second listing, thaw). teardown() kills what is left (child cgroups
//    included) and makes one attempt to remove every directory; while a
//    killed process is still exiting it answers errc::resource_busy and
//    the caller calls it again later (it never sleeps).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "taskexec/cgroups.hpp"
#include "taskexec/isolation/strategy.hpp"

namespace taskexec {

struct cgroup_options {
  std::string root = "/sys/fs/cgroup";  ///< the cgroupfs root (a stand-in in tests)
  std::string parent = "taskexec";      ///< relative to each hierarchy's root
};

/// The cgroup directory name of a task: its id with [A-Za-z0-9._-] kept
/// (others become '_'), then '-' and 8 hex digits of a hash of the id as
/// given, so ids that sanitize alike stay apart. An empty id gets a name
/// unique in this process.
std::string cgroup_name_for(const std::string& task_id);

/// Raw counters of one cgroup, as read (the sampler turns them into rates).
struct cgroup_counters {
  std::uint64_t rss = 0, cache = 0, swap = 0, usage = 0, max_usage = 0, kernel_usage = 0,
                kernel_max_usage = 0;
  std::uint64_t user_ns = 0, system_ns = 0;
  std::uint64_t throttled_periods = 0, throttled_ns = 0;
  std::optional<double> pressure_some_avg10, pressure_full_avg10;
  std::uint64_t events_high = 0, events_max = 0, events_oom_kill = 0;
  std::vector<std::string> memory_measured, cpu_measured;
};

/// What a process started inside the task later (Exec) needs to join it.
struct cgroup_membership {
  std::vector<std::string> procs;  ///< cgroup.procs files to write "0" into
  /// The pids cgroup's pids.max and pids.current (empty without one).
  std::string pids_max, pids_current;
};

/// Child side (async-signal-safe): move the calling process into each
/// cgroup by writing "0" to its cgroup.procs file. A process that joins a
/// cgroup is not held to pids.max as a fork inside it is, so when joining
/// took the pids cgroup past its limit this fails with EAGAIN, as the fork
/// would have (the process then exits, leaving the count where it was).
bool join_cgroups(const cgroup_membership& m, child_failure& f) noexcept;

class cgroup_strategy final : public isolation_strategy {
 public:
  cgroup_strategy(std::string task_id, cgroup_options options);
  ~cgroup_strategy() override;

  std::string_view name() const noexcept override { return "cgroup"; }
  isolation_features features() const noexcept override;
  result<void> validate(const exec_command& cmd) const override;
  result<void> before_fork(const exec_command& cmd, launch_plan& plan) override;
  bool in_child(const launch_plan& plan, child_failure& failure) const noexcept override;
  void launch_failed(const launch_plan& plan) noexcept override;
  result<void> teardown() override;

  /// False when it degraded (not root, no cgroupfs).
  bool active() const noexcept { return active_; }
  cgroup::mode mode() const noexcept { return layout_.kind; }
  /// Every pid in the task's cgroup.
  std::vector<int> members() const;
  /// members() into `out` (cleared first), through the files read() keeps
  /// open: what a Stats sample lists, with no allocation once `out` has the
  /// room.
  void sample_members(std::vector<int>& out) const;
  /// SIGKILL everything in the task's cgroups (see cgroup::kill_members).
  /// Returns how many were signalled.
  std::size_t kill_members();
  /// Apply new limits to the running task's cgroup.
  result<void> update(const task_resources& r);
  /// Read the counters (for stats). The files stay open from the first
  /// call on (each read with pread, parsed in place) until teardown().
  cgroup_counters read() const;
  /// Close the files read() keeps open (no Stats runs any more); the next
  /// read() opens them again.
  void release_sample_files() const noexcept;
  /// OOM kills recorded for the task's cgroup (v2 memory.events oom_kill,
  /// v1 memory.oom_control oom_kill) since the task started.
  std::uint64_t oom_kills() const;
  void after_start(const launch_plan& plan, int pid) override;
  /// The task's cgroup directories (for tests and logs): v2 first if any.
  std::vector<std::string> directories() const;
  /// The task's v1 devices cgroup, or empty (none, or a pure v2 host).
  const std::string& devices_dir() const noexcept { return v1_.devices; }
  /// What a process started inside the task later (Exec) needs to join
  /// the task's cgroups.
  const cgroup_membership& membership() const noexcept { return membership_; }

 private:
  std::string task_id_;
  cgroup_options opts_;
  cgroup::layout layout_;
  bool active_ = false;
  std::string v2_dir_;      // the task's unified cgroup, or empty
  bool v2_limits_ = false;  // limits and stats through v2 (pure v2 hosts)
  cgroup::v1_dirs v1_;
  std::vector<std::string> created_;  // directories we made, deepest last
  // For the child: the cgroup.procs files it writes itself into.
  cgroup_membership membership_;
  std::uint64_t oom_baseline_ = 0;  // the count when the task started
  // The files a Stats sample reads, opened at the first (see read()).
  struct sample_files;
  mutable std::unique_ptr<sample_files> sample_files_;
  sample_files& files() const;
};

}  // namespace taskexec
