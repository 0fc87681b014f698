// The directory of the daemon's socket, made safe before listening.
//
// A client finds the daemon by the socket's path. Whoever can rename a
// directory on that path, or write to one, can put a socket of their own in
// the daemon's place, and a client (root, sending secrets in a Launch's
// environment) would talk to it. So every directory from `/` down to the
// socket's must be one that only root and the daemon's user can change:
//
//  - each directory on the way (the ancestors) is owned by root or `owner`,
//    and is writable by neither group nor others, unless it has the sticky
//    bit (like /tmp, 1777): there others may add entries but cannot rename
//    or remove ours;
//  - the socket's own directory is owned by `owner` and writable by neither
//    group nor others, sticky or not (every file in it is the daemon's);
//  - a symbolic link on the way is followed only when it is owned by root or
//    `owner` (in a sticky directory anyone could plant one); its target is
//    then checked like the rest (Debian's /var/run -> /run is fine);
//  - missing directories are created with `create_mode` (exactly, whatever
//    the umask), in a directory already checked.
//
// The path is walked one component at a time from `/` (a relative path from
// the working directory), each directory opened with O_PATH | O_NOFOLLOW
// below the one before, so what is checked is what the kernel will resolve.
#pragma once

#include <sys/types.h>

#include <string>

#include "taskexec/error.hpp"

namespace taskexec::rpc {

/// Check (and create) the directories of `socket_path` as above. Errors:
/// errc::permission_denied naming the directory, its owner or mode and the
/// rule it breaks, e.g. `socket directory "/srv/x" is owned by uid 65534
/// (mode 0755): every directory down to the socket must be owned by root`;
/// errc::invalid_argument for a component that is not a directory; a system
/// error for what the kernel refuses (ELOOP after 40 links, EACCES, ...).
result<void> prepare_socket_directory(const std::string& socket_path, uid_t owner,
                                      mode_t create_mode);

}  // namespace taskexec::rpc
