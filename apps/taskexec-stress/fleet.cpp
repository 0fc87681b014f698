// fleet: N long-running tasks, each in a daemon of its own with a Stats
// subscription, held for T seconds: the daemons' memory and CPU, and
// whether every sample came on time.
#include <fcntl.h>
#include <unistd.h>

#include <boost/json/value.hpp>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "stress.hpp"

namespace stress {

namespace {

struct member {
  daemon_handle d;
  std::optional<taskexec::stats_stream> stream;
  std::int64_t last_ts = 0;               // the previous sample's daemon timestamp
  clock_type::time_point last_arrival{};  // and when it arrived
  std::uint64_t samples_in_hold = 0;
  bool ended = false;
  std::string end_reason;
  int task_pid = 0;
};

// What one round of the reads a host task's Stats samples make costs, done
// raw for every member: the daemon's children list, then its task's stat,
// children list and status. Nanoseconds.
std::uint64_t raw_proc_read_ns(const std::vector<std::pair<int, int>>& daemon_and_task) {
  auto t0 = clock_type::now();
  char buf[4096];
  auto read_once = [&](const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      [[maybe_unused]] auto n = ::read(fd, buf, sizeof buf);
      ::close(fd);
    }
  };
  for (auto [daemon, task] : daemon_and_task) {
    const auto d = std::to_string(daemon), t = std::to_string(task);
    read_once("/proc/" + d + "/task/" + d + "/children");
    read_once("/proc/" + t + "/stat");
    read_once("/proc/" + t + "/task/" + t + "/children");
    read_once("/proc/" + t + "/status");
  }
  return since_ns(t0);
}

// The floor of a process per task: `n` minimal processes (the stress's
// fleet-floor helper), each waking on its own timer at `interval` to do the
// same reads and send a sample line of the same size, held as long.
struct floor_result {
  double cpu_seconds = 0, hold_seconds = 0;
  unsigned long long lines = 0;
  std::size_t members = 0;
};
asio::awaitable<floor_result> run_floor(context& ctx, std::size_t n,
                                        std::chrono::milliseconds interval,
                                        std::chrono::seconds hold) {
  // Named, not temporaries in the co_await's full expression (GCC 12).
  std::vector<std::string> args{std::to_string(n), std::to_string(interval.count()),
                                std::to_string(hold.count() * 1000)};
  const std::string what = "fleet floor", name = "fleet-floor";
  const std::string text = co_await helper_output(ctx, what, name, std::move(args));
  floor_result f;
  if (std::sscanf(text.c_str(), "cpu_seconds %lf hold_seconds %lf lines %llu members %zu",
                  &f.cpu_seconds, &f.hold_seconds, &f.lines, &f.members) != 4 ||
      f.hold_seconds <= 0)
    throw std::runtime_error("fleet floor printed \"" + text + "\"");
  co_return f;
}

// A sample's timestamp_unix_nano (0 when missing).
std::int64_t timestamp_of(const boost::json::object& sample) {
  const auto* v = sample.if_contains("timestamp_unix_nano");
  if (v && v->is_int64())
    return v->as_int64();
  if (v && v->is_uint64())
    return static_cast<std::int64_t>(v->as_uint64());
  return 0;
}

}  // namespace

asio::awaitable<void> run_fleet(context& ctx, const options& opt, scenario_report& rep) {
  const auto n = static_cast<std::size_t>(opt.num("tasks"));
  const auto hold = std::chrono::seconds(opt.num("seconds"));
  const auto interval = std::chrono::milliseconds(opt.num("interval-ms", 10));
  const auto start_concurrency = static_cast<std::size_t>(opt.num("start-concurrency"));
  const auto peer_pss = opt.num("peer-pss-kib", 0);
  rep.summary = std::to_string(n) + " tasks, each in a daemon of its own with Stats every " +
                std::to_string(interval.count()) + " ms, held " + std::to_string(hold.count()) +
                " s";
  rep.histogram_of = "sample interval";
  const auto interval_ns = static_cast<std::int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count());

  std::vector<member> fleet(n);
  std::size_t created = 0, started = 0, start_failed = 0, next = 0;
  std::string first_failure;
  bool holding = false;
  std::uint64_t dropped = 0;
  std::uint64_t late = 0, missed = 0, total_samples = 0;
  std::int64_t worst_late_ns = 0;
  const auto deadline = clock_type::now() + ctx.time_limit;

  // Each member's sample reader, until its stream ends.
  auto reader = [&](member& m) -> asio::awaitable<void> {
    for (;;) {
      auto s = co_await m.stream->next();
      if (!s) {
        m.ended = true;
        m.end_reason = s.error().message;
        co_return;
      }
      auto now = clock_type::now();
      const std::int64_t ts = timestamp_of(*s);
      ++total_samples;
      if (holding && m.last_ts != 0) {
        ++m.samples_in_hold;
        auto gap = ts - m.last_ts;
        rep.latency("sample interval")
            .record(static_cast<std::uint64_t>(std::max<std::int64_t>(gap, 0)));
        rep.latency("arrival interval").record(since_ns(m.last_arrival));
        // Late: more than half an interval after it was due; every whole
        // interval beyond the first is a sample missed.
        if (gap > interval_ns + interval_ns / 2) {
          ++late;
          worst_late_ns = std::max(worst_late_ns, gap - interval_ns);
          missed += static_cast<std::uint64_t>(
                        std::llround(static_cast<double>(gap) / static_cast<double>(interval_ns))) -
                    1;
        }
      }
      m.last_ts = ts;
      m.last_arrival = now;
    }
  };

  auto t0 = clock_type::now();
  // Start: each member a daemon with a sleeping task and a subscription.
  co_await with_progress(
      ctx,
      [&] {
        return "fleet: " + std::to_string(started) + "/" + std::to_string(n) +
               " daemons started, " + std::to_string(start_failed) + " failed";
      },
      [&]() -> asio::awaitable<void> {
        co_await run_all(start_concurrency, [&](std::size_t) -> asio::awaitable<void> {
          while (next < n && clock_type::now() < deadline) {
            auto& m = fleet[next++];
            auto d = co_await start_daemon(ctx, ctx.fresh_path("fleet", ".sock"));
            if (!d) {
              if (start_failed++ == 0)
                first_failure = "create: " + d.error().message;
              continue;
            }
            m.d = std::move(*d);
            ++created;
            taskexec::exec_command cmd;
            cmd.cmd = "/bin/sleep";
            cmd.args = strings("100000");
            cmd.env = ctx.task_env();
            auto l = co_await m.d.client->launch(cmd);
            if (!l) {
              if (start_failed++ == 0)
                first_failure = "launch: " + l.error().message;
              continue;
            }
            m.task_pid = l->pid;
            auto s = co_await m.d.client->stats(interval);
            if (!s) {
              if (start_failed++ == 0)
                first_failure = "stats: " + s.error().message;
              continue;
            }
            m.stream.emplace(std::move(*s));
            ++started;
          }
        });
      });
  double start_seconds = std::chrono::duration<double>(clock_type::now() - t0).count();

  std::vector<int> daemon_pids;
  std::vector<std::pair<int, int>> task_pids;  // daemon, task
  for (auto& m : fleet)
    if (m.stream)
      daemon_pids.push_back(m.d.config.pid);

  // Hold: every reader runs, plus the measurement.
  double cpu_before = 0, cpu_after = 0, hold_seconds = 0;
  long pss = 0, dirty = 0;
  co_await run_all(n + 1, [&](std::size_t i) -> asio::awaitable<void> {
    if (i < n) {
      if (fleet[i].stream)
        co_await reader(fleet[i]);
      co_return;
    }
    // Let the first sample of every stream in (it comes at once), then hold.
    co_await pause(std::min<std::chrono::milliseconds>(interval, std::chrono::milliseconds(1000)));
    holding = true;
    for (int pid : daemon_pids)
      cpu_before += std::max(0.0, cpu_seconds(pid));
    auto h0 = clock_type::now();
    auto hold_end = h0 + hold;
    while (clock_type::now() < hold_end) {
      ctx.progress.update("fleet: holding " + std::to_string(started) + " tasks, " +
                          std::to_string(total_samples) + " samples, " + std::to_string(late) +
                          " late");
      co_await pause(std::min<std::chrono::milliseconds>(
          std::chrono::milliseconds(250),
          std::chrono::duration_cast<std::chrono::milliseconds>(hold_end - clock_type::now()) +
              std::chrono::milliseconds(1)));
    }
    holding = false;
    hold_seconds = std::chrono::duration<double>(clock_type::now() - h0).count();
    for (int pid : daemon_pids) {
      cpu_after += std::max(0.0, cpu_seconds(pid));
      auto mem = read_memory("/proc", pid);
      pss += std::max(0L, mem.pss_kib);
      dirty += std::max(0L, mem.private_dirty_kib);
    }
    ctx.progress.finish();
    // End every subscription, so the readers end.
    for (auto& m : fleet)
      if (m.stream) {
        dropped += m.stream->dropped();
        co_await m.stream->cancel();
      }
  });

  // The raw baseline: the reads of every sample, as often.
  for (auto& m : fleet)
    if (m.stream)
      task_pids.emplace_back(m.d.config.pid, m.task_pid);
  std::uint64_t raw_ns = raw_proc_read_ns(task_pids);

  // Teardown.
  std::size_t destroyed = 0, destroy_failed = 0;
  next = 0;
  co_await with_progress(
      ctx, [&] { return "fleet: " + std::to_string(destroyed) + " daemons destroyed"; },
      [&]() -> asio::awaitable<void> {
        co_await run_all(start_concurrency, [&](std::size_t) -> asio::awaitable<void> {
          while (next < n) {
            auto& m = fleet[next++];
            if (!m.d.pidfd)
              continue;
            m.stream.reset();
            auto r = co_await destroy_daemon(m.d, std::chrono::seconds(30));
            if (!r) {
              if (destroy_failed++ == 0)
                first_failure = "destroy: " + r.error().message;
            } else {
              ++destroyed;
            }
          }
        });
      });

  // The floor, once the daemons are gone: the same number of minimal
  // processes, the same interval, as long.
  ctx.progress.update("fleet: the floor, " + std::to_string(started) + " minimal processes for " +
                      std::to_string(hold.count()) + " s");
  const floor_result floor_run = co_await run_floor(ctx, started, interval, hold);
  ctx.progress.finish();
  const double floor_percent = 100.0 * floor_run.cpu_seconds / floor_run.hold_seconds;
  const std::uint64_t floor_expected = static_cast<std::uint64_t>(
      std::floor(floor_run.hold_seconds * 1000.0 / static_cast<double>(interval.count())) *
      static_cast<double>(floor_run.members));

  const double cpu_percent = hold_seconds > 0 ? 100.0 * (cpu_after - cpu_before) / hold_seconds : 0;
  const double raw_percent =
      100.0 * static_cast<double>(raw_ns) / 1e9 * (1000.0 / static_cast<double>(interval.count()));
  const std::uint64_t expected_per_task = static_cast<std::uint64_t>(
      std::floor(hold_seconds * 1000.0 / static_cast<double>(interval.count())));
  std::uint64_t short_members = 0;
  for (auto& m : fleet) {
    if (!m.d.config.pid)
      continue;
    if (m.samples_in_hold + 1 < expected_per_task)
      ++short_members;
  }
  rep.figures["dropped_samples"] = dropped;
  rep.figures["tasks"] = started;
  rep.figures["start_seconds"] = start_seconds;
  rep.figures["hold_seconds"] = hold_seconds;
  rep.figures["samples"] = total_samples;
  rep.figures["late_samples"] = late;
  rep.figures["missed_samples"] = missed;
  rep.figures["worst_late_ms"] = static_cast<double>(worst_late_ns) / 1e6;
  rep.figures["daemons_pss_kib"] = pss;
  rep.figures["daemons_private_dirty_kib"] = dirty;
  rep.figures["pss_kib_per_task"] =
      started ? static_cast<double>(pss) / static_cast<double>(started) : 0;
  rep.figures["private_dirty_kib_per_task"] =
      started ? static_cast<double>(dirty) / static_cast<double>(started) : 0;
  rep.figures["daemons_cpu_percent_of_one_core"] = cpu_percent;
  rep.figures["raw_proc_reads_cpu_percent"] = raw_percent;
  rep.figures["floor_cpu_percent"] = floor_percent;
  rep.figures["floor_samples"] = floor_run.lines;
  char line[256];
  std::snprintf(line, sizeof line, "started %zu daemons in %.1f s (%.0f/s)", started, start_seconds,
                start_seconds > 0 ? static_cast<double>(started) / start_seconds : 0);
  rep.lines.push_back(line);
  std::snprintf(line, sizeof line,
                "memory of the daemons: PSS %ld KiB (%.0f KiB per task), Private_Dirty %ld KiB "
                "(%.0f KiB per task)",
                pss, started ? static_cast<double>(pss) / static_cast<double>(started) : 0.0, dirty,
                started ? static_cast<double>(dirty) / static_cast<double>(started) : 0.0);
  rep.lines.push_back(line);
  std::snprintf(
      line, sizeof line, "samples in the hold: %llu, late %llu (worst %.1f ms late), missed %llu",
      static_cast<unsigned long long>(total_samples), static_cast<unsigned long long>(late),
      static_cast<double>(worst_late_ns) / 1e6, static_cast<unsigned long long>(missed));
  rep.lines.push_back(line);

  rep.compare("daemons' CPU over the hold", cpu_percent, "% of one core",
              "the same /proc reads done raw, as often", raw_percent, "< 20%", cpu_percent < 20);
  rep.compare("daemons' CPU over the hold", cpu_percent, "% of one core",
              "the floor: a minimal process per task (timerfd, the same preads, a line of the "
              "same size sent), as many, as long",
              floor_percent);
  if (peer_pss > 0)
    rep.compare(
        "daemons' PSS, total", static_cast<double>(pss), "KiB",
        std::to_string(started) + " x the peer's PSS",
        static_cast<double>(peer_pss) * static_cast<double>(started), "< the peer's total",
        static_cast<double>(pss) < static_cast<double>(peer_pss) * static_cast<double>(started));
  rep.add_check("every daemon started with its task and subscription",
                started == n && start_failed == 0,
                std::to_string(started) + " of " + std::to_string(n) +
                    (first_failure.empty() ? "" : "; first failure: " + first_failure));
  rep.add_check("every sample on time (none late by half an interval, none missed)",
                late == 0 && missed == 0 && short_members == 0 && dropped == 0,
                std::to_string(late) + " late, " + std::to_string(missed) + " missed, " +
                    std::to_string(dropped) + " dropped unread, " + std::to_string(short_members) +
                    " tasks with fewer than " +
                    std::to_string(expected_per_task > 0 ? expected_per_task - 1 : 0) + " samples");
  // The floor is a baseline only if it did the work: every member's samples
  // but at most one per member (the tick on either edge of the hold).
  rep.add_check(
      "the floor ran: every minimal process, its samples in the hold",
      floor_run.members == started && floor_run.lines + floor_run.members >= floor_expected,
      std::to_string(floor_run.members) + " processes, " + std::to_string(floor_run.lines) +
          " samples of " + std::to_string(floor_expected) + " due");
  rep.add_check("every daemon destroyed and gone", destroyed == created && destroy_failed == 0,
                std::to_string(destroyed) + " of " + std::to_string(created));
}

}  // namespace stress
