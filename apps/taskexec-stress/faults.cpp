// faults: clients SIGKILLed mid-call and mid-stream, half-written
// messages, a reconnect storm, and a daemon SIGKILLed; then the task's state
// and exit code must still be right, and the daemon must hold nothing more
// than before. Then the hostile callers (faults_hostile.cpp).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

namespace {

using local = asio::local::stream_protocol;
constexpr const char* modes[] = {"wait", "stats", "stream", "half", "flood"};

// Wait until `pid` has exited (any process, by pidfd); false after `timeout`.
asio::awaitable<bool> wait_pid_gone(asio::io_context& io, int pid,
                                    std::chrono::milliseconds timeout) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0)
    co_return errno == ESRCH;
  daemon_handle h;
  h.pidfd = std::make_unique<asio::posix::stream_descriptor>(io, fd);
  co_return co_await wait_exit(h, timeout);
}

}  // namespace

asio::awaitable<void> run_faults(context& ctx, const options& opt, scenario_report& rep) {
  const auto rounds = opt.num("rounds");
  const auto reconnects = opt.num("reconnects");
  const auto growth_limit = opt.num("max-growth-kib", 0);
  rep.summary = std::to_string(rounds) + " clients killed per kind of call, half messages, " +
                std::to_string(reconnects) +
                " reconnects, a daemon killed; a journal flood, SIGTERM in a long grace, impostor "
                "sockets, a Stats flood";

  auto d = co_await start_daemon(ctx, ctx.fresh_path("faults", ".sock"));
  if (!d)
    throw std::runtime_error("daemon: " + d.error().message);
  auto& control = *d->client;
  const int dpid = d->config.pid;
  const std::string socket = d->config.socket;

  // The task says "ready" on a FIFO, then exits 7 on SIGTERM.
  const auto fifo = ctx.fresh_path("faults", ".fifo");
  if (::mkfifo(fifo.c_str(), 0600) != 0)
    throw std::runtime_error("mkfifo: " + std::string(std::strerror(errno)));
  int fifo_read = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int keeper = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  auto task = ctx.helper("exit-on-term", strings("7"));
  task.stdout_path = fifo;
  auto launched = co_await control.launch(task);
  ::close(keeper);
  if (!launched)
    throw std::runtime_error("launch: " + launched.error().message);
  const bool task_ready = co_await read_line(ctx.io, fifo_read) == "ready";
  ::close(fifo_read);
  ::unlink(fifo.c_str());
  rep.add_check("the task started and said ready", task_ready);
  const int fds_before = count_fds("/proc", dpid);
  const auto mem_before = read_memory("/proc", dpid);

  std::uint64_t failures = 0;
  std::string first_failure;
  auto fail = [&](std::string what) {
    if (failures++ == 0)
      first_failure = std::move(what);
  };
  auto still_serving = [&](const std::string& after) -> asio::awaitable<void> {
    if (auto v = co_await control.version(); !v)
      fail("Version after " + after + ": " + v.error().message);
    if (auto s = co_await control.signal(0); !s)
      fail("Signal(0) after " + after + ": " + s.error().message);
  };

  // 1. Clients killed mid-call and mid-stream.
  std::uint64_t killed = 0;
  co_await with_progress(
      ctx, [&] { return "faults: " + std::to_string(killed) + " clients killed"; },
      [&]() -> asio::awaitable<void> {
        for (long long r = 0; r < rounds; ++r)
          for (const char* mode : modes) {
            taskexec::task_executor victim(ctx.reaper);
            pipe_pair out;
            auto cmd = ctx.helper("victim", strings(socket, mode));
            cmd.stdout_fd = out.write_fd;
            if (auto l = co_await victim.launch(cmd); !l) {
              fail(std::string("victim ") + mode + ": " + l.error().message);
              continue;
            }
            out.close_write();
            if (auto line = co_await read_line(ctx.io, out.read_fd); line != "ready")
              fail(std::string("victim ") + mode + " did not get ready");
            co_await victim.signal(SIGKILL);
            auto s = co_await victim.wait();
            if (!s || s->signal != SIGKILL)
              fail(std::string("victim ") + mode + " did not die of SIGKILL");
            ++killed;
            co_await still_serving(std::string("a ") + mode + " client was killed");
          }
      });

  // 2. Half a message, held while another client is served, then dropped.
  for (int i = 0; i < 3; ++i) {
    local::socket s(ctx.io);
    auto [ec] =
        co_await s.async_connect(local::endpoint(socket), asio::as_tuple(asio::use_awaitable));
    if (ec) {
      fail("connect: " + ec.message());
      break;
    }
    std::string half = R"({"jsonrpc":"2.0","id":7,"method":"Vers)";
    co_await asio::async_write(s, asio::buffer(half), asio::as_tuple(asio::use_awaitable));
    co_await still_serving("half a message");
    if (i == 1)
      s.shutdown(local::socket::shutdown_send);  // EOF mid-message
  }
  co_await still_serving("half messages were dropped");

  // 3. A reconnect storm: connect, call or not, close, 8 at once.
  std::uint64_t reconnected = 0;
  co_await with_progress(
      ctx, [&] { return "faults: " + std::to_string(reconnected) + " reconnects"; },
      [&]() -> asio::awaitable<void> {
        long long next = 0;
        co_await run_all(8, [&](std::size_t) -> asio::awaitable<void> {
          while (next < reconnects) {
            auto i = next++;
            if (i % 2 == 0) {
              auto c = co_await taskexec::remote_executor::connect(ctx.io.get_executor(), socket);
              if (!c)
                fail("reconnect: " + c.error().message);
            } else {
              local::socket s(ctx.io);
              auto [ec] = co_await s.async_connect(local::endpoint(socket),
                                                   asio::as_tuple(asio::use_awaitable));
              if (ec)
                fail("connect: " + ec.message());
            }
            ++reconnected;
          }
        });
      });
  co_await still_serving("the reconnect storm");

  // 4. A daemon killed with SIGKILL: its task must die with it, its config
  // must be refused, and a new daemon must start on its socket path.
  {
    auto victim = co_await start_daemon(ctx, ctx.fresh_path("killed", ".sock"));
    if (!victim)
      throw std::runtime_error("second daemon: " + victim.error().message);
    taskexec::exec_command sleeper;
    sleeper.cmd = "/bin/sleep";
    sleeper.args = strings("100000");
    sleeper.env = ctx.task_env();
    auto l = co_await victim->client->launch(sleeper);
    if (!l)
      throw std::runtime_error("launch in the second daemon: " + l.error().message);
    ::kill(victim->config.pid, SIGKILL);
    bool daemon_gone = co_await wait_exit(*victim, std::chrono::seconds(10));
    bool task_gone = co_await wait_pid_gone(ctx.io, l->pid, std::chrono::seconds(10));
    rep.add_check("a SIGKILLed daemon's task dies with it", daemon_gone && task_gone,
                  std::string("daemon ") + (daemon_gone ? "gone" : "alive") + ", task " +
                      (task_gone ? "gone" : "alive"));
    victim->client.reset();
    auto again = co_await taskexec::reattach_to_executor(ctx.io.get_executor(), victim->config);
    rep.add_check("reattaching to the killed daemon is refused", !again,
                  again ? "it was accepted" : again.error().message);
    auto fresh = co_await start_daemon(ctx, victim->config.socket);
    rep.add_check("a new daemon starts on the killed daemon's socket path",
                  static_cast<bool>(fresh), fresh ? "" : fresh.error().message);
    if (fresh)
      if (auto r = co_await destroy_daemon(*fresh, std::chrono::seconds(20)); !r)
        fail("destroy the new daemon: " + r.error().message);
    ::unlink(victim->config.socket.c_str());  // if the new daemon did not take it over
  }

  // The task is untouched: it still runs and exits 7 on SIGTERM.
  co_await still_serving("the faults");
  auto shut = co_await control.shutdown("SIGTERM", std::chrono::milliseconds(5000));
  auto state = co_await control.wait();
  rep.add_check("the task's exit is right after the faults (SIGTERM: exit code 7)",
                shut && state && state->exit_code == 7 && state->signal == 0,
                state ? "exit code " + std::to_string(state->exit_code) + ", signal " +
                            std::to_string(state->signal)
                      : state.error().message);
  co_await check_daemon_at_rest_and_destroy(*d, fds_before, mem_before, growth_limit, rep);

  // 5. Hostile callers, each against a daemon of its own.
  co_await run_hostile_cases(ctx, opt, rep);

  rep.figures["clients_killed"] = killed;
  rep.figures["reconnects"] = reconnected;
  rep.add_check(
      "the daemon answered throughout", failures == 0,
      failures ? std::to_string(failures) + " failures, the first: " + first_failure : "");
}

}  // namespace stress
