#include "taskexec/stats.hpp"

#include <unistd.h>

#include <fstream>
#include <string>

#include "taskexec/detail/proc.hpp"

namespace taskexec {

namespace {

std::uint64_t ticks_to_ns(std::uint64_t ticks) {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return ticks * (1'000'000'000ull / static_cast<std::uint64_t>(hz > 0 ? hz : 100));
}

// VmSwap of /proc/<pid>/status in bytes (0 when absent).
std::uint64_t swap_bytes(int pid) {
  auto text = cgroup::read_file("/proc/" + std::to_string(pid) + "/status");
  if (!text)
    return 0;
  return detail::parse_status_kib(*text, "VmSwap").value_or(0) * 1024;
}

const std::vector<std::string> proc_memory = {"RSS", "Swap"};
const std::vector<std::string> proc_cpu = {"System Mode", "User Mode", "Percent"};

}  // namespace

double cpu_percent(std::uint64_t before_ns, std::uint64_t after_ns,
                   std::chrono::steady_clock::duration wall) {
  const auto wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wall).count();
  if (wall_ns <= 0 || after_ns < before_ns)
    return 0;
  return static_cast<double>(after_ns - before_ns) / static_cast<double>(wall_ns) * 100.0;
}

double core_mhz() {
  static const double mhz = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("cpu MHz", 0) == 0) {
        auto colon = line.find(':');
        try {
          return std::stod(line.substr(colon + 1));
        } catch (const std::exception&) {
          return 0.0;
        }
      }
    }
    return 0.0;
  }();
  return mhz;
}

usage_sampler::usage_sampler(members_fn members, cgroup_fn cgroup)
    : members_(std::move(members)), cgroup_(std::move(cgroup)) {}

task_resource_usage usage_sampler::sample() {
  task_resource_usage u;
  u.timestamp = std::chrono::system_clock::now();
  const auto now = std::chrono::steady_clock::now();
  static const long page = ::sysconf(_SC_PAGESIZE);

  auto rates = [&](cpu_stats& c, std::optional<previous>& prev, std::uint64_t user_ns,
                   std::uint64_t system_ns) {
    if (prev) {
      const auto wall = now - prev->at;
      c.user_mode = cpu_percent(prev->user_ns, user_ns, wall);
      c.system_mode = cpu_percent(prev->system_ns, system_ns, wall);
      c.percent = cpu_percent(prev->user_ns + prev->system_ns, user_ns + system_ns, wall);
      c.total_ticks = c.percent / 100.0 * core_mhz();
    }
    prev = previous{user_ns, system_ns, now};
  };

  // Every live process, from /proc.
  std::uint64_t sum_rss = 0, sum_swap = 0, sum_user = 0, sum_system = 0;
  std::map<int, previous> seen;
  for (const auto& member : members_ ? members_() : std::vector<detail::proc_stat>{}) {
    const auto* st = &member;
    const int pid = st->pid;
    if (st->state == 'Z')
      continue;
    resource_usage r;
    r.memory.rss = st->rss_pages * static_cast<std::uint64_t>(page);
    r.memory.swap = swap_bytes(pid);
    r.memory.measured = proc_memory;
    const auto user = ticks_to_ns(st->utime_ticks), system = ticks_to_ns(st->stime_ticks);
    std::optional<previous> prev;
    if (auto it = pids_.find(pid); it != pids_.end())
      prev = it->second;
    rates(r.cpu, prev, user, system);
    r.cpu.measured = proc_cpu;
    seen[pid] = *prev;
    sum_rss += r.memory.rss;
    sum_swap += r.memory.swap;
    sum_user += user;
    sum_system += system;
    u.pids.emplace(pid, std::move(r));
  }
  pids_ = std::move(seen);  // exited pids are forgotten

  std::optional<cgroup_counters> cg = cgroup_ ? cgroup_() : std::nullopt;
  auto& t = u.total;
  if (cg) {
    t.memory.rss = cg->rss;
    t.memory.cache = cg->cache;
    t.memory.swap = cg->swap;
    t.memory.usage = cg->usage;
    t.memory.max_usage = cg->max_usage;
    t.memory.kernel_usage = cg->kernel_usage;
    t.memory.kernel_max_usage = cg->kernel_max_usage;
    t.memory.measured = cg->memory_measured;
    t.memory.pressure_some_avg10 = cg->pressure_some_avg10;
    t.memory.pressure_full_avg10 = cg->pressure_full_avg10;
    t.memory.events_high = cg->events_high;
    t.memory.events_max = cg->events_max;
    t.memory.events_oom_kill = cg->events_oom_kill;
    t.cpu.throttled_periods = cg->throttled_periods;
    t.cpu.throttled_time = cg->throttled_ns;
    t.cpu.measured = cg->cpu_measured;
    rates(t.cpu, total_, cg->user_ns, cg->system_ns);
  } else {
    t.memory.rss = sum_rss;
    t.memory.swap = sum_swap;
    t.memory.measured = proc_memory;
    t.cpu.measured = proc_cpu;
    rates(t.cpu, total_, sum_user, sum_system);
  }
  return u;
}

}  // namespace taskexec
