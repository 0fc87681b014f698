// Reading /proc: the process table as the shutdown sweep needs it.
// Parsers are pure (unit-tested); scanners read the live /proc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskexec::detail {

struct proc_stat {
  int pid = 0;
  std::string comm;
  char state = '?';
  int ppid = 0;
  int pgrp = 0;
  int session = 0;
  std::uint64_t start_ticks = 0;  ///< field 22: start time in clock ticks since boot
};

/// Parse the content of /proc/<pid>/stat. The comm field may contain spaces
/// and parentheses: it runs from the first '(' to the last ')'.
std::optional<proc_stat> parse_proc_stat(std::string_view content);

/// Read and parse /proc/<pid>/stat; nullopt when the process is gone.
std::optional<proc_stat> read_proc_stat(int pid);

/// Every process visible in /proc (processes vanishing meanwhile are skipped).
std::vector<proc_stat> scan_processes();

/// The current time in /proc start-time units (ticks since boot, CLOCK_BOOTTIME).
std::uint64_t boot_ticks_now() noexcept;

/// Which processes of `table` belong to a task whose main process is `task_pid`,
/// started no earlier than `not_before_ticks`: members of its session or
/// process group, every descendant of a member, and processes re-parented to
/// `reaper_pid` listed in `adopted` (orphans attributed to this task). Each
/// candidate must have started at or after `not_before_ticks` (guards pid
/// reuse). The main process itself is included while it exists.
std::vector<proc_stat> task_members(const std::vector<proc_stat>& table, int task_pid,
                                    std::uint64_t not_before_ticks, int reaper_pid,
                                    const std::vector<int>& adopted);

}  // namespace taskexec::detail
