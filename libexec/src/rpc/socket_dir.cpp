#include "taskexec/rpc/socket_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <deque>
#include <utility>
#include <vector>

namespace taskexec::rpc {

namespace {

// Symbolic links followed at most (the kernel's own bound, MAXSYMLINKS).
constexpr int max_links = 40;

class fd_guard {
 public:
  explicit fd_guard(int fd = -1) : fd_(fd) {}
  fd_guard(fd_guard&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  fd_guard& operator=(fd_guard&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~fd_guard() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// A directory walked through: its descriptor and its path as shown in
// messages (the real path: links resolved, no "." or "..").
struct step {
  fd_guard fd;
  std::string shown;
};

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string mode_text(mode_t m) {
  char b[8];
  std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m & 07777));
  return b;
}

std::deque<std::string> components(const std::string& path) {
  std::deque<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    const auto slash = path.find('/', i);
    const auto end = slash == std::string::npos ? path.size() : slash;
    if (end > i && path.compare(i, end - i, ".") != 0)
      out.push_back(path.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

std::string who(uid_t owner) {
  return owner == 0 ? "root" : "root or uid " + std::to_string(owner);
}

std::string writers(mode_t m) {
  if ((m & S_IWGRP) && (m & S_IWOTH))
    return "group and others";
  return (m & S_IWGRP) ? "group" : "others";
}

// An ancestor: owned by root or us; writable by no one else unless sticky.
result<void> check_ancestor(const struct stat& st, const std::string& shown, uid_t owner) {
  if (st.st_uid != 0 && st.st_uid != owner)
    return make_error(errc::permission_denied,
                      "socket directory \"" + shown + "\" is owned by uid " +
                          std::to_string(st.st_uid) + " (mode " + mode_text(st.st_mode) +
                          "): every directory down to the socket must be owned by " + who(owner));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
    return make_error(errc::permission_denied,
                      "socket directory \"" + shown + "\" (mode " + mode_text(st.st_mode) +
                          ") is writable by " + writers(st.st_mode) +
                          " without the sticky bit: they could replace the socket");
  return {};
}

// The socket's own directory: ours, and writable by us alone.
result<void> check_own(const struct stat& st, const std::string& shown, uid_t owner) {
  if (st.st_uid != owner)
    return make_error(errc::permission_denied,
                      "socket directory \"" + shown + "\" is owned by uid " +
                          std::to_string(st.st_uid) + " (mode " + mode_text(st.st_mode) +
                          "): the socket's own directory must be owned by " +
                          (owner == 0 ? std::string("root") : "uid " + std::to_string(owner)));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return make_error(errc::permission_denied,
                      "socket directory \"" + shown + "\" (mode " + mode_text(st.st_mode) +
                          ") is writable by " + writers(st.st_mode) +
                          ": the socket's own directory must be writable by its owner only");
  return {};
}

result<step> open_checked(int parent, const std::string& name, const std::string& shown,
                          uid_t owner) {
  step s{fd_guard(::openat(parent, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)),
         shown};
  if (s.fd.get() < 0)
    return make_system_error(errno, "socket directory \"" + shown + "\"");
  struct stat st {};
  if (::fstat(s.fd.get(), &st) != 0)
    return make_system_error(errno, "socket directory \"" + shown + "\"");
  if (auto ok = check_ancestor(st, shown, owner); !ok)
    return ok.error();
  return s;
}

}  // namespace

result<void> prepare_socket_directory(const std::string& socket_path, uid_t owner,
                                      mode_t create_mode) {
  std::string path = socket_path;
  if (path.empty() || path.back() == '/')
    return make_error(errc::invalid_argument, "socket path \"" + path + "\" names no file");
  if (path.front() != '/') {
    std::vector<char> cwd(4096);
    if (!::getcwd(cwd.data(), cwd.size()))
      return make_system_error(errno, "getcwd");
    path = std::string(cwd.data()) + "/" + path;
  }
  std::deque<std::string> todo = components(path.substr(0, path.rfind('/')));

  std::vector<step> walked;
  auto root = open_checked(AT_FDCWD, "/", "/", owner);
  if (!root)
    return root.error();
  walked.push_back(std::move(*root));
  int links = 0;
  while (!todo.empty()) {
    const std::string name = std::move(todo.front());
    todo.pop_front();
    if (name == "..") {
      if (walked.size() > 1)
        walked.pop_back();
      continue;
    }
    const int dir = walked.back().fd.get();
    const std::string shown = join(walked.back().shown, name);
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT)
        return make_system_error(errno, "socket directory \"" + shown + "\"");
      // Missing: made here, in a directory only root and we can change (or
      // a sticky one, where no one else can take the name from us once made).
      if (::mkdirat(dir, name.c_str(), create_mode) != 0 && errno != EEXIST)
        return make_system_error(errno, "create directory \"" + shown + "\"");
      if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return make_system_error(errno, "socket directory \"" + shown + "\"");
      // The umask took bits away; what someone else made is refused below.
      if (S_ISDIR(st.st_mode) && st.st_uid == owner && (st.st_mode & 07777) != create_mode &&
          ::fchmodat(dir, name.c_str(), create_mode, 0) != 0)
        return make_system_error(errno, "chmod \"" + shown + "\"");
    }
    if (S_ISLNK(st.st_mode)) {
      if (st.st_uid != 0 && st.st_uid != owner)
        return make_error(errc::permission_denied,
                          "socket directory \"" + shown + "\" is a symbolic link owned by uid " +
                              std::to_string(st.st_uid) +
                              ": links on the way to the socket must be owned by " + who(owner));
      if (++links > max_links)
        return make_system_error(ELOOP, "socket directory \"" + shown + "\"");
      std::vector<char> target(4096);
      const ssize_t n = ::readlinkat(dir, name.c_str(), target.data(), target.size());
      if (n < 0)
        return make_system_error(errno, "socket directory \"" + shown + "\"");
      if (static_cast<std::size_t>(n) == target.size())
        return make_system_error(ENAMETOOLONG, "socket directory \"" + shown + "\"");
      const std::string to(target.data(), static_cast<std::size_t>(n));
      auto more = components(to);
      todo.insert(todo.begin(), more.begin(), more.end());
      if (!to.empty() && to.front() == '/')
        walked.erase(walked.begin() + 1, walked.end());  // an absolute link starts from the root
      continue;
    }
    if (!S_ISDIR(st.st_mode))
      return make_error(errc::invalid_argument,
                        "socket directory \"" + shown + "\" is not a directory");
    auto next = open_checked(dir, name, shown, owner);
    if (!next)
      return next.error();
    walked.push_back(std::move(*next));
  }
  struct stat own {};
  if (::fstat(walked.back().fd.get(), &own) != 0)
    return make_system_error(errno, "socket directory \"" + walked.back().shown + "\"");
  return check_own(own, walked.back().shown, owner);
}

}  // namespace taskexec::rpc
