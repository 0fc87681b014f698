#include "taskexec/cgroups.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <filesystem>

namespace taskexec::cgroup {

namespace fs = std::filesystem;

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string join(const std::string& dir, std::string_view file) {
  std::string out = dir;
  if (out.empty() || out.back() != '/')
    out += '/';
  out += file;
  return out;
}

error config_error(int err, const std::string& what) {
  auto e = make_system_error(err, what);
  return make_error(errc::resource_config_failed, e.message);
}

result<void> write_if_set(const std::string& dir, std::string_view file, std::string_view value,
                          std::string_view field) {
  auto path = join(dir, file);
  if (!exists(path)) {
    return make_error(errc::resource_config_failed,
                      std::string(field) + " cannot be applied: " + path + " does not exist");
  }
  return write_file(path, value);
}

}  // namespace

std::string_view to_string(mode m) noexcept {
  switch (m) {
    case mode::none:
      return "none";
    case mode::v1:
      return "v1";
    case mode::v2:
      return "v2";
    case mode::hybrid:
      return "hybrid";
  }
  return "none";
}

bool layout::has_v2(const std::string& controller) const {
  for (const auto& c : v2_controllers) {
    if (c == controller)
      return true;
  }
  return false;
}

namespace {

// The v1 controllers of the kernel (cgroup_subsys.h): a stand-in directory
// named otherwise is a named hierarchy.
bool is_v1_controller(std::string_view c) {
  for (std::string_view k :
       {"cpuset", "cpu", "cpuacct", "io", "blkio", "memory", "devices", "freezer", "net_cls",
        "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc", "debug"}) {
    if (c == k)
      return true;
  }
  return false;
}

bool left_out(const std::vector<std::string>& controllers) {
  for (const auto& c : controllers) {
    if (c == "rdma" || c == "misc")
      return true;
  }
  return false;
}

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto at = text.find(sep);
    auto part = text.substr(0, at);
    if (!part.empty())
      out.emplace_back(part);
    text = at == std::string_view::npos ? "" : text.substr(at + 1);
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Stand-in: every directory below root with a cgroup.procs, by its name.
std::vector<hierarchy> scan_hierarchies(const std::string& root) {
  std::vector<hierarchy> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (name == "unified" || it->is_symlink(ec) || !it->is_directory(ec) ||
        !exists(join(it->path().string(), "cgroup.procs")))
      continue;
    hierarchy h{it->path().string(), split(name, ',')};
    if (h.controllers.size() == 1 && !is_v1_controller(h.controllers[0]))
      h.controllers[0] = "name=" + h.controllers[0];
    if (!left_out(h.controllers))
      out.push_back(std::move(h));
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.dir < y.dir; });
  return out;
}

}  // namespace

std::vector<hierarchy> parse_mountinfo(std::string_view text, const std::string& root) {
  std::vector<hierarchy> out;
  std::string prefix = root;
  while (prefix.size() > 1 && prefix.back() == '/')
    prefix.pop_back();
  prefix += '/';
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? "" : text.substr(nl + 1);
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    auto dash = line.find(" - ");
    if (dash == std::string_view::npos)
      continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3 || right[0] != "cgroup")
      continue;
    std::string mount = unescape(left[4]);
    if (mount.rfind(prefix, 0) != 0)
      continue;
    hierarchy h{std::move(mount), {}};
    for (auto& opt : split(right[2], ',')) {
      if (is_v1_controller(opt) || opt.rfind("name=", 0) == 0)
        h.controllers.push_back(std::move(opt));
    }
    if (h.controllers.empty() || left_out(h.controllers))
      continue;
    bool seen = false;  // one hierarchy mounted twice: the first mount
    for (const auto& o : out)
      seen = seen || o.controllers == h.controllers;
    if (!seen)
      out.push_back(std::move(h));
  }
  return out;
}

layout detect(const std::string& root) {
  layout l;
  l.root = root;
  auto controllers_of = [](const std::string& dir) {
    auto text = read_file(join(dir, "cgroup.controllers")).value_or("");
    std::replace(text.begin(), text.end(), '\n', ' ');
    return split(text, ' ');
  };
  if (exists(join(root, "cgroup.controllers"))) {
    l.kind = mode::v2;
    l.unified = root;
    l.v2_controllers = controllers_of(root);
    return l;
  }
  if (auto mi = read_file("/proc/self/mountinfo"))
    l.hierarchies = parse_mountinfo(*mi, root);
  if (l.hierarchies.empty())
    l.hierarchies = scan_hierarchies(root);
  for (const auto& h : l.hierarchies) {
    for (const auto& c : h.controllers)
      l.v1.emplace(c, h.dir);
  }
  const auto unified = join(root, "unified");
  const bool has_unified = exists(join(unified, "cgroup.controllers"));
  if (!l.v1.empty()) {
    l.kind = has_unified ? mode::hybrid : mode::v1;
  } else if (has_unified) {
    l.kind = mode::v2;
  }
  if (has_unified) {
    l.unified = unified;
    l.v2_controllers = controllers_of(unified);
  }
  return l;
}

memory_limits memory_rule(const task_resources& r) {
  constexpr std::int64_t mib = 1024 * 1024;
  memory_limits m;
  if (r.memory_max_mb > 0) {
    m.hard = r.memory_max_mb * mib;
    if (r.memory_mb > 0)
      m.reservation = r.memory_mb * mib;
  } else if (r.memory_max_mb == -1) {
    m.hard = -1;
    if (r.memory_mb > 0)
      m.reservation = r.memory_mb * mib;
  } else if (r.memory_mb > 0) {
    m.hard = r.memory_mb * mib;
  }
  return m;
}

std::uint64_t shares_to_weight(std::uint64_t shares) {
  if (shares < 2)
    shares = 2;
  if (shares > 262144)
    shares = 262144;
  return 1 + (shares - 2) * 9999 / 262142;
}

result<void> apply_v2(const std::string& dir, const task_resources& r) {
  auto m = memory_rule(r);
  if (m.hard) {
    auto v = *m.hard < 0 ? std::string("max") : std::to_string(*m.hard);
    if (auto w = write_if_set(dir, "memory.max", v, "resources.memory_max_mb"); !w)
      return w;
    // No swap: the hard limit must hold. Where swap accounting is off the
    // file does not exist and there is no swap to turn off.
    if (*m.hard >= 0 && exists(join(dir, "memory.swap.max"))) {
      if (auto w = write_file(join(dir, "memory.swap.max"), "0"); !w)
        return w;
    }
  }
  if (m.reservation) {
    if (auto w =
            write_if_set(dir, "memory.low", std::to_string(*m.reservation), "resources.memory_mb");
        !w)
      return w;
  }
  if (r.cpu_shares > 0) {
    auto weight = shares_to_weight(static_cast<std::uint64_t>(r.cpu_shares));
    if (auto w = write_if_set(dir, "cpu.weight", std::to_string(weight), "resources.cpu_shares");
        !w)
      return w;
  }
  if (r.cpu_quota_us > 0 || r.cpu_period_us > 0) {
    const auto period = r.cpu_period_us > 0 ? r.cpu_period_us : 100000;
    auto v = (r.cpu_quota_us > 0 ? std::to_string(r.cpu_quota_us) : std::string("max")) + " " +
             std::to_string(period);
    if (auto w = write_if_set(dir, "cpu.max", v, "resources.cpu_quota_us"); !w)
      return w;
  }
  if (!r.cpuset_cpus.empty()) {
    if (auto w = write_if_set(dir, "cpuset.cpus", r.cpuset_cpus, "resources.cpuset_cpus"); !w)
      return w;
  }
  if (r.pids_max > 0) {
    if (auto w = write_if_set(dir, "pids.max", std::to_string(r.pids_max), "resources.pids_max");
        !w)
      return w;
  }
  return {};
}

result<void> apply_v1(const v1_dirs& d, const task_resources& r) {
  auto need = [](const std::string& dir, std::string_view field,
                 std::string_view controller) -> result<void> {
    if (dir.empty()) {
      return make_error(errc::resource_config_failed,
                        std::string(field) + " needs the v1 " + std::string(controller) +
                            " controller, which this host does not have");
    }
    return {};
  };
  auto m = memory_rule(r);
  if (m.hard || m.reservation) {
    if (auto n = need(d.memory, "resources.memory_mb", "memory"); !n)
      return n;
  }
  if (m.hard) {
    auto v = std::to_string(*m.hard);  // -1 is "unlimited" in v1
    // memsw (memory + swap) must stay >= the memory limit: when lowering,
    // the memory limit goes first; when raising, memsw goes first.
    const auto memsw = join(d.memory, "memory.memsw.limit_in_bytes");
    const bool has_memsw = exists(memsw);
    if (has_memsw && *m.hard < 0) {
      if (auto w = write_file(memsw, "-1"); !w)
        return w;
    }
    if (auto w = write_if_set(d.memory, "memory.limit_in_bytes", v, "resources.memory_max_mb");
        !w) {
      // Raising above the current memsw limit: memsw first, then again.
      if (!has_memsw || !write_file(memsw, v))
        return w;
      if (auto again = write_file(join(d.memory, "memory.limit_in_bytes"), v); !again)
        return again;
    }
    if (has_memsw && *m.hard >= 0) {
      if (auto w = write_file(memsw, v); !w)
        return w;
    }
  }
  if (m.reservation) {
    if (auto w = write_if_set(d.memory, "memory.soft_limit_in_bytes",
                              std::to_string(*m.reservation), "resources.memory_mb");
        !w)
      return w;
  }
  if (r.cpu_shares > 0) {
    if (auto n = need(d.cpu, "resources.cpu_shares", "cpu"); !n)
      return n;
    if (auto w =
            write_if_set(d.cpu, "cpu.shares", std::to_string(r.cpu_shares), "resources.cpu_shares");
        !w)
      return w;
  }
  if (r.cpu_quota_us > 0 || r.cpu_period_us > 0) {
    if (auto n = need(d.cpu, "resources.cpu_quota_us", "cpu"); !n)
      return n;
    const auto period = r.cpu_period_us > 0 ? r.cpu_period_us : 100000;
    if (auto w = write_if_set(d.cpu, "cpu.cfs_period_us", std::to_string(period),
                              "resources.cpu_period_us");
        !w)
      return w;
    if (auto w = write_if_set(d.cpu, "cpu.cfs_quota_us",
                              r.cpu_quota_us > 0 ? std::to_string(r.cpu_quota_us) : "-1",
                              "resources.cpu_quota_us");
        !w)
      return w;
  }
  if (!r.cpuset_cpus.empty()) {
    if (auto n = need(d.cpuset, "resources.cpuset_cpus", "cpuset"); !n)
      return n;
    if (auto w = write_if_set(d.cpuset, "cpuset.cpus", r.cpuset_cpus, "resources.cpuset_cpus"); !w)
      return w;
  }
  if (r.pids_max > 0) {
    if (auto n = need(d.pids, "resources.pids_max", "pids"); !n)
      return n;
    if (auto w = write_if_set(d.pids, "pids.max", std::to_string(r.pids_max), "resources.pids_max");
        !w)
      return w;
  }
  return {};
}

std::optional<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ::close(fd);
      if (n < 0)
        return std::nullopt;
      return out;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
}

result<void> write_file(const std::string& path, std::string_view value) {
  // O_TRUNC as a shell's `>` does: harmless on cgroupfs, right on a stand-in.
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return config_error(errno, "open " + path);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    return config_error(n < 0 ? err : EIO, "write " + path + " \"" + std::string(value) + "\"");
  return {};
}

std::vector<int> procs(const std::string& dir) {
  auto text = read_file(join(dir, "cgroup.procs"));
  if (!text)
    return {};
  return parse_procs(*text);
}

std::vector<int> parse_procs(std::string_view rest) {
  std::vector<int> out;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    auto line = rest.substr(0, nl);
    int pid = 0;
    if (std::from_chars(line.data(), line.data() + line.size(), pid).ec == std::errc{} && pid > 0)
      out.push_back(pid);
    rest = nl == std::string_view::npos ? "" : rest.substr(nl + 1);
  }
  return out;
}

void add_procs(std::string_view rest, std::vector<int>& out) {
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    auto line = rest.substr(0, nl);
    int pid = 0;
    if (std::from_chars(line.data(), line.data() + line.size(), pid).ec == std::errc{} && pid > 0 &&
        std::find(out.begin(), out.end(), pid) == out.end())
      out.push_back(pid);
    rest = nl == std::string_view::npos ? "" : rest.substr(nl + 1);
  }
}

std::optional<std::uint64_t> keyed_value(std::string_view rest, std::string_view key) {
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    auto line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? "" : rest.substr(nl + 1);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      auto v = line.substr(key.size() + 1);
      std::uint64_t out = 0;
      if (std::from_chars(v.data(), v.data() + v.size(), out).ec == std::errc{})
        return out;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::uint64_t number_value(std::string_view s) noexcept {
  // As std::stoull read it before: leading blanks, then the digits.
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  std::uint64_t out = 0;
  if (std::from_chars(s.data(), s.data() + s.size(), out).ec != std::errc{})
    return 0;
  return out;
}

std::optional<double> pressure_avg10(std::string_view rest, std::string_view which) {
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    auto line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? "" : rest.substr(nl + 1);
    if (line.substr(0, which.size()) != which)
      continue;
    auto at = line.find("avg10=");
    if (at == std::string_view::npos)
      return std::nullopt;
    auto v = line.substr(at + 6);
    v = v.substr(0, v.find(' '));
    double out = 0;
    if (std::from_chars(v.data(), v.data() + v.size(), out).ec != std::errc{})
      return std::nullopt;
    return out;
  }
  return std::nullopt;
}

std::optional<bool> populated(const std::string& dir) {
  auto text = read_file(join(dir, "cgroup.events"));
  if (!text)
    return std::nullopt;
  auto v = keyed_value(*text, "populated");
  if (!v)
    return std::nullopt;
  return *v != 0;
}

namespace {

// Freeze (or thaw) the task's cgroups for kill_members; false when there is
// no freezer. Waits, briefly and bounded, for the freeze to take hold.
bool set_frozen(const kill_target& t, bool frozen, std::chrono::steady_clock::time_point until) {
  if (!t.freezer.empty() && exists(join(t.freezer, "freezer.state"))) {
    const auto state = join(t.freezer, "freezer.state");
    if (!write_file(state, frozen ? "FROZEN" : "THAWED"))
      return false;
    // FREEZING while some task has not stopped yet (one in an uninterruptible
    // sleep): rounds go on meanwhile, so waiting is only to save a round.
    while (frozen && std::chrono::steady_clock::now() < until) {
      auto now = read_file(state);
      if (!now || now->rfind("FROZEN", 0) == 0)
        break;
      ::usleep(200);
    }
    return true;
  }
  if (!t.v2.empty() && exists(join(t.v2, "cgroup.freeze"))) {
    if (!write_file(join(t.v2, "cgroup.freeze"), frozen ? "1" : "0"))
      return false;
    while (frozen && std::chrono::steady_clock::now() < until) {
      auto events = read_file(join(t.v2, "cgroup.events"));
      if (!events || keyed_value(*events, "frozen").value_or(1) == 1)
        break;
      ::usleep(200);
    }
    return true;
  }
  return false;
}

std::vector<int> listed(const kill_target& t) {
  std::vector<int> out;
  for (const auto& d : t.dirs) {
    for (int pid : t.list ? t.list(d) : procs(d)) {
      if (std::find(out.begin(), out.end(), pid) == out.end())
        out.push_back(pid);
    }
  }
  return out;
}

}  // namespace

std::size_t kill_members(const kill_target& t, std::chrono::milliseconds bound) {
  using clock = std::chrono::steady_clock;
  const auto until = clock::now() + bound;
  std::vector<int> signalled;
  if (!t.v2.empty() && exists(join(t.v2, "cgroup.kill"))) {
    // The members the kernel's write kills: counted, not signalled again.
    auto members = t.list ? t.list(t.v2) : procs(t.v2);
    if (write_file(join(t.v2, "cgroup.kill"), "1"))
      signalled = std::move(members);
  }
  const bool frozen = set_frozen(t, true, clock::now() + bound / 5);
  for (;;) {
    std::vector<std::pair<int, int>> opened;  // pid, pidfd
    for (int pid : listed(t)) {
      if (std::find(signalled.begin(), signalled.end(), pid) != signalled.end())
        continue;
      const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      if (fd >= 0)
        opened.emplace_back(pid, fd);
    }
    if (opened.empty())
      break;
    const auto again = listed(t);
    for (auto [pid, fd] : opened) {
      if (std::find(again.begin(), again.end(), pid) != again.end() &&
          ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0) == 0)
        signalled.push_back(pid);
      ::close(fd);
    }
    if (clock::now() >= until)
      break;
  }
  if (frozen)
    (void)set_frozen(t, false, until);
  return signalled.size();
}

std::vector<std::string> tree(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(path, ec)))
    return {};
  std::vector<std::string> dirs;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!it->is_symlink(ec) && it->is_directory(ec))
      dirs.push_back(it->path().string());
  }
  // Reverse order of names puts every directory before its parent.
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a > b; });
  dirs.push_back(path);
  return dirs;
}

result<void> remove_once(const std::string& path) {
  const auto dirs = tree(path);
  for (const auto& d : dirs) {
    if (::rmdir(d.c_str()) == 0 || errno == ENOENT)
      continue;
    if (errno == EBUSY || errno == EAGAIN)
      return make_error(errc::resource_busy, "rmdir " + d + ": processes are still exiting");
    return make_system_error(errno, "rmdir " + d);
  }
  return {};
}

}  // namespace taskexec::cgroup
