// bench_rpc: the daemon's call latency and footprint, each beside a raw
// baseline measured in the same run.
//  - sequential Version round trips on one connection, against a raw
//    Unix-socket echo server (a process of its own, blocking I/O) sent the
//    same bytes;
//  - pipelined Version calls on one connection (requests written while
//    responses are read), against the echo server given the same bytes;
//  - daemon start to handshake line, against /bin/echo started the same way
//    (start to its first line: the cost of exec on this machine);
//  - Private_Dirty of an idle daemon holding a running task.
//
//   bench_rpc [--calls N] [--starts N]
//   bench_rpc --echo-server PATH     (the baseline; used by the bench itself)
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/task_executor.hpp"
#include "test_paths.hpp"

extern char** environ;
namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  for (int i = 0; i < 1000; ++i) {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
      return fd;
    ::usleep(1000);  // only until the server listens; not part of any figure
  }
  std::perror("connect");
  std::exit(1);
}

// Send `line` and read one line back, blocking; returns microseconds.
double round_trip(int fd, const std::string& line, std::string& buf) {
  auto t0 = clock_type::now();
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    std::exit(1);
  buf.clear();
  char tmp[4096];
  while (buf.find('\n') == std::string::npos) {
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0)
      std::exit(1);
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

// Write `n` copies of `line` while reading the answers (one line each),
// with poll: neither side may block the other. Returns calls per second.
double pipelined(int fd, const std::string& line, int n) {
  std::string out;
  for (int i = 0; i < n; ++i)
    out += line;
  std::size_t sent = 0;
  int answered = 0;
  char tmp[65536];
  auto t0 = clock_type::now();
  while (answered < n) {
    pollfd p{fd, static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 10000) <= 0)
      std::exit(1);
    if ((p.revents & POLLOUT) && sent < out.size()) {
      ssize_t w = ::send(fd, out.data() + sent, std::min<std::size_t>(out.size() - sent, 65536),
                         MSG_DONTWAIT);
      if (w > 0)
        sent += static_cast<std::size_t>(w);
    }
    if (p.revents & POLLIN) {
      ssize_t r = ::recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
      if (r == 0)
        std::exit(1);
      for (ssize_t i = 0; i < r; ++i)
        answered += tmp[i] == '\n' ? 1 : 0;
    }
  }
  return n / std::chrono::duration<double>(clock_type::now() - t0).count();
}

int echo_server(const std::string& path) {
  int ls = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 8) != 0)
    return 1;
  for (;;) {
    int c = ::accept(ls, nullptr, nullptr);
    if (c < 0)
      continue;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(c, buf, sizeof buf)) > 0) {
      if (::write(c, buf, static_cast<std::size_t>(n)) != n)
        break;
    }
    ::close(c);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double p99(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * 99 / 100)];
}

long private_dirty_kib(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  long value = -1;
  while (f >> key) {
    if (key == "Private_Dirty:") {
      f >> value;
      return value;
    }
    f.ignore(1 << 16, '\n');
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 5000, starts = 50;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--echo-server" && i + 1 < argc)
      return echo_server(argv[i + 1]);
    if (a == "--calls" && i + 1 < argc)
      calls = std::atoi(argv[++i]);
    else if (a == "--starts" && i + 1 < argc)
      starts = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_rpc [--calls N] [--starts N]\n");
      return 2;
    }
  }
  taskexec::set_logger({.level = taskexec::log_level::warning});
  char dir_template[] = "/tmp/taskexec-bench-XXXXXX";
  if (!::mkdtemp(dir_template))
    return 1;
  const std::string dir = dir_template;
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);

  auto run = [&](auto make) { bench::run_to_end(io, make); };

  // Start `cmd` as our task; returns after its first line, with the time taken.
  auto start_to_line = [&](taskexec::task_executor& t,
                           taskexec::exec_command cmd) -> asio::awaitable<double> {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
      std::exit(1);
    cmd.stdout_fd = p[1];
    auto t0 = clock_type::now();
    if (auto r = co_await t.launch(cmd); !r) {
      std::fprintf(stderr, "%s: %s\n", cmd.cmd.c_str(), r.error().message.c_str());
      std::exit(1);
    }
    ::close(p[1]);
    asio::posix::stream_descriptor rd(io, p[0]);
    asio::streambuf b;
    co_await asio::async_read_until(rd, b, '\n', asio::use_awaitable);
    co_return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
  };
  auto start_daemon = [&](taskexec::task_executor& t,
                          const std::string& sock) -> asio::awaitable<double> {
    taskexec::exec_command cmd;
    cmd.cmd = BENCH_TASKEXECD;
    cmd.args = {"--socket", sock, "--log-level", "off"};
    co_return co_await start_to_line(t, std::move(cmd));
  };

  const std::string version = R"({"jsonrpc":"2.0","id":1,"method":"Version"})"
                              "\n";
  std::vector<double> raw, ours, startup, echo_start, raw_spawn, exec_rtt;
  const int exec_calls = std::max(20, std::min(calls, 1000));
  double raw_rate = 0, our_rate = 0;
  long dirty = -1, burst_dirty = -1, idle_dirty = -1;
  run([&]() -> asio::awaitable<void> {
    taskexec::task_executor echo(reaper);
    taskexec::exec_command ecmd;
    ecmd.cmd = std::filesystem::read_symlink("/proc/self/exe").string();
    ecmd.args = {"--echo-server", dir + "/echo.sock"};
    if (auto r = co_await echo.launch(ecmd); !r) {
      std::fprintf(stderr, "echo server: %s\n", r.error().message.c_str());
      std::exit(1);
    }
    taskexec::task_executor daemon(reaper);
    co_await start_daemon(daemon, dir + "/d.sock");

    int efd = connect_unix(dir + "/echo.sock");
    int dfd = connect_unix(dir + "/d.sock");
    std::string buf;
    // Interleaved, so both see the same machine state.
    for (int i = 0; i < calls; ++i) {
      raw.push_back(round_trip(efd, version, buf));
      ours.push_back(round_trip(dfd, version, buf));
    }
    std::string launch =
        R"({"jsonrpc":"2.0","id":2,"method":"Launch","params":{"cmd":"/bin/sleep","args":["1000"]}})"
        "\n";
    round_trip(dfd, launch, buf);
    // Exec of /bin/true through the daemon against posix_spawn + waitpid
    // here (the io_context is idle, so waitpid takes our child directly).
    const std::string exec_true =
        R"({"jsonrpc":"2.0","id":3,"method":"Exec","params":{"cmd":"/bin/true"}})"
        "\n";
    for (int i = 0; i < exec_calls; ++i) {
      auto t0 = clock_type::now();
      char* true_argv[] = {const_cast<char*>("/bin/true"), nullptr};
      pid_t pid;
      int status = 0;
      if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, true_argv, environ) != 0 ||
          ::waitpid(pid, &status, 0) != pid)
        std::abort();
      raw_spawn.push_back(
          std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
      exec_rtt.push_back(round_trip(dfd, exec_true, buf));
    }
    dirty = private_dirty_kib(daemon.pid());
    constexpr int pipelined_calls = 20000;
    raw_rate = pipelined(efd, version, pipelined_calls);
    our_rate = pipelined(dfd, version, pipelined_calls);
    burst_dirty = private_dirty_kib(daemon.pid());
    // The daemon gives memory back about a second after it goes idle.
    asio::steady_timer settle(io);
    for (int i = 0; i < 30 && (idle_dirty < 0 || idle_dirty > dirty + 64); ++i) {
      settle.expires_after(std::chrono::milliseconds(100));
      co_await settle.async_wait(asio::use_awaitable);
      idle_dirty = private_dirty_kib(daemon.pid());
    }
    ::close(efd);
    ::close(dfd);
    co_await daemon.shutdown("SIGTERM", std::chrono::seconds(5));
    co_await echo.shutdown("SIGKILL", std::chrono::milliseconds(0));

    for (int i = 0; i < starts; ++i) {
      taskexec::task_executor d(reaper);
      startup.push_back(co_await start_daemon(d, dir + "/s" + std::to_string(i) + ".sock"));
      co_await d.shutdown("SIGTERM", std::chrono::seconds(5));
      taskexec::task_executor e(reaper);
      taskexec::exec_command hello;
      hello.cmd = "/bin/echo";
      hello.args = {"hello"};
      echo_start.push_back(co_await start_to_line(e, std::move(hello)));
      co_await e.wait();
    }
  });
  std::filesystem::remove_all(dir);

  std::printf("sequential round trips on one connection, %d each, interleaved (microseconds)\n",
              calls);
  std::printf("%-34s %9s %9s\n", "", "p50", "p99");
  std::printf("%-34s %9.1f %9.1f\n", "raw Unix-socket echo (same bytes)", median(raw), p99(raw));
  std::printf("%-34s %9.1f %9.1f\n", "taskexecd Version", median(ours), p99(ours));
  std::printf("ratio p50: %.2fx (target <= 2.0x)\n", median(ours) / median(raw));
  std::printf("Exec of /bin/true, %d each, interleaved (microseconds)\n", exec_calls);
  std::printf("%-34s %9.1f %9.1f\n", "raw posix_spawn + waitpid", median(raw_spawn),
              p99(raw_spawn));
  std::printf("%-34s %9.1f %9.1f\n", "taskexecd Exec round trip", median(exec_rtt), p99(exec_rtt));
  std::printf("ratio p50: %.2fx (target <= 1.5x)\n", median(exec_rtt) / median(raw_spawn));
  std::printf("pipelined Version calls on one connection, 20000 (calls per second)\n");
  std::printf("%-34s %9.0f\n", "raw Unix-socket echo (same bytes)", raw_rate);
  std::printf("%-34s %9.0f\n", "taskexecd Version", our_rate);
  std::printf("ratio: %.2fx of the echo's rate\n", our_rate / raw_rate);
  std::printf("start to first line, %d starts (microseconds)    p50       p99\n", starts);
  std::printf("%-34s %9.0f %9.0f\n", "/bin/echo (the cost of exec here)", median(echo_start),
              p99(echo_start));
  std::printf("%-34s %9.0f %9.0f\n", "taskexecd handshake", median(startup), p99(startup));
  std::printf("daemon start p50: %.0f us (target < 5000 us), %.2fx of /bin/echo\n", median(startup),
              median(startup) / median(echo_start));
  std::printf("idle daemon with a running task: Private_Dirty %ld KiB (target < 400 KiB)\n", dirty);
  std::printf("  right after the pipelined burst: %ld KiB; idle again: %ld KiB\n", burst_dirty,
              idle_dirty);
  bench::table_row("Version round trip (p50)", median(ours), "us", "raw Unix-socket echo",
                   median(raw), "<= 2x");
  bench::table_row("Exec of /bin/true round trip (p50)", median(exec_rtt), "us",
                   "raw posix_spawn+waitpid", median(raw_spawn), "<= 1.5x");
  bench::table_row("pipelined Version calls", our_rate, "/s", "raw Unix-socket echo", raw_rate);
  bench::table_row("daemon start to handshake (p50)", median(startup), "us",
                   "/bin/echo start to its line", median(echo_start), "< 5000 us");
  return 0;
}
