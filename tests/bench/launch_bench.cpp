// bench_launch: launch-to-exit latency of /bin/true through task_executor
// against raw posix_spawn + waitpid, measured in the same run, interleaved in
// rounds so both see the same machine state. Prints each and its ratio.
//
// The embedded paths: the awaitable API (launch() + wait()), and the
// completion-token API (async.hpp) with plain callbacks and with the
// default token (deferred, co_awaited). With --threads N (N > 1), the
// callback path also runs with io_context::run() on N threads; that needs
// an executor whose state is synchronised (issue 18 item 2), so it is off
// by default until that lands.
//
//   bench_launch [--iterations N] [--rounds R] [--binary PATH] [--threads N]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/task_executor.hpp"

extern char** environ;

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

using bench::summarize;
using bench::summary;

void raw_round(const char* binary, int n, std::vector<double>& out) {
  char* argv[] = {const_cast<char*>(binary), nullptr};
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    pid_t pid;
    if (::posix_spawn(&pid, binary, nullptr, nullptr, argv, environ) != 0)
      std::abort();
    int status;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
      std::abort();
    out.push_back(us_since(t0));
  }
}

asio::awaitable<void> executor_round(taskexec::child_reaper& reaper, const char* binary, int n,
                                     std::vector<double>& out) {
  taskexec::exec_command cmd;
  cmd.cmd = binary;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    taskexec::task_executor task(reaper);
    auto r = co_await task.launch(cmd);
    if (!r) {
      std::fprintf(stderr, "launch: %s\n", r.error().message.c_str());
      std::exit(1);
    }
    auto st = co_await task.wait();
    if (!st || st->exit_code != 0)
      std::abort();
    out.push_back(us_since(t0));
  }
}

// The default token (deferred), co_awaited; errors throw.
asio::awaitable<void> deferred_round(taskexec::child_reaper& reaper, const char* binary, int n,
                                     std::vector<double>& out) {
  taskexec::exec_command cmd;
  cmd.cmd = binary;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    taskexec::task_executor task(reaper);
    auto started = co_await task.async_launch(cmd);
    (void)started;
    auto st = co_await task.async_wait();
    if (st.exit_code != 0)
      std::abort();
    out.push_back(us_since(t0));
  }
}

// Plain callbacks: each launch's handler starts its wait, each wait's
// handler the next launch.
struct callback_round {
  taskexec::child_reaper& reaper;
  taskexec::exec_command cmd;
  int n = 0;
  std::vector<double>& out;
  std::function<void()> done;
  std::unique_ptr<taskexec::task_executor> task;
  clock_type::time_point t0;
  int i = 0;

  void next() {
    if (i == n) {
      task.reset();
      done();
      return;
    }
    t0 = clock_type::now();
    task = std::make_unique<taskexec::task_executor>(reaper);
    task->async_launch(cmd, [this](boost::system::error_code ec, taskexec::process_state) {
      if (ec) {
        std::fprintf(stderr, "launch: %s\n", ec.message().c_str());
        std::exit(1);
      }
      task->async_wait([this](boost::system::error_code ec2, taskexec::process_state st) {
        if (ec2 || st.exit_code != 0)
          std::abort();
        out.push_back(us_since(t0));
        ++i;
        next();
      });
    });
  }
};

// The callback path with io_context::run() on `threads` threads (1: this
// one). A lost exit stalls it: bounded, then reported as a failure.
void callback_round_on(asio::io_context& io, taskexec::child_reaper& reaper, const char* binary,
                       int n, int threads, std::vector<double>& out) {
  std::atomic<bool> finished{false};
  callback_round r{reaper, {}, n, out, {}, {}, {}, 0};
  r.cmd.cmd = binary;
  r.done = [&] {
    finished = true;
    io.stop();
  };
  io.restart();
  asio::steady_timer bound(io, std::chrono::seconds(60));
  bound.async_wait([&](boost::system::error_code ec) {
    if (!ec && !finished) {
      std::fprintf(stderr, "callback round on %d threads stalled at %d of %d (a lost exit)\n",
                   threads, r.i, n);
      std::exit(1);
    }
  });
  asio::post(io, [&] { r.next(); });
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool)
    t.join();
  bound.cancel();
  io.restart();
  io.poll();  // the bound's cancellation
}

void print_row(const char* name, const summary& s) {
  std::printf("%-34s %9.1f %9.1f %9.1f %9.1f %9.1f\n", name, s.mean, s.p50, s.p90, s.p99, s.max);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 2000, rounds = 10, threads = 1;
  const char* binary = "/bin/true";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc)
      iterations = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else if (a == "--binary" && i + 1 < argc)
      binary = argv[++i];
    else if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: bench_launch [--iterations N] [--rounds R] [--binary PATH] "
                   "[--threads N]\n");
      return 2;
    }
  }
  if (iterations < rounds)
    rounds = 1;
  taskexec::set_logger({.level = taskexec::log_level::warning});
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor());

  std::vector<double> raw, ours, deferred, callback, pooled;
  for (auto* v : {&raw, &ours, &deferred, &callback, &pooled})
    v->reserve(static_cast<std::size_t>(iterations));
  const int per_round = iterations / rounds;
  for (int r = 0; r < rounds; ++r) {
    // Raw: the io_context is idle, so the reaper cannot take our child;
    // waitpid(pid) reaps it directly.
    raw_round(binary, per_round, raw);
    bench::run_to_end(io, [&] { return executor_round(reaper, binary, per_round, ours); });
    bench::run_to_end(io, [&] { return deferred_round(reaper, binary, per_round, deferred); });
    callback_round_on(io, reaper, binary, per_round, 1, callback);
    if (threads > 1)
      callback_round_on(io, reaper, binary, per_round, threads, pooled);
  }

  auto a = summarize(raw), b = summarize(ours), d = summarize(deferred), c = summarize(callback);
  std::printf("launch-to-exit of %s, %d iterations each, %d interleaved rounds (microseconds)\n",
              binary, per_round * rounds, rounds);
  std::printf("%-34s %9s %9s %9s %9s %9s\n", "", "mean", "p50", "p90", "p99", "max");
  print_row("raw posix_spawn+waitpid", a);
  print_row("taskexec launch+wait (awaitable)", b);
  print_row("taskexec tokens: deferred", d);
  print_row("taskexec tokens: callback", c);
  std::string pooled_name = "taskexec tokens: callback, " + std::to_string(threads) + " thr";
  summary p{};
  if (threads > 1) {
    p = summarize(pooled);
    print_row(pooled_name.c_str(), p);
  }
  std::printf("ratio (taskexec / raw): mean %.2fx, p50 %.2fx (target <= 1.20x)\n", b.mean / a.mean,
              b.p50 / a.p50);
  std::printf("ratio (deferred / raw): mean %.2fx, p50 %.2fx (target <= 1.20x)\n", d.mean / a.mean,
              d.p50 / a.p50);
  std::printf("ratio (callback / raw): mean %.2fx, p50 %.2fx (target <= 1.20x)\n", c.mean / a.mean,
              c.p50 / a.p50);
  if (threads > 1)
    std::printf("ratio (callback on %d threads / raw): mean %.2fx, p50 %.2fx (target <= 1.20x)\n",
                threads, p.mean / a.mean, p.p50 / a.p50);
  bench::table_row("launch-to-exit (p50)", b.p50, "us", "raw posix_spawn+waitpid", a.p50,
                   "<= 1.2x");
  bench::table_row("launch-to-exit, tokens deferred (p50)", d.p50, "us", "raw posix_spawn+waitpid",
                   a.p50, "<= 1.2x");
  bench::table_row("launch-to-exit, tokens callback (p50)", c.p50, "us", "raw posix_spawn+waitpid",
                   a.p50, "<= 1.2x");
  if (threads > 1)
    bench::table_row(
        "launch-to-exit, tokens callback " + std::to_string(threads) + " threads (p50)", p.p50,
        "us", "raw posix_spawn+waitpid", a.p50, "<= 1.2x");
  return 0;
}
