// A container's network namespace: the host's, or the one at
// network_isolation.path (checked to be one), joined with setns.
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "internal.hpp"

namespace taskexec::container_parts {

result<void> validate_network(const exec_command& cmd) {
  if (cmd.network_isolation && cmd.network_isolation->mode != "host" &&
      !cmd.network_isolation->mode.empty() && cmd.network_isolation->path.empty()) {
    return make_error(errc::invalid_argument, "network_isolation.path is empty for mode \"" +
                                                  cmd.network_isolation->mode + "\"");
  }
  return {};
}

result<void> prepare_network(const exec_command& cmd, prepared& p) {
  if (cmd.network_isolation && !cmd.network_isolation->path.empty() &&
      cmd.network_isolation->mode != "host") {
    const auto& path = cmd.network_isolation->path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return make_system_error(errno, "network namespace \"" + path + "\"");
    p.netns_fd = fd;
    if (::ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
      return make_error(errc::invalid_argument,
                        "network_isolation.path \"" + path + "\" is not a network namespace");
    }
  }
  return {};
}

bool join_network(const prepared& p, child_failure& f) noexcept {
  if (p.netns_fd >= 0 && ::setns(p.netns_fd, CLONE_NEWNET) != 0)
    return fail_step(f, "setns network namespace");
  return true;
}

}  // namespace taskexec::container_parts
