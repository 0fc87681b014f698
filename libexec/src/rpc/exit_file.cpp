// Exit files (taskexec/rpc/exit_file.hpp): the record's JSON, the directory
// opened without following symlinks, the atomic write, the bounded read.
#include "taskexec/rpc/exit_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <cerrno>
#include <utility>

#include "taskexec/codec.hpp"

namespace taskexec::rpc {
namespace json = boost::json;

namespace {

struct fd_closer {
  int fd = -1;
  ~fd_closer() {
    if (fd >= 0)
      ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// Open the directory `path` (absolute) one component at a time, never
// following a symlink; with `create`, missing components are made (0755).
// On success the descriptor (O_RDONLY | O_DIRECTORY: it can be fsynced).
result<int> open_dir_nofollow(const std::string& path, bool create) {
  if (path.empty() || path.front() != '/')
    return make_error(errc::invalid_argument, "\"" + path + "\" is not an absolute path");
  if (path.size() > 4095)
    return make_error(errc::invalid_argument, "directory path too long");
  fd_closer cur{::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (cur.fd < 0)
    return make_system_error(errno, "open /");
  std::string done;
  std::size_t at = 1;
  while (at < path.size()) {
    auto slash = path.find('/', at);
    const std::string part =
        path.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    at = slash == std::string::npos ? path.size() : slash + 1;
    if (part.empty())
      continue;
    if (part == "." || part == "..")
      return make_error(errc::invalid_argument,
                        "\"" + path + "\": \".\" and \"..\" are not allowed in an exit dir");
    done += "/" + part;
    int fd = ::openat(cur.fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.fd, part.c_str(), 0755) != 0 && errno != EEXIST)
        return make_system_error(errno, "mkdir " + done);
      fd = ::openat(cur.fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      const int e = errno;
      if (e == ELOOP || e == ENOTDIR) {
        struct stat st {};
        if (::fstatat(cur.fd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
          return make_error(errc::invalid_argument,
                            "symlink refused: \"" + done + "\" is a symlink");
      }
      return make_system_error(e, "open " + done);
    }
    ::close(cur.fd);
    cur.fd = fd;
  }
  return cur.release();
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

bool valid_exit_file_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128 || id.front() == '.')
    return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '@' || c == ':';
    if (!ok)
      return false;
  }
  return true;
}

std::string to_json(const exit_record& r) {
  json::object o;
  o["task_id"] = r.task_id;
  o["daemon_pid"] = r.daemon_pid;
  o["daemon_start_time"] = r.daemon_start_time;
  o["state"] = json::value_from(r.state);
  return json::serialize(o);
}

result<exit_record> parse_exit_record(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object())
    return make_error(errc::invalid_argument, "exit file is not a JSON object");
  const auto& o = v.as_object();
  for (const auto& [k, _] : o) {
    if (k != "task_id" && k != "daemon_pid" && k != "daemon_start_time" && k != "state")
      return make_error(errc::invalid_argument,
                        "exit file: unknown field \"" + std::string(k) + "\"");
  }
  exit_record r;
  const auto* id = o.if_contains("task_id");
  if (!id || !id->is_string() || !valid_exit_file_id(id->as_string()))
    return make_error(errc::invalid_argument, "exit file: task_id must be a valid task id");
  r.task_id = id->as_string();
  const auto* pid = o.if_contains("daemon_pid");
  if (!pid || !pid->is_int64() || pid->as_int64() <= 0 || pid->as_int64() > 0x3fffffff)
    return make_error(errc::invalid_argument, "exit file: daemon_pid must be a positive integer");
  r.daemon_pid = static_cast<int>(pid->as_int64());
  const auto* t = o.if_contains("daemon_start_time");
  if (!t || !(t->is_int64() || t->is_uint64()) || (t->is_int64() && t->as_int64() < 0))
    return make_error(errc::invalid_argument,
                      "exit file: daemon_start_time must be a non-negative integer");
  r.daemon_start_time = t->to_number<std::uint64_t>();
  const auto* st = o.if_contains("state");
  if (!st)
    return make_error(errc::invalid_argument, "exit file: state is required");
  try {
    r.state = json::value_to<process_state>(*st);
  } catch (const decode_exception& e) {
    return make_error(errc::invalid_argument, std::string("exit file: state: ") + e.what());
  }
  return r;
}

result<exit_dir> exit_dir::open(const std::string& path) {
  auto fd = open_dir_nofollow(path, true);
  if (!fd)
    return make_error(errc::invalid_argument, "exit dir: " + fd.error().message);
  return exit_dir(*fd, path);
}

exit_dir::exit_dir(exit_dir&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}

exit_dir& exit_dir::operator=(exit_dir&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

exit_dir::~exit_dir() {
  if (fd_ >= 0)
    ::close(fd_);
}

std::string exit_dir::file_for(std::string_view task_id) const {
  return (path_.size() > 1 && path_.back() == '/' ? path_ : path_ + "/") + std::string(task_id) +
         ".json";
}

result<void> exit_dir::write(const exit_record& r) const {
  if (!valid_exit_file_id(r.task_id))
    return make_error(errc::invalid_argument,
                      "exit file: \"" + r.task_id + "\" cannot name a file");
  const std::string text = to_json(r) + "\n";
  if (text.size() > max_bytes)
    return make_error(errc::invalid_argument, "exit file: record too large");
  const std::string name = r.task_id + ".json";
  const std::string tmp = "." + name + ".tmp-" + std::to_string(::getpid());
  ::unlinkat(fd_, tmp.c_str(), 0);  // left by an earlier daemon of this pid
  fd_closer f{
      ::openat(fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)};
  if (f.fd < 0)
    return make_system_error(errno, "create " + path_ + "/" + tmp);
  ::fchmod(f.fd, 0644);  // whatever the umask
  std::size_t off = 0;
  while (off < text.size()) {
    auto n = ::write(f.fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;
      ::unlinkat(fd_, tmp.c_str(), 0);
      return make_system_error(e, "write " + path_ + "/" + tmp);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(f.fd) != 0) {
    const int e = errno;
    ::unlinkat(fd_, tmp.c_str(), 0);
    return make_system_error(e, "fsync " + path_ + "/" + tmp);
  }
  if (::renameat(fd_, tmp.c_str(), fd_, name.c_str()) != 0) {
    const int e = errno;
    ::unlinkat(fd_, tmp.c_str(), 0);
    return make_system_error(e, "rename to " + file_for(r.task_id));
  }
  if (::fsync(fd_) != 0)
    return make_system_error(errno, "fsync " + path_);
  return {};
}

result<exit_record> read_exit_file(const std::string& path) {
  if (path.empty() || path.front() != '/' || path.back() == '/')
    return make_error(errc::invalid_argument, "exit file \"" + path + "\" is not an absolute path");
  auto dir = open_dir_nofollow(dir_of(path), false);
  if (!dir)
    return dir.error();
  fd_closer d{*dir};
  const std::string name = path.substr(path.rfind('/') + 1);
  if (name == "." || name == "..")
    return make_error(errc::invalid_argument, "exit file \"" + path + "\" names a directory");
  fd_closer f{::openat(d.fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0)
    return make_system_error(errno, "open " + path);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0)
    return make_system_error(errno, "stat " + path);
  if (!S_ISREG(st.st_mode))
    return make_error(errc::invalid_argument, "exit file \"" + path + "\" is not a regular file");
  std::array<char, exit_dir::max_bytes + 1> buf{};
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = ::read(f.fd, buf.data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return make_system_error(errno, "read " + path);
    if (n == 0)
      break;
    got += static_cast<std::size_t>(n);
  }
  if (got > exit_dir::max_bytes)
    return make_error(errc::invalid_argument, "exit file \"" + path + "\" is larger than " +
                                                  std::to_string(exit_dir::max_bytes) + " bytes");
  auto r = parse_exit_record(std::string_view(buf.data(), got));
  if (!r)
    return make_error(errc::invalid_argument, path + ": " + r.error().message);
  return r;
}

}  // namespace taskexec::rpc
