// cgroups: detecting the host's layout, the file logic of v1 and v2, and
// destroy_cgroup. The cgroup isolation strategy (isolation/cgroup.hpp) and the
// stats sampler are built on this.
//
// Every function takes the cgroupfs root (default /sys/fs/cgroup) so tests
// can point it at a directory that stands in for cgroupfs. Errors name the
// file and errno: `write /sys/fs/cgroup/memory/taskexec/t1/memory.limit_in_bytes:
// Device or resource busy`.
#pragma once

#include <cstdint>
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

/// What the host has, found at run time.
struct layout {
  mode kind = mode::none;
  std::string root;     ///< the cgroupfs root, e.g. /sys/fs/cgroup
  std::string unified;  ///< the v2 tree: root itself (v2) or root/unified (hybrid); else empty
  /// v1 controller name -> its hierarchy's mount directory (v1 and hybrid).
  std::map<std::string, std::string> v1;
  /// v2 controllers available to children of the unified root.
  std::vector<std::string> v2_controllers;

  bool has_v1(const std::string& controller) const { return v1.contains(controller); }
  bool has_v2(const std::string& controller) const;
};

/// Detect the layout under `root`: v2 when root/cgroup.controllers exists;
/// hybrid when root/unified/cgroup.controllers and v1 controller directories
/// exist; v1 when only controller directories exist; else none.
layout detect(const std::string& root = "/sys/fs/cgroup");

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
};

/// Write `r` into v1 cgroups: memory.limit_in_bytes,
/// memory.soft_limit_in_bytes, memory.memsw.limit_in_bytes (= the hard limit:
/// no swap) where it exists, cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us,
/// cpuset.cpus, pids.max.
result<void> apply_v1(const v1_dirs& dirs, const task_resources& r);

/// Read a file whole (small cgroup files); nullopt when it cannot be read.
std::optional<std::string> read_file(const std::string& path);
/// Write `value` to `path` (O_WRONLY, no O_CREAT). Errors name path and errno.
result<void> write_file(const std::string& path, std::string_view value);

/// Pids listed in <dir>/cgroup.procs.
std::vector<int> procs(const std::string& dir);
/// The pids of a cgroup.procs file's content, one per line; lines that are
/// not a positive number are skipped.
std::vector<int> parse_procs(std::string_view content);

/// The value of `key` in a flat keyed file ("key value" lines): memory.stat,
/// cpu.stat, memory.events, memory.oom_control.
std::optional<std::uint64_t> keyed_value(const std::string& content, std::string_view key);

/// PSI: the avg10 of the "some" or "full" line of a *.pressure file.
std::optional<double> pressure_avg10(const std::string& content, std::string_view which);

/// v2: `populated` from cgroup.events.
std::optional<bool> populated(const std::string& dir);

/// Kill every process in a cgroup tree. v2 directory: cgroup.kill; v1
/// (freezer directory given): freeze, SIGKILL every pid, thaw; otherwise a
/// kill loop over cgroup.procs. Returns how many pids were signalled.
result<std::size_t> kill_all(const std::string& dir, bool v2, const std::string& freezer_dir = {});

/// Kill every process in the cgroup at `path` (a directory under any
/// hierarchy: v2 or a v1 controller), wait until it is empty (up to
/// `bound`), and remove it and any child cgroups, retrying while busy.
/// Idempotent: a missing directory is success. Blocking (bounded).
result<void> destroy_cgroup(const std::string& path,
                            std::chrono::milliseconds bound = std::chrono::seconds(5));

}  // namespace taskexec::cgroup
