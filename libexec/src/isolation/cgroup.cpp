#include "taskexec/isolation/cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>

#include "taskexec/logging.hpp"

namespace taskexec {

namespace {

std::atomic<unsigned> g_unnamed{0};

}  // namespace

// A cgroup name from a task id: [A-Za-z0-9._-], others become '_'.
std::string cgroup_name_for(const std::string& task_id) {
  std::string out;
  for (char c : task_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    out.push_back(ok ? c : '_');
  }
  while (!out.empty() && (out.front() == '_' || out.front() == '.'))
    out.erase(out.begin());
  if (out.size() > 100)
    out.erase(0, out.size() - 100);
  if (out.empty())
    return "task-" + std::to_string(::getpid()) + "-" + std::to_string(++g_unnamed);
  // Different ids can sanitize alike ("/a_b" and "/a/b"): a hash of the id
  // as given keeps their cgroups apart.
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : task_id)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08llx",
                static_cast<unsigned long long>(h & 0xffffffffull));
  return out + "-" + suffix;
}

namespace {

std::string join(const std::string& a, const std::string& b) {
  if (b.empty())
    return a;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

}  // namespace

cgroup_strategy::cgroup_strategy(std::string task_id, cgroup_options options)
    : task_id_(std::move(task_id)), opts_(std::move(options)) {}

cgroup_strategy::~cgroup_strategy() = default;

isolation_features cgroup_strategy::features() const noexcept {
  return static_cast<isolation_features>(isolation_feature::resource_limits) |
         static_cast<isolation_features>(isolation_feature::basic_process_cgroup);
}

result<void> cgroup_strategy::validate(const exec_command& cmd) const {
  if (!cmd.resource_limits && cmd.resources != task_resources{}) {
    return make_error(errc::invalid_argument,
                      "resources are enforced only with resource_limits (basic_process_cgroup "
                      "accounts and kills, it does not limit)");
  }
  return {};
}

result<void> cgroup_strategy::before_fork(const exec_command& cmd, launch_plan&) {
  layout_ = cgroup::detect(opts_.root);
  if (::geteuid() != 0 || layout_.kind == cgroup::mode::none) {
    detail::log(log_level::warning, "cgroup", task_id_, "",
                std::string("no cgroup for the task (") +
                    (::geteuid() != 0 ? "not root" : "no cgroupfs at " + opts_.root) +
                    "): it runs on the host alone, limits not enforced, stats from /proc");
    return {};
  }
  const std::string name = cgroup_name_for(task_id_);
  const std::string rel = join(opts_.parent, name);

  // mkdir every level of parent/name under `base`; remember what we made.
  // v1 cpuset: a new cgroup has no cpus and mems and takes no task until
  // they are set: copy them from the level above.
  auto make_path = [&](const std::string& base, bool cpuset) -> result<std::string> {
    std::string dir = base;
    std::string rest = rel;
    while (!rest.empty()) {
      auto slash = rest.find('/');
      std::string part = rest.substr(0, slash);
      rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
      if (part.empty())
        continue;
      const std::string above = dir;
      dir = join(dir, part);
      if (::mkdir(dir.c_str(), 0755) == 0) {
        created_.push_back(dir);
      } else if (errno != EEXIST) {
        return make_error(errc::resource_config_failed,
                          make_system_error(errno, "mkdir " + dir).message);
      }
      if (cpuset) {
        for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
          auto mine = cgroup::read_file(join(dir, f));
          if (mine && trimmed(*mine).empty()) {
            auto theirs = cgroup::read_file(join(above, f));
            if (theirs) {
              if (auto w = cgroup::write_file(join(dir, f), trimmed(*theirs)); !w)
                return w.error();
            }
          }
        }
      }
    }
    return dir;
  };

  auto fail_setup = [&](const error& e) -> result<void> {
    launch_failed(launch_plan{});
    return e;
  };

  if (layout_.kind == cgroup::mode::v2) {
    // Controllers must be enabled in every ancestor's subtree_control.
    std::string dir = layout_.unified;
    std::string rest = opts_.parent;
    for (;;) {
      const auto available =
          " " + trimmed(cgroup::read_file(join(dir, "cgroup.controllers")).value_or("")) + " ";
      std::string enable;
      for (const char* c : {"cpu", "memory", "pids", "cpuset"}) {
        if (available.find(std::string(" ") + c + " ") != std::string::npos)
          enable += std::string(enable.empty() ? "+" : " +") + c;
      }
      if (!enable.empty()) {
        if (auto w = cgroup::write_file(join(dir, "cgroup.subtree_control"), enable);
            !w && cmd.resource_limits)
          return fail_setup(w.error());
      }
      if (rest.empty())
        break;
      auto slash = rest.find('/');
      std::string part = rest.substr(0, slash);
      rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
      dir = join(dir, part);
      if (::mkdir(dir.c_str(), 0755) == 0)
        created_.push_back(dir);
      else if (errno != EEXIST)
        return fail_setup(make_error(errc::resource_config_failed,
                                     make_system_error(errno, "mkdir " + dir).message));
    }
    auto d = make_path(layout_.unified, false);
    if (!d)
      return fail_setup(d.error());
    v2_dir_ = *d;
    v2_limits_ = true;
  } else {
    // Every mounted hierarchy (but rdma and misc): the seven the limits and
    // stats use by name, the others (blkio, name=systemd, ...) by membership.
    for (const auto& h : layout_.hierarchies) {
      bool cpuset = false;
      for (const auto& c : h.controllers)
        cpuset = cpuset || c == "cpuset";
      auto d = make_path(h.dir, cpuset);
      if (!d)
        return fail_setup(d.error());
      bool named = false;
      for (const auto& c : h.controllers) {
        for (auto& [controller, member] :
             {std::pair{"memory", &v1_.memory}, std::pair{"cpu", &v1_.cpu},
              std::pair{"cpuacct", &v1_.cpuacct}, std::pair{"cpuset", &v1_.cpuset},
              std::pair{"pids", &v1_.pids}, std::pair{"freezer", &v1_.freezer},
              std::pair{"devices", &v1_.devices}}) {
          if (c == controller) {
            *member = *d;
            named = true;
          }
        }
      }
      if (!named)
        v1_.others.push_back(*d);
    }
    if (layout_.kind == cgroup::mode::hybrid) {
      auto d = make_path(layout_.unified, false);
      if (!d)
        return fail_setup(d.error());
      v2_dir_ = *d;
    }
  }

  // A freezer left FROZEN (a crash between freeze and thaw) would stop the
  // child as it joins, and the launcher with it.
  if (!v1_.freezer.empty())
    (void)cgroup::write_file(join(v1_.freezer, "freezer.state"), "THAWED");

  // Processes left in the task's cgroup (a previous run, or planted) go first.
  if (auto planted = members(); !planted.empty()) {
    detail::log(log_level::warning, "cgroup", task_id_, "",
                "killing " + std::to_string(planted.size()) +
                    " processes found in the task's cgroup before launch");
    kill_members();
  }

  if (cmd.resource_limits) {
    auto applied = v2_limits_ ? cgroup::apply_v2(v2_dir_, cmd.resources)
                              : cgroup::apply_v1(v1_, cmd.resources);
    if (!applied)
      return fail_setup(applied.error());
  }

  for (const auto& d : directories())
    membership_.procs.push_back(join(d, "cgroup.procs"));
  const std::string& pids_dir = !v1_.pids.empty() ? v1_.pids : v2_limits_ ? v2_dir_ : v1_.pids;
  if (!pids_dir.empty() && ::access(join(pids_dir, "pids.max").c_str(), F_OK) == 0) {
    membership_.pids_max = join(pids_dir, "pids.max");
    membership_.pids_current = join(pids_dir, "pids.current");
  }
  active_ = true;
  return {};
}

namespace {
// A small cgroup file as a number; "max" (no limit) is UINT64_MAX; false
// when unreadable. Async-signal-safe: a stack buffer, no allocation.
bool read_count(const char* path, std::uint64_t& out) noexcept {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return false;
  char buf[32];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n <= 0)
    return false;
  if (n >= 3 && buf[0] == 'm' && buf[1] == 'a' && buf[2] == 'x') {
    out = UINT64_MAX;
    return true;
  }
  std::uint64_t v = 0;
  ssize_t i = 0;
  for (; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i)
    v = v * 10 + static_cast<std::uint64_t>(buf[i] - '0');
  if (i == 0)
    return false;
  out = v;
  return true;
}
}  // namespace

bool join_cgroups(const cgroup_membership& m, child_failure& f) noexcept {
  // Reads only: the strings were built before the clone.
  for (const auto& file : m.procs) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      return fail_step(f, "open cgroup.procs");
    if (::write(fd, "0", 1) != 1) {
      ::close(fd);
      return fail_step(f, "join cgroup");
    }
    ::close(fd);
  }
  std::uint64_t max = 0, current = 0;
  if (!m.pids_max.empty() && read_count(m.pids_max.c_str(), max) &&
      read_count(m.pids_current.c_str(), current) && current > max) {
    errno = EAGAIN;
    return fail_step(f, "join cgroup: its pids.max is reached");
  }
  return true;
}

bool cgroup_strategy::in_child(const launch_plan&, child_failure& f) const noexcept {
  return join_cgroups(membership_, f);
}

void cgroup_strategy::launch_failed(const launch_plan&) noexcept {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it)
    ::rmdir(it->c_str());  // only the ones we made, only if empty
  created_.clear();
  active_ = false;
  membership_ = {};
  sample_files_.reset();
}

std::vector<int> cgroup_strategy::members() const {
  std::vector<int> out;
  for (const auto& d : directories()) {
    for (int pid : cgroup::procs(d)) {
      if (std::find(out.begin(), out.end(), pid) == out.end())
        out.push_back(pid);
    }
  }
  return out;
}

std::size_t cgroup_strategy::kill_members() {
  // A process may sit in any one of the task's hierarchies (planted there):
  // every directory is listed; the kill goes through pidfds checked against
  // a second listing, with the cgroup frozen (cgroup::kill_members).
  return cgroup::kill_members({directories(), v2_dir_, v1_.freezer, {}});
}

result<void> cgroup_strategy::update(const task_resources& r) {
  if (!active_) {
    return make_error(errc::unsupported,
                      "the task has no cgroup (not root or no cgroupfs): resources cannot change");
  }
  return v2_limits_ ? cgroup::apply_v2(v2_dir_, r) : cgroup::apply_v1(v1_, r);
}

// The files of a Stats sample. A counter file is opened once and read again
// with pread at offset 0 (cgroupfs makes the content anew at every read from
// 0; a stand-in's regular file shows what was last written), parsed in place
// in one buffer. v1's cgroup.procs is the exception: the kernel keeps the pid
// list a v1 cgroup.procs file showed first for as long as that file is open,
// so each is opened anew for every sample; v2's is current at every pread.
// A file that cannot be opened counts as unreadable (its counters 0), and is
// tried again at the next sample.
struct cgroup_strategy::sample_files {
  enum which : std::uint8_t {
    v2_stat,
    v2_swap,
    v2_current,
    v2_cpu,
    v2_events,
    v1_stat,
    v1_usage,
    v1_max_usage,
    v1_kmem_usage,
    v1_kmem_max_usage,
    v1_failcnt,
    v1_oom,
    v1_user,
    v1_sys,
    v1_cpu,
    psi,
    v2_procs,
    count
  };
  std::array<std::string, count> paths;  // empty: not read in this layout
  std::array<int, count> fds{};          // -1: not open
  std::vector<std::string> v1_procs;     // opened for each sample
  // Room for every counter file (v2's memory.stat, the largest, is about
  // 1.5 KiB) and a cgroup.procs of ~2000 pids; it grows for a longer list
  // (up to 4 MiB, as read_file() has no bound but the file's end).
  std::vector<char> buf = std::vector<char>(16 * 1024);

  sample_files() { fds.fill(-1); }
  ~sample_files() {
    for (int fd : fds)
      if (fd >= 0)
        ::close(fd);
  }
  sample_files(const sample_files&) = delete;
  sample_files& operator=(const sample_files&) = delete;

  // The content of `fd` from offset 0, in `buf`. cgroupfs files are
  // seq_files whose records (a whole counter file, or one pid) are far below
  // a page, and a read fills the caller's buffer up to a page at least: a
  // read that returns less than half a page has reached the end, so a small
  // file takes one pread.
  std::optional<std::string_view> contents(int fd) {
    constexpr std::size_t limit = 4u << 20;
    std::size_t n = 0;
    for (;;) {
      if (n == buf.size()) {
        if (buf.size() >= limit)
          break;
        buf.resize(buf.size() * 2);
      }
      const ssize_t r = ::pread(fd, buf.data() + n, buf.size() - n, static_cast<off_t>(n));
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return std::nullopt;
      n += static_cast<std::size_t>(r);
      if (r < 2048)
        break;
    }
    return std::string_view(buf.data(), n);
  }

  std::optional<std::string_view> read(which w) {
    if (paths[w].empty())
      return std::nullopt;
    if (fds[w] < 0) {
      fds[w] = ::open(paths[w].c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fds[w] < 0)
        return std::nullopt;
    }
    auto text = contents(fds[w]);
    if (!text) {
      // The cgroup removed under us (ENODEV), ...: opened anew next time.
      ::close(fds[w]);
      fds[w] = -1;
    }
    return text;
  }

  std::optional<std::string_view> read_once(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      return std::nullopt;
    auto out = contents(fd);
    ::close(fd);
    return out;
  }
};

void cgroup_strategy::release_sample_files() const noexcept {
  sample_files_.reset();
}

cgroup_strategy::sample_files& cgroup_strategy::files() const {
  if (sample_files_)
    return *sample_files_;
  auto f = std::make_unique<sample_files>();
  auto set = [&](sample_files::which w, const std::string& dir, const char* file) {
    f->paths[w] = join(dir, file);
  };
  if (v2_limits_) {
    set(sample_files::v2_stat, v2_dir_, "memory.stat");
    set(sample_files::v2_swap, v2_dir_, "memory.swap.current");
    set(sample_files::v2_current, v2_dir_, "memory.current");
    set(sample_files::v2_cpu, v2_dir_, "cpu.stat");
    set(sample_files::v2_events, v2_dir_, "memory.events");
  } else {
    if (!v1_.memory.empty()) {
      set(sample_files::v1_stat, v1_.memory, "memory.stat");
      set(sample_files::v1_usage, v1_.memory, "memory.usage_in_bytes");
      set(sample_files::v1_max_usage, v1_.memory, "memory.max_usage_in_bytes");
      set(sample_files::v1_kmem_usage, v1_.memory, "memory.kmem.usage_in_bytes");
      set(sample_files::v1_kmem_max_usage, v1_.memory, "memory.kmem.max_usage_in_bytes");
      set(sample_files::v1_failcnt, v1_.memory, "memory.failcnt");
      set(sample_files::v1_oom, v1_.memory, "memory.oom_control");
    }
    if (!v1_.cpuacct.empty()) {
      set(sample_files::v1_user, v1_.cpuacct, "cpuacct.usage_user");
      set(sample_files::v1_sys, v1_.cpuacct, "cpuacct.usage_sys");
    }
    if (!v1_.cpu.empty())
      set(sample_files::v1_cpu, v1_.cpu, "cpu.stat");
  }
  if (!v2_dir_.empty()) {
    set(sample_files::psi, v2_dir_, "memory.pressure");
    set(sample_files::v2_procs, v2_dir_, "cgroup.procs");
  }
  for (const auto& d : directories()) {
    if (d != v2_dir_)
      f->v1_procs.push_back(join(d, "cgroup.procs"));
  }
  sample_files_ = std::move(f);
  return *sample_files_;
}

void cgroup_strategy::sample_members(std::vector<int>& out) const {
  out.clear();
  if (!active_)
    return;
  auto& f = files();
  // As members(): every directory's list, v2's first.
  if (auto text = f.read(sample_files::v2_procs))
    cgroup::add_procs(*text, out);
  for (const auto& path : f.v1_procs) {
    if (auto text = f.read_once(path))
      cgroup::add_procs(*text, out);
  }
}

cgroup_counters cgroup_strategy::read() const {
  cgroup_counters c;
  if (!active_)
    return c;
  auto& f = files();
  using w = sample_files;
  // Each file is parsed before the next read reuses the buffer.
  auto number = [&](sample_files::which file) -> std::uint64_t {
    auto text = f.read(file);
    return text ? cgroup::number_value(*text) : 0;
  };
  auto values = [&](sample_files::which file, auto&&... out) {
    auto text = f.read(file);
    ((*out.second = text ? cgroup::keyed_value(*text, out.first).value_or(0) : 0), ...);
  };
  using kv = std::pair<std::string_view, std::uint64_t*>;
  if (v2_limits_) {
    values(w::v2_stat, kv{"anon", &c.rss}, kv{"file", &c.cache});
    c.swap = number(w::v2_swap);
    c.usage = number(w::v2_current);
    c.memory_measured = {"RSS", "Cache", "Swap", "Usage"};
    std::uint64_t user_us = 0, system_us = 0, throttled_us = 0;
    values(w::v2_cpu, kv{"user_usec", &user_us}, kv{"system_usec", &system_us},
           kv{"nr_throttled", &c.throttled_periods}, kv{"throttled_usec", &throttled_us});
    c.user_ns = user_us * 1000;
    c.system_ns = system_us * 1000;
    c.throttled_ns = throttled_us * 1000;
    values(w::v2_events, kv{"high", &c.events_high}, kv{"max", &c.events_max},
           kv{"oom_kill", &c.events_oom_kill});
  } else {
    if (!v1_.memory.empty()) {
      values(w::v1_stat, kv{"total_rss", &c.rss}, kv{"total_cache", &c.cache},
             kv{"total_swap", &c.swap});
      c.usage = number(w::v1_usage);
      c.max_usage = number(w::v1_max_usage);
      c.kernel_usage = number(w::v1_kmem_usage);
      c.kernel_max_usage = number(w::v1_kmem_max_usage);
      c.memory_measured = {"RSS",          "Cache",           "Swap", "Usage", "Max Usage",
                           "Kernel Usage", "Kernel Max Usage"};
      c.events_max = number(w::v1_failcnt);
      values(w::v1_oom, kv{"oom_kill", &c.events_oom_kill});
    }
    if (!v1_.cpuacct.empty()) {
      c.user_ns = number(w::v1_user);
      c.system_ns = number(w::v1_sys);
    }
    if (!v1_.cpu.empty())
      values(w::v1_cpu, kv{"nr_throttled", &c.throttled_periods},
             kv{"throttled_time", &c.throttled_ns});
  }
  c.cpu_measured = {"System Mode", "User Mode", "Throttled Periods", "Throttled Time", "Percent"};
  if (auto psi = f.read(w::psi)) {
    c.pressure_some_avg10 = cgroup::pressure_avg10(*psi, "some");
    c.pressure_full_avg10 = cgroup::pressure_avg10(*psi, "full");
  }
  return c;
}

void cgroup_strategy::after_start(const launch_plan&, int) {
  oom_baseline_ = 0;
  oom_baseline_ = oom_kills();
}

std::uint64_t cgroup_strategy::oom_kills() const {
  if (!active_)
    return 0;
  auto since = [this](std::uint64_t total) {
    return total > oom_baseline_ ? total - oom_baseline_ : 0;
  };
  if (v2_limits_) {
    auto events = cgroup::read_file(join(v2_dir_, "memory.events"));
    return since(events ? cgroup::keyed_value(*events, "oom_kill").value_or(0) : 0);
  }
  if (v1_.memory.empty())
    return 0;
  auto oom = cgroup::read_file(join(v1_.memory, "memory.oom_control"));
  return since(oom ? cgroup::keyed_value(*oom, "oom_kill").value_or(0) : 0);
}

std::vector<std::string> cgroup_strategy::directories() const {
  std::vector<std::string> out;
  for (const auto* d : {&v2_dir_, &v1_.memory, &v1_.cpu, &v1_.cpuacct, &v1_.cpuset, &v1_.pids,
                        &v1_.freezer, &v1_.devices}) {
    if (!d->empty() && std::find(out.begin(), out.end(), *d) == out.end())
      out.push_back(*d);
  }
  for (const auto& d : v1_.others) {
    if (std::find(out.begin(), out.end(), d) == out.end())
      out.push_back(d);
  }
  return out;
}

result<void> cgroup_strategy::teardown() {
  if (!active_)
    return {};
  sample_files_.reset();  // no file of the task's cgroups held open
  // Whatever is left is killed (frozen, through pidfds) and the directories
  // go once it has exited; a process still exiting makes this answer
  // errc::resource_busy and the executor calls again shortly, never
  // sleeping here.
  // Child cgroups too (a task running as root may make them).
  std::vector<std::string> all;
  for (const auto& d : directories()) {
    for (auto& t : cgroup::tree(d))
      all.push_back(std::move(t));
  }
  cgroup::kill_target everything{all, v2_dir_, v1_.freezer, {}};
  for (const auto& d : all) {
    if (!cgroup::procs(d).empty()) {
      cgroup::kill_members(everything);
      break;
    }
  }
  result<void> out;
  for (const auto& d : directories()) {
    auto r = cgroup::remove_once(d);
    if (!r && (out || r.error().code == make_error_code(errc::resource_busy)))
      out = r;
  }
  if (out)
    active_ = false;
  return out;
}

}  // namespace taskexec
