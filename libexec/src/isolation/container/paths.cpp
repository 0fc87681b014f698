// Paths inside a container's root, on either side of the launch.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "internal.hpp"
#include "taskexec/detail/safe_open.hpp"

namespace taskexec::container_parts {

std::string join(std::string_view a, std::string_view b) {
  std::string out(a);
  while (!out.empty() && out.back() == '/')
    out.pop_back();
  while (!b.empty() && b.front() == '/')
    b.remove_prefix(1);
  out += '/';
  out += b;
  return out;
}

int move_high(int fd) {
  if (fd < 0 || fd >= k_high_fd)
    return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, k_high_fd);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return moved;
}

std::string relative_in_root(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash + 1);
    if (part.empty() || part == ".")
      continue;
    if (part == "..") {
      if (parts.empty())
        return {};
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (auto part : parts) {
    if (!out.empty())
      out += '/';
    out += part;
  }
  return out;
}

// Child side: from here on, async-signal-safe.

void fd_path(char* out, int fd, const char* suffix) noexcept {
  const char prefix[] = "/proc/self/fd/";
  std::size_t n = 0;
  for (const char* c = prefix; *c; ++c)
    out[n++] = *c;
  char digits[12];
  int d = 0;
  unsigned v = static_cast<unsigned>(fd);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (d > 0)
    out[n++] = digits[--d];
  if (suffix) {
    out[n++] = '/';
    for (const char* c = suffix; *c && n + 1 < PATH_MAX; ++c)
      out[n++] = *c;
  }
  out[n] = '\0';
}

// Before Linux 5.6 (no openat2), a walk with O_NOFOLLOW on every component:
// the parent's check of the same path may be stale by now.
int open_beneath(int dirfd, const char* rel) noexcept {
  const int fd = detail::open_beneath_raw(dirfd, rel, O_PATH);
  if (fd < 0) {
    errno = -fd;
    return -1;
  }
  return fd;
}

}  // namespace taskexec::container_parts
