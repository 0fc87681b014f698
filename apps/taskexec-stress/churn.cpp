// churn: create an executor (a daemon, or an embedded task_executor),
// launch a short task, wait for it, destroy; N cycles, C at once.
#include <cstdio>
#include <memory>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

namespace {

// posix_spawn + waitpid of /bin/true, the same count and concurrency, in a
// process of its own (ours reaps every child): cycles per second.
asio::awaitable<double> spawn_baseline(context& ctx, long long count, long long concurrency) {
  // Named, not temporaries in the co_await's full expression (GCC 12).
  std::vector<std::string> args{std::to_string(count), std::to_string(concurrency)};
  const std::string what = "spawn baseline", name = "spawn-baseline";
  const std::string text = co_await helper_output(ctx, what, name, std::move(args));
  double seconds = 0;
  if (std::sscanf(text.c_str(), "seconds %lf", &seconds) != 1 || seconds <= 0)
    throw std::runtime_error("spawn baseline printed \"" + text + "\"");
  co_return static_cast<double>(count) / seconds;
}

}  // namespace

asio::awaitable<void> run_churn(context& ctx, const options& opt, scenario_report& rep) {
  const auto count = opt.num("count");
  const auto concurrency = opt.num("concurrency");
  const bool embedded = opt.flag("embedded");
  const bool cgroup = opt.flag("cgroup");
  rep.summary = std::to_string(count) + " create-launch-wait-destroy cycles of /bin/true " +
                (embedded ? "with embedded executors" : "through daemons") + ", " +
                std::to_string(concurrency) + " at once" + (cgroup ? ", each in a cgroup" : "");
  rep.histogram_of = "cycle";
  const auto deadline = clock_type::now() + ctx.time_limit;

  long long next = 0, done = 0, failed = 0;
  std::string first_failure;
  auto fail = [&](const std::string& what) {
    if (failed++ == 0)
      first_failure = what;
  };
  auto t0 = clock_type::now();
  auto command = [&](long long) {
    taskexec::exec_command cmd;
    cmd.cmd = "/bin/true";
    cmd.env = ctx.task_env();
    cmd.basic_process_cgroup = cgroup;
    return cmd;
  };

  auto embedded_cycle = [&](long long i) -> asio::awaitable<void> {
    auto c0 = clock_type::now();
    taskexec::task_executor_options o;
    o.task_id = "taskexec-stress-" + ctx.run_id + "-" + std::to_string(i);
    auto exe = std::make_unique<taskexec::task_executor>(ctx.reaper, o);
    rep.latency("create").record(since_ns(c0));
    auto l0 = clock_type::now();
    auto launched = co_await exe->launch(command(i));
    rep.latency("launch").record(since_ns(l0));
    if (!launched) {
      fail("launch: " + launched.error().message);
      co_return;
    }
    auto w0 = clock_type::now();
    auto state = co_await exe->wait();
    rep.latency("wait").record(since_ns(w0));
    if (!state || state->exit_code != 0)
      fail(state ? "exit code " + std::to_string(state->exit_code) : state.error().message);
    auto d0 = clock_type::now();
    if (auto r = co_await exe->destroy(); !r)
      fail("destroy: " + r.error().message);
    exe.reset();
    rep.latency("destroy").record(since_ns(d0));
    rep.latency("cycle").record(since_ns(c0));
    ++done;
  };

  auto daemon_cycle = [&](long long i) -> asio::awaitable<void> {
    auto c0 = clock_type::now();
    auto d = co_await start_daemon(ctx, ctx.fresh_path("churn", ".sock"));
    rep.latency("create").record(since_ns(c0));
    if (!d) {
      fail("create: " + d.error().message);
      co_return;
    }
    auto l0 = clock_type::now();
    auto launched = co_await d->client->launch(command(i));
    rep.latency("launch").record(since_ns(l0));
    if (!launched) {
      fail("launch: " + launched.error().message);
    } else {
      auto w0 = clock_type::now();
      auto state = co_await d->client->wait();
      rep.latency("wait").record(since_ns(w0));
      if (!state || state->exit_code != 0)
        fail(state ? "exit code " + std::to_string(state->exit_code) : state.error().message);
    }
    auto d0 = clock_type::now();
    if (auto r = co_await destroy_daemon(*d, std::chrono::seconds(20)); !r)
      fail("destroy: " + r.error().message);
    rep.latency("destroy").record(since_ns(d0));
    rep.latency("cycle").record(since_ns(c0));
    ++done;
  };

  co_await with_progress(
      ctx,
      [&] {
        double s = std::chrono::duration<double>(clock_type::now() - t0).count();
        char b[128];
        std::snprintf(b, sizeof b, "churn: %lld/%lld cycles, %.0f/s, %lld failed", done, count,
                      s > 0 ? static_cast<double>(done) / s : 0.0, failed);
        return std::string(b);
      },
      [&]() -> asio::awaitable<void> {
        co_await run_all(static_cast<std::size_t>(concurrency),
                         [&](std::size_t) -> asio::awaitable<void> {
                           while (next < count && clock_type::now() < deadline) {
                             auto i = next++;
                             if (embedded)
                               co_await embedded_cycle(i);
                             else
                               co_await daemon_cycle(i);
                           }
                         });
      });
  double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  double rate = static_cast<double>(done) / seconds;
  double baseline = co_await spawn_baseline(ctx, count, concurrency);

  rep.figures["cycles"] = done;
  rep.figures["failed"] = failed;
  rep.figures["cycles_per_second"] = rate;
  rep.figures["baseline_spawn_per_second"] = baseline;
  const double target = embedded ? 300 : 100;
  rep.compare("cycles per second", rate, "/s",
              "raw posix_spawn+waitpid of /bin/true, same concurrency", baseline,
              ">= " + std::to_string(static_cast<int>(target)) + "/s", rate >= target);
  rep.add_check("every cycle ran", done == count,
                std::to_string(done) + " of " + std::to_string(count) +
                    (done < count ? " before the time limit" : ""));
  rep.add_check("every task launched and exited 0", failed == 0,
                failed ? std::to_string(failed) + " failed, the first: " + first_failure : "");
}

}  // namespace stress
