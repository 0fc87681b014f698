// The leak check run after every scenario, and the /proc readers the
// scenarios measure with.
//
// Every process of a run carries the environment entry
// TASKEXEC_STRESS_RUN=<run id>: the stress program sets it in its own
// environment (daemons and helpers inherit it) and gives it to every task.
// After a scenario no process but the stress program itself may carry it;
// one that does is a leftover, however it got re-parented. Zombies are
// children (of us) nobody reaped. Cgroups are the task cgroups that appeared
// under the taskexec parents since the scenario began. Sockets are socket
// files left in the run directory. File descriptors are our own (a client
// that forgot to close one leaks it here).
//
// Readers take a proc root so the unit tests can hand them a stand-in tree.
// Nothing here allocates without bound: one entry per live process.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "taskexec/detail/proc.hpp"

namespace stress {

/// Fields of /proc/<pid>/stat, as the library parses them.
using proc_stat = taskexec::detail::proc_stat;

std::optional<proc_stat> read_stat(const std::string& proc_root, int pid);
/// Every numeric entry of proc_root, with its stat (processes that vanish
/// while listed are skipped).
std::vector<proc_stat> list_processes(const std::string& proc_root);
/// Whether /proc/<pid>/environ holds exactly `entry` ("K=V").
bool environ_has(const std::string& proc_root, int pid, std::string_view entry);
/// Open descriptors of `pid` (-1 when unreadable).
int count_fds(const std::string& proc_root, int pid);

/// From /proc/<pid>/smaps_rollup, KiB (-1 when unreadable).
struct memory_figures {
  long pss_kib = -1;
  long private_dirty_kib = -1;
  /// Anonymous: what the process allocated (heap, stacks, its copies of
  /// relocated data). Private_Dirty also counts the pages of a file it maps
  /// that are dirty in the page cache: a binary linked a moment before,
  /// until it is written back.
  long anonymous_kib = -1;
};
memory_figures read_memory(const std::string& proc_root, int pid);
/// Parse the text of smaps_rollup.
memory_figures parse_smaps_rollup(std::string_view text);

/// A field of /proc/<pid>/status in KiB, `field` without its colon
/// (VmRSS, RssAnon); -1 when unreadable or absent. The kernel's counters,
/// not a walk of the page tables as smaps_rollup is: cheap enough to sample
/// every few milliseconds without slowing the process down.
long read_status_kib(const std::string& proc_root, int pid, std::string_view field);
/// Parse the text of /proc/<pid>/status for `field`.
long parse_status_kib(std::string_view status_text, std::string_view field);

/// Directories below each of `parents` (absent parents are empty).
std::set<std::string> list_cgroups(const std::vector<std::string>& parents);
/// The taskexec parents of the cgroup hierarchies mounted under `root`
/// (v1: <root>/<controller>/taskexec, v2: <root>/taskexec or
/// <root>/unified/taskexec).
std::vector<std::string> cgroup_parents(const std::string& root = "/sys/fs/cgroup");

struct leak_options {
  std::string proc_root = "/proc";
  std::string marker;  ///< "TASKEXEC_STRESS_RUN=<id>"
  int self_pid = 0;
  std::string run_dir;  ///< where socket files must not stay
  std::vector<std::string> cgroup_parents;
  /// When not empty, a new cgroup is this run's only when its name holds
  /// one of these (the run id, the run directory's name): another run on
  /// the same machine (a test tier beside us) is not our leak.
  std::vector<std::string> cgroup_marks;
};

/// What exists before a scenario, to compare with after it.
struct leak_baseline {
  int own_fds = 0;
  std::set<std::string> cgroups;
};

struct leak_findings {
  std::vector<int> zombies;   ///< unreaped children of ours
  std::vector<int> leftover;  ///< processes carrying the marker, not us
  std::vector<std::string> cgroups;
  std::vector<std::string> sockets;
  int own_fds_before = 0, own_fds_after = 0;

  bool clean() const noexcept {
    return zombies.empty() && leftover.empty() && cgroups.empty() && sockets.empty() &&
           own_fds_after <= own_fds_before;
  }
  /// "2 leftover processes (pids 10 11); 1 cgroup (/sys/...)": what leaked.
  std::string describe() const;
};

leak_baseline take_baseline(const leak_options& o);
/// One look at what leaked since `before`.
leak_findings find_leaks(const leak_options& o, const leak_baseline& before);
/// Look until nothing leaked or `settle` has passed (a process killed a
/// moment ago may not have been reaped yet); the last look's findings.
/// `pump` is called between looks (e.g. to let our reaper run).
template <class Pump>
leak_findings find_leaks_settled(const leak_options& o, const leak_baseline& before,
                                 std::chrono::milliseconds settle, Pump pump) {
  auto deadline = std::chrono::steady_clock::now() + settle;
  for (;;) {
    auto f = find_leaks(o, before);
    if (f.clean() || std::chrono::steady_clock::now() >= deadline)
      return f;
    pump();
  }
}
/// SIGKILL every leftover and remove leaked cgroups and sockets, so a
/// failed run leaves the machine as it found it. Returns what could not be
/// cleaned.
std::string clean_up(const leak_findings& f);

}  // namespace stress
