// What the scenarios of taskexec-stress share: the run's context, options,
// the progress line, daemons started and watched, and the helper modes the
// program runs as its own tasks.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "leak_check.hpp"
#include "report.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/remote_executor.hpp"

namespace stress {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

/// A scenario's options: --name value, or --name alone for a flag.
struct option_spec {
  std::string name;
  std::string fallback;  ///< the default; "" for a flag that is off
  std::string help;
  bool flag = false;
};

class options {
 public:
  options(std::vector<option_spec> specs, std::map<std::string, std::string> given)
      : specs_(std::move(specs)), given_(std::move(given)) {}
  /// A whole number >= min; throws std::invalid_argument naming the option.
  long long num(const std::string& name, long long min = 1) const;
  bool flag(const std::string& name) const;
  std::string str(const std::string& name) const;
  boost::json::object to_json() const;

 private:
  std::string raw(const std::string& name) const;
  std::vector<option_spec> specs_;
  std::map<std::string, std::string> given_;
};

/// The status line while a scenario runs: redrawn in place on a terminal,
/// else a plain line every few seconds; nothing with --quiet.
class progress_line {
 public:
  explicit progress_line(bool enabled);
  void update(const std::string& text);
  void finish();

 private:
  bool enabled_, tty_;
  clock_type::time_point last_{};
  std::size_t width_ = 0;
};

struct context {
  asio::io_context& io;
  taskexec::child_reaper& reaper;
  std::string run_id;
  std::string marker;  ///< TASKEXEC_STRESS_RUN=<run_id>
  std::string run_dir;
  std::string self_exe;
  std::string daemon_path;
  progress_line progress;
  std::chrono::seconds time_limit{300};
  std::string plant;  ///< "", "process", "cgroup", "socket": a leak on purpose
  std::uint64_t names = 0;

  /// The environment of every task: PATH and the marker.
  std::vector<std::string> task_env() const;
  /// A fresh path in the run directory: <run_dir>/<stem>-<n><suffix>.
  std::string fresh_path(const std::string& stem, const std::string& suffix = "");
  /// This program as a task: `taskexec-stress --helper NAME ARGS...`.
  taskexec::exec_command helper(const std::string& name, std::vector<std::string> args = {}) const;
};

/// A daemon of ours: its client, and its pidfd to see it exit.
struct daemon_handle {
  std::optional<taskexec::remote_executor> client;
  taskexec::reattach_config config;
  std::unique_ptr<asio::posix::stream_descriptor> pidfd;
};

/// create_executor with our options (log off, kill grace 2 s).
asio::awaitable<taskexec::result<daemon_handle>> start_daemon(context& ctx, std::string socket);
/// True once the daemon has exited, false when `timeout` passed first.
asio::awaitable<bool> wait_exit(daemon_handle& d, std::chrono::milliseconds timeout);
/// Destroy the daemon's task and wait for the daemon to exit.
asio::awaitable<taskexec::result<void>> destroy_daemon(daemon_handle& d,
                                                       std::chrono::milliseconds timeout);

/// Once a scenario's clients are gone: the daemon's descriptors must come
/// back to `fds_before` (it notices closed sockets asynchronously: looked at
/// for up to 2 s) and its anonymous memory (smaps_rollup's Anonymous) to
/// within `growth_limit` KiB of `before` (it trims its heap about a second
/// after going idle: looked at for up to 3 s; 0: unchecked). Then the
/// daemon is destroyed. The figures and checks go into `rep`.
asio::awaitable<void> check_daemon_at_rest_and_destroy(daemon_handle& d, int fds_before,
                                                       memory_figures before,
                                                       long long growth_limit,
                                                       scenario_report& rep);

/// Wait for `ms` (pacing a loop; never to synchronise with another process).
asio::awaitable<void> pause(std::chrono::milliseconds ms);

/// Run `make(i)` for i in [0, n) concurrently and wait for all; the first
/// exception one throws comes out once all have ended.
template <class Make>
asio::awaitable<void> run_all(std::size_t n, Make make) {
  auto ex = co_await asio::this_coro::executor;
  std::size_t left = n;
  std::exception_ptr first;
  asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
  for (std::size_t i = 0; i < n; ++i)
    asio::co_spawn(ex, make(i), [&](const std::exception_ptr& e) {
      if (e && !first)
        first = e;
      if (--left == 0)
        all_done.cancel();
    });
  if (left > 0)
    co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  if (first)
    std::rethrow_exception(first);
}

/// Redraw the progress line from `status()` every 250 ms until `done`.
asio::awaitable<void> tick_progress(context& ctx, const bool& done,
                                    std::function<std::string()> status);

/// Run `work()` with the progress line drawn from `status()`.
template <class Work>
asio::awaitable<void> with_progress(context& ctx, std::function<std::string()> status, Work work) {
  bool done = false;
  co_await run_all(2, [&](std::size_t i) -> asio::awaitable<void> {
    if (i == 0) {
      try {
        co_await work();
      } catch (...) {
        done = true;
        throw;
      }
      done = true;
    } else {
      co_await tick_progress(ctx, done, status);
    }
  });
}

/// A vector of strings, for coroutines (GCC 12 miscompiles braced lists of
/// string literals in them: "array used as initializer").
template <class... A>
std::vector<std::string> strings(A&&... a) {
  std::vector<std::string> v;
  (v.emplace_back(std::forward<A>(a)), ...);
  return v;
}

/// Nanoseconds since `t0`.
inline std::uint64_t since_ns(clock_type::time_point t0) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count());
}

/// CPU time of `pid` (all its threads, from schedstat) in seconds; -1 when gone.
double cpu_seconds(int pid);

/// A task's stdout as a pipe we read.
struct pipe_pair {
  int read_fd = -1, write_fd = -1;
  pipe_pair();
  ~pipe_pair();
  void close_write();
};
/// Read `fd` to EOF (at most `limit` bytes).
asio::awaitable<std::string> read_all(asio::io_context& io, int fd, std::size_t limit = 1 << 20);

/// `taskexec-stress --helper NAME ARGS...` as a task of our own, to its
/// exit: what it printed on stdout (read to EOF). Throws std::runtime_error
/// naming `what` when it cannot be launched.
asio::awaitable<std::string> helper_output(context& ctx, const std::string& what,
                                           const std::string& name, std::vector<std::string> args);

/// Read `fd` up to and including the first newline (at most `limit` bytes);
/// the line without it, or what came before EOF.
asio::awaitable<std::string> read_line(asio::io_context& io, int fd, std::size_t limit = 4096);

using scenario_fn = asio::awaitable<void> (*)(context&, const options&, scenario_report&);

struct scenario {
  std::string name;
  std::string help;
  std::vector<option_spec> specs;
  scenario_fn run;
  std::vector<std::string> short_args;  ///< --short: small N, a few seconds
};

const std::vector<scenario>& scenarios();

asio::awaitable<void> run_churn(context&, const options&, scenario_report&);
asio::awaitable<void> run_fleet(context&, const options&, scenario_report&);
asio::awaitable<void> run_rpc_flood(context&, const options&, scenario_report&);
asio::awaitable<void> run_reaper_storm(context&, const options&, scenario_report&);
asio::awaitable<void> run_output_flood(context&, const options&, scenario_report&);
asio::awaitable<void> run_faults(context&, const options&, scenario_report&);
/// The hostile callers of `faults` (faults_hostile.cpp): a journal flood, a
/// long grace cut by SIGTERM, impostor sockets, a Stats flood.
asio::awaitable<void> run_hostile_cases(context&, const options&, scenario_report&);

/// `taskexec-stress --helper NAME ...`: the processes the scenarios run.
int run_helper(int argc, char** argv);

}  // namespace stress
