// rpc-flood: one daemon, K connections calling as fast as answers come:
// Version alone, then a mix of Version, Signal(0), Events, Stats and Exec
// while a Wait is pending on every connection. Beside it, the same bytes
// through a raw Unix-socket echo server.
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

namespace {

using local = asio::local::stream_protocol;

// One connection sending `line` and reading one line back, until `until`
// or `max_calls` calls in all.
asio::awaitable<void> raw_caller(asio::io_context& io, std::string path, std::string line,
                                 clock_type::time_point until, std::uint64_t max_calls,
                                 std::uint64_t& calls, latency_recorder& rec, std::string& error) {
  local::socket s(io);
  auto [cec] = co_await s.async_connect(local::endpoint(path), asio::as_tuple(asio::use_awaitable));
  if (cec) {
    error = "connect " + path + ": " + cec.message();
    co_return;
  }
  std::string buf;
  while (clock_type::now() < until && calls < max_calls) {
    auto t0 = clock_type::now();
    auto [wec, w] =
        co_await asio::async_write(s, asio::buffer(line), asio::as_tuple(asio::use_awaitable));
    auto [rec_ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), '\n',
                                                       asio::as_tuple(asio::use_awaitable));
    if (wec || rec_ec) {
      error = "call on " + path + ": " + (wec ? wec : rec_ec).message();
      co_return;
    }
    (void)w;
    buf.erase(0, n);
    rec.record(since_ns(t0));
    ++calls;
  }
}

enum class method { version, signal0, events, stats, exec };
// The mix's latency rows. Its Versions wait behind Execs and Stats: they
// have a row of their own, apart from the Version phase's ("Version"),
// whose p99 is the figure compared with the raw echo's.
const char* method_name(method m) {
  switch (m) {
    case method::version:
      return "Version (mix)";
    case method::signal0:
      return "Signal(0)";
    case method::events:
      return "Events";
    case method::stats:
      return "Stats";
    case method::exec:
      return "Exec(/bin/true)";
  }
  return "?";
}
// The mix, in 20 slots.
constexpr method mix[20] = {method::version, method::signal0, method::version, method::events,
                            method::version, method::signal0, method::version, method::stats,
                            method::version, method::signal0, method::version, method::exec,
                            method::version, method::events,  method::signal0, method::version,
                            method::stats,   method::events,  method::signal0, method::exec};

// The Waits pending through the mix, shared with their coroutines.
struct pending_waits {
  std::vector<taskexec::result<taskexec::process_state>> results;
  std::size_t done = 0;
  asio::steady_timer all_done;
  pending_waits(asio::io_context& io, std::size_t k)
      : results(k, taskexec::make_error(taskexec::errc::internal, "not answered")),
        all_done(io, asio::steady_timer::time_point::max()) {}
};

// A function, not a lambda with captures: GCC 12 mishandles init-captures
// of lambdas made in coroutines. `c.wait()` holds its connection itself.
asio::awaitable<void> pending_wait(std::shared_ptr<pending_waits> pw, std::size_t i,
                                   taskexec::remote_executor& c) {
  pw->results[i] = co_await c.wait();
  if (++pw->done == pw->results.size())
    pw->all_done.cancel();
}

}  // namespace

asio::awaitable<void> run_rpc_flood(context& ctx, const options& opt, scenario_report& rep) {
  const auto k = static_cast<std::size_t>(opt.num("connections"));
  const auto phase = std::chrono::milliseconds(opt.num("phase-ms", 100));
  const auto max_calls = static_cast<std::uint64_t>(opt.num("max-calls"));
  const auto growth_limit = opt.num("max-growth-kib", 0);
  rep.summary = std::to_string(k) + " connections to one daemon, " + std::to_string(phase.count()) +
                " ms per phase: raw echo baseline, Version, " +
                "then a mix with a Wait pending on each";
  rep.histogram_of = "Version";
  const std::string version_line = R"({"jsonrpc":"2.0","id":1,"method":"Version"})"
                                   "\n";

  // The baseline server, and the daemon with its task.
  taskexec::task_executor echo(ctx.reaper);
  const std::string echo_path = ctx.fresh_path("echo", ".sock");
  {
    pipe_pair out;
    auto cmd = ctx.helper("echo-server", {echo_path});
    cmd.stdout_fd = out.write_fd;
    if (auto r = co_await echo.launch(cmd); !r)
      throw std::runtime_error("echo server: " + r.error().message);
    out.close_write();
    if (co_await read_line(ctx.io, out.read_fd) != "ready")
      throw std::runtime_error("the echo server did not start");
  }
  auto d = co_await start_daemon(ctx, ctx.fresh_path("flood", ".sock"));
  if (!d)
    throw std::runtime_error("daemon: " + d.error().message);
  auto& control = *d->client;
  taskexec::exec_command task;
  task.cmd = "/bin/sleep";
  task.args = strings("100000");
  task.env = ctx.task_env();
  if (auto r = co_await control.launch(task); !r)
    throw std::runtime_error("launch: " + r.error().message);
  const int dpid = d->config.pid;
  const int fds_before = count_fds("/proc", dpid);
  const auto mem_before = read_memory("/proc", dpid);

  std::uint64_t calls = 0;
  std::string error;
  auto status = [&](const char* what) {
    return [&, what] {
      return std::string("rpc-flood: ") + what + ", " + std::to_string(calls) + " calls";
    };
  };
  auto rate_of = [&](auto t0) {
    return static_cast<double>(calls) /
           std::chrono::duration<double>(clock_type::now() - t0).count();
  };

  // 1. The raw baseline: the same bytes through the echo server.
  auto t0 = clock_type::now();
  co_await with_progress(ctx, status("raw echo"), [&]() -> asio::awaitable<void> {
    co_await run_all(k, [&](std::size_t) {
      return raw_caller(ctx.io, echo_path, version_line, t0 + phase, max_calls, calls,
                        rep.latency("raw echo (baseline)"), error);
    });
  });
  const double echo_rate = rate_of(t0);
  co_await echo.shutdown("SIGKILL", std::chrono::milliseconds(0));
  ::unlink(echo_path.c_str());

  // 2. Version through a raw line client: the daemon's own cost.
  calls = 0;
  t0 = clock_type::now();
  co_await with_progress(ctx, status("Version, raw client"), [&]() -> asio::awaitable<void> {
    co_await run_all(k, [&](std::size_t) {
      return raw_caller(ctx.io, d->config.socket, version_line, t0 + phase, max_calls, calls,
                        rep.latency("Version (raw client)"), error);
    });
  });
  const double raw_version_rate = rate_of(t0);

  // 3. Version through remote_executor, K connections.
  std::vector<taskexec::remote_executor> clients;
  for (std::size_t i = 0; i < k; ++i) {
    auto c = co_await taskexec::remote_executor::connect(ctx.io.get_executor(), d->config.socket);
    if (!c)
      throw std::runtime_error("connect: " + c.error().message);
    clients.push_back(std::move(*c));
  }
  std::uint64_t failures = 0;
  std::string first_failure;
  auto fail = [&](std::string what) {
    if (failures++ == 0)
      first_failure = std::move(what);
  };
  calls = 0;
  t0 = clock_type::now();
  co_await with_progress(ctx, status("Version"), [&]() -> asio::awaitable<void> {
    co_await run_all(k, [&](std::size_t i) -> asio::awaitable<void> {
      auto& rec = rep.latency("Version");
      while (clock_type::now() < t0 + phase && calls < max_calls) {
        auto c0 = clock_type::now();
        auto v = co_await clients[i].version();
        rec.record(since_ns(c0));
        ++calls;
        if (!v)
          fail("Version: " + v.error().message);
      }
    });
  });
  const double version_rate = rate_of(t0);
  const std::uint64_t version_calls = calls;

  // 4. The mix, with a Wait pending on every connection. Their state is
  // shared with the waiting coroutines, which may outlive this frame when
  // it ends by an exception.
  auto pw = std::make_shared<pending_waits>(ctx.io, k);
  for (std::size_t i = 0; i < k; ++i)
    asio::co_spawn(ctx.io, pending_wait(pw, i, clients[i]), asio::detached);
  calls = 0;
  std::uint64_t pending_seen = 0;
  t0 = clock_type::now();
  co_await with_progress(ctx, status("mix"), [&]() -> asio::awaitable<void> {
    co_await run_all(k, [&](std::size_t i) -> asio::awaitable<void> {
      auto& c = clients[i];
      for (std::size_t slot = i; clock_type::now() < t0 + phase && calls < max_calls; ++slot) {
        auto m = mix[slot % 20];
        auto c0 = clock_type::now();
        switch (m) {
          case method::version:
            if (auto r = co_await c.version(); !r)
              fail("Version: " + r.error().message);
            break;
          case method::signal0:
            if (auto r = co_await c.signal(0); !r)
              fail("Signal(0): " + r.error().message);
            break;
          case method::events:
            if (auto r = co_await c.events(0); !r)
              fail("Events: " + r.error().message);
            break;
          case method::stats: {
            auto s = co_await c.stats(std::chrono::milliseconds(1000));
            if (!s) {
              fail("Stats: " + s.error().message);
              break;
            }
            if (auto first = co_await s->next(); !first)
              fail("Stats sample: " + first.error().message);
            if (auto r = co_await s->cancel(); !r)
              fail("Stats.Cancel: " + r.error().message);
            break;
          }
          case method::exec: {
            auto r = co_await c.exec("/bin/true", {}, std::chrono::milliseconds(10000));
            if (!r || r->exit_code != 0)
              fail("Exec: " +
                   (r ? "exit code " + std::to_string(r->exit_code) : r.error().message));
            break;
          }
        }
        rep.latency(method_name(m)).record(since_ns(c0));
        ++calls;
      }
    });
  });
  const double mix_rate = rate_of(t0);
  pending_seen = k - pw->done;

  // The pending Waits answer the task's end: SIGTERM, so signal 15.
  if (auto r = co_await control.shutdown("SIGTERM", std::chrono::milliseconds(2000)); !r)
    fail("Shutdown: " + r.error().message);
  if (pw->done < k) {
    asio::steady_timer bound(ctx.io, std::chrono::seconds(10));
    bound.async_wait([pw](boost::system::error_code ec) {
      if (!ec)
        pw->all_done.cancel();
    });
    co_await pw->all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  std::size_t waits_right = 0;
  for (auto& w : pw->results)
    waits_right += w && w->signal == 15 && w->exit_code == 143 ? 1 : 0;
  clients.clear();

  co_await check_daemon_at_rest_and_destroy(*d, fds_before, mem_before, growth_limit, rep);

  rep.figures["echo_calls_per_second"] = echo_rate;
  rep.figures["version_raw_client_calls_per_second"] = raw_version_rate;
  rep.figures["version_calls_per_second"] = version_rate;
  rep.figures["version_calls"] = version_calls;
  rep.figures["mix_calls_per_second"] = mix_rate;
  rep.figures["failures"] = failures;
  auto& vl = rep.latency("Version");
  rep.compare("Version calls per second (remote_executor)", version_rate, "/s",
              "raw Unix-socket echo, same bytes and connections", echo_rate, ">= 20000/s",
              version_rate >= 20000);
  rep.compare("Version calls per second (raw client)", raw_version_rate, "/s",
              "raw Unix-socket echo, same bytes and connections", echo_rate, "", true);
  rep.compare("Version p99 (remote_executor)", static_cast<double>(vl.quantile(0.99)) / 1e6, "ms",
              "raw echo p99",
              static_cast<double>(rep.latency("raw echo (baseline)").quantile(0.99)) / 1e6,
              "< 2 ms", vl.quantile(0.99) < 2'000'000);
  rep.lines.push_back("mixed calls: " + std::to_string(static_cast<long long>(mix_rate)) +
                      "/s with " + std::to_string(pending_seen) + " Waits pending throughout");
  rep.add_check(
      "every call answered without error", failures == 0 && error.empty(),
      failures ? std::to_string(failures) + " failed, the first: " + first_failure : error);
  rep.add_check("every pending Wait answered the task's SIGTERM (signal 15, code 143)",
                waits_right == k && pending_seen == k,
                std::to_string(waits_right) + " of " + std::to_string(k) + "; " +
                    std::to_string(pending_seen) + " still pending when the mix ended");
}

}  // namespace stress
