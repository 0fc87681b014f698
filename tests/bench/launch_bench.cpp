// bench_launch: launch-to-exit latency of /bin/true through task_executor
// against raw posix_spawn + waitpid, measured in the same run, interleaved in
// rounds so both see the same machine state. Prints both and the ratio.
//
//   bench_launch [--iterations N] [--rounds R] [--binary PATH]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  int iterations = 2000, rounds = 10;
  const char* binary = "/bin/true";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc)
      iterations = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else if (a == "--binary" && i + 1 < argc)
      binary = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_launch [--iterations N] [--rounds R] [--binary PATH]\n");
      return 2;
    }
  }
  if (iterations < rounds)
    rounds = 1;
  taskexec::set_logger({.level = taskexec::log_level::warning});
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor());

  std::vector<double> raw, ours;
  raw.reserve(static_cast<std::size_t>(iterations));
  ours.reserve(static_cast<std::size_t>(iterations));
  const int per_round = iterations / rounds;
  for (int r = 0; r < rounds; ++r) {
    // Raw: the io_context is idle, so the reaper cannot take our child;
    // waitpid(pid) reaps it directly.
    raw_round(binary, per_round, raw);
    bench::run_to_end(io, [&] { return executor_round(reaper, binary, per_round, ours); });
  }

  auto a = summarize(raw), b = summarize(ours);
  std::printf("launch-to-exit of %s, %d iterations each, %d interleaved rounds (microseconds)\n",
              binary, per_round * rounds, rounds);
  std::printf("%-28s %9s %9s %9s %9s %9s\n", "", "mean", "p50", "p90", "p99", "max");
  std::printf("%-28s %9.1f %9.1f %9.1f %9.1f %9.1f\n", "raw posix_spawn+waitpid", a.mean, a.p50,
              a.p90, a.p99, a.max);
  std::printf("%-28s %9.1f %9.1f %9.1f %9.1f %9.1f\n", "taskexec launch+wait", b.mean, b.p50, b.p90,
              b.p99, b.max);
  std::printf("ratio (taskexec / raw): mean %.2fx, p50 %.2fx (target <= 1.20x)\n", b.mean / a.mean,
              b.p50 / a.p50);
  bench::table_row("launch-to-exit (p50)", b.p50, "us", "raw posix_spawn+waitpid", a.p50,
                   "<= 1.2x");
  return 0;
}
