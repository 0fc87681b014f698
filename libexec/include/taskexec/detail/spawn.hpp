// spawn: launch a prepared plan through the isolation strategies, with
// clone_launcher (a Boost.Process v2 launcher, see clone_launcher.hpp) and
// the strategies as one v2 initializer.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "taskexec/error.hpp"
#include "taskexec/isolation/strategy.hpp"

namespace taskexec::detail {

/// Launch `plan` through `strategies`. On success returns the pid; the child
/// has exec'd. On a child-side failure the child has exited and its pid is
/// returned in `failed_pid` so the caller can claim it from the reaper.
result<int> spawn(const launch_plan& plan,
                  std::span<const std::unique_ptr<isolation_strategy>> strategies, int& failed_pid);

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
