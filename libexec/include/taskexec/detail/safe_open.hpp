// Opening a path on a task's behalf.
//
// The executor runs as root and opens, creates and chmods files in
// directories the task controls: its task dir, a container's root. A task
// that plants a symlink there ("out.log -> /etc/cron.d/x") must not make
// root write, create or chmod anything outside. Such paths are resolved
// below a descriptor of that directory, one of two ways:
//  - resolve::no_symlinks: no symlink is followed in any component, the
//    last included (ELOOP), and ".." may not climb above the directory
//    (EXDEV); an absolute path is outside (EXDEV). openat2 with
//    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS.
//  - resolve::in_root: the directory is "/": symlinks are followed as a
//    process chrooted there would follow them (an absolute target starts
//    at the directory), ".." stops at it, no procfs magic link is crossed.
//    openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS. For a container's
//    root, whose paths the task resolves the same way from inside.
// Either way the file reached is below the directory (barring a hard link,
// which no path resolution can tell: callers check st_nlink).
//
// Without openat2 (Linux < 5.6: ENOSYS) a walk of openat() calls does the
// same: O_PATH | O_DIRECTORY | O_NOFOLLOW on every directory, O_NOFOLLOW on
// the last component, ".." back to the directory the walk came from (never
// the one the kernel would find now: a directory moved away meanwhile cannot
// lead the walk out), symlinks refused, or in_root read and spliced into the
// rest of the path (at most 40, as the kernel).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "taskexec/error.hpp"

namespace taskexec::detail {

enum class resolve {
  no_symlinks,  ///< below the directory, through no symlink (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
  in_root,      ///< the directory as "/" (RESOLVE_IN_ROOT)
};

/// Which implementation resolves: openat2, falling back to the walk when
/// the kernel has none (the default); or one of them only (for tests).
enum class resolver { automatic, openat2, walk };

/// Open `rel` below `dirfd` with resolve::no_symlinks. `flags` are open(2)
/// flags (O_CLOEXEC is added; O_NOFOLLOW is implied, whatever `flags`
/// say); `mode` is used with O_CREAT. Returns the descriptor, or -errno:
/// ELOOP for a symlink on the way, EXDEV for ".." above `dirfd` or an
/// absolute `rel`, ENAMETOOLONG for a component over NAME_MAX or (walk)
/// more than 128 directories deep, else the error of the open.
/// Async-signal-safe (no allocation, no locks): usable between fork and exec.
int open_beneath_raw(int dirfd, const char* rel, int flags, mode_t mode = 0,
                     resolver impl = resolver::automatic) noexcept;

/// Open `rel` below `dirfd` as `how` says, for the parent side: as
/// open_beneath_raw (and resolve::in_root), with an error whose message
/// names the path as `dir_name`/`rel` (`dir_name`: how the caller names
/// `dirfd`, for messages only). The code is the system error (ELOOP, EXDEV,
/// ENOENT...); the message reads, for example,
///   symlink refused: "/srv/t1/logs" is a symlink
///   outside the task dir: "../x" leads out of "/srv/t1"
///   "/srv/t1/out.log": Permission denied
/// and the caller puts what it was doing in front ("open stdout_path ...: ").
result<int> open_beneath(int dirfd, std::string_view dir_name, std::string_view rel, int flags,
                         mode_t mode = 0, resolve how = resolve::no_symlinks,
                         resolver impl = resolver::automatic);

/// A system error (errno `errno_value`) with `message` as it is (no
/// strerror appended, unlike make_system_error).
error os_error(int errno_value, std::string message);

/// `path` relative to the directory `dir` when it names something below it
/// (or `dir` itself: "."), by its text: `path` as given or lexically
/// normalised ("a/./b/../c"), below `dir` as given or normalised. nullopt
/// when `path` is not below `dir`. Both must be absolute. The remainder is
/// resolved with open_beneath, which refuses a ".." that climbs out.
std::optional<std::string> path_below(std::string_view path, std::string_view dir);

/// Whether `path` is a descriptor link in procfs ("/proc/<pid>/fd/<n>",
/// "/proc/self/fd/<n>"): a symlink that names an open descriptor, not a
/// path someone could plant. Checked on the descriptor `link_fd` (O_PATH |
/// O_NOFOLLOW of `path`): it must be a symlink on procfs in a directory
/// named "fd", with a name of digits only.
bool is_proc_fd_link(int link_fd, std::string_view path);

}  // namespace taskexec::detail
