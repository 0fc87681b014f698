// Capabilities for the container strategy, by name, through libcap.
//
// Names are accepted as "NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE" or
// "net_bind_service" and returned as "NET_BIND_SERVICE". Masks are bit sets
// over capability numbers, as /proc/<pid>/status prints them (CapEff etc.).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "taskexec/error.hpp"

namespace taskexec {

/// Every capability the running kernel supports, minus NET_RAW unless
/// `allow_net_raw` (Nomad's SupportedCaps).
std::vector<std::string> supported_caps(bool allow_net_raw);

/// The seed's default for a task that is not root: AUDIT_WRITE, CHOWN,
/// DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP,
/// SETGID, SETPCAP, SETUID, SYS_CHROOT.
const std::vector<std::string>& default_caps();

/// The mask of `names`; errc::invalid_argument names an unknown one
/// (`unknown capability "FLY"`).
result<std::uint64_t> capability_mask(const std::vector<std::string>& names);

/// The isolation mode in force: the task's when set, else the plugin's
/// (Nomad's isolation_mode for default_pid_mode and default_ipc_mode).
std::string_view isolation_mode(std::string_view plugin, std::string_view task);

}  // namespace taskexec
