#include "taskexec/cgroups.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <thread>

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

layout detect(const std::string& root) {
  layout l;
  l.root = root;
  auto controllers_of = [](const std::string& dir) {
    std::vector<std::string> out;
    if (auto text = read_file(join(dir, "cgroup.controllers"))) {
      std::string_view rest = *text;
      while (!rest.empty()) {
        auto sp = rest.find_first_of(" \n");
        auto word = rest.substr(0, sp);
        if (!word.empty())
          out.emplace_back(word);
        rest = sp == std::string_view::npos ? "" : rest.substr(sp + 1);
      }
    }
    return out;
  };
  if (exists(join(root, "cgroup.controllers"))) {
    l.kind = mode::v2;
    l.unified = root;
    l.v2_controllers = controllers_of(root);
    return l;
  }
  for (const char* c : {"memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices"}) {
    auto dir = join(root, c);
    if (exists(join(dir, "cgroup.procs")))
      l.v1[c] = dir;
  }
  const auto unified = join(root, "unified");
  const bool has_unified = exists(join(unified, "cgroup.controllers"));
  if (!l.v1.empty()) {
    l.kind = has_unified ? mode::hybrid : mode::v1;
    if (has_unified) {
      l.unified = unified;
      l.v2_controllers = controllers_of(unified);
    }
  } else if (has_unified) {
    l.kind = mode::v2;
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
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
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
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
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

std::optional<std::uint64_t> keyed_value(const std::string& content, std::string_view key) {
  std::string_view rest = content;
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

std::optional<double> pressure_avg10(const std::string& content, std::string_view which) {
  std::string_view rest = content;
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
    try {
      return std::stod(std::string(v));
    } catch (const std::exception&) {
      return std::nullopt;
    }
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

result<std::size_t> kill_all(const std::string& dir, bool v2, const std::string& freezer_dir) {
  if (v2 && exists(join(dir, "cgroup.kill"))) {
    auto n = procs(dir).size();
    if (auto w = write_file(join(dir, "cgroup.kill"), "1"); !w)
      return w.error();
    return n;
  }
  // Frozen processes cannot fork while we go through the list; SIGKILL is
  // delivered to frozen tasks once they are thawed.
  const bool freeze = !freezer_dir.empty() && exists(join(freezer_dir, "freezer.state"));
  if (freeze)
    (void)write_file(join(freezer_dir, "freezer.state"), "FROZEN");
  std::size_t signalled = 0;
  for (int pid : procs(dir)) {
    if (::kill(pid, SIGKILL) == 0)
      ++signalled;
  }
  if (freeze)
    (void)write_file(join(freezer_dir, "freezer.state"), "THAWED");
  return signalled;
}

result<void> destroy_cgroup(const std::string& path, std::chrono::milliseconds bound) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return {};
  const auto deadline = std::chrono::steady_clock::now() + bound;
  // Children first (depth-first), then this one.
  std::vector<std::string> dirs;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_directory(ec))
      dirs.push_back(it->path().string());
  }
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a > b; });
  dirs.push_back(path);
  const bool v2 = exists(join(path, "cgroup.events")) || exists(join(path, "cgroup.kill"));
  for (const auto& d : dirs) {
    for (;;) {
      if (!procs(d).empty())
        (void)kill_all(d, v2);
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT)
        break;
      if (errno != EBUSY && errno != EAGAIN)
        return make_system_error(errno, "rmdir " + d);
      if (std::chrono::steady_clock::now() >= deadline)
        return make_system_error(EBUSY, "rmdir " + d + " (processes remain after " +
                                            std::to_string(bound.count()) + " ms)");
      // Killed processes leave the cgroup once their parent reaps them.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return {};
}

}  // namespace taskexec::cgroup
