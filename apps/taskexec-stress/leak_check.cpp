#include "leak_check.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "taskexec/detail/proc.hpp"

namespace stress {

namespace {

// The whole of a small file (at most `limit` bytes); empty when unreadable.
std::string slurp(const std::string& path, std::size_t limit = 1 << 20) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return {};
  std::string out;
  char buf[8192];
  while (out.size() < limit) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

template <class T>
bool number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

}  // namespace

std::optional<proc_stat> read_stat(const std::string& proc_root, int pid) {
  auto text = slurp(proc_root + "/" + std::to_string(pid) + "/stat", 4096);
  if (text.empty())
    return std::nullopt;
  return taskexec::detail::parse_proc_stat(text);
}

std::vector<proc_stat> list_processes(const std::string& proc_root) {
  std::vector<proc_stat> out;
  DIR* d = ::opendir(proc_root.c_str());
  if (!d)
    return out;
  while (auto* e = ::readdir(d)) {
    int pid = 0;
    if (!number(std::string_view(e->d_name), pid))
      continue;
    if (auto st = read_stat(proc_root, pid))
      out.push_back(*st);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.pid < b.pid; });
  return out;
}

bool environ_has(const std::string& proc_root, int pid, std::string_view entry) {
  auto env = slurp(proc_root + "/" + std::to_string(pid) + "/environ");
  std::size_t i = 0;
  while (i < env.size()) {
    auto end = env.find('\0', i);
    if (end == std::string::npos)
      end = env.size();
    if (std::string_view(env).substr(i, end - i) == entry)
      return true;
    i = end + 1;
  }
  return false;
}

int count_fds(const std::string& proc_root, int pid) {
  std::string path =
      proc_root + "/" + (pid == 0 ? std::string("self") : std::to_string(pid)) + "/fd";
  DIR* d = ::opendir(path.c_str());
  if (!d)
    return -1;
  int n = 0;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.')
      ++n;
  ::closedir(d);
  // Listing our own descriptors holds one more: the directory's.
  return n - (pid == 0 && proc_root == "/proc" ? 1 : 0);
}

namespace {

// The number after `key` (a line's start, "\nPss:"), past spaces and tabs;
// -1 when absent.
long kib_field(std::string_view text, std::string_view key) {
  auto at = text.find(key);
  if (at == std::string_view::npos)
    return -1;
  auto i = at + key.size();
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t'))
    ++i;
  auto j = i;
  while (j < text.size() && text[j] >= '0' && text[j] <= '9')
    ++j;
  long v = -1;
  return number(text.substr(i, j - i), v) ? v : -1;
}

}  // namespace

memory_figures parse_smaps_rollup(std::string_view text) {
  memory_figures m;
  m.pss_kib = kib_field(text, "\nPss:");
  m.private_dirty_kib = kib_field(text, "\nPrivate_Dirty:");
  m.anonymous_kib = kib_field(text, "\nAnonymous:");
  return m;
}

memory_figures read_memory(const std::string& proc_root, int pid) {
  // Prefix a newline so the first line's key matches like the others.
  auto text = "\n" + slurp(proc_root + "/" + std::to_string(pid) + "/smaps_rollup", 16384);
  return parse_smaps_rollup(text);
}

long parse_status_kib(std::string_view text, std::string_view field) {
  // The library's parser (the sampler reads VmSwap with it); -1 for absent.
  const auto kib = taskexec::detail::parse_status_kib(text, field);
  return kib && *kib <= static_cast<std::uint64_t>(LONG_MAX) ? static_cast<long>(*kib) : -1;
}

long read_status_kib(const std::string& proc_root, int pid, std::string_view field) {
  return parse_status_kib(slurp(proc_root + "/" + std::to_string(pid) + "/status", 16384), field);
}

std::set<std::string> list_cgroups(const std::vector<std::string>& parents) {
  std::set<std::string> out;
  for (auto& p : parents) {
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(p, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      if (it->is_directory(ec))
        out.insert(it->path().string());
  }
  return out;
}

std::vector<std::string> cgroup_parents(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  if (std::filesystem::exists(root + "/cgroup.controllers", ec)) {
    out.push_back(root + "/taskexec");  // pure v2
    return out;
  }
  for (auto it = std::filesystem::directory_iterator(root, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    if (it->is_directory(ec) && !it->is_symlink(ec))
      out.push_back(it->path().string() + "/taskexec");
  std::sort(out.begin(), out.end());
  return out;
}

leak_baseline take_baseline(const leak_options& o) {
  return {count_fds(o.proc_root, 0), list_cgroups(o.cgroup_parents)};
}

leak_findings find_leaks(const leak_options& o, const leak_baseline& before) {
  leak_findings f;
  for (auto& p : list_processes(o.proc_root)) {
    if (p.pid == o.self_pid)
      continue;
    if (p.state == 'Z') {
      if (p.ppid == o.self_pid)
        f.zombies.push_back(p.pid);
      continue;
    }
    if (!o.marker.empty() && environ_has(o.proc_root, p.pid, o.marker))
      f.leftover.push_back(p.pid);
  }
  auto ours = [&](const std::string& path) {
    if (o.cgroup_marks.empty())
      return true;
    const std::string name = std::filesystem::path(path).filename().string();
    return std::any_of(o.cgroup_marks.begin(), o.cgroup_marks.end(), [&](const std::string& m) {
      return !m.empty() && name.find(m) != std::string::npos;
    });
  };
  for (auto& c : list_cgroups(o.cgroup_parents))
    if (!before.cgroups.count(c) && ours(c))
      f.cgroups.push_back(c);
  std::error_code ec;
  if (!o.run_dir.empty())
    for (auto it = std::filesystem::recursive_directory_iterator(o.run_dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_socket(ec))
        f.sockets.push_back(it->path().string());
  f.own_fds_before = before.own_fds;
  f.own_fds_after = count_fds(o.proc_root, 0);
  return f;
}

std::string leak_findings::describe() const {
  std::string out;
  auto add = [&](std::size_t n, const char* what, auto& items) {
    if (n == 0)
      return;
    if (!out.empty())
      out += "; ";
    out += std::to_string(n) + " " + what + (n == 1 ? "" : "s") + " (";
    std::size_t shown = 0;
    for (auto& i : items) {
      if (shown++ == 8) {
        out += " ...";
        break;
      }
      if constexpr (std::is_same_v<std::decay_t<decltype(i)>, int>)
        out += (shown > 1 ? " " : "") + std::string("pid ") + std::to_string(i);
      else
        out += (shown > 1 ? " " : "") + i;
    }
    out += ")";
  };
  add(zombies.size(), "zombie", zombies);
  add(leftover.size(), "leftover process", leftover);
  add(cgroups.size(), "leftover cgroup", cgroups);
  add(sockets.size(), "leftover socket", sockets);
  if (own_fds_after > own_fds_before) {
    if (!out.empty())
      out += "; ";
    out += "our descriptors grew from " + std::to_string(own_fds_before) + " to " +
           std::to_string(own_fds_after);
  }
  return out.empty() ? "nothing leaked" : out;
}

std::string clean_up(const leak_findings& f) {
  std::string failed;
  for (int pid : f.leftover)
    if (::kill(pid, SIGKILL) != 0 && errno != ESRCH)
      failed += "kill " + std::to_string(pid) + ": " + std::strerror(errno) + "; ";
  for (auto& c : f.cgroups) {
    // Its processes are dead by now (killed above); empty cgroups rmdir.
    for (int i = 0; i < 100 && ::rmdir(c.c_str()) != 0 && errno == EBUSY; ++i)
      ::usleep(10000);  // the kernel empties a cgroup a moment after its last process died
    if (::access(c.c_str(), F_OK) == 0)
      failed += "rmdir " + c + ": " + std::strerror(errno) + "; ";
  }
  for (auto& s : f.sockets)
    ::unlink(s.c_str());
  return failed;
}

}  // namespace stress
