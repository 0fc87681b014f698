// What taskexecd needs of systemd, without libsystemd: socket activation
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES: sd_listen_fds(3)), readiness
// notification (NOTIFY_SOCKET: sd_notify(3), the datagram written here),
// and a cgroup of the daemon's own to delegate task cgroups below
// (--cgroup-parent self). docs/operations.md says how the units use them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "taskexec/cgroups.hpp"
#include "taskexec/error.hpp"

namespace taskexec::systemd {

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
constexpr int listen_fds_start = 3;

/// The listening descriptor passed by socket activation, from the values of
/// LISTEN_PID and LISTEN_FDS (null: unset) and our pid: nullopt when not
/// activated (LISTEN_PID unset, or naming another process: the variables
/// were inherited); errc::invalid_argument when LISTEN_FDS is not a number
/// or passes other than exactly one descriptor (one task, one socket).
result<std::optional<int>> listen_fd(const char* listen_pid, const char* listen_fds, int own_pid);

/// `fd` must be a listening (SO_ACCEPTCONN) AF_UNIX stream socket bound to a
/// path: that path. errc::invalid_argument naming what is wrong otherwise.
result<std::string> check_listener(int fd);

/// Send `state` ("READY=1", "STOPPING=1", ...) as one datagram to the
/// AF_UNIX socket `notify_socket` names (a path, or "@name" for an abstract
/// socket). False when `notify_socket` is null or empty (not under
/// systemd, or not Type=notify); an error when the send fails.
result<bool> notify(const char* notify_socket, std::string_view state);

/// The cgroup paths of a /proc/<pid>/cgroup text: for "0::" (the unified
/// tree) key "", for a v1 hierarchy its controllers as listed
/// ("cpu,cpuacct", "name=systemd"). Lines that do not parse are skipped.
std::optional<std::string> own_cgroup(std::string_view proc_cgroup, std::string_view key);

/// --cgroup-parent self: the daemon's own cgroup (the unified tree's path
/// on v2 and hybrid hosts, name=systemd's on v1), as a parent relative to
/// each hierarchy's root. v2's no-internal-processes rule forbids a cgroup
/// with processes to hand controllers to children, so the daemon first
/// moves itself to the leaf <own>/<leaf> in the unified tree and in every
/// v1 hierarchy where it sits at <own> too; task cgroups then go to
/// <own>/<task>. Errors: no cgroupfs, the daemon in the root cgroup (nothing
/// was delegated), a move that fails (named).
result<std::string> enter_own_leaf(const cgroup::layout& layout, std::string_view proc_cgroup,
                                   std::string_view leaf = "daemon");

/// A --cgroup-parent PATH: relative to each hierarchy's root (a leading
/// '/' is dropped), components of [A-Za-z0-9._@:-] (no "." or ".."), at
/// most 512 bytes. The relative path, or errc::invalid_argument.
result<std::string> cgroup_parent_path(std::string_view path);

}  // namespace taskexec::systemd
