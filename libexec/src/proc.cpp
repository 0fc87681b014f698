#include "taskexec/detail/proc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>

namespace taskexec::detail {
namespace {

template <class T>
bool to_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// Read a small /proc file in one read(); /proc/<pid>/stat fits in 1 KiB.
bool read_small(const char* path, std::string& out) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0)
    return false;
  out.assign(buf, static_cast<std::size_t>(n));
  return true;
}

// Read a /proc file to its end (at most `limit` bytes): a children list
// holds a pid per child, far beyond one read's worth for a busy parent.
bool read_whole(const char* path, std::string& out, std::size_t limit = 4u << 20) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  out.clear();
  char buf[4096];
  while (out.size() < limit) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return true;
}

}  // namespace

std::optional<proc_stat> parse_proc_stat(std::string_view s) {
  proc_stat st;
  auto open = s.find('(');
  auto close = s.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return std::nullopt;
  std::string_view pid_text = s.substr(0, open);
  while (!pid_text.empty() && pid_text.back() == ' ')
    pid_text.remove_suffix(1);
  // The kernel writes only positive pids; a 0 or a negative one taken on
  // would reach kill() as "our process group" or "everything".
  if (!to_number(pid_text, st.pid) || st.pid <= 0)
    return std::nullopt;
  st.comm = std::string(s.substr(open + 1, close - open - 1));
  // Fields after comm, 1-based numbering from the kernel's proc(5): 3 state,
  // 4 ppid, 5 pgrp, 6 session, ..., 22 starttime.
  std::string_view rest = s.substr(close + 1);
  int field = 2;
  std::size_t pos = 0;
  while (pos < rest.size() && field < 24) {
    while (pos < rest.size() && rest[pos] == ' ')
      ++pos;
    std::size_t end = rest.find(' ', pos);
    if (end == std::string_view::npos)
      end = rest.size();
    std::string_view tok = rest.substr(pos, end - pos);
    while (!tok.empty() && (tok.back() == '\n'))
      tok.remove_suffix(1);
    if (tok.empty())
      break;
    ++field;
    switch (field) {
      case 3:
        if (tok.size() != 1)
          return std::nullopt;
        st.state = tok[0];
        break;
      case 4:
        if (!to_number(tok, st.ppid))
          return std::nullopt;
        break;
      case 5:
        if (!to_number(tok, st.pgrp))
          return std::nullopt;
        break;
      case 6:
        if (!to_number(tok, st.session))
          return std::nullopt;
        break;
      case 14:
        (void)to_number(tok, st.utime_ticks);
        break;
      case 15:
        (void)to_number(tok, st.stime_ticks);
        break;
      case 16:
        (void)to_number(tok, st.cutime_ticks);
        break;
      case 17:
        (void)to_number(tok, st.cstime_ticks);
        break;
      case 20:
        (void)to_number(tok, st.num_threads);
        break;
      case 22:
        if (!to_number(tok, st.start_ticks))
          return std::nullopt;
        break;
      case 24:
        (void)to_number(tok, st.rss_pages);
        break;
      default:
        break;
    }
    pos = end;
  }
  if (field < 22)
    return std::nullopt;
  return st;
}

std::vector<int> parse_children_list(std::string_view rest) {
  std::vector<int> out;
  for (auto space = rest.find(' '); space != std::string_view::npos; space = rest.find(' ')) {
    int pid = 0;
    if (to_number(rest.substr(0, space), pid) && pid > 0)
      out.push_back(pid);
    rest.remove_prefix(space + 1);
  }
  return out;
}

std::optional<std::uint64_t> parse_status_kib(std::string_view s, std::string_view key) {
  while (!s.empty()) {
    const auto nl = s.find('\n');
    std::string_view line = s.substr(0, nl);
    s = nl == std::string_view::npos ? std::string_view{} : s.substr(nl + 1);
    if (line.size() <= key.size() || !line.starts_with(key) || line[key.size()] != ':')
      continue;
    line.remove_prefix(key.size() + 1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
      line.remove_prefix(1);
    if (!line.ends_with(" kB"))
      return std::nullopt;
    line.remove_suffix(3);
    std::uint64_t kib = 0;
    if (!to_number(line, kib) || kib > (UINT64_MAX >> 10))
      return std::nullopt;
    return kib;
  }
  return std::nullopt;
}

std::optional<proc_stat> read_proc_stat(int pid) {
  char path[32];
  auto [p, ec] = std::to_chars(path, path + 16, pid);
  (void)ec;
  std::string_view tail = "/stat";
  std::string full = "/proc/" + std::string(path, p) + std::string(tail);
  std::string content;
  if (!read_small(full.c_str(), content))
    return std::nullopt;
  return parse_proc_stat(content);
}

proc_files::proc_files() noexcept : max_open_(16) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0)
    max_open_ = std::clamp<std::size_t>(static_cast<std::size_t>(r.rlim_cur / 8), 16, 256);
}

proc_files::~proc_files() {
  close_all();
}

proc_files::proc_files(proc_files&& o) noexcept
    : max_open_(o.max_open_), entries_(std::move(o.entries_)) {
  o.entries_.clear();
}

proc_files& proc_files::operator=(proc_files&& o) noexcept {
  if (this != &o) {
    close_all();
    max_open_ = o.max_open_;
    entries_ = std::move(o.entries_);
    o.entries_.clear();
  }
  return *this;
}

void proc_files::close_all() noexcept {
  for (auto& e : entries_)
    for (int fd : e.fds)
      if (fd >= 0)
        ::close(fd);
  entries_.clear();
}

std::optional<std::string_view> proc_files::read(int pid, int which) {
  static constexpr const char* names[3] = {"/stat", "/status", "/children"};
  char path[48];
  auto open_file = [&] {
    char* p = path;
    for (const char* c = "/proc/"; *c; ++c)
      *p++ = *c;
    p = std::to_chars(p, path + 17, pid).ptr;
    if (which == 2) {  // task/<pid>/children
      for (const char* c = "/task/"; *c; ++c)
        *p++ = *c;
      p = std::to_chars(p, p + 11, pid).ptr;
    }
    for (const char* c = names[which]; *c; ++c)
      *p++ = *c;
    *p = '\0';
    return ::open(path, O_RDONLY | O_CLOEXEC);
  };
  auto read_at_0 = [&](int fd) -> ssize_t {
    ssize_t n;
    do {
      n = ::pread(fd, buf_, sizeof buf_, 0);
    } while (n < 0 && errno == EINTR);
    return n;
  };
  auto it = std::lower_bound(entries_.begin(), entries_.end(), pid,
                             [](const entry& e, int p) { return e.pid < p; });
  if (it == entries_.end() || it->pid != pid) {
    if (entries_.size() >= max_open_) {
      // Full: this one is read as before, opened and closed.
      const int fd = open_file();
      if (fd < 0)
        return std::nullopt;
      const ssize_t n = read_at_0(fd);
      ::close(fd);
      if (n < 0)
        return std::nullopt;
      return std::string_view(buf_, static_cast<std::size_t>(n));
    }
    it = entries_.insert(it, entry{pid, {-1, -1, -1}});
  }
  int& fd = it->fds[which];
  // (An empty read is content: a children list without children.)
  ssize_t n = fd >= 0 ? read_at_0(fd) : -1;
  if (n < 0) {
    // Not open yet, or the process it was opened for is gone: the pid now
    // (a new holder, or nobody). Gone: its other files go too, since a
    // reaped task's children file reads empty rather than failing, and
    // would hide the new holder's children.
    if (fd >= 0) {
      for (int& other : it->fds) {
        if (other >= 0)
          ::close(other);
        other = -1;
      }
    }
    fd = open_file();
    n = fd >= 0 ? read_at_0(fd) : -1;
    if (n < 0) {
      if (fd >= 0)
        ::close(fd);
      fd = -1;
      if (it->fds[0] < 0 && it->fds[1] < 0 && it->fds[2] < 0)
        entries_.erase(it);
      return std::nullopt;
    }
  }
  return std::string_view(buf_, static_cast<std::size_t>(n));
}

std::optional<proc_stat> proc_files::stat(int pid) {
  auto text = read(pid, 0);
  if (!text)
    return std::nullopt;
  return parse_proc_stat(*text);
}

std::optional<std::uint64_t> proc_files::status_kib(int pid, std::string_view key) {
  auto text = read(pid, 1);
  if (!text)
    return std::nullopt;
  return parse_status_kib(*text, key);
}

std::optional<std::string_view> proc_files::children(int pid) {
  return read(pid, 2);
}

void proc_files::keep_only(const std::vector<int>& pids) {
  std::erase_if(entries_, [&](entry& e) {
    if (std::find(pids.begin(), pids.end(), e.pid) != pids.end())
      return false;
    for (int fd : e.fds)
      if (fd >= 0)
        ::close(fd);
    return true;
  });
}

std::vector<proc_stat> scan_processes() {
  std::vector<proc_stat> out;
  DIR* dir = ::opendir("/proc");
  if (!dir)
    return out;
  std::string path;
  std::string content;
  while (dirent* e = ::readdir(dir)) {
    int pid = 0;
    std::string_view name = e->d_name;
    if (!to_number(name, pid) || pid <= 0)
      continue;
    path.assign("/proc/").append(name).append("/stat");
    if (!read_small(path.c_str(), content))
      continue;
    if (auto st = parse_proc_stat(content))
      out.push_back(std::move(*st));
  }
  ::closedir(dir);
  return out;
}

std::optional<std::vector<proc_stat>> scan_descendants(int root, proc_files* files, int helper) {
  static const bool supported = [] {
    std::string self = "/proc/self/task/" + std::to_string(::gettid()) + "/children";
    return ::access(self.c_str(), R_OK) == 0;
  }();
  if (!supported)
    return std::nullopt;
  std::vector<proc_stat> out;
  std::vector<std::pair<int, int>> queue;  // pid, threads (0: unknown)
  std::unordered_set<int> seen{root};
  if (helper > 0)
    seen.insert(helper);  // never read, never listed
  std::string path, content;
  std::vector<std::string> root_lists;  // root's threads' children files, for the re-read
  // Queue the children listed in one thread's file.
  auto take_list = [&](std::string_view list) {
    for (int child : parse_children_list(list)) {
      if (!seen.insert(child).second)
        continue;
      if (auto st = files ? files->stat(child) : read_proc_stat(child)) {
        queue.emplace_back(child, st->num_threads);
        out.push_back(std::move(*st));
      }
    }
  };
  auto read_list = [&](const std::string& file) {
    if (!read_whole(file.c_str(), content))
      return false;
    take_list(content);
    return true;
  };
  auto children_of = [&](int parent, int threads) {
    const std::string base = "/proc/" + std::to_string(parent) + "/task";
    if (threads == 1) {
      // One thread, whose id is the pid: no need to list the task dir.
      if (files) {
        // Kept open; a list that may not have fit in one read (a page
        // holds ~500 pids, far more than half a page) is read whole below.
        auto list = files->children(parent);
        if (!list)
          return;  // gone meanwhile
        if (list->size() < 2048) {
          take_list(*list);  // parsed before the stats reuse the buffer
          return;
        }
      }
      read_list(base + "/" + std::to_string(parent) + "/children");
      return;
    }
    DIR* dir = ::opendir(base.c_str());
    if (!dir)
      return;  // gone meanwhile
    while (dirent* e = ::readdir(dir)) {
      std::string_view tid = e->d_name;
      if (tid.empty() || tid[0] == '.')
        continue;
      path.assign(base).append("/").append(tid).append("/children");
      read_list(path);
      if (parent == root)
        root_lists.push_back(path);
    }
    ::closedir(dir);
  };
  auto drain = [&] {
    for (std::size_t i = 0; i < queue.size(); ++i)
      children_of(queue[i].first, queue[i].second);
    queue.clear();
  };
  // The root's threads: with kept files and a root of one thread (a daemon),
  // its one list is read through them, no listing of its task dir.
  int root_threads = 0;
  if (files) {
    if (auto st = files->stat(root))
      root_threads = st->num_threads == 1 ? 1 : 0;
  }
  children_of(root, root_threads);
  drain();
  // A process that exited during the walk left its children to the root
  // (the subreaper), whose lists were read first: read them once more (a
  // parent that died after its stat was read still shows an empty list, so
  // there is no telling it happened).
  if (root_threads == 1)
    children_of(root, 1);
  for (const auto& list : root_lists)
    read_list(list);
  drain();
  return out;
}

std::uint64_t boot_ticks_now() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return static_cast<std::uint64_t>(ts.tv_sec) * static_cast<std::uint64_t>(hz) +
         static_cast<std::uint64_t>(ts.tv_nsec) / (1000000000ull / static_cast<std::uint64_t>(hz));
}

std::vector<proc_stat> task_members(const std::vector<proc_stat>& table, int task_pid,
                                    std::uint64_t task_start_ticks,
                                    std::optional<std::uint64_t> reaped_ticks, int reaper_pid,
                                    const std::vector<int>& adopted) {
  std::unordered_set<int> adopted_set(adopted.begin(), adopted.end());
  std::unordered_multimap<int, const proc_stat*> children;
  std::vector<const proc_stat*> queue;
  std::unordered_set<int> member;
  bool recycled = false;
  for (const auto& p : table) {
    children.emplace(p.ppid, &p);
    if (p.pid == task_pid && (reaped_ticks || p.start_ticks != task_start_ticks))
      recycled = true;
  }
  for (const auto& p : table) {
    if (p.start_ticks < task_start_ticks)
      continue;
    const bool by_id = !recycled &&
                       (p.pid == task_pid || p.session == task_pid || p.pgrp == task_pid) &&
                       (!reaped_ticks || p.start_ticks < *reaped_ticks);
    const bool seed = by_id || (p.ppid == reaper_pid && adopted_set.contains(p.pid));
    if (seed && member.insert(p.pid).second)
      queue.push_back(&p);
  }
  // Descendants of members, whatever session they moved to.
  for (std::size_t i = 0; i < queue.size(); ++i) {
    auto [b, e] = children.equal_range(queue[i]->pid);
    for (auto it = b; it != e; ++it) {
      const proc_stat* c = it->second;
      if (c->start_ticks < task_start_ticks)
        continue;
      if (member.insert(c->pid).second)
        queue.push_back(c);
    }
  }
  std::vector<proc_stat> out;
  out.reserve(queue.size());
  for (const auto* p : queue)
    out.push_back(*p);
  return out;
}

void kill_tree(int pid, std::uint64_t start_ticks) {
  for (int pass = 0; pass < 3; ++pass) {
    auto table = scan_processes();
    auto members = task_members(table, pid, start_ticks, std::nullopt, ::getpid(), {});
    // A child of `pid` that leads a session of its own (a command that
    // taskexec-init gave a terminal) brings its session: what it started
    // stays in it even once re-parented away from the tree.
    for (const auto& child : table) {
      if (child.ppid != pid || child.session != child.pid || child.start_ticks < start_ticks)
        continue;
      for (const auto& p : table) {
        bool known = false;
        for (const auto& m : members)
          known = known || m.pid == p.pid;
        if (!known && p.session == child.session && p.start_ticks >= start_ticks)
          members.push_back(p);
      }
    }
    std::size_t live = 0;
    for (const auto& m : members) {
      if (m.state == 'Z')
        continue;
      ++live;
      int fd = static_cast<int>(::syscall(SYS_pidfd_open, m.pid, 0));
      if (fd < 0)
        continue;
      auto now = read_proc_stat(m.pid);
      if (now && now->start_ticks == m.start_ticks)
        ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
      ::close(fd);
    }
    if (live == 0)
      return;
  }
}

}  // namespace taskexec::detail
