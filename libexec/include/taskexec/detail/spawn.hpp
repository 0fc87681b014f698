// The launcher: clone(CLONE_VM | CLONE_VFORK) on a private stack, the same
// technique as posix_spawn, so a launch costs no page-table copy of the
// executor. The child runs each strategy's `in_child`, closes every other
// descriptor (close_range), restores default signal dispositions and an empty
// mask, and execs. Failure of any child step or of exec comes back through a
// CLOEXEC pipe as {errno, step}.
//
// It follows Boost.Process v2's launcher protocol (initializers with on_setup
// / on_exec_setup / on_error / on_success hooks) with strategies as the
// initializers; Boost's stock launchers are not used because they call
// io_context::notify_fork in the child (allocation and locks between fork and
// exec) and create a pidfd per process that the reaper does not need.
#pragma once

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

}  // namespace taskexec::detail
