// bench_stats: CPU time per Stats sample for a task of 1 and of 100
// processes, in /proc mode and in cgroup mode (as root), each beside a raw
// loop doing only the reads that sample needs, in the same run; and the
// heap allocations of each (operator new calls per sample).
//
//   bench_stats [--samples N] [--only sampler|raw] [--mode proc|cgroup] [--procs N]
//
// --only runs just one of the two loops (the other is skipped), so that a
// syscall count of the whole run (strace -c -f, perf stat -e
// raw_syscalls:sys_enter), less that of a run with --samples 0, divided by
// the samples, is the syscalls of one sample.
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "taskexec/cgroups.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/task_executor.hpp"

namespace asio = boost::asio;

namespace {
std::atomic<std::uint64_t> g_allocations{0};
}  // namespace

// Every heap allocation of the process is counted (the io_context's and
// the child reaper's too, which a sample does not wake).
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1))
    return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

double cpu_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// Read a file into a reused buffer; returns bytes read.
std::size_t slurp(const char* path, std::string& buf) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  buf.resize(8192);
  ssize_t n = ::read(fd, buf.data(), buf.size());
  ::close(fd);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

// stat and status of each member.
std::size_t read_members(const std::vector<int>& members, std::string& buf) {
  std::size_t bytes = 0;
  char path[64];
  for (int pid : members) {
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    bytes += slurp(path, buf);
    std::snprintf(path, sizeof path, "/proc/%d/status", pid);
    bytes += slurp(path, buf);
  }
  return bytes;
}

// The reads a /proc-mode sample needs: the kernel's children lists down our
// own tree (every member of a task descends from its executor, the
// subreaper), a stat per process found, then stat and status of each member.
std::size_t raw_proc(const std::vector<int>& members) {
  std::string buf, children;
  std::size_t bytes = 0;
  char path[300];
  std::vector<int> queue{::getpid()};
  for (std::size_t i = 0; i < queue.size(); ++i) {
    std::snprintf(path, sizeof path, "/proc/%d/task", queue[i]);
    DIR* d = ::opendir(path);
    if (!d)
      continue;
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] == '.')
        continue;
      std::snprintf(path, sizeof path, "/proc/%d/task/%s/children", queue[i], e->d_name);
      const auto n = slurp(path, children);
      bytes += n;
      children.resize(n);  // NUL-terminated from here
      for (char* p = children.data(); *p;) {
        char* end = nullptr;
        long pid = std::strtol(p, &end, 10);
        if (end == p)
          break;
        p = end;
        std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        bytes += slurp(path, buf);
        queue.push_back(static_cast<int>(pid));
      }
    }
    ::closedir(d);
  }
  return bytes + read_members(members, buf);
}

// The reads a cgroup-mode sample needs on this host: the cgroup's files,
// then stat and status of each member.
std::size_t raw_cgroup(const std::vector<std::string>& files, const std::vector<int>& members) {
  std::string buf;
  std::size_t bytes = 0;
  for (const auto& f : files)
    bytes += slurp(f.c_str(), buf);
  return bytes + read_members(members, buf);
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 300;
  std::string only, mode;
  int only_procs = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--samples" && i + 1 < argc) {
      samples = std::atoi(argv[++i]);
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (a == "--procs" && i + 1 < argc) {
      only_procs = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: bench_stats [--samples N] [--only sampler|raw] [--mode proc|cgroup] "
                   "[--procs N]\n");
      return 2;
    }
  }
  const bool run_sampler = only != "raw", run_raw = only != "sampler";
  taskexec::set_logger({.level = taskexec::log_level::error});
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);
  const bool root = ::geteuid() == 0;

  std::printf("CPU time per Stats sample, %d samples each (microseconds)\n", samples);
  std::printf("%-28s %12s %12s %8s %14s %14s\n", "", "sampler", "raw reads", "ratio",
              "sampler allocs", "raw allocs");
  for (bool cgroup : {false, true}) {
    if (cgroup && !root) {
      std::printf("cgroup mode skipped: needs root\n");
      continue;
    }
    if (!mode.empty() && mode != (cgroup ? "cgroup" : "proc"))
      continue;
    for (int procs : {1, 100}) {
      if (only_procs && procs != only_procs)
        continue;
      bool done = false;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            taskexec::task_executor t(
                reaper, {.task_id = "bench-stats-" + std::to_string(::getpid()) + "-" +
                                    std::to_string(procs)});
            taskexec::exec_command cmd;
            cmd.cmd = "/bin/sh";
            cmd.args = {"-c", procs == 1 ? "exec sleep 1000"
                                         : "for i in $(seq " + std::to_string(procs - 1) +
                                               "); do sleep 1000 & done; wait"};
            cmd.basic_process_cgroup = cgroup;
            if (auto r = co_await t.launch(cmd); !r) {
              std::fprintf(stderr, "launch: %s\n", r.error().message.c_str());
              std::exit(1);
            }
            auto sampler = t.sampler();
            // Wait (bounded) until every process is there.
            asio::steady_timer settle(io);
            for (int i = 0; i < 500 && sampler->sample().pids.size() < std::size_t(procs); ++i) {
              settle.expires_after(std::chrono::milliseconds(10));
              co_await settle.async_wait(asio::use_awaitable);
            }
            auto first = sampler->sample();
            std::vector<int> members;
            for (const auto& [pid, _] : first.pids)
              members.push_back(pid);
            std::vector<std::string> files;
            if (cgroup) {
              // The files the strategy reads on this host's layout.
              auto l = taskexec::cgroup::detect();
              // (The task's cgroup is named by cgroup_name_for(): the id
              // and a hash of it.)
              const std::string rel =
                  "/taskexec/" +
                  taskexec::cgroup_name_for("bench-stats-" + std::to_string(::getpid()) + "-" +
                                            std::to_string(procs));
              if (l.kind == taskexec::cgroup::mode::v2) {
                for (const char* f :
                     {"cgroup.procs", "memory.stat", "memory.swap.current", "memory.current",
                      "cpu.stat", "memory.events", "memory.pressure"})
                  files.push_back(l.unified + rel + "/" + f);
              } else {
                for (const char* c : {"memory", "pids", "freezer", "cpu"})
                  files.push_back(l.v1.at(c) + rel + "/cgroup.procs");
                files.push_back(l.unified + rel + "/cgroup.procs");
                for (const char* f :
                     {"memory.stat", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
                      "memory.kmem.usage_in_bytes", "memory.kmem.max_usage_in_bytes",
                      "memory.failcnt", "memory.oom_control"})
                  files.push_back(l.v1.at("memory") + rel + "/" + f);
                files.push_back(l.v1.at("cpuacct") + rel + "/cpuacct.usage_user");
                files.push_back(l.v1.at("cpuacct") + rel + "/cpuacct.usage_sys");
                files.push_back(l.v1.at("cpu") + rel + "/cpu.stat");
                files.push_back(l.unified + rel + "/memory.pressure");
              }
            }
            // Every file of the raw loop must be there: a missing one is
            // one failed open, far cheaper than the read it stands for.
            for (const auto& f : files) {
              if (::access(f.c_str(), R_OK) != 0) {
                std::fprintf(stderr, "raw baseline: %s missing\n", f.c_str());
                std::exit(1);
              }
            }
            // Interleaved halves, so both see the same machine state.
            double ours = 0, raw = 0;
            std::uint64_t ours_allocs = 0, raw_allocs = 0;
            std::size_t sink = 0;
            for (int round = 0; round < 2; ++round) {
              const auto a0 = g_allocations.load();
              double t0 = cpu_us();
              for (int i = 0; run_sampler && i < samples / 2; ++i)
                sink += sampler->sample().pids.size();
              double t1 = cpu_us();
              const auto a1 = g_allocations.load();
              for (int i = 0; run_raw && i < samples / 2; ++i)
                sink += cgroup ? raw_cgroup(files, members) : raw_proc(members);
              double t2 = cpu_us();
              const auto a2 = g_allocations.load();
              ours += t1 - t0;
              raw += t2 - t1;
              ours_allocs += a1 - a0;
              raw_allocs += a2 - a1;
            }
            const int n = std::max(1, (samples / 2) * 2);
            char label[64];
            std::snprintf(label, sizeof label, "%s, %d process%s", cgroup ? "cgroup" : "/proc",
                          procs, procs == 1 ? "" : "es");
            std::printf("%-28s %12.1f %12.1f %7.2fx %14.1f %14.1f%s\n", label, ours / n, raw / n,
                        raw > 0 ? ours / raw : 0.0, static_cast<double>(ours_allocs) / n,
                        static_cast<double>(raw_allocs) / n,
                        sink == 0 && samples > 0 ? " (nothing read?)" : "");
            bench::table_row(std::string("Stats sample CPU, ") + label, ours / n, "us",
                             "raw /proc or cgroup reads", raw / n, "<= 1.5x");
            co_await t.shutdown("SIGKILL", std::chrono::milliseconds(0));
            done = true;
          },
          [](std::exception_ptr e) {
            if (e)
              std::rethrow_exception(e);
          });
      while (!done)
        io.run_one();
    }
  }
  std::printf("target: sampler within 1.5x of the raw reads\n");
  return 0;
}
