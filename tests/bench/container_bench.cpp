// bench_container: launch-to-exit of /bin/true in a container (new mount,
// UTS, IPC and PID namespaces, pivot_root into a root holding only /bin/true
// and its libraries, /proc, /dev, /sys, a cgroup) through task_executor,
// beside `runc run` of the same root in the same run, and raw posix_spawn of
// /bin/true on the host as the floor. Interleaved in rounds. Needs root;
// without runc on PATH the comparison is skipped (scripts/bench.sh installs
// it from Debian).
//
// runc's default spec is used with the network and cgroup namespaces
// removed, so both sides create the same namespaces (host network).
//
//   bench_container [--iterations N] [--rounds R]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "rootfs.hpp"
#include "runc_bundle.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/task_executor.hpp"

extern char** environ;

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

namespace {

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

using bench::summarize;
using bench::summary;

int spawn_wait(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool have_runc() {
  return spawn_wait({"runc", "--version"}) == 0;
}

void raw_round(int n, std::vector<double>& out) {
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    if (spawn_wait({"/bin/true"}) != 0)
      std::abort();
    out.push_back(ms_since(t0));
  }
}

void runc_round(const fs::path& bundle, int n, int& seq, std::vector<double>& out) {
  for (int i = 0; i < n; ++i) {
    const std::string id =
        "taskexec-bench-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
    auto t0 = clock_type::now();
    int rc = spawn_wait({"runc", "run", "--bundle", bundle.string(), id});
    out.push_back(ms_since(t0));
    if (rc != 0) {
      std::fprintf(stderr, "runc run exited %d\n", rc);
      std::exit(1);
    }
  }
}

asio::awaitable<void> ours_round(taskexec::child_reaper& reaper, const fs::path& root, int n,
                                 std::vector<double>& out) {
  taskexec::exec_command cmd;
  cmd.cmd = "/bin/true";
  cmd.isolation = "container";
  cmd.task_dir = root.string();
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    {
      // Through the end of the executor's life: the cgroup is removed too.
      taskexec::task_executor task(reaper, {.task_id = "taskexec-bench-" + std::to_string(i)});
      auto r = co_await task.launch(cmd);
      if (!r) {
        std::fprintf(stderr, "launch: %s\n", r.error().message.c_str());
        std::exit(1);
      }
      auto st = co_await task.wait();
      if (!st || st->exit_code != 0)
        std::abort();
      (void)co_await task.shutdown("SIGKILL", std::chrono::milliseconds(0));
    }
    out.push_back(ms_since(t0));
  }
}

void print(const char* name, const summary& s) {
  std::printf("%-36s %8.2f %8.2f %8.2f %8.2f\n", name, s.mean, s.p50, s.p90, s.max);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 200, rounds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc)
      iterations = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_container [--iterations N] [--rounds R]\n");
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::printf("bench_container: needs root (containers); skipped\n");
    return 0;
  }
  if (iterations < rounds)
    rounds = 1;
  taskexec::set_logger({.level = taskexec::log_level::warning});

  char tmpl[] = "/tmp/taskexec-bench-XXXXXX";
  if (!::mkdtemp(tmpl))
    return 1;
  const fs::path dir = tmpl;
  struct cleanup {
    fs::path dir;
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove_dir{dir};
  const fs::path root = dir / "root";
  test_support::install_binary(root, "/usr/bin/true");
  fs::create_directory_symlink("usr/bin", root / "bin");
  fs::permissions(dir, fs::perms(0755));

  const bool runc = have_runc() && bench::make_runc_bundle(dir / "bundle", root, {"/bin/true"});
  if (!runc)
    std::printf("runc not installed (scripts/bench.sh installs it): comparison skipped\n");

  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);
  std::vector<double> raw, ours, theirs;
  const int per_round = iterations / rounds;
  int seq = 0;
  for (int r = 0; r < rounds; ++r) {
    raw_round(per_round, raw);
    if (runc)
      runc_round(dir / "bundle", per_round, seq, theirs);
    bench::run_to_end(io, [&] { return ours_round(reaper, root, per_round, ours); });
  }

  std::printf(
      "launch-to-exit of /bin/true, %d iterations each, %d interleaved rounds (milliseconds)\n",
      per_round * rounds, rounds);
  std::printf("%-36s %8s %8s %8s %8s\n", "", "mean", "p50", "p90", "max");
  print("raw posix_spawn+waitpid (host)", summarize(raw));
  const auto a = summarize(ours);
  print("taskexec container (launch..gone)", a);
  if (runc) {
    const auto b = summarize(theirs);
    print("runc run (same root)", b);
    std::printf("ratio (taskexec / runc): mean %.3fx, p50 %.3fx (target <= 0.20x)\n",
                a.mean / b.mean, a.p50 / b.p50);
  }
  return 0;
}
