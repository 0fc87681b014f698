#include "systemd.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

namespace taskexec::systemd {

namespace {

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc{} && p == s.data() + s.size();
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (;;) {
    auto n = s.find(sep, at);
    out.emplace_back(s.substr(at, n == std::string_view::npos ? std::string_view::npos : n - at));
    if (n == std::string_view::npos)
      break;
    at = n + 1;
  }
  return out;
}

struct cgroup_line {
  std::string id, controllers, path;
};

std::vector<cgroup_line> parse_proc_cgroup(std::string_view text) {
  std::vector<cgroup_line> out;
  for (const auto& line : split(text, '\n')) {
    auto first = line.find(':');
    auto second = first == std::string::npos ? std::string::npos : line.find(':', first + 1);
    if (second == std::string::npos)
      continue;
    cgroup_line l{line.substr(0, first), line.substr(first + 1, second - first - 1),
                  line.substr(second + 1)};
    if (l.path.empty() || l.path.front() != '/')
      continue;
    out.push_back(std::move(l));
  }
  return out;
}

bool valid_component(std::string_view c) {
  if (c.empty() || c == "." || c == ".." || c.size() > 255)
    return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-' || ch == '@' || ch == ':' || ch == '\\';
  });
}

// Move this process into <base>/<rel>/<leaf> (made when missing).
result<void> move_into(const std::string& base, const std::string& rel, std::string_view leaf) {
  const std::string above = base + "/" + rel;
  const std::string dir = above + "/" + std::string(leaf);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return make_system_error(errno, "mkdir " + dir);
  // v1 cpuset: a new cgroup has no cpus and mems and takes no process until
  // they are set: those of the level above.
  for (const char* f : {"/cpuset.cpus", "/cpuset.mems"}) {
    auto mine = cgroup::read_file(dir + f);
    if (mine && (mine->empty() || *mine == "\n")) {
      if (auto theirs = cgroup::read_file(above + f)) {
        while (!theirs->empty() && theirs->back() == '\n')
          theirs->pop_back();
        if (auto w = cgroup::write_file(dir + f, *theirs); !w)
          return w.error();
      }
    }
  }
  return cgroup::write_file(dir + "/cgroup.procs", std::to_string(::getpid()));
}

}  // namespace

result<std::optional<int>> listen_fd(const char* listen_pid, const char* listen_fds, int own_pid) {
  if (!listen_pid || !*listen_pid)
    return std::optional<int>{};
  int pid = 0;
  if (!parse_number(std::string_view(listen_pid), pid) || pid != own_pid)
    return std::optional<int>{};  // meant for another process
  int n = 0;
  if (!listen_fds || !parse_number(std::string_view(listen_fds), n) || n < 0)
    return make_error(errc::invalid_argument, "LISTEN_FDS is not a number");
  if (n != 1)
    return make_error(errc::invalid_argument,
                      "socket activation passed " + std::to_string(n) +
                          " descriptors; taskexecd serves one task on one socket");
  return std::optional<int>{listen_fds_start};
}

result<std::string> check_listener(int fd) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return make_system_error(errno, "inherited descriptor " + std::to_string(fd));
  sockaddr_un addr{};
  socklen_t alen = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0)
    return make_system_error(errno, "getsockname of inherited descriptor");
  if (addr.sun_family != AF_UNIX || type != SOCK_STREAM)
    return make_error(errc::invalid_argument, "inherited descriptor " + std::to_string(fd) +
                                                  " is not an AF_UNIX stream socket");
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
    return make_error(errc::invalid_argument,
                      "inherited descriptor " + std::to_string(fd) + " is not listening");
  const std::size_t max =
      alen > offsetof(sockaddr_un, sun_path) ? alen - offsetof(sockaddr_un, sun_path) : 0;
  std::string path(addr.sun_path, ::strnlen(addr.sun_path, std::min(max, sizeof addr.sun_path)));
  if (path.empty() || path.front() != '/')
    return make_error(errc::invalid_argument,
                      "inherited socket is not bound to a path (abstract or unnamed sockets have "
                      "no permissions: anyone could connect)");
  return path;
}

result<bool> notify(const char* notify_socket, std::string_view state) {
  if (!notify_socket || !*notify_socket)
    return false;
  std::string_view name(notify_socket);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (name.size() >= sizeof addr.sun_path || (name.front() != '/' && name.front() != '@'))
    return make_error(errc::invalid_argument,
                      "NOTIFY_SOCKET \"" + std::string(name) + "\" is not a socket path");
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name.front() == '@')
    addr.sun_path[0] = '\0';  // abstract
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                          (name.front() == '@' ? 0 : 1));
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return make_system_error(errno, "socket for NOTIFY_SOCKET");
  const auto sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&addr), len);
  const int e = errno;
  ::close(fd);
  if (sent < 0)
    return make_system_error(e, "notify " + std::string(name));
  return true;
}

std::optional<std::string> own_cgroup(std::string_view proc_cgroup, std::string_view key) {
  for (const auto& l : parse_proc_cgroup(proc_cgroup)) {
    if (key.empty() ? (l.id == "0" && l.controllers.empty()) : l.controllers == key)
      return l.path;
  }
  return std::nullopt;
}

result<std::string> enter_own_leaf(const cgroup::layout& layout, std::string_view proc_cgroup,
                                   std::string_view leaf) {
  if (layout.kind == cgroup::mode::none)
    return make_error(errc::invalid_argument,
                      "--cgroup-parent self: no cgroupfs at " + layout.root);
  const bool unified = !layout.unified.empty();
  auto own = own_cgroup(proc_cgroup, unified ? "" : "name=systemd");
  if (!own)
    return make_error(errc::invalid_argument,
                      std::string("--cgroup-parent self: /proc/self/cgroup has no ") +
                          (unified ? "unified (0::)" : "name=systemd") + " line");
  if (*own == "/")
    return make_error(errc::invalid_argument,
                      "--cgroup-parent self: the daemon is in the root cgroup (nothing was "
                      "delegated to it: start it from a unit with Delegate=yes, or give a PATH)");
  std::string rel = own->substr(1);
  // Back from an earlier move: we are in <own>/<leaf> already.
  const std::string suffix = "/" + std::string(leaf);
  const bool in_leaf = rel.size() > suffix.size() && rel.ends_with(suffix);
  if (in_leaf)
    rel.resize(rel.size() - suffix.size());
  const std::string at = "/" + rel + (in_leaf ? suffix : "");
  if (unified) {
    if (auto m = move_into(layout.unified, rel, leaf); !m)
      return m.error();
  }
  // The v1 hierarchies where the daemon sits at the same place.
  for (const auto& l : parse_proc_cgroup(proc_cgroup)) {
    if (l.id == "0" || l.path != at)
      continue;
    auto wanted = split(l.controllers, ',');
    std::sort(wanted.begin(), wanted.end());
    for (const auto& h : layout.hierarchies) {
      auto have = h.controllers;
      std::sort(have.begin(), have.end());
      if (have != wanted)
        continue;
      if (auto m = move_into(h.dir, rel, leaf); !m)
        return m.error();
    }
  }
  return rel;
}

result<std::string> cgroup_parent_path(std::string_view path) {
  while (!path.empty() && path.front() == '/')
    path.remove_prefix(1);
  while (!path.empty() && path.back() == '/')
    path.remove_suffix(1);
  if (path.empty() || path.size() > 512)
    return make_error(errc::invalid_argument,
                      "--cgroup-parent needs a path of 1 to 512 bytes below the cgroup root");
  for (const auto& c : split(path, '/')) {
    if (!valid_component(c))
      return make_error(
          errc::invalid_argument,
          "--cgroup-parent: \"" + c + "\" is not a cgroup name ([A-Za-z0-9._@:-], not . or ..)");
  }
  return std::string(path);
}

}  // namespace taskexec::systemd
