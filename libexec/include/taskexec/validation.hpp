// Checks of an exec_command that do not depend on the machine: shapes,
// ranges, and whether the isolation stack honours every field that is set.
#pragma once

#include <string_view>

#include "taskexec/error.hpp"
#include "taskexec/isolation/strategy.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// errc::invalid_argument naming the field for a malformed value (empty cmd,
/// an env entry without '=', a NUL byte, oom_score_adj outside -1000..1000,
/// negative resources, unknown modes); errc::unsupported naming the field and
/// the isolation when a set field is not among `supported`.
result<void> validate_command(const exec_command& cmd, isolation_features supported,
                              std::string_view isolation_name);

}  // namespace taskexec
