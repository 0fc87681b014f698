// cgroups: detecting the host's layout, the file logic of v1 and v2, and
// the kill and removal of a task's cgroups. The cgroup isolation strategy (isolation/cgroup.hpp)
// and the stats sampler are built on this.
//
// Every function takes the cgroupfs root (default /sys/fs/cgroup) so tests
// can point it at a directory that stands in for cgroupfs. Errors name the
// file and errno: `write /sys/fs/cgroup/memory/taskexec/t1/memory.limit_in_bytes:
// Device or resource busy`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/types.hpp"

namespace taskexec::cgroup {

enum class mode {
  none,    ///< no usable cgroupfs (or not root)
  v1,      ///< v1 controllers only
  v2,      ///< the unified hierarchy only
  hybrid,  ///< v1 controllers plus a v2 tree at <root>/unified
};

std::string_view to_string(mode m) noexcept;

/// One mounted v1 hierarchy: where it is and what it holds (controllers,
/// and "name=<n>" for a named hierarchy such as name=systemd).
struct hierarchy {
  std::string dir;
  std::vector<std::string> controllers;
  friend bool operator==(const hierarchy&, const hierarchy&) = default;
};

/// What the host has, found at run time.
struct layout {
  mode kind = mode::none;
  std::string root;     ///< the cgroupfs root, e.g. /sys/fs/cgroup
  std::string unified;  ///< the v2 tree: root itself (v2) or root/unified (hybrid); else empty
  /// v1 controller name (or "name=<n>") -> its hierarchy's mount directory
  /// (v1 and hybrid). Controllers mounted together (cpu,cpuacct) share one.
  std::map<std::string, std::string> v1;
  /// Every v1 hierarchy a task joins, once each: all that are mounted under
  /// root except those holding rdma or misc (as Nomad does), so block IO
  /// (blkio), named hierarchies (name=systemd) and the rest are per task.
  std::vector<hierarchy> hierarchies;
  /// v2 controllers available to children of the unified root.
  std::vector<std::string> v2_controllers;

  bool has_v1(const std::string& controller) const { return v1.contains(controller); }
  bool has_v2(const std::string& controller) const;
};

/// Detect the layout under `root`: v2 when root/cgroup.controllers exists;
/// hybrid when root/unified/cgroup.controllers and v1 hierarchies exist; v1
/// when only v1 hierarchies exist; else none. The v1 hierarchies are the
/// cgroup mounts under root in /proc/self/mountinfo; where there are none
/// (a directory standing in for cgroupfs) every directory below root that
/// has a cgroup.procs, named by its controllers ("cpu,cpuacct"; a name
/// that is no controller of the kernel's is a named hierarchy).
layout detect(const std::string& root = "/sys/fs/cgroup");

/// The v1 hierarchies (fstype "cgroup") mounted directly or deeper under
/// `root` in a /proc/<pid>/mountinfo text, in its order, rdma and misc left
/// out. Mount points are unescaped (\040 is a space).
std::vector<hierarchy> parse_mountinfo(std::string_view mountinfo, const std::string& root);

/// Nomad's memory rule. memory_max_mb 0: hard limit = memory_mb, no
/// reservation; > 0: hard = memory_max_mb, reservation = memory_mb; -1: no
/// hard limit, reservation = memory_mb. Bytes; nullopt where nothing is set.
struct memory_limits {
  std::optional<std::int64_t> hard;         ///< -1: unlimited
  std::optional<std::int64_t> reservation;  ///< soft limit / memory.low
};
memory_limits memory_rule(const task_resources& r);

/// v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), as runc and
/// systemd convert: 1 + (shares - 2) * 9999 / 262142.
std::uint64_t shares_to_weight(std::uint64_t shares);

/// Write `r` into a v2 cgroup directory: memory.max, memory.low,
/// memory.swap.max (0: no swap, where the file exists), cpu.weight, cpu.max
/// ("quota period", or "max period"), cpuset.cpus, pids.max. Only fields set
/// are written. A field whose controller file is missing is an error naming
/// it (errc::resource_config_failed).
result<void> apply_v2(const std::string& dir, const task_resources& r);

/// The per-controller directories of one task's v1 cgroups.
struct v1_dirs {
  std::string memory, cpu, cpuacct, cpuset, pids, freezer, devices;  ///< empty: absent
  /// The task's directories in every other hierarchy it joined (blkio,
  /// name=systemd, net_cls, ...): membership only.
  std::vector<std::string> others;
};

/// Write `r` into v1 cgroups: memory.limit_in_bytes,
/// memory.soft_limit_in_bytes, memory.memsw.limit_in_bytes (= the hard limit:
/// no swap) where it exists, cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us,
/// cpuset.cpus, pids.max.
result<void> apply_v1(const v1_dirs& dirs, const task_resources& r);

/// Read a file whole (small cgroup files); nullopt when it cannot be read.
/// A symlink as the last component is not followed (O_NOFOLLOW): it fails.
std::optional<std::string> read_file(const std::string& path);
/// Write `value` to `path` (O_WRONLY, no O_CREAT, O_NOFOLLOW). Errors name
/// path and errno.
result<void> write_file(const std::string& path, std::string_view value);

/// Pids listed in <dir>/cgroup.procs.
std::vector<int> procs(const std::string& dir);
/// The pids of a cgroup.procs file's content, one per line; lines that are
/// not a positive number are skipped.
std::vector<int> parse_procs(std::string_view content);

/// Append to `out` the pids of a cgroup.procs file's content that `out`
/// does not hold yet (as parse_procs() reads them). No allocation once `out`
/// has the room.
void add_procs(std::string_view content, std::vector<int>& out);

/// The value of `key` in a flat keyed file ("key value" lines): memory.stat,
/// cpu.stat, memory.events, memory.oom_control. No allocation.
std::optional<std::uint64_t> keyed_value(std::string_view content, std::string_view key);

/// The number a one-number file (memory.usage_in_bytes, cpuacct.usage_user)
/// starts with, after any blanks; 0 when it holds none ("max", empty). No
/// allocation.
std::uint64_t number_value(std::string_view content) noexcept;

/// PSI: the avg10 of the "some" or "full" line of a *.pressure file. No
/// allocation.
std::optional<double> pressure_avg10(std::string_view content, std::string_view which);

/// v2: `populated` from cgroup.events.
std::optional<bool> populated(const std::string& dir);

/// One task's cgroups, for kill_members().
struct kill_target {
  /// Every directory whose cgroup.procs lists members (the task's
  /// directory in each hierarchy it joined).
  std::vector<std::string> dirs;
  std::string v2;       ///< the task's unified directory (cgroup.kill, cgroup.freeze), or empty
  std::string freezer;  ///< the task's v1 freezer directory, or empty
  /// How a directory's members are listed: empty is procs(dir). Tests give
  /// a listing that changes between reads, as a live cgroup's does.
  std::function<std::vector<int>(const std::string& dir)> list{};
};

/// SIGKILL every process in the task's cgroups, never a process outside
/// them, even while members exit and their pids are reused:
///  1. v2 with cgroup.kill: one write kills the unified cgroup, forks
///     racing it included (the kernel's own walk).
///  2. Freeze (v1 freezer.state FROZEN, else v2 cgroup.freeze 1) so that
///     nothing forks while the lists are read.
///  3. Rounds: list every directory's cgroup.procs; open a pidfd for each
///     pid not yet signalled; list again; signal through the pidfd only the
///     pids still listed. A pid listed after its pidfd was opened names a
///     member: had the member exited and its pid gone to an outsider before
///     the open, that outsider would not be listed; had it gone after, the
///     pidfd names the dead member and the signal does nothing. Rounds go
///     on while one finds a new pid (a fork that beat the freeze), up to
///     `bound`.
///  4. Thaw: frozen processes die as they thaw (v1 delivers SIGKILL then).
/// Returns how many processes were signalled. Blocking for at most about
/// `bound` plus the file operations; without any new pid one round is all.
std::size_t kill_members(const kill_target& t,
                         std::chrono::milliseconds bound = std::chrono::milliseconds(250));

/// The cgroup at `dir` and every cgroup below it, deepest first (`dir`
/// last); symlinks are not followed. Empty when `dir` does not exist.
std::vector<std::string> tree(const std::string& dir);

/// One non-blocking attempt to remove the cgroup at `path` and every child
/// cgroup below it (deepest first). A missing directory is success. Does
/// not kill: a cgroup whose processes have not all exited yet (SIGKILLed
/// processes leave as they finish exiting) answers errc::resource_busy,
/// and the caller tries again later, without sleeping on its thread. Other
/// failures name the directory and errno.
result<void> remove_once(const std::string& path);

}  // namespace taskexec::cgroup
