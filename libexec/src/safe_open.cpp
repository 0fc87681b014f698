#include "taskexec/detail/safe_open.hpp"

#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <vector>

namespace taskexec::detail {
namespace {

// Directories the no_symlinks walk holds open at once (its ".." stack).
constexpr int k_max_depth = 128;
// Symlinks the in_root walk follows, as the kernel's MAXSYMLINKS.
constexpr int k_max_links = 40;

bool is_symlink_at(int dirfd, const char* name) noexcept {
  struct stat st {};
  return ::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

// openat2, retried on EAGAIN (a rename raced with the resolution of ".."
// under RESOLVE_BENEATH or RESOLVE_IN_ROOT: the kernel asks for a retry)
// and EINTR. -errno on failure.
int call_openat2(int dirfd, const char* rel, int flags, mode_t mode,
                 std::uint64_t resolve_flags) noexcept {
  open_how how{};
  // O_NOFOLLOW would make O_PATH return the symlink itself instead of ELOOP.
  how.flags = static_cast<std::uint64_t>((flags & ~O_NOFOLLOW) | O_CLOEXEC);
  // openat2 refuses a mode without O_CREAT or O_TMPFILE (EINVAL).
  const bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
  how.mode = creates ? mode : 0;
  how.resolve = resolve_flags;
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
    if (fd >= 0)
      return static_cast<int>(fd);
    if ((errno == EAGAIN || errno == EINTR) && attempt < 16)
      continue;
    return -errno;
  }
}

// The no_symlinks walk. `stack` holds the directories below `dirfd` the
// walk went through (".." pops one); nothing is allocated.
int walk_beneath(int dirfd, const char* rel, int flags, mode_t mode) noexcept {
  if (rel[0] == '/')
    return -EXDEV;
  if (rel[0] == '\0')
    return -ENOENT;
  int stack[k_max_depth];
  int depth = 0;
  auto cur = [&]() noexcept { return depth == 0 ? dirfd : stack[depth - 1]; };
  auto unwind = [&](int rc) noexcept {
    while (depth > 0)
      ::close(stack[--depth]);
    return rc;
  };
  char name[NAME_MAX + 1];
  const char* p = rel;
  while (true) {
    std::size_t n = 0;
    for (; *p != '\0' && *p != '/'; ++p) {
      if (n == NAME_MAX)
        return unwind(-ENAMETOOLONG);
      name[n++] = *p;
    }
    name[n] = '\0';
    bool slash = false;
    for (; *p == '/'; ++p)
      slash = true;
    const bool last = *p == '\0';
    const bool dot = n == 1 && name[0] == '.';
    const bool dotdot = n == 2 && name[0] == '.' && name[1] == '.';
    if (dotdot) {
      if (depth == 0)
        return unwind(-EXDEV);
      ::close(stack[--depth]);
    }
    if (dot || dotdot) {
      if (!last)
        continue;
      // The path names a directory the walk holds: open that one.
      const int fd = ::openat(cur(), ".", flags | O_CLOEXEC, mode);
      return unwind(fd >= 0 ? fd : -errno);
    }
    if (!last) {
      const int fd = ::openat(cur(), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        // O_PATH | O_NOFOLLOW opens a symlink itself; O_DIRECTORY then
        // fails with ENOTDIR: say what it was.
        const int e = errno == ENOTDIR && is_symlink_at(cur(), name) ? ELOOP : errno;
        return unwind(-e);
      }
      if (depth == k_max_depth) {
        ::close(fd);
        return unwind(-ENAMETOOLONG);
      }
      stack[depth++] = fd;
      continue;
    }
    const int fd =
        ::openat(cur(), name, flags | O_NOFOLLOW | O_CLOEXEC | (slash ? O_DIRECTORY : 0), mode);
    if (fd < 0) {
      // O_DIRECTORY (a trailing "/") on a symlink fails with ENOTDIR.
      const int e = errno == ENOTDIR && is_symlink_at(cur(), name) ? ELOOP : errno;
      return unwind(-e);
    }
    if ((flags & O_PATH) != 0) {
      // O_PATH | O_NOFOLLOW on a symlink gives the symlink: refused too.
      struct stat st {};
      if (::fstat(fd, &st) != 0 || S_ISLNK(st.st_mode)) {
        const int e = S_ISLNK(st.st_mode) ? ELOOP : errno;
        ::close(fd);
        return unwind(-e);
      }
    }
    return unwind(fd);
  }
}

std::deque<std::string> components(std::string_view path) {
  std::deque<std::string> out;
  while (!path.empty()) {
    const auto slash = path.find('/');
    const auto part = path.substr(0, slash);
    if (!part.empty() && part != ".")
      out.emplace_back(part);
    if (slash == std::string_view::npos)
      break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

// The in_root walk: as walk_beneath, but a symlink is read and its target
// put in front of what is left of the path (an absolute one from `dirfd`),
// and ".." at `dirfd` stays there. Parent side only (it allocates).
int walk_in_root(int dirfd, std::string_view rel, int flags, mode_t mode) {
  std::vector<int> stack;
  auto cur = [&] { return stack.empty() ? dirfd : stack.back(); };
  auto unwind = [&](int rc) {
    for (int fd : stack)
      ::close(fd);
    return rc;
  };
  auto todo = components(rel);
  const bool want_dir = !rel.empty() && rel.back() == '/';
  if (rel.empty())
    return -ENOENT;
  int links = 0;
  // Replace the symlink `name` in the current directory by its target.
  auto splice = [&](const std::string& name) -> int {
    if (++links > k_max_links)
      return -ELOOP;
    char target[PATH_MAX];
    const ssize_t n = ::readlinkat(cur(), name.c_str(), target, sizeof target);
    if (n < 0)
      return -errno;
    if (static_cast<std::size_t>(n) == sizeof target)
      return -ENAMETOOLONG;
    const std::string_view t(target, static_cast<std::size_t>(n));
    if (t.empty())
      return -ENOENT;
    if (t.front() == '/') {
      for (int fd : stack)
        ::close(fd);
      stack.clear();
    }
    auto parts = components(t);
    todo.insert(todo.begin(), parts.begin(), parts.end());
    return 0;
  };
  while (true) {
    if (todo.empty()) {
      // The path ends at a directory the walk holds ("/", "a/.."): that one.
      const int fd = ::openat(cur(), ".", flags | O_CLOEXEC, mode);
      return unwind(fd >= 0 ? fd : -errno);
    }
    const std::string name = std::move(todo.front());
    todo.pop_front();
    if (name == "..") {
      if (!stack.empty()) {
        ::close(stack.back());
        stack.pop_back();
      }
      continue;
    }
    if (!todo.empty()) {
      const int fd = ::openat(cur(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        stack.push_back(fd);
        continue;
      }
      const int e = errno;
      if (e != ENOTDIR || !is_symlink_at(cur(), name.c_str()))
        return unwind(-e);
      if (int rc = splice(name); rc < 0)
        return unwind(rc);
      continue;
    }
    int fd = ::openat(cur(), name.c_str(),
                      flags | O_NOFOLLOW | O_CLOEXEC | (want_dir ? O_DIRECTORY : 0), mode);
    if (fd >= 0 && (flags & O_PATH) != 0) {
      struct stat st {};
      if (::fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
        ::close(fd);
        fd = -1;
        errno = ELOOP;
      }
    }
    if (fd >= 0)
      return unwind(fd);
    // A symlink: ELOOP (O_NOFOLLOW), or ENOTDIR with O_DIRECTORY. O_EXCL's
    // EEXIST is the kernel's answer too: it never follows a last symlink.
    const int e = errno;
    if ((e != ELOOP && e != ENOTDIR) || !is_symlink_at(cur(), name.c_str()))
      return unwind(-e);
    if (int rc = splice(name); rc < 0)
      return unwind(rc);
  }
}

std::string join(std::string_view dir, std::string_view rel) {
  std::string out(dir);
  while (out.size() > 1 && out.back() == '/')
    out.pop_back();
  if (out.empty() || out.back() != '/')
    out.push_back('/');
  out.append(rel);
  return out;
}

// The first component of `rel` below `dirfd` that is a symlink, as
// `dir_name`/prefix; empty when none is (any more). For messages only.
std::string first_symlink(int dirfd, std::string_view dir_name, std::string_view rel) {
  std::vector<int> stack;
  std::vector<std::string> shown;
  auto cur = [&] { return stack.empty() ? dirfd : stack.back(); };
  std::string found;
  for (const auto& part : components(rel)) {
    if (part == "..") {
      if (stack.empty())
        break;
      ::close(stack.back());
      stack.pop_back();
      shown.pop_back();
      continue;
    }
    const int fd = ::openat(cur(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      break;
    struct stat st {};
    const bool ok = ::fstat(fd, &st) == 0;
    shown.push_back(part);
    if (ok && S_ISLNK(st.st_mode)) {
      ::close(fd);
      found = std::string(dir_name);
      for (const auto& s : shown)
        found = join(found, s);
      break;
    }
    stack.push_back(fd);
    if (!ok || !S_ISDIR(st.st_mode))
      break;
  }
  for (int fd : stack)
    ::close(fd);
  return found;
}

}  // namespace

error os_error(int errno_value, std::string message) {
  return {boost::system::error_code(errno_value, boost::system::system_category()),
          std::move(message)};
}

int open_beneath_raw(int dirfd, const char* rel, int flags, mode_t mode, resolver impl) noexcept {
  if (impl != resolver::walk) {
    const int fd = call_openat2(dirfd, rel, flags, mode,
                                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (fd != -ENOSYS || impl == resolver::openat2)
      return fd;
  }
  return walk_beneath(dirfd, rel, flags & ~O_NOFOLLOW, mode);
}

result<int> open_beneath(int dirfd, std::string_view dir_name, std::string_view rel, int flags,
                         mode_t mode, resolve how, resolver impl) {
  const std::string r(rel);
  if (r.find('\0') != std::string::npos)
    return os_error(EINVAL, "\"" + join(dir_name, "...") + "\": a NUL byte in the path");
  int fd;
  if (how == resolve::no_symlinks) {
    fd = open_beneath_raw(dirfd, r.c_str(), flags, mode, impl);
  } else {
    fd = impl == resolver::walk
             ? -ENOSYS
             : call_openat2(dirfd, r.c_str(), flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (fd == -ENOSYS && impl != resolver::openat2)
      fd = walk_in_root(dirfd, r, flags & ~O_NOFOLLOW, mode);
  }
  if (fd >= 0)
    return fd;
  const int e = -fd;
  const std::string shown = join(dir_name, rel);
  if (e == ELOOP && how == resolve::no_symlinks) {
    const auto link = first_symlink(dirfd, dir_name, rel);
    return os_error(e, link.empty() ? "symlink refused on the way to \"" + shown + "\""
                                    : "symlink refused: \"" + link + "\" is a symlink");
  }
  if (e == EXDEV) {
    return os_error(
        e, "outside the task dir: \"" + r + "\" leads out of \"" + std::string(dir_name) + "\"");
  }
  return os_error(e, "\"" + shown + "\": " + std::strerror(e));
}

std::optional<std::string> path_below(std::string_view path, std::string_view dir) {
  namespace fs = std::filesystem;
  if (path.empty() || dir.empty() || path.front() != '/' || dir.front() != '/')
    return std::nullopt;
  auto below = [](std::string_view p, std::string d) -> std::optional<std::string> {
    while (d.size() > 1 && d.back() == '/')
      d.pop_back();
    if (d == "/")
      return std::string(p.substr(1).empty() ? "." : p.substr(1));
    if (p == d)
      return std::string(".");
    if (p.size() > d.size() && p.compare(0, d.size(), d) == 0 && p[d.size()] == '/') {
      auto rest = p.substr(d.size() + 1);
      return std::string(rest.empty() ? "." : rest);
    }
    return std::nullopt;
  };
  const auto norm_dir = fs::path(dir).lexically_normal().string();
  for (const std::string& d : {std::string(dir), norm_dir}) {
    if (auto r = below(path, d))
      return r;
  }
  // Normalised, a trailing "/" stays ("a/" -> "a/"): harmless below.
  const auto norm_path = fs::path(path).lexically_normal().string();
  for (const std::string& d : {std::string(dir), norm_dir}) {
    if (auto r = below(norm_path, d))
      return r;
  }
  return std::nullopt;
}

bool is_proc_fd_link(int link_fd, std::string_view path) {
  const auto slash = path.rfind('/');
  if (slash == std::string_view::npos || slash + 1 == path.size())
    return false;
  const auto name = path.substr(slash + 1);
  for (char c : name) {
    if (c < '0' || c > '9')
      return false;
  }
  const auto parent = path.substr(0, slash);
  if (parent.size() < 3 || parent.substr(parent.size() - 3) != "/fd")
    return false;
  struct stat st {};
  struct statfs sf {};
  return ::fstat(link_fd, &st) == 0 && S_ISLNK(st.st_mode) && ::fstatfs(link_fd, &sf) == 0 &&
         sf.f_type == PROC_SUPER_MAGIC;
}

}  // namespace taskexec::detail
