// bench_exec_stream: ExecStreaming throughput, `cat` of N MiB through the
// daemon, two ways: the JSON path (our bytes to its stdin as
// ExecStreaming.Input, its stdout back as ExecStreaming.Output, base64) and
// the passed descriptors ("fds": the daemon hands the session's pipes to
// the client, which reads and writes them through remote_exec_session);
// beside a raw baseline in the same run: the same `cat` started with
// posix_spawn, fed and drained through plain pipes. Rounds alternate
// between the three; every byte is counted and compared.
//
// And the JSON path's floor: the copies any design of it makes, and
// nothing else. A relay process (this program, --relay) sits where the
// daemon does, between a Unix socket and `cat`'s pipes; the socket carries
// base64's four bytes for every three in both directions, the pipes the
// bytes themselves, and nobody encodes, frames or parses. Its CPU per MiB
// is a lower bound of the JSON path's, and a loose one: base64 both ways
// and the framing, which the JSON path cannot do without, are not in it,
// and the relay reads up to 256 KiB at a time. Its throughput is what
// those copies alone allow on this machine's cores (scheduling moves
// either round by tens of percent: compare medians of several rounds).
//
//   bench_exec_stream [--mib N] [--rounds N]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/remote_executor.hpp"
#include "test_paths.hpp"

extern char** environ;
namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::size_t chunk = 64 * 1024;
// Inputs in flight, as `taskexec exec -i` keeps them.
constexpr int window = 4;

std::string pattern() {
  std::string p(chunk, '\0');
  std::uint32_t x = 2463534242u;
  for (auto& c : p) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return p;
}

// What came back is checked against what was sent (the pattern repeated)
// with memcmp: fast enough not to slow either side down.
struct verifier {
  const std::string& pattern;
  std::size_t bytes = 0;
  bool same = true;
  void take(const char* p, std::size_t n) {
    while (n > 0) {
      const std::size_t at = bytes % pattern.size();
      const std::size_t k = std::min(n, pattern.size() - at);
      same = same && std::memcmp(p, pattern.data() + at, k) == 0;
      p += k;
      n -= k;
      bytes += k;
    }
  }
};

struct outcome {
  double seconds;
  std::size_t bytes;
  bool same;
  double cpu_seconds = 0;  // user + system of every process involved
};

// CPU time (user + system), load-independent where throughput is not: of
// this process, of its reaped children, and of the daemon with the
// children it reaped (cat, through the daemon).
double self_cpu() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}
double children_cpu() {
  rusage u{};
  ::getrusage(RUSAGE_CHILDREN, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}
double daemon_cpu(int pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f)
    return 0;
  char buf[1024] = {};
  const std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const char* p = std::strrchr(buf, ')');
  if (!p || n == 0)
    return 0;
  // Fields 14..17 (utime, stime, cutime, cstime) after the comm's ')'.
  unsigned long long v[4] = {};
  int field = 2;
  for (const char* q = p + 2; *q && field < 17; ++q) {
    if (*q == ' ') {
      ++field;
      if (field >= 14 && field <= 17)
        v[field - 14] = std::strtoull(q + 1, nullptr, 10);
    }
  }
  return static_cast<double>(v[0] + v[1] + v[2] + v[3]) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// posix_spawn of `path`, each (from, to) pair dup2'd in the child; the
// benchmark exits if it fails.
pid_t spawn_with(const char* path, char* const argv[],
                 std::initializer_list<std::pair<int, int>> dups) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  for (const auto& [from, to] : dups)
    posix_spawn_file_actions_adddup2(&fa, from, to);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, path, &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    std::exit(1);
  return pid;
}

// The baseline: cat between two pipes, a thread writing, this one reading.
outcome raw_round(const std::string& data, std::size_t total) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
    std::exit(1);
  char* argv[] = {const_cast<char*>("cat"), nullptr};
  const auto t0 = clock_type::now();
  const double cpu0 = self_cpu() + children_cpu();
  const pid_t pid = spawn_with("/bin/cat", argv, {{in[0], 0}, {out[1], 1}});
  ::close(in[0]);
  ::close(out[1]);
  std::thread writer([&] {
    for (std::size_t sent = 0; sent < total; sent += chunk) {
      const char* p = data.data();
      std::size_t left = std::min(chunk, total - sent);
      while (left > 0) {
        ssize_t n = ::write(in[1], p, left);
        if (n <= 0)
          std::exit(1);
        p += n;
        left -= static_cast<std::size_t>(n);
      }
    }
    ::close(in[1]);
  });
  verifier check{data};
  std::vector<char> buf(chunk);
  for (;;) {
    ssize_t n = ::read(out[0], buf.data(), buf.size());
    if (n <= 0)
      break;
    check.take(buf.data(), static_cast<std::size_t>(n));
  }
  outcome o{0, check.bytes, check.same};
  writer.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(out[0]);
  o.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  o.cpu_seconds = self_cpu() + children_cpu() - cpu0;
  return o;
}

// The relay of the floor round, a process of its own: the socket is
// descriptor 3. For every four bytes read from the socket three go to
// cat's stdin; for every three read from cat's stdout four go back. The
// contents are not looked at (the client counts bytes), so nothing is
// copied in user space. Non-blocking with poll, as the daemon's pump is:
// a blocking write to a full stdin while cat waits on a full stdout would
// deadlock.
int relay_main() {
  const int s = 3;
  auto fail = [](const char* what) {
    std::fprintf(stderr, "bench_exec_stream --relay: %s: %s\n", what, std::strerror(errno));
    return 1;
  };
  struct stat st {};
  if (::fstat(s, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    std::fprintf(stderr, "bench_exec_stream --relay: descriptor 3 must be the client's socket\n");
    return 2;
  }
  // A cat gone early is an error of its own below, not a silent death.
  ::signal(SIGPIPE, SIG_IGN);
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC | O_NONBLOCK) != 0 || ::pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0)
    return fail("pipe2");
  // cat's ends blocking, as raw_round's.
  if (::fcntl(in[0], F_SETFL, 0) != 0 || ::fcntl(out[1], F_SETFL, 0) != 0 ||
      ::fcntl(s, F_SETFL, O_NONBLOCK) != 0 || ::fcntl(s, F_SETFD, FD_CLOEXEC) != 0)
    return fail("fcntl");
  char* argv[] = {const_cast<char*>("cat"), nullptr};
  const pid_t cat = spawn_with("/bin/cat", argv, {{in[0], 0}, {out[1], 1}});
  ::close(in[0]);
  ::close(out[1]);
  constexpr std::size_t room = 256 * 1024;  // bytes owed to either side before reading stops
  std::vector<char> scratch(room);
  std::uint64_t from_sock = 0, to_cat = 0, from_cat = 0, to_sock = 0;
  bool sock_eof = false, cat_eof = false;
  int cat_in = in[1];
  for (;;) {
    const std::uint64_t owed_cat = from_sock * 3 / 4 - to_cat;
    const std::uint64_t owed_sock = (from_cat * 4 + 2) / 3 - to_sock;
    if (sock_eof && owed_cat == 0 && cat_in >= 0) {
      ::close(cat_in);
      cat_in = -1;
    }
    if (cat_eof && owed_sock == 0)
      break;
    pollfd p[3] = {{s, 0, 0}, {cat_in, 0, 0}, {out[0], 0, 0}};
    if (!sock_eof && owed_cat < room)
      p[0].events |= POLLIN;
    if (owed_sock > 0)
      p[0].events |= POLLOUT;
    if (owed_cat > 0)
      p[1].events = POLLOUT;
    if (!cat_eof && owed_sock < room)
      p[2].events = POLLIN;
    // A descriptor with nothing asked of it is left out: a pipe whose other
    // end is gone reports POLLHUP or POLLERR on every call.
    for (auto& e : p) {
      if (e.events == 0)
        e.fd = -1;
    }
    if (::poll(p, 3, -1) < 0 && errno != EINTR)
      return fail("poll");
    auto sized = [&](std::uint64_t n) {
      return static_cast<std::size_t>(std::min<std::uint64_t>(n, room));
    };
    if ((p[0].events & POLLIN) && (p[0].revents & (POLLIN | POLLHUP))) {
      const ssize_t n = ::read(s, scratch.data(), room - sized(owed_cat));
      if (n == 0)
        sock_eof = true;
      else if (n > 0)
        from_sock += static_cast<std::uint64_t>(n);
    }
    if (owed_cat > 0 && (p[1].revents & POLLOUT)) {
      const ssize_t n = ::write(cat_in, scratch.data(), sized(owed_cat));
      if (n > 0)
        to_cat += static_cast<std::uint64_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        return fail("write to cat");
    }
    if ((p[2].events & POLLIN) && (p[2].revents & (POLLIN | POLLHUP))) {
      const ssize_t n = ::read(out[0], scratch.data(), room - sized(owed_sock));
      if (n == 0)
        cat_eof = true;
      else if (n > 0)
        from_cat += static_cast<std::uint64_t>(n);
    }
    if (owed_sock > 0 && (p[0].revents & POLLOUT)) {
      const ssize_t n = ::send(s, scratch.data(), sized(owed_sock), MSG_NOSIGNAL);
      if (n > 0)
        to_sock += static_cast<std::uint64_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        return fail("send to the client");
    }
    if (p[0].revents & POLLERR) {
      errno = ECONNRESET;
      return fail("the client's socket");
    }
  }
  ::shutdown(s, SHUT_WR);
  int status = 0;
  ::waitpid(cat, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "bench_exec_stream --relay: cat ended with status %d\n", status);
    return 1;
  }
  return 0;
}

// The floor round: the relay above in the daemon's place, this process in
// the client's (a thread writing, this one reading), `total` bytes' worth
// of base64 each way.
outcome floor_round(std::size_t total) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    std::exit(1);
  const std::size_t wire = (total + 2) / 3 * 4;
  const std::string piece((chunk + 2) / 3 * 4, 'A');
  char* argv[] = {const_cast<char*>("bench_exec_stream"), const_cast<char*>("--relay"), nullptr};
  const auto t0 = clock_type::now();
  const double cpu0 = self_cpu() + children_cpu();
  const pid_t pid = spawn_with("/proc/self/exe", argv, {{sv[1], 3}});
  ::close(sv[1]);
  std::thread writer([&] {
    for (std::size_t sent = 0; sent < wire;) {
      const std::size_t n = std::min(piece.size(), wire - sent);
      const ssize_t k = ::send(sv[0], piece.data(), n, MSG_NOSIGNAL);
      if (k <= 0) {
        std::fprintf(stderr, "floor round: send to the relay: %s\n", std::strerror(errno));
        std::exit(1);
      }
      sent += static_cast<std::size_t>(k);
    }
    ::shutdown(sv[0], SHUT_WR);
  });
  std::vector<char> buf(piece.size());
  std::size_t got = 0;
  for (;;) {
    const ssize_t n = ::read(sv[0], buf.data(), buf.size());
    if (n <= 0)
      break;
    got += static_cast<std::size_t>(n);
  }
  writer.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(sv[0]);
  outcome o{std::chrono::duration<double>(clock_type::now() - t0).count(), 0,
            WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == wire};
  // In payload bytes, as the other rounds count.
  o.bytes = got == wire ? total : 0;
  o.cpu_seconds = self_cpu() + children_cpu() - cpu0;
  return o;
}

struct stream_state {
  int in_flight = 0;
  bool failed = false;
  asio::steady_timer wake;
  explicit stream_state(const asio::any_io_executor& ex) : wake(ex) {}
};

asio::awaitable<void> feed(taskexec::remote_exec_session& s, const std::string& data,
                           std::size_t total) {
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<stream_state>(ex);
  for (std::size_t sent = 0; sent < total && !st->failed; sent += chunk) {
    while (st->in_flight >= window) {
      st->wake.expires_at(asio::steady_timer::time_point::max());
      co_await st->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    ++st->in_flight;
    asio::co_spawn(
        ex,
        [](taskexec::remote_exec_session& session, std::string piece,
           std::shared_ptr<stream_state> state) -> asio::awaitable<void> {
          auto w = co_await session.write(std::move(piece));
          state->failed = state->failed || !w;
          --state->in_flight;
          state->wake.cancel();
        }(s, data.substr(0, std::min(chunk, total - sent)), st),
        asio::detached);
  }
  while (st->in_flight > 0) {
    st->wake.expires_at(asio::steady_timer::time_point::max());
    co_await st->wake.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (st->failed)
    std::exit(1);
  (void)co_await s.close_stdin();
}

asio::awaitable<outcome> daemon_round(taskexec::remote_executor& client, const std::string& data,
                                      std::size_t total, taskexec::exec_stdio stdio) {
  const auto t0 = clock_type::now();
  const int daemon = client.daemon_pid();
  const double cpu0 = self_cpu() + daemon_cpu(daemon);
  taskexec::exec_session_options o;
  o.cmd = "/bin/cat";
  o.stdio = stdio;
  auto s = co_await client.exec_streaming(o);
  if (!s) {
    std::fprintf(stderr, "ExecStreaming.Start: %s\n", s.error().message.c_str());
    std::exit(1);
  }
  asio::co_spawn(co_await asio::this_coro::executor, feed(*s, data, total), asio::detached);
  verifier check{data};
  for (;;) {
    auto ev = co_await s->read();
    if (!ev) {
      std::fprintf(stderr, "read: %s\n", ev.error().message.c_str());
      std::exit(1);
    }
    if (ev->kind == taskexec::exec_event::type::exited)
      break;
    check.take(ev->data.data(), ev->data.size());
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  // cat is reaped (its time in the daemon's cutime) before Exited is sent.
  co_return outcome{seconds, check.bytes, check.same, self_cpu() + daemon_cpu(daemon) - cpu0};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "--relay")
    return relay_main();
  std::size_t mib = 100;
  int rounds = 10;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mib" && i + 1 < argc) {
      mib = static_cast<std::size_t>(std::atoi(argv[++i]));
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_exec_stream [--mib N] [--rounds N]\n");
      return 2;
    }
  }
  if (mib == 0 || rounds <= 0)
    return 2;
  taskexec::set_logger({.level = taskexec::log_level::warning});
  char dir_template[] = "/tmp/taskexec-bench-XXXXXX";
  if (!::mkdtemp(dir_template))
    return 1;
  const std::string dir = dir_template;
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor());
  auto run = [&](auto make) { bench::run_to_end(io, make); };

  const std::string data = pattern();
  const std::size_t total = mib * 1024 * 1024;

  std::vector<double> raw_mibs, daemon_mibs, fds_mibs, floor_mibs;
  std::vector<double> raw_cpu, daemon_cpu_ms, fds_cpu, floor_cpu;  // CPU ms per MiB
  run([&]() -> asio::awaitable<void> {
    taskexec::create_options o;
    o.daemon_path = BENCH_TASKEXECD;
    o.socket_path = dir + "/d.sock";
    auto created = co_await taskexec::create_executor(co_await asio::this_coro::executor, o);
    if (!created) {
      std::fprintf(stderr, "create_executor: %s\n", created.error().message.c_str());
      std::exit(1);
    }
    auto& client = created->client;
    taskexec::exec_command task;
    task.cmd = "/bin/sleep";
    task.args = {"1000"};
    if (auto l = co_await client.launch(task); !l) {
      std::fprintf(stderr, "launch: %s\n", l.error().message.c_str());
      std::exit(1);
    }
    for (int r = 0; r < rounds; ++r) {
      auto raw = raw_round(data, total);
      auto fl = floor_round(total);
      auto via = co_await daemon_round(client, data, total, taskexec::exec_stdio::pumped);
      auto fds = co_await daemon_round(client, data, total, taskexec::exec_stdio::passed);
      if (raw.bytes != total || via.bytes != total || fds.bytes != total || !raw.same ||
          !via.same || !fds.same || fl.bytes != total || !fl.same) {
        std::fprintf(stderr, "round %d: the bytes differ (raw %zu, floor %zu, JSON %zu, fds %zu)\n",
                     r, raw.bytes, fl.bytes, via.bytes, fds.bytes);
        std::exit(1);
      }
      raw_mibs.push_back(static_cast<double>(mib) / raw.seconds);
      daemon_mibs.push_back(static_cast<double>(mib) / via.seconds);
      fds_mibs.push_back(static_cast<double>(mib) / fds.seconds);
      floor_mibs.push_back(static_cast<double>(mib) / fl.seconds);
      floor_cpu.push_back(fl.cpu_seconds * 1000 / static_cast<double>(mib));
      raw_cpu.push_back(raw.cpu_seconds * 1000 / static_cast<double>(mib));
      daemon_cpu_ms.push_back(via.cpu_seconds * 1000 / static_cast<double>(mib));
      fds_cpu.push_back(fds.cpu_seconds * 1000 / static_cast<double>(mib));
      std::printf(
          "round %d: raw pipe %8.1f MiB/s   JSON floor %8.1f MiB/s   JSON path %8.1f MiB/s   "
          "fds %8.1f MiB/s\n",
          r, raw_mibs.back(), floor_mibs.back(), daemon_mibs.back(), fds_mibs.back());
    }
    (void)co_await client.destroy();
  });
  std::filesystem::remove_all(dir);

  const auto raw = bench::summarize(raw_mibs);
  const auto via = bench::summarize(daemon_mibs);
  const auto fds = bench::summarize(fds_mibs);
  const auto flo = bench::summarize(floor_mibs);
  std::printf("cat of %zu MiB, %d rounds, %d writes of %zu KiB in flight\n", mib, rounds, window,
              chunk / 1024);
  std::printf("  raw pipe (posix_spawn cat, pipes)   p50 %8.1f MiB/s  mean %8.1f\n", raw.p50,
              raw.mean);
  std::printf("  the JSON path's floor (relay)       p50 %8.1f MiB/s  mean %8.1f\n", flo.p50,
              flo.mean);
  std::printf("  ExecStreaming, JSON path            p50 %8.1f MiB/s  mean %8.1f\n", via.p50,
              via.mean);
  std::printf("  ExecStreaming, passed fds           p50 %8.1f MiB/s  mean %8.1f\n", fds.p50,
              fds.mean);
  const auto rc = bench::summarize(raw_cpu), vc = bench::summarize(daemon_cpu_ms),
             fc = bench::summarize(fds_cpu), flc = bench::summarize(floor_cpu);
  std::printf(
      "  CPU per MiB (all processes, p50): raw %.2f ms, JSON floor %.2f ms (%.1fx), JSON path "
      "%.2f ms (%.1fx), passed fds %.2f ms (%.1fx)\n",
      rc.p50, flc.p50, flc.p50 / rc.p50, vc.p50, vc.p50 / rc.p50, fc.p50, fc.p50 / rc.p50);
  std::printf("  ratio JSON floor / raw (p50)        %.2fx  (the copies alone)\n",
              flo.p50 / raw.p50);
  std::printf("  ratio JSON path / JSON floor (p50)  %.2fx\n", via.p50 / flo.p50);
  std::printf("  ratio JSON path / raw (p50)         %.2fx  (target 0.5x or more)\n",
              via.p50 / raw.p50);
  std::printf("  ratio passed fds / raw (p50)        %.2fx  (target 0.9x or more)\n",
              fds.p50 / raw.p50);
  bench::table_row("ExecStreaming cat throughput, JSON path (p50)", via.p50, "MiB/s",
                   "raw pipe to cat", raw.p50, ">= 0.5x");
  bench::table_row("ExecStreaming cat throughput, JSON path's floor (relay, p50)", flo.p50, "MiB/s",
                   "raw pipe to cat", raw.p50, "");
  bench::table_row("ExecStreaming cat throughput, JSON path / its floor (p50)", via.p50, "MiB/s",
                   "the floor", flo.p50, "");
  bench::table_row("ExecStreaming cat throughput, passed fds (p50)", fds.p50, "MiB/s",
                   "raw pipe to cat", raw.p50, ">= 0.9x");
  return 0;
}
