// How a task's isolation is chosen: by name, through the registry the
// protocol uses ("host", "container"), or by a factory an embedding program
// gives the executor (task_executor_options::isolation), which returns a
// stack of strategy objects of its own (classes derived from
// isolation_strategy, strategy.hpp), built-in ones among them or not.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/isolation/strategy.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// What the strategies need to know of the executor.
struct isolation_context {
  std::string task_id;
  cgroup_options cgroups;
  std::string hostname;  ///< of a container task
};

/// The strategies of one task, in the order their hooks run.
using isolation_stack = std::vector<std::unique_ptr<isolation_strategy>>;

/// Builds a task's stack at launch. Called once per launch, on the thread
/// that runs the launch, before anything is prepared; an error fails the
/// launch with that error. The executor owns the stack from then on and
/// calls every hook of strategy.hpp on it, teardown last.
using isolation_factory =
    std::function<result<isolation_stack>(const exec_command& cmd, const isolation_context& ctx)>;

/// The registry the protocol uses: the stack for `cmd.isolation` ("" and
/// "host": host only), with the cgroup strategy first when resource_limits
/// or basic_process_cgroup is set; "container": cgroup + container.
/// errc::unsupported for a name it does not have. An embedder's factory may
/// call it and add strategies of its own around what it returns.
result<isolation_stack> make_isolation(const exec_command& cmd, const isolation_context& ctx);

}  // namespace taskexec
