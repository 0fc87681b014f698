// task_executor: launches one task and supervises it until it is gone.
//
// All operations are coroutines. Threads: io_context::run() may run on any
// number of threads, and an operation may be awaited from any coroutine of
// that io_context (or of another executor): its work runs on the
// child_reaper's strand (get_executor(), where the executor's state lives,
// shared with the reaper and every executor and exec session of the
// process), and the awaiting coroutine resumes on its own executor. 1, 2 or
// 8 threads give the same results. The synchronous members (state(), pid(),
// exit_state(), sampler(), update_resources()) read that state: call them
// on the strand, or while no operation of this executor is in flight (a
// coroutine that awaited the last one may). They return result<T>: expected
// failures (bad input, wrong state, a missing binary) are values, never
// exceptions. Each checks the lifecycle first and fails with a distinct code
// when it does not apply (see lifecycle.hpp):
//   errc::not_launched     "task not yet launched"
//   errc::already_launched "task already launched"
//   errc::task_exited      "task has exited"
//   errc::task_destroyed   "task executor destroyed"
//
// Lifetime: the task_executor may be destroyed while operations are pending;
// they then complete with errc::task_destroyed (a launch awaiting its report
// kills its child first; its coroutine keeps the executor's state alive
// until it completes, on a later turn of the io_context, so the child_reaper
// must still exist then). Its destructor, on any thread, SIGKILLs a
// still-running task and its process group at once (it cannot wait: call
// shutdown() first for an orderly end); the rest of its end runs on the
// strand. The child_reaper must outlive it. Every thread that runs the
// io_context must live as long as the tasks: a launch runs on whichever of
// them runs the strand then, and the kernel sends the task its parent-death
// SIGKILL when that thread exits.
//
// Cancellation: wait() and shutdown() support terminal cancellation through
// the awaiting coroutine's cancellation slot (e.g. asio awaitable_operators
// `||`): the cancelled call returns errc::operation_canceled and changes
// nothing. A shutdown runs in a coroutine of its own, so cancelling one
// caller never abandons it half-way: it goes on, bounded, and later callers
// share its result. launch(), exec() and exec_streaming() of a container
// suspend while they await taskexec-init's report that the command runs
// (the io threads go on with everything else); cancelled then, they kill
// the child, undo the launch and return errc::operation_canceled. signal()
// and version() complete without suspending.
//
// Cancellation reaches the work on the strand (co_spawn forwards it there);
// a cancel emitted before the operation reached the strand is not seen.
//
// No operation blocks an io thread for longer than a few system calls:
// the clone holds it only until the child has exec'd (CLONE_VFORK).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "taskexec/async.hpp"
#include "taskexec/error.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/isolation/registry.hpp"
#include "taskexec/lifecycle.hpp"
#include "taskexec/stats.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

class child_reaper;

/// The longest grace a shutdown honours: a longer one (even
/// milliseconds::max()) is treated as this.
inline constexpr std::chrono::hours max_shutdown_grace{1};

struct task_executor_options {
  /// Names the task in logs, its cgroup, and (container isolation) its hostname.
  std::string task_id;
  /// The hostname of a container task (isolation "container"); empty: task_id.
  /// Cut to 64 bytes.
  std::string hostname{};
  /// Upper bound of a shutdown after its grace period (SIGKILL, then the
  /// sweep until nothing is left).
  std::chrono::milliseconds shutdown_bound{15000};
  /// Where task cgroups go (resource_limits / basic_process_cgroup).
  cgroup_options cgroups{};
  /// Make the task's whole tree die with this process: a watchdog process
  /// (taskexec-init -w, a few KiB) waits for this executor's end and, if it
  /// dies without tearing the task down (SIGKILL, a crash), kills every
  /// process in the task's cgroup and removes the cgroups. A task without a
  /// cgroup of its own gets a kill-only one (no limits, no stats) on the
  /// unified tree, else in the v1 freezer; Execs join it too. Needs root and
  /// cgroupfs: without them the task runs unguarded (a warning is logged),
  /// and only its main process dies with us (PR_SET_PDEATHSIG). taskexecd
  /// turns it on; off by default (one more process per task, and an
  /// embedding program may have its own way to clean up).
  bool watchdog = false;
  /// How long a container launch (and an Exec in a container) waits for
  /// taskexec-init's report that the command runs: then it fails with
  /// errc::timed_out ("launch timed out: no report within N ms after exec")
  /// and the child is killed. The wait suspends the launch; it never blocks
  /// the io thread.
  std::chrono::milliseconds launch_report_timeout{30000};
  /// The task's isolation. Empty: by `exec_command::isolation` through the
  /// registry (make_isolation: "host", "container"). Set: this factory
  /// builds the stack instead, with strategy objects of the embedder's own
  /// (isolation/registry.hpp); `exec_command::isolation` is then the
  /// factory's to read. A field of the command that no strategy of the
  /// stack honours (isolation_strategy::features) is still refused.
  /// Execs in the task's context run as for host isolation: the host
  /// strategy, joined to the task's cgroup when its stack has the cgroup
  /// strategy; a container strategy in the stack is entered instead.
  isolation_factory isolation{};
};

/// The result of an Exec (Nomad's Exec and ExecScript).
struct exec_result {
  /// The last max_output bytes of the command's stdout and stderr together.
  std::string output;
  /// The exit status, or 128+signal when a signal killed the command.
  int exit_code = 0;
  /// The timeout passed: the command and what it started were killed;
  /// `output` is what came before.
  bool timed_out = false;
  static constexpr std::size_t max_output = 4096;  ///< Nomad's CheckBufSize
};

/// A script run outside any task (Nomad's ExecScript, for checks).
struct script_options {
  std::string name;                      ///< looked up in dir/local, dir, then PATH (of env)
  std::vector<std::string> args;         ///< argv[1..]
  std::string dir;                       ///< absolute; the working directory; empty: ours
  std::vector<std::string> env;          ///< exactly the script's environment, "K=V"
  std::string netns_path;                ///< a network namespace to run in; empty: ours
  std::chrono::milliseconds timeout{0};  ///< 0: none
};

/// Run a script as exec does (its own session, stdin /dev/null, the last
/// exec_result::max_output bytes of stdout+stderr, 128+N for signal N, its
/// session and descendants killed at the timeout), as the calling process's
/// user. `reaper` must be the process's child_reaper. Errors:
/// invalid_argument (an empty name, a malformed env entry, a netns_path
/// that is not a network namespace), binary_not_found, launch_failed, a
/// system error opening netns_path; operation_canceled when the awaiting
/// coroutine is cancelled (the script is killed first).
boost::asio::awaitable<result<exec_result>> exec_script(child_reaper& reaper,
                                                        script_options options);

/// exec_script with a completion token (async.hpp): `void(error_code,
/// exec_result)`, run on the reaper's executor. Cancellation: terminal and
/// partial; the script, its session and its descendants are then killed and
/// reaped, and nothing of it is left.
void async_exec_script_impl(child_reaper& reaper, script_options options,
                            detail::async_handler<exec_result> handler, diagnostics* diag);
template <class Token = default_completion_token>
requires detail::async_token<Token>
auto async_exec_script(child_reaper& reaper, script_options options, Token&& token = {}) {
  return detail::async_initiate_erased<exec_result>(
      std::forward<Token>(token),
      [&reaper, o = std::move(options)](detail::async_handler<exec_result> h) mutable {
        async_exec_script_impl(reaper, std::move(o), std::move(h), nullptr);
      });
}
template <class Token = default_completion_token>
auto async_exec_script(child_reaper& reaper, script_options options, diagnostics& diag,
                       Token&& token = {}) {
  return detail::async_initiate_erased<exec_result>(
      std::forward<Token>(token),
      [&reaper, o = std::move(options), d = &diag](detail::async_handler<exec_result> h) mutable {
        async_exec_script_impl(reaper, std::move(o), std::move(h), d);
      });
}

class task_executor {
 public:
  task_executor(child_reaper& reaper, task_executor_options options = {});
  ~task_executor();
  task_executor(const task_executor&) = delete;
  task_executor& operator=(const task_executor&) = delete;

  /// Start the task. The returned state carries the pid. Fails with
  /// invalid_argument / unsupported (validation), binary_not_found,
  /// user_not_found, a system error (opening stdout, fork), or launch_failed
  /// naming the child step and errno ("chdir /x: No such file or directory").
  /// A container launch suspends until taskexec-init reports that the task
  /// runs: errc::timed_out after options.launch_report_timeout;
  /// errc::task_destroyed when the executor is destroyed meanwhile;
  /// errc::operation_canceled when the awaiting coroutine is cancelled (the
  /// child is killed, and the executor can launch again). Other launches
  /// complete without suspending.
  boost::asio::awaitable<result<process_state>> launch(exec_command cmd);

  /// Wait until the task exits; every concurrent waiter gets the same state.
  /// Returns at once when it has exited already.
  boost::asio::awaitable<result<process_state>> wait();

  /// Send `signo` to the task's main process (0 checks that it is running).
  boost::asio::awaitable<result<void>> signal(int signo);

  /// Stop the task: `signal_name` then up to `grace` (at most
  /// max_shutdown_grace), then SIGKILL (grace 0: SIGKILL at once); then
  /// every process of the task is killed: its process group, its session,
  /// and descendants that left both. Bounded by grace +
  /// options.shutdown_bound; errc::shutdown_incomplete names survivors. After
  /// exit it still sweeps. Concurrent calls share one shutdown, and each
  /// call's own grace holds: a call made while a shutdown is in its grace
  /// sends its signal too, and brings SIGKILL forward when its grace ends
  /// sooner (so destroy() and a grace-0 call SIGKILL at once).
  boost::asio::awaitable<result<void>> shutdown(
      std::string_view signal_name = "SIGINT",
      std::chrono::milliseconds grace = std::chrono::milliseconds{5000});

  /// Shut down if needed (SIGKILL, no grace; a shutdown already in progress
  /// is joined and its SIGKILL sent at once) and release everything; the exit state is forgotten
  /// and every later operation fails task_destroyed. When the caller is
  /// cancelled first it returns errc::operation_canceled and destroys nothing.
  boost::asio::awaitable<result<void>> destroy();

  /// A sampler of the task's resource usage (stats.hpp): its cgroup when it
  /// has one, else its processes in /proc (orphans re-parented to this
  /// process included), with the CPU of those that ended (waited for by the
  /// task's processes, or reaped by this one). Sample on the reaper's
  /// strand (get_executor(); stats() does): a reap between its reads would
  /// count a process twice or not at all. Fails not_launched /
  /// task_exited / task_destroyed (lifecycle.hpp) when there is no task.
  result<usage_sampler> sampler();

  /// Call `on_sample` with a sample at once and then every `interval`, while
  /// the task runs. Returns {} once the task has exited;
  /// errc::operation_canceled when the awaiting coroutine is cancelled.
  /// Independent calls each keep their own previous sample.
  boost::asio::awaitable<result<void>> stats(
      std::chrono::milliseconds interval,
      std::function<void(const task_resource_usage&)> on_sample);

  /// Apply new limits to the running task's cgroup, live. errc::unsupported
  /// when the task has no cgroup; errc::resource_config_failed naming the
  /// file and errno when the kernel refuses a value.
  result<void> update_resources(const task_resources& r);

  /// Run `cmd` with `args` in the running task's context and wait for it:
  /// the task's user, groups, environment, working directory and cgroup;
  /// with container isolation also its namespaces, root and capabilities
  /// (container_enter_strategy). stdin is /dev/null; stdout and stderr go
  /// to one pipe of which the last exec_result::max_output bytes are kept.
  /// The command leads a session of its own. At `timeout` (0: none) the
  /// command and every process of its session and descendants are SIGKILLed
  /// and reaped, and the result has timed_out set. Many execs may run at
  /// once. Errors: not_launched, task_exited, task_destroyed;
  /// invalid_argument for an empty cmd; the launch errors (binary_not_found,
  /// launch_failed, timed_out: see launch()); operation_canceled when the
  /// awaiting coroutine is cancelled (the command is killed first).
  boost::asio::awaitable<result<exec_result>> exec(std::string cmd, std::vector<std::string> args,
                                                   std::chrono::milliseconds timeout);

  /// Start `options.cmd` in the running task's context, as exec() does, as
  /// an interactive session (exec_session.hpp): stdin, stdout and stderr on
  /// pipes, or a new pseudo-terminal with `options.tty`. The session ends
  /// with the task (its command is killed when the task exits or this
  /// executor is destroyed). Errors: those of exec(); a system error when
  /// no pipe or pseudo-terminal can be made. Suspends only in a container,
  /// while taskexec-init's report is awaited (as launch() does).
  boost::asio::awaitable<result<exec_session>> exec_streaming(exec_session_options options);

  /// "2.0.0".
  std::string_view version() const noexcept;

  task_state state() const noexcept;
  /// The main process's pid once launched, else 0.
  int pid() const noexcept;
  /// The exit state once exited.
  std::optional<process_state> exit_state() const;
  const std::string& task_id() const noexcept;
  /// The child_reaper's strand, where this executor's state lives.
  boost::asio::any_io_executor get_executor() const;

  /// What the shutdown sweeps of this executor did so far (taskexecd's
  /// Metrics `sweep`). A shutdown, after the task's main process has ended,
  /// sweeps its remaining processes (children, orphans, Execs, the cgroup's
  /// members): it scans, SIGKILLs what it found, waits for them to go and
  /// scans again until a scan finds none or the bound passes.
  struct sweep_counters {
    std::uint64_t sweeps = 0;  ///< shutdowns that swept
    /// Scans in all: each sweep's first, plus one for each time it found
    /// processes and started over (passes - sweeps: the sweeps' restarts).
    std::uint64_t passes = 0;
    /// Processes other than the main one that the sweeps SIGKILLed (each
    /// counted once, however many scans saw it).
    std::uint64_t killed = 0;
  };
  /// Safe from any thread (relaxed counters).
  sweep_counters sweep_stats() const noexcept;

  // ---- Completion tokens (async.hpp) ----------------------------------
  // Each operation above as `async_*(args..., token)`, default token
  // asio::deferred, completing with `void(error_code, T)` or
  // `void(error_code)`; an overload with `diagnostics&` before the token
  // also returns the error's message. The work runs on get_executor().
  // Cancellation types honoured (others are ignored) and what a cancelled
  // operation leaves behind:
  //   async_launch          terminal, partial. Only a launch awaiting
  //                         taskexec-init's report (a container) suspends:
  //                         its child is killed and reaped, the executor is
  //                         not_launched again and can launch. A launch that
  //                         does not suspend completes as if not cancelled.
  //   async_wait            terminal, partial, total. Nothing changes.
  //   async_signal          none (completes without suspending).
  //   async_shutdown        terminal, partial. The shutdown goes on, bounded
  //                         (grace + shutdown_bound); a later call or wait
  //                         shares its result.
  //   async_destroy         terminal, partial. Nothing is destroyed; the
  //                         SIGKILL shutdown it started goes on.
  //   async_stats           terminal, partial, total. Sampling stops; the
  //                         task is untouched.
  //   async_exec            terminal, partial. The command, its session and
  //                         descendants are SIGKILLed and reaped; the task
  //                         is untouched.
  //   async_exec_streaming  terminal, partial. As async_launch: a session
  //                         awaiting its report is killed, nothing is left.

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_launch(exec_command cmd, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this, c = std::move(cmd)](detail::async_handler<process_state> h) mutable {
          async_launch_impl(std::move(c), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_launch(exec_command cmd, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this, c = std::move(cmd), d = &diag](detail::async_handler<process_state> h) mutable {
          async_launch_impl(std::move(c), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_wait(Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token),
        [this](detail::async_handler<process_state> h) { async_wait_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_wait(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<process_state>(
        std::forward<Token>(token), [this, d = &diag](detail::async_handler<process_state> h) {
          async_wait_impl(std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_signal(int signo, Token&& token = {}) {
    return detail::async_initiate_erased<void>(std::forward<Token>(token),
                                               [this, signo](detail::async_handler<void> h) {
                                                 async_signal_impl(signo, std::move(h), nullptr);
                                               });
  }
  template <class Token = default_completion_token>
  auto async_signal(int signo, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, signo, d = &diag](detail::async_handler<void> h) {
          async_signal_impl(signo, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_shutdown(std::string signal_name, std::chrono::milliseconds grace,
                      Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, n = std::move(signal_name), grace](detail::async_handler<void> h) mutable {
          async_shutdown_impl(std::move(n), grace, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_shutdown(std::string signal_name, std::chrono::milliseconds grace, diagnostics& diag,
                      Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, n = std::move(signal_name), grace,
                                     d = &diag](detail::async_handler<void> h) mutable {
          async_shutdown_impl(std::move(n), grace, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_destroy(Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this](detail::async_handler<void> h) { async_destroy_impl(std::move(h), nullptr); });
  }
  template <class Token = default_completion_token>
  auto async_destroy(diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, d = &diag](detail::async_handler<void> h) { async_destroy_impl(std::move(h), d); });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_stats(std::chrono::milliseconds interval,
                   std::function<void(const task_resource_usage&)> on_sample, Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token),
        [this, interval, f = std::move(on_sample)](detail::async_handler<void> h) mutable {
          async_stats_impl(interval, std::move(f), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_stats(std::chrono::milliseconds interval,
                   std::function<void(const task_resource_usage&)> on_sample, diagnostics& diag,
                   Token&& token = {}) {
    return detail::async_initiate_erased<void>(
        std::forward<Token>(token), [this, interval, f = std::move(on_sample),
                                     d = &diag](detail::async_handler<void> h) mutable {
          async_stats_impl(interval, std::move(f), std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_exec(std::string cmd, std::vector<std::string> args, std::chrono::milliseconds timeout,
                  Token&& token = {}) {
    return detail::async_initiate_erased<exec_result>(
        std::forward<Token>(token), [this, c = std::move(cmd), a = std::move(args),
                                     timeout](detail::async_handler<exec_result> h) mutable {
          async_exec_impl(std::move(c), std::move(a), timeout, std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_exec(std::string cmd, std::vector<std::string> args, std::chrono::milliseconds timeout,
                  diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<exec_result>(
        std::forward<Token>(token), [this, c = std::move(cmd), a = std::move(args), timeout,
                                     d = &diag](detail::async_handler<exec_result> h) mutable {
          async_exec_impl(std::move(c), std::move(a), timeout, std::move(h), d);
        });
  }

  template <class Token = default_completion_token>
  requires detail::async_token<Token>
  auto async_exec_streaming(exec_session_options options, Token&& token = {}) {
    return detail::async_initiate_erased<exec_session>(
        std::forward<Token>(token),
        [this, o = std::move(options)](detail::async_handler<exec_session> h) mutable {
          async_exec_streaming_impl(std::move(o), std::move(h), nullptr);
        });
  }
  template <class Token = default_completion_token>
  auto async_exec_streaming(exec_session_options options, diagnostics& diag, Token&& token = {}) {
    return detail::async_initiate_erased<exec_session>(
        std::forward<Token>(token),
        [this, o = std::move(options), d = &diag](detail::async_handler<exec_session> h) mutable {
          async_exec_streaming_impl(std::move(o), std::move(h), d);
        });
  }

 private:
  // Compiled in async_ops.cpp.
  void async_launch_impl(exec_command cmd, detail::async_handler<process_state> h,
                         diagnostics* diag);
  void async_wait_impl(detail::async_handler<process_state> h, diagnostics* diag);
  void async_signal_impl(int signo, detail::async_handler<void> h, diagnostics* diag);
  void async_shutdown_impl(std::string signal_name, std::chrono::milliseconds grace,
                           detail::async_handler<void> h, diagnostics* diag);
  void async_destroy_impl(detail::async_handler<void> h, diagnostics* diag);
  void async_stats_impl(std::chrono::milliseconds interval,
                        std::function<void(const task_resource_usage&)> on_sample,
                        detail::async_handler<void> h, diagnostics* diag);
  void async_exec_impl(std::string cmd, std::vector<std::string> args,
                       std::chrono::milliseconds timeout, detail::async_handler<exec_result> h,
                       diagnostics* diag);
  void async_exec_streaming_impl(exec_session_options options,
                                 detail::async_handler<exec_session> h, diagnostics* diag);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace taskexec
