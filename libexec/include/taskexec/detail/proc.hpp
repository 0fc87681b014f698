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
  std::uint64_t start_ticks = 0;   ///< field 22: start time in clock ticks since boot
  std::uint64_t utime_ticks = 0;   ///< field 14: user CPU time, clock ticks
  std::uint64_t stime_ticks = 0;   ///< field 15: system CPU time, clock ticks
  std::uint64_t cutime_ticks = 0;  ///< field 16: user CPU of reaped children, clock ticks
  std::uint64_t cstime_ticks = 0;  ///< field 17: system CPU of reaped children, clock ticks
  std::uint64_t rss_pages = 0;     ///< field 24: resident set size, pages
  int num_threads = 0;             ///< field 20: threads in the process
};

/// Parse the content of /proc/<pid>/stat. The comm field may contain spaces
/// and parentheses: it runs from the first '(' to the last ')'.
std::optional<proc_stat> parse_proc_stat(std::string_view content);

/// The pids of a /proc/<pid>/task/<tid>/children list ("12 34 "): each is
/// followed by a space, so anything after the last space is a pid cut by a
/// short read and is dropped, as is anything that is not a positive number.
std::vector<int> parse_children_list(std::string_view content);

/// The value in kB of `key` ("VmSwap") in /proc/<pid>/status
/// ("VmSwap:\t  12 kB"); nullopt when absent or malformed.
std::optional<std::uint64_t> parse_status_kib(std::string_view content, std::string_view key);

/// Read and parse /proc/<pid>/stat; nullopt when the process is gone.
std::optional<proc_stat> read_proc_stat(int pid);

/// /proc/<pid>/stat and /proc/<pid>/status of the processes a sampler reads
/// again and again, kept open and read with pread: one syscall a file per
/// sample instead of open, read and close. An open /proc/<pid> file stays
/// bound to the process it was opened for (once that one is reaped, a read
/// fails with ESRCH, never showing a process that took the pid over): a
/// read that fails opens the file anew once, so each read shows what
/// opening /proc/<pid>/... then would. At most `max_open` processes are
/// kept (up to three descriptors each); others are opened for each read.
/// By default: an eighth of RLIMIT_NOFILE's soft limit, between 16 and 256
/// (128 under the usual 1024).
class proc_files {
 public:
  proc_files() noexcept;
  explicit proc_files(std::size_t max_open) noexcept : max_open_(max_open) {}
  ~proc_files();
  proc_files(proc_files&& o) noexcept;
  proc_files& operator=(proc_files&& o) noexcept;
  proc_files(const proc_files&) = delete;
  proc_files& operator=(const proc_files&) = delete;

  /// /proc/<pid>/stat parsed; nullopt when the process is gone.
  std::optional<proc_stat> stat(int pid);
  /// The value in kB of `key` in /proc/<pid>/status (parse_status_kib).
  std::optional<std::uint64_t> status_kib(int pid, std::string_view key);
  /// /proc/<pid>/task/<pid>/children (the main thread's children list);
  /// nullopt when the process is gone. The view lasts until the next read.
  std::optional<std::string_view> children(int pid);
  /// Close the files of every process but those in `pids`.
  void keep_only(const std::vector<int>& pids);
  /// How many processes have files open (for tests).
  std::size_t open_count() const noexcept { return entries_.size(); }

 private:
  struct entry {
    int pid = 0;
    int fds[3] = {-1, -1, -1};  // stat, status, children
  };
  std::optional<std::string_view> read(int pid, int which);
  void close_all() noexcept;
  std::size_t max_open_;
  std::vector<entry> entries_;  // by increasing pid
  char buf_[4096];
};

/// Every process visible in /proc (processes vanishing meanwhile are skipped).
std::vector<proc_stat> scan_processes();

/// The descendants of `root` (not `root` itself), found through the
/// kernel's /proc/<pid>/task/<tid>/children lists: work in proportion to
/// the tree, not to every process of the machine. nullopt when the kernel
/// has no such lists (CONFIG_PROC_CHILDREN off): scan_processes() then.
/// The kernel's lists are not a snapshot: a child forked while its parent's
/// list is read may be missed; one re-parented to `root` during the walk
/// (its parent exited) is found by reading root's lists again at the end.
/// One re-parented to another subreaper inside the tree (the init of a PID
/// namespace, a task that is a subreaper itself) after that one's list was
/// read is missed by this walk; the next finds it.
/// With `files`, each process's stat and (for a process of one thread,
/// `root` included) its children list are read through it; the caller keeps
/// `root` among the processes whose files it keeps.
/// `helper`, when not 0: a live child of `root` known to start nothing (the
/// executor's watchdog): neither its stat nor its list is read, and it is
/// not in the result. Only for sampling: the caller must know the pid is
/// not reaped (a reaped pid may be recycled by a task's process).
std::optional<std::vector<proc_stat>> scan_descendants(int root, proc_files* files = nullptr,
                                                       int helper = 0);

/// The current time in /proc start-time units (ticks since boot, CLOCK_BOOTTIME).
std::uint64_t boot_ticks_now() noexcept;

/// Which processes of `table` belong to a task whose main process is
/// `task_pid`, started at `task_start_ticks`:
///  - the main process, while it exists;
///  - members of its session or process group;
///  - every descendant of a member, whatever session it moved to;
///  - processes re-parented to `reaper_pid` listed in `adopted`.
/// Pid reuse: once the main process has been reaped (at `reaped_ticks`), a
/// process holding `task_pid` is a new one, and the kernel recycles a pid
/// only when no session or group uses it any more, so then nothing is seeded
/// by pid, session or group. Even without such a holder, the number may have
/// been recycled and released again, leaving a stranger's session or group
/// with that id: after the reap only processes started before it are seeded
/// by session or group (later ones must descend from a member). Start times
/// have a resolution of one clock tick, so these comparisons are strict.
/// Every member must have started at or after `task_start_ticks`.
std::vector<proc_stat> task_members(const std::vector<proc_stat>& table, int task_pid,
                                    std::uint64_t task_start_ticks,
                                    std::optional<std::uint64_t> reaped_ticks, int reaper_pid,
                                    const std::vector<int>& adopted);

/// SIGKILL the process `pid` (started at `start_ticks`), its session, its
/// process group and its descendants: each kill through a pidfd checked
/// against the start time the scan saw, so a recycled pid is never hit. A
/// few passes catch what was forked meanwhile. Reaping is the reaper's.
void kill_tree(int pid, std::uint64_t start_ticks);

}  // namespace taskexec::detail
