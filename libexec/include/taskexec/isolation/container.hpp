// Pieces of the container strategy (isolation = "container") that do not
// need a namespace: binary lookup inside the task's root.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/types.hpp"

namespace taskexec {

/// A binary as the task will exec it (inside its root) and where it is on
/// the host now.
struct root_binary {
  std::string in_root;  ///< absolute, inside the task's root: argv[0] for exec
  std::string on_host;  ///< the same file seen from the host
};

/// Find `cmd` for a task whose root is `task_dir`, as Nomad's libcontainer
/// executor does: task_dir/local/<cmd>, task_dir/<cmd> (an absolute `cmd` is
/// taken inside the root), each mount whose task_path holds it (re-rooted to
/// its host_path), then, for a bare name only, usr/local/bin, usr/bin and
/// bin inside the root. Only executable regular files count. A file that
/// exists only on the host is not found:
/// errc::binary_not_found `file <cmd> not found under path <task_dir>`.
result<root_binary> lookup_binary_in_root(std::string_view cmd, const std::string& task_dir,
                                          const std::vector<mount_config>& mounts);

}  // namespace taskexec
