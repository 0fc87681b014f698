// reaper-storm: a task that forks M short-lived children as fast as it can,
// every second one daemonising (its grandchild is an orphan the executor
// must reap). Every orphan must be reaped and nothing left; the figure is
// the executor's CPU for it.
#include <sys/resource.h>

#include <cstdio>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

namespace {

double rusage_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto tv = [](timeval t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(u.ru_utime) + tv(u.ru_stime);
}

// Zombies whose parent is `pid`.
std::size_t zombies_of(int pid) {
  std::size_t n = 0;
  for (auto& p : list_processes("/proc"))
    n += p.state == 'Z' && p.ppid == pid ? 1 : 0;
  return n;
}

}  // namespace

asio::awaitable<void> run_reaper_storm(context& ctx, const options& opt, scenario_report& rep) {
  const auto children = opt.num("children");
  const bool embedded = opt.flag("embedded");
  rep.summary = "a task forking " + std::to_string(children) +
                " children, every second one daemonising, " +
                (embedded ? "embedded (this process reaps)" : "in a daemon");

  long long started = 0, daemonised = 0;
  double executor_cpu = 0, tree_cpu = 0, wall = 0;
  std::uint64_t orphans = 0;
  std::size_t zombies = 0;
  std::string failure;
  taskexec::process_state state;

  auto parse = [&](const std::string& text) {
    if (std::sscanf(text.c_str(), "children %lld daemonised %lld", &started, &daemonised) != 2)
      failure = "the storm printed \"" + text + "\"";
  };

  if (embedded) {
    // Count orphans as the reaper takes them; wake when all are in.
    std::uint64_t expected = UINT64_MAX;
    asio::steady_timer all_in(ctx.io, asio::steady_timer::time_point::max());
    auto sub = ctx.reaper.subscribe([&](int, int, bool claimed) {
      if (!claimed && ++orphans >= expected)
        all_in.cancel();
    });
    taskexec::task_executor t(ctx.reaper);
    pipe_pair out;
    auto cmd = ctx.helper("fork-storm", {std::to_string(children)});
    cmd.stdout_fd = out.write_fd;
    double self0 = rusage_seconds(RUSAGE_SELF), kids0 = rusage_seconds(RUSAGE_CHILDREN);
    auto t0 = clock_type::now();
    if (auto r = co_await t.launch(cmd); !r)
      throw std::runtime_error("launch: " + r.error().message);
    out.close_write();
    std::string text;
    co_await with_progress(
        ctx, [&] { return "reaper-storm: " + std::to_string(orphans) + " orphans reaped"; },
        [&]() -> asio::awaitable<void> {
          text = co_await read_all(ctx.io, out.read_fd);
          auto s = co_await t.wait();
          if (s)
            state = *s;
          parse(text);
          expected = static_cast<std::uint64_t>(daemonised);
          if (orphans < expected) {
            // Grandchildren may exit after the task: wait for them, bounded.
            asio::steady_timer bound(ctx.io, std::chrono::seconds(30));
            bound.async_wait([&](boost::system::error_code ec) {
              if (!ec)
                all_in.cancel();
            });
            co_await all_in.async_wait(asio::as_tuple(asio::use_awaitable));
            bound.cancel();
          }
        });
    wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    executor_cpu = rusage_seconds(RUSAGE_SELF) - self0;
    tree_cpu = rusage_seconds(RUSAGE_CHILDREN) - kids0;
    zombies = zombies_of(::getpid());
    rep.add_check("every orphan reaped by the executor",
                  failure.empty() && orphans == static_cast<std::uint64_t>(daemonised),
                  std::to_string(orphans) + " reaped of " + std::to_string(daemonised) +
                      " daemonised grandchildren");
  } else {
    auto d = co_await start_daemon(ctx, ctx.fresh_path("storm", ".sock"));
    if (!d)
      throw std::runtime_error("daemon: " + d.error().message);
    const int dpid = d->config.pid;
    auto out_path = ctx.fresh_path("storm", ".out");
    auto cmd = ctx.helper("fork-storm", {std::to_string(children)});
    cmd.stdout_path = out_path;
    auto st0 = read_stat("/proc", dpid);
    const double cpu0 = cpu_seconds(dpid);
    auto t0 = clock_type::now();
    if (auto r = co_await d->client->launch(cmd); !r)
      throw std::runtime_error("launch: " + r.error().message);
    co_await with_progress(
        ctx, [&] { return "reaper-storm: the task forks in the daemon"; },
        [&]() -> asio::awaitable<void> {
          auto s = co_await d->client->wait();
          if (s)
            state = *s;
          else
            failure = "Wait: " + s.error().message;
        });
    // The daemon reaps orphans that exit after the task as they come:
    // look until none is left unreaped, bounded.
    for (int i = 0; i < 300 && (zombies = zombies_of(dpid)) > 0; ++i)
      co_await pause(std::chrono::milliseconds(10));
    wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    auto st1 = read_stat("/proc", dpid);
    const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
    executor_cpu = cpu_seconds(dpid) - cpu0;
    if (st0 && st1) {
      tree_cpu = static_cast<double>(st1->cutime_ticks + st1->cstime_ticks - st0->cutime_ticks -
                                     st0->cstime_ticks) /
                 tick;
    }
    std::string text;
    if (FILE* f = std::fopen(out_path.c_str(), "r")) {
      char line[128] = {};
      if (std::fgets(line, sizeof line, f))
        text = line;
      std::fclose(f);
    }
    std::remove(out_path.c_str());
    parse(text);
    auto destroyed = co_await destroy_daemon(*d, std::chrono::seconds(20));
    rep.add_check("the daemon destroyed and gone", static_cast<bool>(destroyed),
                  destroyed ? "" : destroyed.error().message);
  }

  rep.add_check("the storm ran to its end",
                failure.empty() && state.exit_code == 0 && started == children,
                failure.empty() ? "exit code " + std::to_string(state.exit_code) + ", " +
                                      std::to_string(started) + " children forked"
                                : failure);
  rep.add_check("no zombie left to the executor", zombies == 0,
                std::to_string(zombies) + " unreaped");
  rep.figures["children"] = started;
  rep.figures["daemonised"] = daemonised;
  rep.figures["orphans_reaped"] = embedded ? static_cast<double>(orphans) : -1.0;
  rep.figures["seconds"] = wall;
  rep.figures["executor_cpu_seconds"] = executor_cpu;
  rep.figures["task_tree_cpu_seconds"] = tree_cpu;
  const double per_thousand =
      started ? executor_cpu * 1000.0 / static_cast<double>(started) * 1000.0 : 0;
  rep.figures["executor_cpu_ms_per_1000_processes"] = per_thousand;
  char line[200];
  std::snprintf(line, sizeof line, "%lld processes in %.2f s (%.0f/s)", started + daemonised, wall,
                wall > 0 ? static_cast<double>(started + daemonised) / wall : 0);
  rep.lines.push_back(line);
  rep.compare("executor CPU", executor_cpu * 1000, "ms", "CPU of the forking task and its children",
              tree_cpu * 1000, "", true);
  rep.compare("executor CPU per 1000 children", per_thousand, "ms", "", 0, "", true);
}

}  // namespace stress
