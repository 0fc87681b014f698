// spawn: launch a prepared plan through the isolation strategies, with
// clone_launcher (a Boost.Process v2 launcher, see clone_launcher.hpp) and
// the strategies as one v2 initializer.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/error.hpp"
#include "taskexec/isolation/strategy.hpp"

namespace taskexec::detail {

/// How long a launch that awaits a report (a container's: taskexec-init
/// reports once the task runs) waits for it by default.
inline constexpr std::chrono::milliseconds default_report_timeout{30000};

/// A child that spawn() started.
struct spawned_child {
  int pid = -1;
  /// The raw wait status when the child was reaped while its launch awaited
  /// the report (it may end as soon as what it started does). Hand the exit
  /// on with watch_spawned(), which covers both cases.
  std::optional<int> exit_status;
};

/// Launch `plan` through `strategies` and return once the child runs. The
/// clone holds the calling thread only until the child has exec'd
/// (CLONE_VFORK); a plan with a report_fd (a container's taskexec-init) is
/// then waited for on the io_context, never blocking its thread: until the
/// report pipe is readable (a failure record, or EOF: the task runs), up to
/// `report_timeout`, until `abort` (may be null) is notified, or until the
/// awaiting coroutine is cancelled. From the clone on, `reaper` watches the
/// child: nothing else reaps it or counts it as an orphan, and its pid
/// cannot be reused while the launch waits.
///
/// On success: the pid; take the exit over with watch_spawned(). On
/// failure, with the child's pid in `*failed_pid` (when not null) when
/// there was one: errc::launch_failed naming the child's step and errno;
/// errc::timed_out ("launch timed out: no report within N ms after exec");
/// errc::operation_canceled (`abort` notified, or the awaiting coroutine
/// cancelled: no exception is thrown); or a system error. A child of a failed launch has exited or
/// been SIGKILLed (it is gone or a zombie, so a cgroup it was in empties)
/// and stays claimed, so the reaper reaps it as nobody's orphan. `plan`,
/// `strategies` and `abort` must outlive the call.
boost::asio::awaitable<result<spawned_child>> spawn(
    child_reaper& reaper, const launch_plan& plan,
    std::span<const std::unique_ptr<isolation_strategy>> strategies,
    std::chrono::milliseconds report_timeout = default_report_timeout, condition* abort = nullptr,
    int* failed_pid = nullptr);

/// Deliver the exit of a child spawn() returned to `handler`: watched by
/// `reaper` (replacing the launch's own watch), or, when it was reaped
/// already, posted to the reaper's executor.
void watch_spawned(child_reaper& reaper, const spawned_child& child,
                   child_reaper::exit_handler handler);

/// Take back a child spawn() returned, when its launch is given up after
/// all (its executor went away meanwhile): SIGKILL it unless it was reaped,
/// and wait until it is gone (WNOWAIT: the reaper reaps it through the
/// launch's own watch, which drops the status). Call it instead of
/// watch_spawned(), before returning to the io_context.
void kill_spawned(const spawned_child& child) noexcept;

/// Close every descriptor not in the sorted, non-negative `keep` list
/// (close_range; a loop on kernels before 5.9). Async-signal-safe.
bool close_fds_except(const int* keep, std::size_t n) noexcept;

/// Set every signal's disposition to SIG_DFL before an exec, through the
/// system call (no library's sigaction wrapper sees it). Async-signal-safe.
void default_signal_dispositions() noexcept;

/// End a child before (or instead of) its exec: the exit_group system call.
/// Not _exit(), which a sanitizer's runtime intercepts to finalize itself and
/// flush stdio, printing in the child what the parent had buffered.
[[noreturn]] void child_exit(int code) noexcept;

}  // namespace taskexec::detail
