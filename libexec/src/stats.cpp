#include "taskexec/stats.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "taskexec/detail/proc.hpp"

namespace taskexec {

namespace {

std::uint64_t ticks_to_ns(std::uint64_t ticks) {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return ticks * (1'000'000'000ull / static_cast<std::uint64_t>(hz > 0 ? hz : 100));
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

cpu_time tree_cpu(const std::vector<detail::proc_stat>& members, cpu_time reaped) {
  cpu_time t = reaped;
  for (const auto& st : members) {
    t.user_ns += ticks_to_ns(st.utime_ticks + st.cutime_ticks);
    t.system_ns += ticks_to_ns(st.stime_ticks + st.cstime_ticks);
  }
  return t;
}

usage_sampler::usage_sampler(members_fn members, cgroup_fn cgroup, reaped_fn reaped)
    : members_(std::move(members)), cgroup_(std::move(cgroup)), reaped_(std::move(reaped)) {}

usage_reading usage_sampler::read() {
  usage_reading r;
  r.timestamp = std::chrono::system_clock::now();
  r.at = std::chrono::steady_clock::now();
  static const long page = ::sysconf(_SC_PAGESIZE);
  const auto members = members_ ? members_() : std::vector<detail::proc_stat>{};
  // Right after the members, with no reap in between: a process reaped by
  // this one is either among the members or in the reaped total, never both.
  const auto tree = tree_cpu(members, reaped_ ? reaped_() : cpu_time{});
  r.processes.reserve(members.size());
  for (const auto& st : members) {
    if (st.state == 'Z')
      continue;
    usage_reading::process p;
    p.pid = st.pid;
    p.rss = st.rss_pages * static_cast<std::uint64_t>(page);
    p.swap = files_.status_kib(st.pid, "VmSwap").value_or(0) * 1024;
    p.user_ns = ticks_to_ns(st.utime_ticks);
    p.system_ns = ticks_to_ns(st.stime_ticks);
    r.processes.push_back(p);
  }
  std::sort(r.processes.begin(), r.processes.end(),
            [](const auto& a, const auto& b) { return a.pid < b.pid; });
  live_.clear();
  for (const auto& p : r.processes)
    live_.push_back(p.pid);
  files_.keep_only(live_);
  r.cgroup = cgroup_ ? cgroup_() : std::nullopt;
  // Monotonic: a child counted twice or missed in the window of its parent's
  // wait (see the header), or a process leaving the task's membership, must
  // not make a later interval's rate negative (nor let the next one count
  // the dip again).
  high_water_.user_ns = std::max(high_water_.user_ns, r.cgroup ? r.cgroup->user_ns : tree.user_ns);
  high_water_.system_ns =
      std::max(high_water_.system_ns, r.cgroup ? r.cgroup->system_ns : tree.system_ns);
  r.user_ns = high_water_.user_ns;
  r.system_ns = high_water_.system_ns;
  return r;
}

task_resource_usage usage_sampler::sample() {
  auto now = read();
  auto u = usage_between(previous_ ? &*previous_ : nullptr, now);
  previous_ = std::move(now);
  return u;
}

task_resource_usage usage_between(const usage_reading* before, const usage_reading& now) {
  task_resource_usage u;
  u.timestamp = now.timestamp;
  const auto wall = before ? now.at - before->at : std::chrono::steady_clock::duration::zero();
  // Rates between two readings of one counter pair (none without `then`).
  auto rates = [&](cpu_stats& c, bool then, std::uint64_t user0, std::uint64_t system0,
                   std::uint64_t user1, std::uint64_t system1) {
    if (!then)
      return;
    c.user_mode = cpu_percent(user0, user1, wall);
    c.system_mode = cpu_percent(system0, system1, wall);
    c.percent = cpu_percent(user0 + system0, user1 + system1, wall);
    c.total_ticks = c.percent / 100.0 * core_mhz();
  };

  std::uint64_t sum_rss = 0, sum_swap = 0;
  for (const auto& p : now.processes) {
    resource_usage r;
    r.memory.rss = p.rss;
    r.memory.swap = p.swap;
    r.memory.measured = proc_memory;
    const usage_reading::process* prev = nullptr;
    if (before) {
      auto it = std::lower_bound(before->processes.begin(), before->processes.end(), p.pid,
                                 [](const auto& q, int pid) { return q.pid < pid; });
      if (it != before->processes.end() && it->pid == p.pid)
        prev = &*it;
    }
    rates(r.cpu, prev != nullptr, prev ? prev->user_ns : 0, prev ? prev->system_ns : 0, p.user_ns,
          p.system_ns);
    r.cpu.measured = proc_cpu;
    sum_rss += p.rss;
    sum_swap += p.swap;
    u.pids.emplace(p.pid, std::move(r));
  }

  auto& t = u.total;
  if (const auto& cg = now.cgroup) {
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
  } else {
    t.memory.rss = sum_rss;
    t.memory.swap = sum_swap;
    t.memory.measured = proc_memory;
    t.cpu.measured = proc_cpu;
  }
  rates(t.cpu, before != nullptr, before ? before->user_ns : 0, before ? before->system_ns : 0,
        now.user_ns, now.system_ns);
  return u;
}

}  // namespace taskexec
