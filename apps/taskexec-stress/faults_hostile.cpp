// The hostile cases of `faults`: callers that mean harm, each against a
// daemon of its own, with the daemon's anonymous memory (RssAnon) and a
// Version round trip measured idle, under the attack, and after it.
// RssAnon, not VmRSS: VmRSS also counts the daemon's mapped text, whose
// pages an attack's code paths map on first use (the text is ordered so
// that a daemon maps little of it: apps/taskexecd/text-order.txt) and
// which stay mapped, shared with every daemon, clean and reclaimable; what
// an attack must not leave behind is memory the daemon allocated.
//
//   journal flood  Shutdowns naming 1-4 MiB signals (refused, so never
//                  journaled) and 2048 journaled Signals at once: the journal
//                  stays within its bounds and `launched` stays readable
//   long grace     a Shutdown with a grace of an hour on a task that ignores
//                  SIGTERM, then SIGTERM to the daemon: it cuts the grace
//                  short, answers the Shutdown and exits within seconds
//   impostor       socket directories others could change are refused, and a
//                  root client sends nothing to a socket another uid serves
//   stats flood    10 connections of 16 Stats subscriptions (16 distinct
//                  intervals, 10 to 25 ms) that are never read, and a 17th
//                  distinct interval refused
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstring>
#include <filesystem>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

namespace {

using local = asio::local::stream_protocol;
using namespace asio::experimental::awaitable_operators;
using ms = std::chrono::milliseconds;

constexpr ms one_hour{3600000};  // the longest grace a Shutdown honours
// start_daemon's kill grace (2 s), the 5 s the daemon gives connections to
// drain, and 3 s to spare: an exit later than this did not cut the grace.
constexpr std::chrono::seconds exit_bound{10};
constexpr unsigned nobody = 65534;
constexpr int idle_versions = 200;
constexpr int stats_connections = 10, stats_per_connection = 16;  // 16: both limits

struct bounds {
  ms version;            ///< each Version under attack answered within this
  long long growth_kib;  ///< RssAnon after an attack minus idle (0: unchecked)
  long long peak_kib;    ///< RssAnon peak during an attack minus idle (0: unchecked)
  ms hold;               ///< how long a standing attack (a grace, a flood) is held
};

std::string kib(long v) {
  return std::to_string(v) + " KiB";
}

// One daemon watched through a hostile case: its RssAnon (idle before the
// attack, the peak seen every 10 ms during it, after it) and Version round
// trips on a connection of its own, which no attacker uses.
class watch {
 public:
  watch(int pid, taskexec::remote_executor& observer, const bounds& b)
      : pid_(pid), observer_(observer), b_(b) {}

  /// `idle_versions` Versions, one every 2 ms as during the attack, then
  /// RssAnon.
  asio::awaitable<void> idle(latency_recorder& lat) {
    for (int i = 0; i < idle_versions; ++i) {
      co_await one_version(lat);
      co_await pause(ms(2));
    }
    idle_kib = anon_kib();
    peak_kib = idle_kib;
  }

  /// Run `attack()` while RssAnon is sampled every 10 ms and Versions are
  /// timed, one every 2 ms, until it ends.
  template <class Attack>
  asio::awaitable<void> during(latency_recorder& lat, Attack attack) {
    bool done = false;
    co_await run_all(3, [&](std::size_t i) -> asio::awaitable<void> {
      if (i == 0) {
        try {
          co_await attack();
        } catch (...) {
          done = true;
          throw;
        }
        done = true;
      } else if (i == 1) {
        // `done` is set by the attack's coroutine while these wait.
        while (!done) {  // NOLINT(bugprone-infinite-loop)
          peak_kib = std::max(peak_kib, anon_kib());
          co_await pause(ms(10));
        }
      } else {
        while (!done) {  // NOLINT(bugprone-infinite-loop)
          co_await one_version(lat);
          co_await pause(ms(2));
        }
      }
    });
    peak_kib = std::max(peak_kib, anon_kib());
  }

  /// RssAnon once the attackers are gone. The daemon gives freed memory back
  /// about a second after a connection closes: looked at for up to 3 s,
  /// until it is within the growth bound.
  asio::awaitable<void> after() {
    after_kib = anon_kib();
    for (int i = 0; i < 30 && b_.growth_kib > 0 && after_kib - idle_kib > b_.growth_kib; ++i) {
      co_await pause(ms(100));
      after_kib = anon_kib();
    }
  }

  /// The figures (`key`_...) and checks of the case `name`.
  void report(scenario_report& rep, const std::string& name, const std::string& key,
              const latency_recorder& idle_lat, const latency_recorder& lat) const {
    auto to_ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
    rep.figures[key + "_rss_idle_kib"] = idle_kib;
    rep.figures[key + "_rss_peak_kib"] = peak_kib;
    if (after_kib >= 0)
      rep.figures[key + "_rss_after_kib"] = after_kib;
    rep.figures[key + "_version_late"] = late;
    rep.compare(name + ": daemon RssAnon peak", static_cast<double>(peak_kib), "KiB", "idle",
                static_cast<double>(idle_kib));
    if (after_kib >= 0)
      rep.compare(name + ": daemon RssAnon after", static_cast<double>(after_kib), "KiB", "idle",
                  static_cast<double>(idle_kib));
    rep.compare(name + ": Version p50", to_ms(lat.quantile(0.5)), "ms", "idle",
                to_ms(idle_lat.quantile(0.5)));
    rep.compare(name + ": Version p99", to_ms(lat.quantile(0.99)), "ms", "idle",
                to_ms(idle_lat.quantile(0.99)));
    rep.add_check(
        name + ": every Version answered within " + std::to_string(b_.version.count()) + " ms",
        late == 0 && lat.count() > 0,
        std::to_string(lat.count()) + " calls, max " + format_duration(lat.max()) + " (idle: max " +
            format_duration(idle_lat.max()) + ")" +
            (late ? "; " + std::to_string(late) + " late or failed, the first: " + first_late
                  : ""));
    const std::string seen = "idle " + kib(idle_kib) + ", peak " + kib(peak_kib) +
                             (after_kib >= 0 ? ", after " + kib(after_kib) : "");
    if (b_.peak_kib > 0)
      rep.add_check(name + ": the daemon's RssAnon peak stayed within " +
                        std::to_string(b_.peak_kib) + " KiB of idle",
                    idle_kib > 0 && peak_kib - idle_kib <= b_.peak_kib, seen);
    if (b_.growth_kib > 0 && after_kib >= 0)
      rep.add_check(name + ": the daemon's RssAnon came back to within " +
                        std::to_string(b_.growth_kib) + " KiB of idle",
                    idle_kib > 0 && after_kib > 0 && after_kib - idle_kib <= b_.growth_kib, seen);
  }

  long idle_kib = -1, peak_kib = -1, after_kib = -1;
  std::uint64_t late = 0;  ///< Versions not answered within the bound, or failed
  std::string first_late;

 private:
  long anon_kib() const { return read_status_kib("/proc", pid_, "RssAnon"); }

  asio::awaitable<void> one_version(latency_recorder& lat) {
    asio::steady_timer timer(co_await asio::this_coro::executor, b_.version);
    const auto t0 = clock_type::now();
    auto r =
        co_await (observer_.version() || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    const auto ns = since_ns(t0);
    lat.record(ns);
    std::string what;
    if (r.index() == 1 || ns > static_cast<std::uint64_t>(b_.version.count()) * 1'000'000)
      what = "a Version took " + format_duration(ns);
    else if (auto& v = std::get<0>(r); !v)
      what = "Version: " + v.error().message;
    if (!what.empty() && late++ == 0)
      first_late = what;
  }

  int pid_;
  taskexec::remote_executor& observer_;
  bounds b_;
};

// Wait until `pid` has exited (any process, by pidfd); false after `timeout`.
asio::awaitable<bool> pid_gone(asio::io_context& io, int pid, ms timeout) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0)
    co_return errno == ESRCH;
  daemon_handle h;
  h.pidfd = std::make_unique<asio::posix::stream_descriptor>(io, fd);
  co_return co_await wait_exit(h, timeout);
}

// read_line, giving up after `timeout` (then ""): a helper that never says
// what it should fails its check instead of holding the scenario.
asio::awaitable<std::string> line_within(asio::io_context& io, int fd, ms timeout) {
  asio::steady_timer timer(io, timeout);
  auto r = co_await (read_line(io, fd) || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  std::string line;
  if (r.index() == 0)
    line = std::move(std::get<0>(r));
  co_return line;
}

// A daemon with /bin/sleep as its task, and an observer connection.
struct target {
  daemon_handle d;
  std::optional<taskexec::remote_executor> observer;
};

asio::awaitable<target> start_target(context& ctx, const char* stem) {
  const auto socket = ctx.fresh_path(stem, ".sock");
  auto d = co_await start_daemon(ctx, socket);
  if (!d)
    throw std::runtime_error(std::string(stem) + " daemon: " + d.error().message);
  taskexec::exec_command sleeper;
  sleeper.cmd = "/bin/sleep";
  sleeper.args = strings("100000");
  sleeper.env = ctx.task_env();
  auto l = co_await d->client->launch(sleeper);
  if (!l)
    throw std::runtime_error(std::string(stem) + " launch: " + l.error().message);
  auto o = co_await taskexec::remote_executor::connect(ctx.io.get_executor(), d->config.socket);
  if (!o)
    throw std::runtime_error(std::string(stem) + " observer: " + o.error().message);
  target t{std::move(*d), std::move(*o)};
  co_return t;
}

// After an attack: the task still runs, the daemon still serves; then it is
// destroyed.
asio::awaitable<void> end_target(target& t, const std::string& name, scenario_report& rep) {
  auto alive = co_await t.d.client->signal(0);
  auto v = co_await t.d.client->version();
  t.observer.reset();
  auto destroyed = co_await destroy_daemon(t.d, std::chrono::seconds(20));
  rep.add_check(name + ": the task still runs and the daemon serves, then is destroyed",
                alive && v && destroyed,
                !alive       ? "Signal(0): " + alive.error().message
                : !v         ? "Version: " + v.error().message
                : !destroyed ? destroyed.error().message
                             : "");
}

// ------------------------------------------------------------ journal flood

asio::awaitable<void> journal_flood(context& ctx, const bounds& b, scenario_report& rep) {
  constexpr int huge_connections = 4, huge_each = 8;
  constexpr int signal_connections = 4, signal_each = 512;
  auto t = co_await start_target(ctx, "journal");
  watch w(t.d.config.pid, *t.observer, b);
  auto& idle_lat = rep.latency("idle Version (journal)");
  auto& lat = rep.latency("Version, journal flood");
  co_await w.idle(idle_lat);

  // The attackers are processes of their own (the journal-flood helper), so
  // the time it takes to write 4 MiB requests is theirs, not the observer's.
  std::uint64_t refused_right = 0, signalled = 0;
  std::string first_wrong;
  auto wrong = [&](std::string what) {
    if (first_wrong.empty())
      first_wrong = std::move(what);
  };
  co_await w.during(lat, [&]() -> asio::awaitable<void> {
    co_await run_all(
        huge_connections + signal_connections, [&](std::size_t i) -> asio::awaitable<void> {
          const bool huge = i < huge_connections;
          taskexec::task_executor attacker(ctx.reaper);
          pipe_pair out;
          auto cmd =
              ctx.helper("journal-flood", strings(t.d.config.socket, huge ? "huge" : "signal",
                                                  std::to_string(huge ? huge_each : signal_each)));
          cmd.stdout_fd = out.write_fd;
          if (auto l = co_await attacker.launch(cmd); !l) {
            wrong("journal-flood helper: " + l.error().message);
            co_return;
          }
          out.close_write();
          const auto said = co_await read_line(ctx.io, out.read_fd);
          auto s = co_await attacker.wait();
          if (said == "done " + std::to_string(huge ? huge_each : signal_each) && s &&
              s->exit_code == 0)
            (huge ? refused_right : signalled) += huge ? huge_each : signal_each;
          else
            wrong(std::string(huge ? "huge Shutdowns: " : "Signals: ") + said);
        });
  });

  // The whole journal, page by page.
  std::uint64_t since = 0, kept = 0, dropped = 0, refused_kept = 0;
  std::size_t pages = 0, largest_page = 0;
  std::string first_type, events_error;
  std::uint64_t first_seq = 0;
  for (;;) {
    auto p = co_await t.d.client->events(since, 1024);
    if (!p) {
      events_error = "; Events: " + p.error().message;
      break;
    }
    std::size_t bytes = 0;
    for (auto& e : p->events) {
      bytes += boost::json::serialize(e).size();
      if (kept++ == 0) {
        first_type = std::string(e.at("type").as_string());
        first_seq = e.at("seq").to_number<std::uint64_t>();
      }
      if (e.at("type").as_string() == "shutdown")
        ++refused_kept;
    }
    largest_page = std::max(largest_page, bytes);
    dropped += p->dropped;
    since = p->next;
    if (!p->more || ++pages > 64)
      break;
  }
  ++pages;
  const std::uint64_t total = 1 + signalled;  // launched, then each Signal
  rep.add_check("journal flood: " + std::to_string(huge_connections * huge_each) +
                    " Shutdowns naming 1-4 MiB signals refused (-32602, a short message), " +
                    std::to_string(signal_connections * signal_each) + " Signals journaled",
                first_wrong.empty() &&
                    refused_right == static_cast<std::uint64_t>(huge_connections) * huge_each &&
                    signalled == static_cast<std::uint64_t>(signal_connections) * signal_each,
                std::to_string(refused_right) + " refused, " + std::to_string(signalled) +
                    " signalled" + (first_wrong.empty() ? "" : "; " + first_wrong));
  rep.add_check(
      "journal flood: the journal kept 1024 events, `launched` first, no refused Shutdown; "
      "pages of at most 64 KiB",
      events_error.empty() && kept == 1024 && first_type == "launched" && first_seq == 1 &&
          refused_kept == 0 && largest_page <= 65536 && kept + dropped == total &&
          since == total + 1,
      std::to_string(kept) + " kept (" + std::to_string(refused_kept) + " shutdown), " +
          std::to_string(dropped) + " dropped of " + std::to_string(total) + " in " +
          std::to_string(pages) + " pages (largest " + std::to_string(largest_page) +
          " bytes), first: " + (first_type.empty() ? "none" : first_type) + " seq " +
          std::to_string(first_seq) + events_error);
  co_await w.after();
  w.report(rep, "journal flood", "journal_flood", idle_lat, lat);
  const std::string name = "journal flood";
  co_await end_target(t, name, rep);
}

// --------------------------------------------------------------- long grace

asio::awaitable<void> long_grace(context& ctx, const bounds& b, scenario_report& rep) {
  const auto socket = ctx.fresh_path("grace", ".sock");
  auto d = co_await start_daemon(ctx, socket);
  if (!d)
    throw std::runtime_error("long grace daemon: " + d.error().message);
  const int dpid = d->config.pid;
  // The task says "ready", then "term" on each SIGTERM, on a FIFO.
  const auto fifo = ctx.fresh_path("grace", ".fifo");
  if (::mkfifo(fifo.c_str(), 0600) != 0)
    throw std::runtime_error("mkfifo: " + std::string(std::strerror(errno)));
  int said = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int keeper = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  auto task = ctx.helper("ignore-term");
  task.stdout_path = fifo;
  auto launched = co_await d->client->launch(task);
  ::close(keeper);
  ::unlink(fifo.c_str());
  if (!launched) {
    ::close(said);
    throw std::runtime_error("long grace launch: " + launched.error().message);
  }
  const bool ready = co_await line_within(ctx.io, said, ms(10000)) == "ready";
  auto o = co_await taskexec::remote_executor::connect(ctx.io.get_executor(), d->config.socket);
  if (!o) {
    ::close(said);
    throw std::runtime_error("long grace observer: " + o.error().message);
  }
  watch w(dpid, *o, b);
  auto& idle_lat = rep.latency("idle Version (grace)");
  auto& lat = rep.latency("Version, long grace");
  co_await w.idle(idle_lat);

  taskexec::result<void> shut = taskexec::make_error(taskexec::errc::internal, "not answered");
  bool got_term = false, in_grace = false, exited = false;
  std::uint64_t exit_ns = 0;
  co_await run_all(2, [&](std::size_t i) -> asio::awaitable<void> {
    if (i == 0) {
      const std::string sigterm = "SIGTERM";
      shut = co_await d->client->shutdown(sigterm, one_hour);
      co_return;
    }
    // The task got the Shutdown's SIGTERM: the hour's grace has begun.
    got_term = co_await line_within(ctx.io, said, ms(10000)) == "term";
    co_await w.during(lat, [&]() -> asio::awaitable<void> { co_await pause(b.hold); });
    in_grace = launched && ::kill(launched->pid, 0) == 0;
    const auto t0 = clock_type::now();
    ::kill(dpid, SIGTERM);
    exited = co_await wait_exit(*d, exit_bound);
    exit_ns = since_ns(t0);
    if (!exited) {
      ::kill(dpid, SIGKILL);  // it would hold the task for the hour
      co_await wait_exit(*d, std::chrono::seconds(10));
    }
  });
  const bool task_gone = co_await pid_gone(ctx.io, launched->pid, std::chrono::seconds(10));
  ::close(said);
  o->close();
  d->client.reset();
  d->pidfd.reset();
  ::unlink(d->config.socket.c_str());  // if it did not remove it itself

  rep.figures["long_grace_exit_ms"] = static_cast<double>(exit_ns) / 1e6;
  rep.add_check(
      "long grace: the task ignoring SIGTERM got the Shutdown's (grace 3600000 ms) and "
      "was still in its grace " +
          std::to_string(b.hold.count()) + " ms later",
      ready && got_term && in_grace,
      std::string(ready ? "ready" : "never said ready") +
          (got_term ? ", got SIGTERM" : ", never got SIGTERM") +
          (in_grace ? ", still running" : ", already gone"));
  rep.add_check("long grace: on SIGTERM the daemon cut the grace short and exited within " +
                    std::to_string(exit_bound.count()) + " s, its task killed",
                exited && task_gone,
                (exited ? "exited " + format_duration(exit_ns) + " after SIGTERM"
                        : "still running " + std::to_string(exit_bound.count()) +
                              " s after SIGTERM (then SIGKILLed)") +
                    (task_gone ? ", task gone" : ", task alive"));
  rep.add_check("long grace: the pending Shutdown was answered before the daemon exited",
                static_cast<bool>(shut), shut ? "{}" : shut.error().message);
  w.report(rep, "long grace", "long_grace", idle_lat, lat);
}

// ----------------------------------------------------------------- impostor

// start_daemon at `socket` must fail with `message` (the daemon's own words
// on stderr) and leave nothing at the path.
asio::awaitable<void> expect_refused(context& ctx, const std::string& what,
                                     const std::string& socket, const std::string& message,
                                     scenario_report& rep) {
  auto d = co_await start_daemon(ctx, socket);
  std::error_code ec;
  const bool nothing_made = !std::filesystem::exists(std::filesystem::symlink_status(socket, ec));
  std::string detail = d ? "the daemon started" : d.error().message;
  if (d) {
    co_await destroy_daemon(*d, std::chrono::seconds(20));
    ::unlink(socket.c_str());
  }
  rep.add_check("impostor: " + what + " is refused",
                !d && d.error().message.find(message) != std::string::npos && nothing_made,
                detail + (nothing_made ? "" : "; something was made at " + socket));
}

asio::awaitable<void> impostor(context& ctx, scenario_report& rep) {
  const bool root = ::geteuid() == 0;
  // A directory of ours that everyone may write (on the way to the socket:
  // so it is judged as a directory on the way first), and a sticky one like
  // /tmp (fine on the way, never as the socket's own).
  const std::string without_sticky = " without the sticky bit: they could replace the socket";
  const std::string own_only = ": the socket's own directory must be writable by its owner only";
  for (mode_t mode : {mode_t{0777}, mode_t{01777}}) {
    const auto dir = ctx.fresh_path("open");
    char m[8];
    std::snprintf(m, sizeof m, "%04o", static_cast<unsigned>(mode));
    if (::mkdir(dir.c_str(), 0700) != 0 || ::chmod(dir.c_str(), mode) != 0)
      throw std::runtime_error("mkdir " + dir + ": " + std::strerror(errno));
    // Named, not temporaries in the co_await (GCC 12, see the BRIEF).
    const std::string what = std::string("a socket directory of mode ") + m;
    const std::string socket = dir + "/d.sock";
    const std::string message = "socket directory \"" + dir + "\" (mode " + m +
                                ") is writable by group and others" +
                                (mode & S_ISVTX ? own_only : without_sticky);
    co_await expect_refused(ctx, what, socket, message, rep);
  }
  if (!root) {
    rep.lines.push_back(
        "impostor: skipped a directory of nobody's and a socket served by uid 65534: they need "
        "root (chown, setuid)");
    co_return;
  }
  // A directory of nobody's on the way: they could rename the daemon's
  // directory away and put their own in its place.
  const auto theirs = ctx.fresh_path("theirs");
  if (::mkdir(theirs.c_str(), 0755) != 0 || ::chown(theirs.c_str(), nobody, nobody) != 0)
    throw std::runtime_error("a directory of nobody's " + theirs + ": " + std::strerror(errno));
  const std::string what = "a socket directory of nobody's on the way";
  const std::string below = theirs + "/run/d.sock";
  const std::string message = "socket directory \"" + theirs +
                              "\" is owned by uid 65534 (mode 0755): every directory down to the "
                              "socket must be owned by root";
  co_await expect_refused(ctx, what, below, message, rep);

  // Had it been taken: a socket served by nobody at the path gets nothing
  // from a root client, unless the client was told to expect uid 65534.
  const auto socket = ctx.fresh_path("impostor", ".sock");
  taskexec::task_executor server(ctx.reaper);
  pipe_pair out;
  auto cmd = ctx.helper("impostor", strings(socket, std::to_string(nobody), "2"));
  cmd.stdout_fd = out.write_fd;
  auto l = co_await server.launch(cmd);
  if (!l)
    throw std::runtime_error("impostor: " + l.error().message);
  out.close_write();
  const bool listening = co_await line_within(ctx.io, out.read_fd, ms(10000)) == "listening";
  auto c = co_await taskexec::remote_executor::connect(ctx.io.get_executor(), socket);
  const std::string refused = c ? "it was accepted" : c.error().message;
  if (c)
    c->close();
  const auto sent_unasked = co_await line_within(ctx.io, out.read_fd, ms(10000));
  taskexec::connect_options trust;
  trust.expect_uid = nobody;
  auto trusting = co_await taskexec::remote_executor::connect(ctx.io.get_executor(), socket, trust);
  const std::string trusted = trusting ? "" : trusting.error().message;
  if (trusting)
    trusting->close();
  const auto sent_trusting = co_await line_within(ctx.io, out.read_fd, ms(10000));
  auto s = co_await server.wait();
  ::unlink(socket.c_str());
  const std::string expected =
      "socket " + socket + " is served by uid 65534, expected root: nothing was sent to it";
  rep.add_check("impostor: a root client sends nothing to a socket served by uid 65534",
                listening && refused == expected && sent_unasked == "0",
                refused + "; it received " + sent_unasked + " bytes");
  rep.add_check(
      "impostor: told to expect uid 65534, the client talks to it (the refusal was the uid check)",
      trusted.empty() && !sent_trusting.empty() && sent_trusting != "0" && s && s->exit_code == 0,
      (trusted.empty() ? "connected" : trusted) + "; it received " + sent_trusting + " bytes");
}

// -------------------------------------------------------------- stats flood

// Subscribe `n` times on `s` (the i-th at 10 + i ms) and read until each is
// answered, skipping the samples that come meanwhile; never read again.
// "" when every one was accepted, else what went wrong.
asio::awaitable<std::string> subscribe_unread(local::socket& s, int n) {
  std::string requests;
  for (int i = 0; i < n; ++i)
    requests += R"({"jsonrpc":"2.0","id":)" + std::to_string(i + 1) +
                R"(,"method":"Stats","params":{"interval_ms":)" + std::to_string(10 + i) + "}}\n";
  auto w =
      co_await asio::async_write(s, asio::buffer(requests), asio::as_tuple(asio::use_awaitable));
  if (std::get<0>(w))
    co_return "write: " + std::get<0>(w).message();
  std::string buf;
  int answered = 0;
  while (answered < n) {
    auto r = co_await asio::async_read_until(s, asio::dynamic_buffer(buf, 1 << 20), '\n',
                                             asio::as_tuple(asio::use_awaitable));
    if (std::get<0>(r))
      co_return "read: " + std::get<0>(r).message();
    const auto len = std::get<1>(r);
    boost::system::error_code ec;
    auto v = boost::json::parse(std::string_view(buf).substr(0, len - 1), ec);
    buf.erase(0, len);
    if (ec || !v.is_object())
      co_return "an answer that is not a JSON object";
    const auto& o = v.as_object();
    if (!o.contains("id"))
      continue;  // a sample
    if (!o.contains("result"))
      co_return "Stats refused: " + boost::json::serialize(o).substr(0, 200);
    ++answered;
  }
  co_return "";
}

asio::awaitable<void> stats_flood(context& ctx, const bounds& b, scenario_report& rep) {
  auto t = co_await start_target(ctx, "stats");
  watch w(t.d.config.pid, *t.observer, b);
  auto& idle_lat = rep.latency("idle Version (stats)");
  auto& lat = rep.latency("Version, stats flood");
  co_await w.idle(idle_lat);

  std::vector<local::socket> flood;
  int subscribed = 0;
  std::string first_wrong, seventeenth;
  bool in_use_accepted = false;
  co_await w.during(lat, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < stats_connections; ++i)
      flood.emplace_back(ctx.io);
    co_await run_all(flood.size(), [&](std::size_t i) -> asio::awaitable<void> {
      auto c = co_await flood[i].async_connect(local::endpoint(t.d.config.socket),
                                               asio::as_tuple(asio::use_awaitable));
      std::string wrong;
      if (std::get<0>(c))
        wrong = "connect: " + std::get<0>(c).message();
      else
        wrong = co_await subscribe_unread(flood[i], stats_per_connection);
      if (wrong.empty())
        subscribed += stats_per_connection;
      else if (first_wrong.empty())
        first_wrong = wrong;
    });
    // All 16 distinct intervals are in use: a 17th is refused, one in use
    // is not.
    auto more = co_await t.d.client->stats(ms(10 + stats_per_connection));
    seventeenth = more ? "accepted" : more.error().message;
    auto again = co_await t.d.client->stats(ms(10));
    in_use_accepted = static_cast<bool>(again);
    co_await pause(b.hold);  // the flood stands: nobody reads a sample
  });
  flood.clear();
  const std::string limit = "too many distinct Stats intervals in use (limit 16)";
  rep.add_check(
      "stats flood: " + std::to_string(stats_connections) + " connections x " +
          std::to_string(stats_per_connection) +
          " subscriptions (10-25 ms) accepted and never read; a 17th distinct interval refused "
          "(-32010), one in use accepted",
      subscribed == stats_connections * stats_per_connection && seventeenth == limit &&
          in_use_accepted,
      std::to_string(subscribed) + " subscribed; the 17th interval: " + seventeenth +
          (in_use_accepted ? "" : "; an interval in use was refused") +
          (first_wrong.empty() ? "" : "; " + first_wrong));
  co_await w.after();
  w.report(rep, "stats flood", "stats_flood", idle_lat, lat);
  const std::string name = "stats flood";
  co_await end_target(t, name, rep);
}

}  // namespace

asio::awaitable<void> run_hostile_cases(context& ctx, const options& opt, scenario_report& rep) {
  bounds b{ms(opt.num("max-version-ms")), opt.num("max-growth-kib", 0), opt.num("max-peak-kib", 0),
           ms(opt.num("attack-ms"))};
  std::string stage = "journal flood";
  co_await with_progress(
      ctx, [&] { return "faults: hostile callers: " + stage; },
      [&]() -> asio::awaitable<void> {
        co_await journal_flood(ctx, b, rep);
        stage = "long grace, then SIGTERM";
        co_await long_grace(ctx, b, rep);
        stage = "impostor";
        co_await impostor(ctx, rep);
        stage = "stats flood";
        co_await stats_flood(ctx, b, rep);
      });
}

}  // namespace stress
