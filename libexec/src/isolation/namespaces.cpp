// The container strategy (see taskexec/isolation/container.hpp).
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "process_setup.hpp"
#include "taskexec/cgroups.hpp"
#include "taskexec/detail/safe_open.hpp"
#include "taskexec/isolation/capabilities.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/isolation/container.hpp"
#include "taskexec/isolation/host.hpp"
#include "taskexec/logging.hpp"

extern "C" {
extern const unsigned char taskexec_init_image[];
extern const unsigned char taskexec_init_image_end[];
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

namespace taskexec {
namespace {

// Descriptor numbers taskexec-init expects (see libexec/init/taskexec_init.c).
constexpr int k_init_report_fd = 3;
constexpr int k_init_status_fd = 4;
// Descriptors the child keeps for exec are moved at least this high, above
// every fixed number they are dup2()ed onto.
constexpr int k_high_fd = 10;

struct mount_attr_arg {
  std::uint64_t attr_set, attr_clr, propagation, userns_fd;
};

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

// Make `rel` (normalized, relative) exist under `root` as a directory (or,
// when !dir, an empty file), creating what is missing. The walk goes through
// descriptors and never follows a symlink: a symlink or a non-directory on
// the way is refused, so nothing is created outside the root.
result<void> make_mount_point(const std::string& root, const std::string& rel, bool dir) {
  int dfd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return make_system_error(errno, "open \"" + root + "\"");
  std::string at = root;
  std::string_view rest = rel;
  result<void> out;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    const std::string part(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    at += "/" + part;
    const bool last = rest.empty();
    if (!last || dir) {
      if (::mkdirat(dfd, part.c_str(), 0755) != 0 && errno != EEXIST) {
        out = make_system_error(errno, "mkdir \"" + at + "\"");
        break;
      }
      int next = ::openat(dfd, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) {
        struct stat st {};
        const bool link =
            ::fstatat(dfd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
        out = link ? make_error(errc::invalid_argument,
                                "mount point \"" + at + "\" is a symlink: refused")
                   : make_system_error(errno, "mount point \"" + at + "\"");
        break;
      }
      ::close(dfd);
      dfd = next;
    } else {
      // Made without opening it, and an existing one only looked at: an
      // open for writing would block on a FIFO planted there, or open a
      // device node.
      if (::mknodat(dfd, part.c_str(), S_IFREG | 0644, 0) != 0 && errno != EEXIST) {
        out = make_system_error(errno, "mount point \"" + at + "\"");
        break;
      }
      struct stat st {};
      if (::fstatat(dfd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        out = make_system_error(errno, "mount point \"" + at + "\"");
        break;
      }
      if (S_ISLNK(st.st_mode)) {
        out =
            make_error(errc::invalid_argument, "mount point \"" + at + "\" is a symlink: refused");
        break;
      }
      if (!S_ISREG(st.st_mode)) {
        out = make_error(errc::invalid_argument, "mount point \"" + at +
                                                     "\" is not a regular file (the mount's "
                                                     "source is a file): refused");
        break;
      }
    }
  }
  ::close(dfd);
  return out;
}

// Normalize a path inside the root: relative, no ".", no "..", no "//".
// Empty when it names the root itself or leaves it.
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

// The status taskexec-init wrote on its status pipe (read end `fd`, then
// closed), or, when it wrote none, `reaped`: init itself was killed (a
// SIGKILL takes the PID namespace down with it) and its status is the
// command's. Without a pipe (no init), `reaped` as it is.
int init_status(int& fd, int reaped) noexcept {
  if (fd < 0)
    return reaped;
  int status = 0;
  ssize_t n;
  do {
    n = ::read(fd, &status, sizeof status);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  fd = -1;
  return n == static_cast<ssize_t>(sizeof status) ? status : reaped;
}

// Child side: "/proc/self/fd/<fd>[/<suffix>]" into `out` (PATH_MAX bytes).
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

// Child side: an O_PATH descriptor of `rel` beneath `dirfd`, resolved with
// no symlink followed and never above `dirfd` (openat2; before Linux 5.6, a
// walk with O_NOFOLLOW on every component: the parent's check of the same
// path may be stale by now). -1 with errno on failure.
int open_beneath(int dirfd, const char* rel) noexcept {
  const int fd = detail::open_beneath_raw(dirfd, rel, O_PATH);
  if (fd < 0) {
    errno = -fd;
    return -1;
  }
  return fd;
}

// Child side: set mount attributes on the mount at `fd`, recursively
// (mount_setattr; before Linux 5.12 a remount of that mount alone, with
// `remount_flags`, keeping its nosuid/nodev/noexec).
bool set_mount_attr(int fd, std::uint64_t attrs, unsigned long remount_flags) noexcept {
  if (attrs == 0)
    return true;
  mount_attr_arg attr{attrs, 0, 0, 0};
  if (::syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) == 0)
    return true;
  if (errno != ENOSYS)
    return false;
  struct statfs sf {};
  unsigned long keep = 0;
  if (::fstatfs(fd, &sf) == 0) {
    keep = (sf.f_flags & ST_NOSUID ? MS_NOSUID : 0) | (sf.f_flags & ST_NODEV ? MS_NODEV : 0) |
           (sf.f_flags & ST_NOEXEC ? MS_NOEXEC : 0) | (sf.f_flags & ST_RDONLY ? MS_RDONLY : 0);
  }
  if (attrs & MOUNT_ATTR_NODEV)
    keep |= MS_NODEV;
  char path[PATH_MAX];
  fd_path(path, fd, nullptr);
  return ::mount(nullptr, path, nullptr, MS_BIND | MS_REMOUNT | remount_flags | keep, nullptr) == 0;
}

// Child side: the propagation of the mount at `fd` and below.
bool set_propagation(int fd, unsigned long propagation) noexcept {
  char path[PATH_MAX];
  fd_path(path, fd, nullptr);
  return ::mount(nullptr, path, nullptr, MS_REC | propagation, nullptr) == 0;
}

}  // namespace

struct container_strategy::prepared {
  struct node {
    std::string path;
    mode_t mode;
    dev_t rdev;
    uid_t uid;
    gid_t gid;
  };
  struct bind {
    std::string source, rel;  // rel: inside the root
    unsigned long propagation;
    bool readonly;
  };

  std::string root;
  std::string hostname;
  bool private_pid = true;
  bool private_ipc = true;
  bool pivot = true;
  bool binds_nodev = false;  // no device cgroup: nothing but /dev may hold devices
  int netns_fd = -1;
  std::vector<std::string> dev_dirs;                       // relative to /dev, for listed devices
  std::vector<node> nodes;                                 // paths relative to /dev
  std::vector<std::pair<std::string, std::string>> links;  // {target, name in /dev}
  std::vector<bind> binds;
  std::string cwd;                   // inside the root
  std::vector<mount_config> mounts;  // for binary lookup by a later Exec
  bool change_user = false;          // the task's identity, for a later Exec
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool root_user = true;
  cap_t regain = nullptr;  // permitted as the executor's, effective = permitted
  cap_t final_caps = nullptr;
  std::vector<cap_value_t> drop_bound, ambient;
  int status_write = -1;

  prepared() = default;
  prepared(const prepared&) = delete;
  prepared& operator=(const prepared&) = delete;
  ~prepared() {
    if (regain)
      cap_free(regain);
    if (final_caps)
      cap_free(final_caps);
    close_fds();
  }
  void close_fds() noexcept {
    for (int* fd : {&netns_fd, &status_write}) {
      if (*fd >= 0)
        ::close(*fd);
      *fd = -1;
    }
  }
};

result<int> init_image_fd() {
  static std::mutex mu;
  static int fd = -1;
  std::lock_guard lock(mu);
  if (fd >= 0)
    return fd;
  error failure;
  [&] {
    int m = static_cast<int>(
        ::syscall(SYS_memfd_create, "taskexec-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC));
    if (m < 0 && (errno == EINVAL || errno == EACCES))  // before 6.3: no MFD_EXEC
      m = static_cast<int>(
          ::syscall(SYS_memfd_create, "taskexec-init", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (m < 0) {
      failure = make_system_error(errno, "memfd_create taskexec-init");
      return;
    }
    const auto* p = taskexec_init_image;
    // Two symbols of one blob (init_blob.S): its start and its end.
    // cppcheck-suppress comparePointers
    std::size_t left = static_cast<std::size_t>(taskexec_init_image_end - taskexec_init_image);
    while (left > 0) {
      ssize_t n = ::write(m, p, left);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        failure = make_system_error(errno, "write taskexec-init");
        ::close(m);
        return;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::fchmod(m, 0555);
    if (::fcntl(m, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
      failure = make_system_error(errno, "seal taskexec-init");
      ::close(m);
      return;
    }
    fd = move_high(m);
    if (fd < 0)
      failure = make_system_error(errno, "dup taskexec-init");
  }();
  if (fd < 0)
    return failure;  // tried again on the next launch
  return fd;
}

// Parent side: make `plan` exec taskexec-init from its memfd, which starts
// `exe_in_root` (argv follows) and reports on the launch pipe and on a new
// status pipe: its read end (non-blocking) in `status_read`, its write end
// (passed to init as fd 4) in `status_write`.
static result<void> run_under_init(launch_plan& plan, const std::string& exe_in_root,
                                   int& status_read, int& status_write) {
  auto image = init_image_fd();
  if (!image)
    return image.error();
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return make_system_error(errno, "pipe2");
  status_read = pipefd[0];
  status_write = move_high(pipefd[1]);
  if (status_write < 0)
    return make_system_error(errno, "dup status pipe");
  ::fcntl(status_read, F_SETFL, O_NONBLOCK);
  plan.exec_fd = *image;
  plan.report_fd = k_init_report_fd;
  plan.fd_map.emplace_back(status_write, k_init_status_fd);
  plan.argv_storage.push_back("taskexec-init");
  if (plan.controlling_tty) {
    // The command gets a session of its own, with the terminal; init keeps none.
    plan.tty_by_init = true;
    plan.argv_storage.push_back("-t");
  }
  plan.argv_storage.push_back(exe_in_root);
  return {};
}

container_strategy::container_strategy(std::string task_id, cgroup_strategy* cgroup)
    : task_id_(std::move(task_id)), cgroup_(cgroup) {}

container_strategy::~container_strategy() {
  (void)teardown();
  delete p_;
}

isolation_features container_strategy::features() const noexcept {
  using f = isolation_feature;
  return static_cast<unsigned>(f::mounts) | static_cast<unsigned>(f::devices) |
         static_cast<unsigned>(f::network_isolation) | static_cast<unsigned>(f::private_pid) |
         static_cast<unsigned>(f::private_ipc) | static_cast<unsigned>(f::capabilities) |
         static_cast<unsigned>(f::no_pivot_root);
}

result<void> container_strategy::validate(const exec_command& cmd) const {
  if (::geteuid() != 0) {
    return make_error(errc::permission_denied,
                      "isolation \"container\" needs root (the executor "
                      "runs as uid " +
                          std::to_string(::geteuid()) + ")");
  }
  if (cmd.task_dir.empty())
    return make_error(errc::invalid_argument,
                      "isolation \"container\" needs task_dir (the task's root)");
  if (cmd.task_dir.front() != '/') {
    return make_error(errc::invalid_argument,
                      "task_dir \"" + cmd.task_dir + "\" is not an absolute path");
  }
  if (auto m = capability_mask(cmd.capabilities); !m)
    return m.error();
  // What /dev holds already; a listed device may not take one of those
  // names, nor another device's.
  static const std::set<std::string, std::less<>> standard = {
      "null",  "zero",   "full",   "random", "urandom", "tty", "fd",
      "stdin", "stdout", "stderr", "ptmx",   "pts",     "shm"};
  std::set<std::string> seen;
  for (std::size_t i = 0; i < cmd.devices.size(); ++i) {
    const auto& d = cmd.devices[i];
    const std::string at = "devices[" + std::to_string(i) + "]";
    const std::string& in_task = d.task_path.empty() ? d.host_path : d.task_path;
    const auto rel = relative_in_root(in_task);
    if (in_task.front() != '/' || rel.rfind("dev/", 0) != 0) {
      return make_error(errc::invalid_argument,
                        at + ": the task path \"" + in_task + "\" must be a path under /dev");
    }
    const auto name = rel.substr(4);
    if (standard.contains(name.substr(0, name.find('/'))) || !seen.insert(name).second)
      return make_error(errc::invalid_argument,
                        at + ": /" + rel + " is already in the task's /dev");
  }
  std::vector<std::string> targets;
  for (std::size_t i = 0; i < cmd.mounts.size(); ++i) {
    const std::string at =
        "mounts[" + std::to_string(i) + "].task_path \"" + cmd.mounts[i].task_path + "\"";
    const auto rel = relative_in_root(cmd.mounts[i].task_path);
    if (rel.empty())
      return make_error(errc::invalid_argument, at + " must name a path below the root");
    for (const char* own : {"proc", "dev", "sys"}) {
      const std::string o(own);
      if (rel == o || rel.rfind(o + "/", 0) == 0) {
        return make_error(errc::invalid_argument,
                          at + " is in /" + o + ", which the container mounts itself");
      }
    }
    for (std::size_t j = 0; j < targets.size(); ++j) {
      const auto& t = targets[j];
      if (rel == t || rel.rfind(t + "/", 0) == 0 || t.rfind(rel + "/", 0) == 0) {
        return make_error(errc::invalid_argument, at + " overlaps mounts[" + std::to_string(j) +
                                                      "] (nested mounts are not supported)");
      }
    }
    targets.push_back(rel);
  }
  if (cmd.network_isolation && cmd.network_isolation->mode != "host" &&
      !cmd.network_isolation->mode.empty() && cmd.network_isolation->path.empty()) {
    return make_error(errc::invalid_argument, "network_isolation.path is empty for mode \"" +
                                                  cmd.network_isolation->mode + "\"");
  }
  return {};
}

result<void> container_strategy::before_fork(const exec_command& cmd, launch_plan& plan) {
  delete p_;
  p_ = new prepared;
  auto& p = *p_;
  auto fail = [&](error e) -> result<void> {
    launch_failed(plan);
    return e;
  };

  if (auto r = prepare_process(cmd, plan); !r)
    return fail(r.error());

  std::error_code ec;
  p.root = std::filesystem::canonical(cmd.task_dir, ec).string();
  if (ec)
    return fail(make_system_error(ec.value(), "task_dir \"" + cmd.task_dir + "\""));
  if (p.root == "/")
    return fail(make_error(errc::invalid_argument, "task_dir \"/\" cannot be a task's root"));
  p.hostname = task_id_.substr(0, 64);
  p.private_pid = isolation_mode("private", cmd.default_pid_mode) != "host";
  p.private_ipc = isolation_mode("private", cmd.default_ipc_mode) != "host";
  p.pivot = !cmd.no_pivot_root;

  // The binary, inside the root.
  auto bin = lookup_binary_in_root(cmd.cmd, p.root, cmd.mounts,
                                   plan.change_user ? std::optional(plan.uid) : std::nullopt);
  if (!bin)
    return fail(bin.error());

  // Network namespace.
  if (cmd.network_isolation && !cmd.network_isolation->path.empty() &&
      cmd.network_isolation->mode != "host") {
    const auto& path = cmd.network_isolation->path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return fail(make_system_error(errno, "network namespace \"" + path + "\""));
    p.netns_fd = fd;
    if (::ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
      return fail(make_error(errc::invalid_argument,
                             "network_isolation.path \"" + path + "\" is not a network namespace"));
    }
  }

  // Mount points in the task dir.
  for (const char* dir : {"proc", "dev", "sys"}) {
    if (auto m = make_mount_point(p.root, dir, true); !m)
      return fail(m.error());
  }

  for (const auto& m : cmd.mounts) {
    struct stat st {};
    if (::stat(m.host_path.c_str(), &st) != 0)
      return fail(make_system_error(errno, "mount source \"" + m.host_path + "\""));
    const auto rel = relative_in_root(m.task_path);
    if (auto made = make_mount_point(p.root, rel, S_ISDIR(st.st_mode)); !made)
      return fail(made.error());
    unsigned long propagation = MS_PRIVATE;
    if (m.propagation_mode == "host-to-task")
      propagation = MS_SLAVE;
    else if (m.propagation_mode == "bidirectional")
      propagation = MS_SHARED;
    p.binds.push_back({m.host_path, rel, propagation, m.readonly});
  }

  // /dev: the standard nodes, then the listed devices.
  for (auto [name, major, minor] :
       {std::tuple{"null", 1, 3}, std::tuple{"zero", 1, 5}, std::tuple{"full", 1, 7},
        std::tuple{"random", 1, 8}, std::tuple{"urandom", 1, 9}, std::tuple{"tty", 5, 0}}) {
    p.nodes.push_back({name, static_cast<mode_t>(S_IFCHR | 0666),
                       makedev(static_cast<unsigned>(major), static_cast<unsigned>(minor)), 0, 0});
  }
  for (auto [target, name] :
       {std::pair{"/proc/self/fd", "fd"}, std::pair{"/proc/self/fd/0", "stdin"},
        std::pair{"/proc/self/fd/1", "stdout"}, std::pair{"/proc/self/fd/2", "stderr"},
        std::pair{"pts/ptmx", "ptmx"}}) {
    p.links.emplace_back(target, name);
  }
  std::vector<std::string> device_rules;
  for (const auto& d : cmd.devices) {
    struct stat st {};
    if (::stat(d.host_path.c_str(), &st) != 0)
      return fail(make_system_error(errno, "device \"" + d.host_path + "\""));
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
      return fail(make_error(errc::invalid_argument,
                             "device \"" + d.host_path + "\" is not a character or block device"));
    }
    // Relative to /dev; its directories outermost first.
    const auto rel = relative_in_root(d.task_path.empty() ? d.host_path : d.task_path).substr(4);
    for (auto slash = rel.find('/'); slash != std::string::npos; slash = rel.find('/', slash + 1))
      p.dev_dirs.push_back(rel.substr(0, slash));
    p.nodes.push_back({rel, st.st_mode & (S_IFMT | 07777), st.st_rdev, st.st_uid, st.st_gid});
    const std::string perms = d.cgroup_permissions.empty() ? "rwm" : d.cgroup_permissions;
    device_rules.push_back(std::string(S_ISCHR(st.st_mode) ? "c " : "b ") +
                           std::to_string(major(st.st_rdev)) + ":" +
                           std::to_string(minor(st.st_rdev)) + " " + perms);
  }

  // The device cgroup: deny all, allow mknod and the standard nodes, then the list.
  const std::string devices_dir = cgroup_ ? cgroup_->devices_dir() : std::string();
  if (devices_dir.empty() && !cmd.devices.empty()) {
    return fail(make_error(errc::unsupported,
                           "devices need the cgroup v1 devices controller (cgroup v2 BPF device "
                           "programs are not built)"));
  }
  if (!devices_dir.empty()) {
    std::vector<std::string> rules = {"c *:* m",   "b *:* m",    "c 1:3 rwm", "c 1:5 rwm",
                                      "c 1:7 rwm", "c 1:8 rwm",  "c 1:9 rwm", "c 5:0 rwm",
                                      "c 5:2 rwm", "c 136:* rwm"};
    rules.insert(rules.end(), device_rules.begin(), device_rules.end());
    if (auto w = cgroup::write_file(join(devices_dir, "devices.deny"), "a"); !w)
      return fail(make_error(errc::resource_config_failed, w.error().message));
    for (const auto& rule : rules) {
      if (auto w = cgroup::write_file(join(devices_dir, "devices.allow"), rule); !w)
        return fail(make_error(errc::resource_config_failed, w.error().message));
    }
  }

  // Without a device cgroup nothing but /dev may hold device nodes, and a
  // task that is not root may not make any.
  p.binds_nodev = devices_dir.empty();

  // cwd inside the root.
  p.cwd = cmd.work_dir.empty() ? "/" : cmd.work_dir;
  if (p.cwd.front() != '/')
    p.cwd = "/" + p.cwd;
  plan.cwd = p.cwd;  // only named in a failure's message
  {
    struct stat st {};
    const auto on_host = join(p.root, p.cwd);
    if (::stat(on_host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return fail(make_error(errc::invalid_argument,
                             "work_dir \"" + p.cwd + "\" is not a directory in the task's root"));
    }
  }

  // Capabilities.
  p.mounts = cmd.mounts;
  p.change_user = plan.change_user;
  p.uid = plan.uid;
  p.gid = plan.gid;
  p.groups = plan.groups;
  p.root_user = !plan.change_user || plan.uid == 0;
  if (p.root_user && !cmd.capabilities.empty()) {
    detail::log(log_level::warning, "container", task_id_, "",
                "capabilities are ignored for a task running as root: it keeps the executor's");
  }
  if (!p.root_user) {
    const auto& names = cmd.capabilities.empty() ? default_caps() : cmd.capabilities;
    auto mask = capability_mask(names);
    if (!mask)
      return fail(mask.error());
    if (devices_dir.empty() && (*mask >> CAP_MKNOD) & 1) {
      *mask &= ~(std::uint64_t{1} << CAP_MKNOD);
      detail::log(log_level::warning, "container", task_id_, "",
                  "no devices cgroup on this host: MKNOD is not given to the task");
    }
    cap_t mine = cap_get_proc();
    if (!mine)
      return fail(make_system_error(errno, "cap_get_proc"));
    p.regain = cap_dup(mine);
    p.final_caps = cap_init();
    const int bits = static_cast<int>(cap_max_bits());
    std::string missing;
    for (cap_value_t c = 0; c < bits && p.regain && p.final_caps; ++c) {
      cap_flag_value_t held = CAP_CLEAR;
      cap_get_flag(mine, c, CAP_PERMITTED, &held);
      if (held == CAP_SET)
        cap_set_flag(p.regain, CAP_EFFECTIVE, 1, &c, CAP_SET);
      if ((*mask >> c) & 1) {
        if (held != CAP_SET) {
          char* n = cap_to_name(c);
          missing += std::string(missing.empty() ? "" : ", ") + (n ? n : "?");
          cap_free(n);
        }
        for (cap_flag_t f : {CAP_PERMITTED, CAP_EFFECTIVE, CAP_INHERITABLE})
          cap_set_flag(p.final_caps, f, 1, &c, CAP_SET);
        p.ambient.push_back(c);
      } else {
        p.drop_bound.push_back(c);
      }
    }
    cap_free(mine);
    if (!p.regain || !p.final_caps)
      return fail(make_system_error(ENOMEM, "capability sets"));
    if (!missing.empty()) {
      return fail(
          make_error(errc::permission_denied, "capabilities not held by the executor: " + missing));
    }
  }

  // What to exec: the task itself, or taskexec-init, which starts it.
  plan.clone_flags = CLONE_NEWNS | CLONE_NEWUTS | (p.private_pid ? CLONE_NEWPID : 0) |
                     (p.private_ipc ? CLONE_NEWIPC : 0);
  plan.executable = bin->in_root;
  plan.argv_storage.clear();
  if (p.private_pid) {
    if (auto r = run_under_init(plan, bin->in_root, status_read_, p.status_write); !r)
      return fail(r.error());
  }
  plan.argv_storage.push_back(cmd.cmd);
  plan.argv_storage.insert(plan.argv_storage.end(), cmd.args.begin(), cmd.args.end());
  return {};
}

bool container_strategy::in_child(const launch_plan& plan, child_failure& f) const noexcept {
  const auto& p = *p_;
  if (!child_session_and_stdio(plan, f))
    return false;
  if (p.netns_fd >= 0 && ::setns(p.netns_fd, CLONE_NEWNET) != 0)
    return fail_step(f, "setns network namespace");
  if (::sethostname(p.hostname.data(), p.hostname.size()) != 0)
    return fail_step(f, "sethostname");

  // Nothing mounted here reaches the host; the host's mounts still reach us.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    return fail_step(f, "make / rslave");
  const char* root = p.root.c_str();
  if (::mount(root, root, nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return fail_step(f, "bind the root");
  // From here on the root and everything in it are reached through
  // descriptors, resolved without following symlinks: what the task dir
  // holds (or someone swaps in) cannot redirect a mount.
  const int rootfd = ::open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return fail_step(f, "open the root");
  // Device nodes in the task dir are never honoured (devices come through
  // /dev, which is a mount of its own).
  if (!set_mount_attr(rootfd, MOUNT_ATTR_NODEV, 0))
    return fail_step(f, "make the root nodev");
  char path[PATH_MAX];

  auto mount_at = [&](const char* rel, const char* source, const char* type, unsigned long flags,
                      const char* data, const char* step) noexcept -> bool {
    int fd = open_beneath(rootfd, rel);
    if (fd < 0)
      return fail_step(f, step, rel);
    fd_path(path, fd, nullptr);
    int rc = ::mount(source, path, type, flags, data);
    int saved = errno;
    ::close(fd);
    errno = saved;
    return rc == 0 || fail_step(f, step, rel);
  };
  if (!mount_at("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, "mount /"))
    return false;
  if (!mount_at("dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
                "mount /"))
    return false;
  if (!mount_at("sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr,
                "mount /"))
    return false;

  // /dev is ours alone now (a tmpfs only this mount namespace sees).
  {
    const int devfd = open_beneath(rootfd, "dev");
    if (devfd < 0)
      return fail_step(f, "open /dev");
    bool ok = true;
    for (const auto& d : p.dev_dirs)
      ok = ok && (::mkdirat(devfd, d.c_str(), 0755) == 0 || errno == EEXIST ||
                  !fail_step(f, "mkdir /dev/", d.c_str()));
    for (const auto& n : p.nodes) {
      ok = ok && (::mknodat(devfd, n.path.c_str(), n.mode, n.rdev) == 0 ||
                  !fail_step(f, "mknod /dev/", n.path.c_str()));
      ok = ok && ((::fchmodat(devfd, n.path.c_str(), n.mode & 07777, 0) == 0 &&
                   ::fchownat(devfd, n.path.c_str(), n.uid, n.gid, AT_SYMLINK_NOFOLLOW) == 0) ||
                  !fail_step(f, "chmod /dev/", n.path.c_str()));
    }
    for (const auto& [target, link] : p.links)
      ok = ok && (::symlinkat(target.c_str(), devfd, link.c_str()) == 0 ||
                  !fail_step(f, "symlink /dev/", link.c_str()));
    ok = ok && (::mkdirat(devfd, "pts", 0755) == 0 || !fail_step(f, "mkdir /dev/pts"));
    ok = ok && (::mkdirat(devfd, "shm", 01777) == 0 || !fail_step(f, "mkdir /dev/shm"));
    if (ok) {
      fd_path(path, devfd, "pts");
      ok = ::mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620") == 0 ||
           !fail_step(f, "mount /dev/pts");
    }
    if (ok) {
      fd_path(path, devfd, "shm");
      ok = ::mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   "mode=1777,size=65536k") == 0 ||
           !fail_step(f, "mount /dev/shm");
    }
    ::close(devfd);
    if (!ok)
      return false;
  }

  for (const auto& b : p.binds) {
    const char* rel = b.rel.c_str();
    int fd = open_beneath(rootfd, rel);
    if (fd < 0)
      return fail_step(f, "mount point /", rel);
    fd_path(path, fd, nullptr);
    int rc = ::mount(b.source.c_str(), path, nullptr, MS_BIND | MS_REC, nullptr);
    int saved = errno;
    ::close(fd);
    errno = saved;
    if (rc != 0)
      return fail_step(f, "bind mount /", rel);
    // Again: now the bind mount itself.
    fd = open_beneath(rootfd, rel);
    if (fd < 0)
      return fail_step(f, "bind mount /", rel);
    const std::uint64_t attrs =
        (b.readonly ? MOUNT_ATTR_RDONLY : 0) | (p.binds_nodev ? MOUNT_ATTR_NODEV : 0);
    bool ok = set_propagation(fd, b.propagation) || !fail_step(f, "mount propagation /", rel);
    ok = ok &&
         (set_mount_attr(fd, attrs, b.readonly ? MS_RDONLY : 0) || !fail_step(f, "remount /", rel));
    if (ok && b.readonly) {
      struct statfs sf {};
      if (::fstatfs(fd, &sf) != 0) {
        ok = fail_step(f, "statfs /", rel);
      } else if ((sf.f_flags & ST_RDONLY) == 0) {
        errno = EROFS;
        ok = fail_step(f, "read-only mount is writable: /", rel);
      }
    }
    ::close(fd);
    if (!ok)
      return false;
  }

  // The root.
  if (::fchdir(rootfd) != 0)
    return fail_step(f, "chdir to the root");
  ::close(rootfd);
  if (p.pivot) {
    if (::syscall(SYS_pivot_root, ".", ".") != 0)
      return fail_step(f, "pivot_root");
    if (::umount2(".", MNT_DETACH) != 0)
      return fail_step(f, "detach the old root");
  } else {
    if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0)
      return fail_step(f, "move the root");
    if (::chroot(".") != 0)
      return fail_step(f, "chroot");
  }
  if (::chdir("/") != 0)
    return fail_step(f, "chdir /");

  // Masked and read-only paths (absent ones are skipped).
  for (const char* masked : {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                             "/proc/latency_stats", "/sys/firmware", "/proc/acpi", "/proc/scsi"}) {
    if (::mount("/dev/null", masked, nullptr, MS_BIND, nullptr) == 0 || errno == ENOENT)
      continue;
    if (errno != ENOTDIR || ::mount("tmpfs", masked, "tmpfs",
                                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") != 0)
      return fail_step(f, "mask a path");
  }
  for (const char* ro :
       {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}) {
    if (::mount(ro, ro, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      if (errno == ENOENT)
        continue;
      return fail_step(f, "bind a read-only path");
    }
    if (::mount(nullptr, ro, nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      return fail_step(f, "remount a path read-only");
  }

  if (!take_identity(p, plan, f))
    return false;
  if (::chdir(p.cwd.c_str()) != 0)
    return fail_step(f, "chdir");
  // As PID 1 of a new namespace the parent reads as 0: no check then.
  return child_parent_death(plan, f, !p.private_pid);
}

// Child side: the task's user, capabilities and no_new_privs.
bool container_strategy::take_identity(const prepared& p, const launch_plan& plan,
                                       child_failure& f) noexcept {
  if (!p.root_user && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
    return fail_step(f, "prctl PR_SET_KEEPCAPS");
  if (!child_credentials(plan, f))
    return false;
  if (!p.root_user) {
    if (cap_set_proc(p.regain) != 0)
      return fail_step(f, "cap_set_proc");
    for (cap_value_t c : p.drop_bound) {
      if (cap_drop_bound(c) != 0 && errno != EINVAL)
        return fail_step(f, "cap_drop_bound");
    }
    if (cap_set_proc(p.final_caps) != 0)
      return fail_step(f, "cap_set_proc");
    if (cap_reset_ambient() != 0)
      return fail_step(f, "cap_reset_ambient");
    for (cap_value_t c : p.ambient) {
      if (cap_set_ambient(c, CAP_SET) != 0)
        return fail_step(f, "cap_set_ambient");
    }
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return fail_step(f, "prctl PR_SET_NO_NEW_PRIVS");
  return true;
}

void container_strategy::after_start(const launch_plan&, int pid) {
  entry_.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  entry_.private_pid = p_ && p_->private_pid;
  entry_.ns_flags = CLONE_NEWNS | CLONE_NEWUTS;
  if (p_ && p_->private_pid)
    entry_.ns_flags |= CLONE_NEWPID;
  if (p_ && p_->private_ipc)
    entry_.ns_flags |= CLONE_NEWIPC;
  if (p_ && p_->netns_fd >= 0)
    entry_.ns_flags |= CLONE_NEWNET;
  if (p_)
    p_->close_fds();
  if (cgroup_)
    entry_.cgroup = cgroup_->membership();
}

void container_strategy::launch_failed(const launch_plan&) noexcept {
  if (p_)
    p_->close_fds();
  if (status_read_ >= 0)
    ::close(status_read_);
  status_read_ = -1;
}

int container_strategy::exit_status(int status) noexcept {
  return init_status(status_read_, status);
}

int container_strategy::signal_target(int pid, int signo) const {
  if (signo != SIGSTOP || !p_ || !p_->private_pid)
    return pid;
  // Init's children in the order they became its: the task first, then
  // any orphans.
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  int task = 0;
  return in >> task && task > 0 ? task : pid;
}

result<void> container_strategy::teardown() {
  if (entry_.pidfd >= 0)
    ::close(entry_.pidfd);
  entry_.pidfd = -1;
  if (status_read_ >= 0)
    ::close(status_read_);
  status_read_ = -1;
  if (p_)
    p_->close_fds();
  return {};
}

// ---- Entering a running container task (for Exec) ----

container_enter_strategy::container_enter_strategy(const container_strategy& task) : task_(task) {}

container_enter_strategy::~container_enter_strategy() {
  if (status_read_ >= 0)
    ::close(status_read_);
  if (status_write_ >= 0)
    ::close(status_write_);
}

result<void> container_enter_strategy::validate(const exec_command&) const {
  if (!task_.p_ || task_.entry_.pidfd < 0)
    return make_error(errc::not_launched, "the container task is not running");
  return {};
}

result<void> container_enter_strategy::before_fork(const exec_command& cmd, launch_plan& plan) {
  const auto& p = *task_.p_;
  // Stdio, environment and oom_score_adj as for a launch; the user is the task's.
  exec_command own = cmd;
  own.user.clear();
  own.task_dir = p.root;
  if (auto r = prepare_process(own, plan); !r)
    return r;
  plan.change_user = p.change_user;
  plan.uid = p.uid;
  plan.gid = p.gid;
  plan.groups = p.groups;
  auto bin = lookup_binary_in_root(cmd.cmd, p.root, p.mounts,
                                   p.change_user ? std::optional(p.uid) : std::nullopt);
  if (!bin)
    return bin.error();
  cwd_ = cmd.work_dir.empty() ? p.cwd : (cmd.work_dir.front() == '/' ? "" : "/") + cmd.work_dir;
  plan.cwd = cwd_;
  plan.executable = bin->in_root;
  plan.argv_storage.clear();
  if (p.private_pid) {
    // setns(CLONE_NEWPID) moves only children: taskexec-init starts the
    // command as its child, inside the task's PID namespace.
    if (auto r = run_under_init(plan, bin->in_root, status_read_, status_write_); !r)
      return r;
  }
  plan.argv_storage.push_back(cmd.cmd);
  plan.argv_storage.insert(plan.argv_storage.end(), cmd.args.begin(), cmd.args.end());
  return {};
}

bool container_enter_strategy::in_child(const launch_plan& plan, child_failure& f) const noexcept {
  const auto& e = task_.entry_;
  if (!child_session_and_stdio(plan, f))
    return false;
  // The cgroups first: their paths are the host's.
  if (!join_cgroups(e.cgroup, f))
    return false;
  // All namespaces at once; the mount namespace's root becomes ours.
  if (::setns(e.pidfd, e.ns_flags) != 0)
    return fail_step(f, "setns into the task");
  if (!container_strategy::take_identity(*task_.p_, plan, f))
    return false;
  if (::chdir(cwd_.c_str()) != 0)
    return fail_step(f, "chdir");
  return child_parent_death(plan, f, true);
}

void container_enter_strategy::after_start(const launch_plan&, int) {
  if (status_write_ >= 0)
    ::close(status_write_);
  status_write_ = -1;
}

void container_enter_strategy::launch_failed(const launch_plan& plan) noexcept {
  after_start(plan, 0);
}

int container_enter_strategy::exit_status(int status) noexcept {
  return init_status(status_read_, status);
}

std::unique_ptr<isolation_strategy> container_strategy::enter() const {
  return std::make_unique<container_enter_strategy>(*this);
}

}  // namespace taskexec
