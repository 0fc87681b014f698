// The processes the scenarios run: `taskexec-stress --helper NAME ARGS...`.
// Plain POSIX, blocking, no Asio: each is a task (or a baseline) of its own.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "stress.hpp"

extern char** environ;

namespace stress {

namespace {

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool write_str(int fd, const std::string& s) {
  return write_all(fd, s.data(), s.size());
}

long long arg_num(char** argv, int i, int argc) {
  if (i >= argc) {
    std::fprintf(stderr, "taskexec-stress helper: missing argument %d\n", i);
    std::exit(2);
  }
  return std::atoll(argv[i]);
}

// Forks `total` children, at most 64 at once, as fast as it can. Every
// second one daemonises: it starts a new session, forks a grandchild that
// exits at once, and exits itself, so the grandchild is an orphan the
// executor (the subreaper) must reap. Prints "children N daemonised D".
int fork_storm(long long total) {
  long long started = 0, daemonised = 0, running = 0;
  while (started < total || running > 0) {
    while (started < total && running < 64) {
      bool daemonise = started % 2 == 1;
      pid_t pid = ::fork();
      if (pid < 0) {
        if (errno == EAGAIN && running > 0)
          break;  // reap one, then try again
        std::perror("fork");
        return 1;
      }
      if (pid == 0) {
        if (daemonise) {
          ::setsid();
          if (::fork() < 0)
            ::_exit(1);
        }
        ::_exit(0);
      }
      ++started;
      ++running;
      daemonised += daemonise ? 1 : 0;
    }
    int status = 0;
    pid_t done = ::waitpid(-1, &status, 0);
    if (done < 0 && errno != EINTR) {
      std::perror("waitpid");
      return 1;
    }
    if (done > 0) {
      --running;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "a child failed (status %d)\n", status);
        return 1;
      }
    }
  }
  std::printf("children %lld daemonised %lld\n", started, daemonised);
  return 0;
}

// `bytes` of the pattern: each 8-byte word is its own index, little endian.
int write_pattern(long long bytes) {
  std::vector<std::uint64_t> block(8192);  // 64 KiB
  std::uint64_t word = 0;
  long long left = bytes;
  while (left > 0) {
    for (auto& w : block)
      w = word++;
    auto n = static_cast<std::size_t>(std::min<long long>(left, 65536));
    if (!write_all(1, reinterpret_cast<const char*>(block.data()), n))
      return 1;
    left -= static_cast<long long>(n);
  }
  return 0;
}

// The planted leak: a grandchild in a session of its own that outlives the
// task (the task exits at once) for `seconds`.
int escape(long long seconds) {
  pid_t pid = ::fork();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    ::setsid();
    if (::fork() == 0) {
      for (int fd = 0; fd < 3; ++fd) {
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, fd);
      }
      auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
      while (std::chrono::steady_clock::now() < end)
        ::sleep(1);
      ::_exit(0);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return 0;
}

// posix_spawn + waitpid of /bin/true `total` times, `concurrency` at once:
// the raw baseline of churn. Prints "seconds S".
int spawn_baseline(long long total, long long concurrency) {
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  long long started = 0, running = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (started < total || running > 0) {
    while (started < total && running < concurrency) {
      pid_t pid;
      if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0)
        return 1;
      ++started;
      ++running;
    }
    int status = 0;
    if (::waitpid(-1, &status, 0) > 0)
      --running;
  }
  std::printf("seconds %.9f\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

int listen_unix(const std::string& path) {
  int ls = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ::unlink(path.c_str());
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 128) != 0) {
    std::perror("bind/listen");
    std::exit(1);
  }
  return ls;
}

// The raw baseline of rpc-flood: echoes every byte back on every
// connection, one thread, poll. Prints "ready" once listening.
int echo_server(const std::string& path) {
  int ls = listen_unix(path);
  write_str(1, "ready\n");
  std::vector<pollfd> fds{{ls, POLLIN, 0}};
  std::vector<char> buf(65536);
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR)
      return 1;
    for (std::size_t i = fds.size(); i-- > 1;) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
      if (n <= 0 || !write_all(fds[i].fd, buf.data(), static_cast<std::size_t>(n))) {
        ::close(fds[i].fd);
        fds.erase(fds.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (fds[0].revents & POLLIN) {
      int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0)
        fds.push_back({c, POLLIN, 0});
    }
  }
}

// A task that says "ready" on stdout, then exits with `code` on SIGTERM.
int exit_on_term(long long code) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  write_str(1, "ready\n");
  int sig = 0;
  ::sigwait(&set, &sig);
  return static_cast<int>(code);
}

// A task that ignores SIGTERM: says "ready" on stdout, then "term" on each
// SIGTERM it gets, and never exits by itself (only SIGKILL ends it; a
// stdout nobody reads any more does not: SIGPIPE is ignored).
int ignore_term() {
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  write_str(1, "ready\n");
  for (;;) {
    int sig = 0;
    if (::sigwait(&set, &sig) == 0)
      write_str(1, "term\n");
  }
}

// The lines of `fd`, read a block at a time; each wait for data is bounded
// (20 s), so a helper never hangs for good on a peer that went quiet.
class line_reader {
 public:
  explicit line_reader(int fd) : fd_(fd) {}
  /// The next line with its newline, what came before EOF without one, ""
  /// at EOF; nullopt on a timeout or an error.
  std::optional<std::string> next() {
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        auto line = buf_.substr(0, nl + 1);
        buf_.erase(0, nl + 1);
        return line;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20000) <= 0)
        return std::nullopt;
      char block[65536];
      ssize_t n = ::read(fd_, block, sizeof block);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return std::nullopt;
      if (n == 0)
        return std::exchange(buf_, std::string());
      buf_.append(block, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
};

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  return fd;
}

// An attacker on the journal, one call at a time on one connection:
//   huge    `count` Shutdowns naming unknown signals of 1, 2, 3 and (almost,
//           the message limit) 4 MiB in turn; each must be refused with
//           -32602 in a short answer (the name quoted by 64 bytes at most)
//   signal  `count` Signals of SIGWINCH (sleep ignores it): each runs and is
//           journaled
// Prints "done N"; on the first answer that is not as it should be, prints
// "wrong: " and 200 bytes of it, and exits 1.
int journal_flood(const std::string& socket, const std::string& mode, long long count) {
  int fd = connect_unix(socket);
  line_reader answers(fd);
  for (long long i = 0; i < count; ++i) {
    std::string request = R"({"jsonrpc":"2.0","id":)" + std::to_string(i + 1);
    std::string expect;
    if (mode == "huge") {
      const std::size_t mib = static_cast<std::size_t>(i % 4) + 1;
      request += R"(,"method":"Shutdown","params":{"grace_period_ms":0,"signal":")" +
                 std::string((mib << 20) - (mib == 4 ? 256 : 0), 'X') + "\"}}\n";
      expect = R"("code":-32602)";
    } else {
      request += R"(,"method":"Signal","params":{"signal":"SIGWINCH"}})"
                 "\n";
      expect = R"("result":{})";
    }
    if (!write_str(fd, request)) {
      std::perror("write");
      return 1;
    }
    auto answer = answers.next();
    if (!answer || answer->find(expect) == std::string::npos || answer->size() > 400) {
      write_str(1, "wrong: " + (answer ? answer->substr(0, 200) : std::string("no answer")) + "\n");
      return 1;
    }
  }
  write_str(1, "done " + std::to_string(count) + "\n");
  return 0;
}

// A server that is not taskexecd, as another user would run at a socket
// path they could take over: binds `path` (as root), becomes `uid`, and only
// then listens, so clients see `uid` as the peer (SO_PEERCRED gives the
// credentials of whoever called listen). Says "listening"; then for each of
// `connections` connections answers a Version request as taskexecd would,
// reads until the client closes, and prints how many bytes it received.
int impostor(const std::string& path, long long uid, long long connections) {
  int ls = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("bind");
    return 1;
  }
  const auto id = static_cast<uid_t>(uid);
  if (::setgroups(0, nullptr) != 0 || ::setresgid(id, id, id) != 0 ||
      ::setresuid(id, id, id) != 0) {
    std::perror("setresuid");
    return 1;
  }
  if (::listen(ls, 8) != 0) {
    std::perror("listen");
    return 1;
  }
  write_str(1, "listening\n");
  for (long long i = 0; i < connections; ++i) {
    int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      std::perror("accept");
      return 1;
    }
    std::size_t received = 0;
    line_reader lines(c);
    for (;;) {
      auto line = lines.next();
      if (!line) {
        write_str(1, "timeout\n");
        return 1;
      }
      if (line->empty())
        break;  // the client closed
      received += line->size();
      // {"jsonrpc":"2.0","id":N,"method":"Version",...}: answered with its id.
      auto at = line->find("\"id\":");
      if (line->find("\"Version\"") != std::string::npos && at != std::string::npos) {
        auto end = line->find_first_of(",}", at);
        write_str(c, R"({"jsonrpc":"2.0","id":)" + line->substr(at + 5, end - at - 5) +
                         R"(,"result":{"version":"2.0.0"}})"
                         "\n");
      }
    }
    ::close(c);
    write_str(1, std::to_string(received) + "\n");
  }
  return 0;
}

// A client that is killed mid-call: connects to `socket`, does `mode`, says
// "ready" on stdout and waits to be killed (it never reads again).
//   wait    a Wait that stays pending
//   stats   a Stats subscription at 10 ms, never read
//   stream  an ExecStreaming session of cat, sent input without end
//   half    half a request, never finished
//   flood   Version requests without end, answers never read
int victim(const std::string& socket, const std::string& mode) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    return 1;
  }
  auto line_of = [](int fd_) {
    std::string s;
    char c;
    while (::read(fd_, &c, 1) == 1 && c != '\n')
      s += c;
    return s;
  };
  // Each mode says "ready" once the daemon has surely read its request: an
  // answer to something sent after it has come back.
  const std::string version = R"({"jsonrpc":"2.0","id":2,"method":"Version"})"
                              "\n";
  if (mode == "wait") {
    write_str(fd, R"({"jsonrpc":"2.0","id":1,"method":"Wait"})"
                  "\n" +
                      version);
    line_of(fd);  // Version's answer (the Wait's waits for the task)
  } else if (mode == "stats") {
    write_str(fd, R"({"jsonrpc":"2.0","id":1,"method":"Stats","params":{"interval_ms":10}})"
                  "\n");
    line_of(fd);
  } else if (mode == "stream") {
    write_str(fd,
              R"({"jsonrpc":"2.0","id":1,"method":"ExecStreaming.Start","params":{"cmd":"cat"}})"
              "\n");
    auto started = line_of(fd);  // {"result":{"session":"exec-N","pid":P}} or notifications
    auto at = started.find("\"session\":\"");
    if (at == std::string::npos) {
      std::fprintf(stderr, "no session: %s\n", started.c_str());
      return 1;
    }
    auto id = started.substr(at + 11, started.find('"', at + 11) - at - 11);
    write_str(1, "ready\n");
    std::string input = R"({"jsonrpc":"2.0","method":"ExecStreaming.Input","params":{"session":")" +
                        id +
                        R"(","data":"aGVsbG8K"}})"
                        "\n";
    for (;;)
      if (!write_str(fd, input))
        return 1;
  } else if (mode == "half") {
    write_str(fd, version);
    line_of(fd);
    write_str(fd, R"({"jsonrpc":"2.0","id":1,"meth)");
  } else if (mode == "flood") {
    write_str(fd, version);
    line_of(fd);
    write_str(1, "ready\n");
    for (;;)
      if (!write_str(fd, version))
        return 1;
  } else {
    std::fprintf(stderr, "unknown victim mode %s\n", mode.c_str());
    return 2;
  }
  write_str(1, "ready\n");
  for (;;)
    ::pause();
}

// One member of fleet-floor: the least a process of its own per task can
// do for a Stats subscription. It forks its task (a child that pauses and
// dies with it), then on each tick of a periodic timerfd preads the files a
// host-mode sample reads (its own children list, the task's stat, children
// list and status, opened once), formats a sample line of the daemon's size
// and sends it on `out`. Blocking calls, no event loop, no allocation.
[[noreturn]] void floor_member(int out, long long interval_ms) {
  const pid_t parent = ::getpid();
  const pid_t task = ::fork();
  if (task == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(0);
    for (;;)
      ::pause();
  }
  if (task < 0)
    ::_exit(1);
  char path[128];
  int files[4];
  const pid_t me = ::getpid();
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", me, me);
  files[0] = ::open(path, O_RDONLY | O_CLOEXEC);
  std::snprintf(path, sizeof path, "/proc/%d/stat", task);
  files[1] = ::open(path, O_RDONLY | O_CLOEXEC);
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", task, task);
  files[2] = ::open(path, O_RDONLY | O_CLOEXEC);
  std::snprintf(path, sizeof path, "/proc/%d/status", task);
  files[3] = ::open(path, O_RDONLY | O_CLOEXEC);
  const int timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  itimerspec spec{};
  spec.it_interval.tv_sec = interval_ms / 1000;
  spec.it_interval.tv_nsec = (interval_ms % 1000) * 1000000;
  spec.it_value = spec.it_interval;
  if (timer < 0 || ::timerfd_settime(timer, 0, &spec, nullptr) != 0)
    ::_exit(1);
  for (int f : files)
    if (f < 0)
      ::_exit(1);
  char buf[4096], line[1024];
  for (;;) {
    std::uint64_t expirations = 0;
    if (::read(timer, &expirations, sizeof expirations) != static_cast<ssize_t>(sizeof expirations))
      continue;
    unsigned long long utime = 0, stime = 0, vm_rss_kib = 0;
    for (int i = 0; i < 4; ++i) {
      const ssize_t n = ::pread(files[i], buf, sizeof buf - 1, 0);
      buf[n > 0 ? n : 0] = '\0';
      if (i == 1) {
        // After "(comm) ": state is field 3; utime 14, stime 15.
        const char* p = std::strrchr(buf, ')');
        for (int field = 2; p && *p && field < 15; ++p)
          if (*p == ' ') {
            ++field;
            if (field == 14)
              utime = std::strtoull(p + 1, nullptr, 10);
            else if (field == 15)
              stime = std::strtoull(p + 1, nullptr, 10);
          }
      } else if (i == 3) {
        if (const char* p = std::strstr(buf, "VmRSS:"))
          vm_rss_kib = std::strtoull(p + 6, nullptr, 10);
      }
    }
    // A daemon's sample, field for field.
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const auto ts = static_cast<unsigned long long>(now.tv_sec) * 1000000000ULL +
                    static_cast<unsigned long long>(now.tv_nsec);
    const char* const usage_fmt =
        R"({"memory_stats":{"rss":%llu,"cache":0,"swap":0,"usage":0,"max_usage":0,)"
        R"("kernel_usage":0,"kernel_max_usage":0,"measured":["RSS","Swap"]},)"
        R"("cpu_stats":{"system_mode":%lluE0,"user_mode":%lluE0,"total_ticks":%lluE0,)"
        R"("throttled_periods":0,"throttled_time":0,"percent":0E0,)"
        R"("measured":["System Mode","User Mode","Percent"]}})";
    char usage[400];
    std::snprintf(usage, sizeof usage, usage_fmt, vm_rss_kib * 1024, stime, utime, utime + stime);
    const int n = std::snprintf(line, sizeof line,
                                R"({"jsonrpc":"2.0","method":"Stats.Sample","params":{)"
                                R"("subscription":"stats-1","usage":{"timestamp_unix_nano":%llu,)"
                                R"("resource_usage":%s,"pids":{"%d":%s}}}})"
                                "\n",
                                ts, usage, static_cast<int>(task), usage);
    if (n > 0 && !write_all(out, line, static_cast<std::size_t>(std::min<int>(n, sizeof line - 1))))
      ::_exit(0);
  }
}

// The fleet's floor: `n` floor_members at `interval_ms`, held `hold_ms`
// after they settled; their lines read (and counted) as they come. Prints
// "cpu_seconds C hold_seconds H lines L members M": the members' own CPU
// (schedstat) over the hold.
int fleet_floor(long long n, long long interval_ms, long long hold_ms) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);  // the members' tasks come back to us
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
    return 1;
  std::vector<pid_t> members;
  for (long long i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(sp[0]);
      floor_member(sp[1], interval_ms);
    }
    if (pid < 0)
      break;
    members.push_back(pid);
  }
  ::close(sp[1]);
  unsigned long long lines = 0;
  std::vector<char> buf(65536);
  auto drain_until = [&](std::chrono::steady_clock::time_point end) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
                            end - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0)
        return;
      pollfd p{sp[0], POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>((left + 999) / 1000)) <= 0)
        continue;
      const ssize_t got = ::read(sp[0], buf.data(), buf.size());
      for (ssize_t i = 0; i < got; ++i)
        lines += buf[static_cast<std::size_t>(i)] == '\n';
    }
  };
  auto cpu = [&] {
    double total = 0;
    for (pid_t pid : members) {
      char path[64];
      std::snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
      if (FILE* f = std::fopen(path, "re")) {
        unsigned long long ns = 0;
        if (std::fscanf(f, "%llu", &ns) == 1)
          total += static_cast<double>(ns) / 1e9;
        std::fclose(f);
      }
    }
    return total;
  };
  // Settle: every member started and past its first tick.
  drain_until(std::chrono::steady_clock::now() +
              std::chrono::milliseconds(std::min(interval_ms, 1000LL) + 200));
  const double before = cpu();
  const unsigned long long lines_before = lines;
  const auto t0 = std::chrono::steady_clock::now();
  drain_until(t0 + std::chrono::milliseconds(hold_ms));
  const double after = cpu();
  const double held = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const unsigned long long held_lines = lines - lines_before;
  for (pid_t pid : members)
    ::kill(pid, SIGKILL);
  // Every member and every member's task (re-parented to us).
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
  std::printf("cpu_seconds %.9f hold_seconds %.9f lines %llu members %zu\n", after - before, held,
              held_lines, members.size());
  return members.size() == static_cast<std::size_t>(n) ? 0 : 1;
}

}  // namespace

int run_helper(int argc, char** argv) {
  // argv: taskexec-stress --helper NAME ARGS...
  if (argc < 3) {
    std::fprintf(stderr, "taskexec-stress --helper needs a name\n");
    return 2;
  }
  std::string name = argv[2];
  if (name == "fork-storm")
    return fork_storm(arg_num(argv, 3, argc));
  if (name == "write-pattern")
    return write_pattern(arg_num(argv, 3, argc));
  if (name == "escape")
    return escape(arg_num(argv, 3, argc));
  if (name == "spawn-baseline")
    return spawn_baseline(arg_num(argv, 3, argc), arg_num(argv, 4, argc));
  if (name == "echo-server" && argc > 3)
    return echo_server(argv[3]);
  if (name == "exit-on-term")
    return exit_on_term(arg_num(argv, 3, argc));
  if (name == "journal-flood" && argc > 5)
    return journal_flood(argv[3], argv[4], arg_num(argv, 5, argc));
  if (name == "ignore-term")
    return ignore_term();
  if (name == "impostor" && argc > 5)
    return impostor(argv[3], arg_num(argv, 4, argc), arg_num(argv, 5, argc));
  if (name == "fleet-floor")
    return fleet_floor(arg_num(argv, 3, argc), arg_num(argv, 4, argc), arg_num(argv, 5, argc));
  if (name == "victim" && argc > 4)
    return victim(argv[3], argv[4]);
  std::fprintf(stderr, "taskexec-stress: unknown helper \"%s\"\n", name.c_str());
  return 2;
}

}  // namespace stress
