#include "taskexec/isolation/host.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "process_setup.hpp"
#include "taskexec/detail/safe_open.hpp"
#include "taskexec/isolation/container.hpp"
#include "taskexec/validation.hpp"

namespace taskexec {
namespace {

constexpr std::string_view k_default_path = "/usr/local/bin:/usr/bin:/bin";

bool is_regular(const std::string& path, struct stat& st) {
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (!out.empty() && out.back() != '/')
    out.push_back('/');
  out.append(name);
  return out;
}

// A descriptor owned here: closed unless released.
struct unique_fd {
  int fd = -1;
  unique_fd() = default;
  explicit unique_fd(int f) : fd(f) {}
  unique_fd(unique_fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  unique_fd& operator=(unique_fd&&) = delete;
  ~unique_fd() {
    if (fd >= 0)
      ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// The task dir as output paths and the lookup use it: a descriptor to
// resolve below, the names it goes by. A task dir of "/" owns nothing:
// empty then.
struct task_dir_ref {
  unique_fd fd;
  std::string path;       // as given (set even when it owns nothing)
  std::string canonical;  // symlinks of the caller's path resolved

  static result<task_dir_ref> open(std::string_view task_dir) {
    task_dir_ref t;
    t.path = task_dir;
    if (task_dir.empty())
      return t;
    std::error_code ec;
    auto canon = std::filesystem::canonical(std::string(task_dir), ec);
    if (ec || canon == "/")
      return t;
    // The caller's path to the task dir is the caller's choice: followed.
    t.fd.fd = ::open(std::string(task_dir).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (t.fd.fd < 0)
      return make_system_error(errno, "task_dir \"" + std::string(task_dir) + "\"");
    t.canonical = canon.string();
    return t;
  }
  bool owns() const { return fd.fd >= 0; }
  // `p` relative to the task dir when it names something inside it (a
  // relative `p`, or an absolute one below the task dir by either name).
  std::optional<std::string> relative(const std::string& p) const {
    if (!owns() || p.empty())
      return std::nullopt;
    if (p.front() != '/')
      return p;
    if (auto r = detail::path_below(p, path))
      return r;
    return detail::path_below(p, canonical);
  }
};

// Move a descriptor above 0..2 (the child dup2()s it onto 1 or 2).
result<int> above_stdio(int fd, std::string_view what) {
  if (fd >= 3)
    return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int saved = errno;
  ::close(fd);
  if (moved < 0)
    return make_system_error(saved, "dup " + std::string(what));
  return moved;
}

error prefixed(std::string prefix, error e) {
  e.message = std::move(prefix) + e.message;
  return e;
}

// Open the FIFO `reopen` (a path that reaches it) for writing. It must
// have a reader already: a writer waiting for one would block the executor.
// "No reader" is ENXIO, as open(2) says it.
result<int> open_fifo(std::string_view field, const std::string& reopen, const std::string& shown) {
  int fd = ::open(reopen.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0 && errno == ENXIO) {
    return detail::os_error(ENXIO,
                            std::string(field) + " \"" + shown + "\" is a FIFO with no reader");
  }
  if (fd < 0)
    return make_system_error(errno, "open " + std::string(field) + " \"" + shown + "\"");
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string proc_fd_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

// A path in the task dir, as the task left it: resolved below the task dir
// through no symlink. A file we create is the task's (fchown to its user,
// through the descriptor); an existing one is appended to when it is a
// regular file or a FIFO, never a device, never a hard link to someone
// else's file.
result<int> open_output_in_task_dir(std::string_view field, const std::string& path,
                                    const std::string& rel, const task_dir_ref& td,
                                    const launch_plan& plan) {
  const std::string what = std::string(field) + " \"" + path + "\"";
  const std::string shown = path.front() == '/' ? path : join(td.path, path);
  const uid_t task_uid = plan.change_user ? plan.uid : ::geteuid();
  // Bounded: each round ends unless the file vanished between two opens.
  for (int attempt = 0; attempt < 8; ++attempt) {
    // O_EXCL: a file we create, we know we created.
    auto made = detail::open_beneath(td.fd.fd, td.path, rel,
                                     O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOCTTY, 0644);
    if (made) {
      unique_fd fd(*made);
      if (plan.change_user && ::fchown(fd.fd, plan.uid, plan.gid) != 0)
        return make_system_error(errno, "chown " + what);
      return fd.release();
    }
    if (made.error().code.value() != EEXIST)
      return prefixed("open " + what + ": ", made.error());

    // It exists: look at it (O_PATH opens nothing, not even a device).
    auto found = detail::open_beneath(td.fd.fd, td.path, rel, O_PATH);
    if (!found && found.error().code.value() == ENOENT)
      continue;  // removed meanwhile
    if (!found)
      return prefixed("open " + what + ": ", found.error());
    unique_fd at(*found);
    struct stat st {};
    if (::fstat(at.fd, &st) != 0)
      return make_system_error(errno, "stat " + what);
    if (S_ISFIFO(st.st_mode))
      return open_fifo(field, proc_fd_path(at.fd), shown);
    if (S_ISDIR(st.st_mode))
      return detail::os_error(EISDIR, "open " + what + ": \"" + shown + "\" is a directory");
    if (!S_ISREG(st.st_mode)) {
      return detail::os_error(EPERM, "open " + what + ": \"" + shown +
                                         "\" is not a regular file or a FIFO: refused in the "
                                         "task dir");
    }
    if (!task_may_change(st, task_uid)) {
      return detail::os_error(EPERM, "open " + what + ": \"" + shown + "\" has " +
                                         std::to_string(st.st_nlink) +
                                         " links and belongs to uid " + std::to_string(st.st_uid) +
                                         ", not the task's user (uid " + std::to_string(task_uid) +
                                         "): a hard link to a file elsewhere is refused");
    }
    // Through the descriptor: the very file just checked.
    int fd = ::open(proc_fd_path(at.fd).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
      return make_system_error(errno, "open " + what);
    return fd;
  }
  return detail::os_error(EAGAIN, "open " + what + ": \"" + shown + "\" keeps changing");
}

// A path outside the task dir: the caller's choice, directories and all,
// but a symlink as its last component is not followed, unless it is a
// descriptor link in /proc (/proc/<pid>/fd/<n>: the caller names an open
// descriptor, `taskexec run` its own stdout).
result<int> open_output_outside(std::string_view field, const std::string& path) {
  const std::string what = std::string(field) + " \"" + path + "\"";
  for (int attempt = 0; attempt < 8; ++attempt) {
    unique_fd at(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (at.fd < 0 && errno == ENOENT) {
      int fd = ::open(path.c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
      if (fd >= 0)
        return fd;
      if (errno == EEXIST || errno == ENOENT)
        continue;  // appeared or vanished meanwhile
      if (errno == ELOOP)
        return detail::os_error(
            ELOOP, "open " + what + ": symlink refused: \"" + path + "\" is a symlink");
      return make_system_error(errno, "open " + what);
    }
    if (at.fd < 0)
      return make_system_error(errno, "open " + what);
    struct stat st {};
    if (::fstat(at.fd, &st) != 0)
      return make_system_error(errno, "stat " + what);
    std::string reopen = proc_fd_path(at.fd);
    if (S_ISLNK(st.st_mode)) {
      if (!detail::is_proc_fd_link(at.fd, path)) {
        return detail::os_error(
            ELOOP, "open " + what + ": symlink refused: \"" + path + "\" is a symlink");
      }
      reopen = path;  // the descriptor it names
      if (::stat(path.c_str(), &st) != 0)
        return make_system_error(errno, "open " + what);
    }
    if (S_ISFIFO(st.st_mode))
      return open_fifo(field, reopen, path);
    int fd = ::open(reopen.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
      return make_system_error(errno, "open " + what);
    return fd;
  }
  return detail::os_error(EAGAIN, "open " + what + ": it keeps changing");
}

// Open a stdout/stderr destination: a file (appended to; created 0644), a
// FIFO (which must already have a reader), or /dev/null for an empty path.
// The result is >= 3 and CLOEXEC.
result<int> open_output(std::string_view field, const std::string& path, const task_dir_ref& td,
                        const launch_plan& plan) {
  if (path.empty()) {
    int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
      return make_system_error(errno, "open /dev/null");
    return above_stdio(fd, field);
  }
  auto rel = td.relative(path);
  // A relative path with a task dir that owns nothing ("/") is still below it.
  auto fd = rel ? open_output_in_task_dir(field, path, *rel, td, plan)
                : open_output_outside(
                      field, path.front() == '/' || td.path.empty() ? path : join(td.path, path));
  if (!fd)
    return fd;
  return above_stdio(*fd, field);
}

result<int> dup_handed_fd(std::string_view field, int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0)
    return make_system_error(errno, std::string("dup ") + std::string(field));
  return d;
}

bool has_env(const std::vector<std::string>& env, std::string_view key) {
  for (const auto& e : env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=')
      return true;
  }
  return false;
}

std::string_view env_value(const std::vector<std::string>& env, std::string_view key) {
  for (const auto& e : env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
      return std::string_view(e).substr(key.size() + 1);
    }
  }
  return {};
}

}  // namespace

result<user_identity> lookup_user(std::string_view user) {
  std::string name(user);
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc == 0 && !found) {
    uid_t uid = 0;
    auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), uid);
    if (ec == std::errc{} && p == name.data() + name.size()) {
      rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    }
  }
  if (rc != 0)
    return make_system_error(rc, "look up user \"" + name + "\"");
  if (!found)
    return make_error(errc::user_not_found, "user \"" + name + "\" not found");

  user_identity id;
  id.name = pw.pw_name;
  id.uid = pw.pw_uid;
  id.gid = pw.pw_gid;
  id.home = pw.pw_dir ? pw.pw_dir : "";
  // Supplementary groups from the group database; getgrouplist includes the
  // primary gid. Retry with a larger array when the user is in many groups.
  int n = 32;
  for (int attempt = 0; attempt < 8; ++attempt) {
    id.groups.resize(static_cast<std::size_t>(n));
    int want = n;
    if (::getgrouplist(id.name.c_str(), id.gid, id.groups.data(), &want) >= 0) {
      id.groups.resize(static_cast<std::size_t>(want));
      return id;
    }
    n = want > n ? want : n * 2;
  }
  return make_error(errc::user_not_found, "groups of user \"" + name + "\" could not be listed");
}

bool task_may_change(const struct stat& st, uid_t task_uid) {
  return st.st_nlink <= 1 || st.st_uid == task_uid;
}

result<void> make_task_file_executable(int fd, const std::string& shown, uid_t task_uid) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return make_system_error(errno, "stat \"" + shown + "\"");
  if ((st.st_mode & 0555) == 0555)
    return {};
  const bool some_exec = (st.st_mode & 0111) != 0;
  if (!task_may_change(st, task_uid)) {
    // Perhaps a hard link to a file outside the task dir: left as it is.
    if (some_exec)
      return {};
    return detail::os_error(EPERM, "\"" + shown +
                                       "\" is not executable and is not made so: it has " +
                                       std::to_string(st.st_nlink) + " links and belongs to uid " +
                                       std::to_string(st.st_uid) + ", not the task's user (uid " +
                                       std::to_string(task_uid) + ")");
  }
  // chmod through the O_PATH descriptor's link in /proc (fchmod needs a
  // descriptor opened for real, and opening is what O_PATH avoided): the
  // very file checked, wherever a name of it is now.
  const std::string at = "/proc/self/fd/" + std::to_string(fd);
  if (::chmod(at.c_str(), (st.st_mode & 07777) | 0555) != 0 && !some_exec)
    return make_system_error(errno, "chmod \"" + shown + "\"");
  return {};
}

result<std::string> lookup_binary(std::string_view cmd, std::string_view task_dir,
                                  std::string_view path_env, std::optional<uid_t> task_uid) {
  // Only files of the task get execute bits added: a file reached below
  // task_dir through no symlink (a symlink or ".." out of it leads to a host
  // file) and no hard link to someone else's file. A host binary (an
  // absolute path outside task_dir, or one found in PATH) is never changed.
  // A task dir of "/" owns nothing.
  auto td = task_dir_ref::open(task_dir);
  if (!td)
    return td.error();
  struct candidate {
    std::string path;
    std::optional<std::string> rel;  // below the task dir, when it owns files
  };
  std::vector<candidate> candidates;
  auto add = [&](std::string path, std::optional<std::string> rel) {
    if (!td->owns())
      rel.reset();
    else if (!rel && path.front() == '/')  // a relative PATH entry is the daemon cwd's
      rel = td->relative(path);
    candidates.push_back({std::move(path), std::move(rel)});
  };
  if (!task_dir.empty()) {
    // task_dir + an absolute cmd is below task_dir too (as Nomad joins them).
    const auto below = cmd.substr(std::min(cmd.find_first_not_of('/'), cmd.size()));
    add(join(join(task_dir, "local"), cmd), join("local", below));
    add(join(task_dir, cmd), std::string(below));
  }
  if (!cmd.empty() && cmd.front() == '/') {
    add(std::string(cmd), std::nullopt);
  } else if (cmd.find('/') == std::string_view::npos) {
    std::string_view path = path_env.empty() ? k_default_path : path_env;
    while (true) {
      auto colon = path.find(':');
      std::string_view dir = path.substr(0, colon);
      if (!dir.empty())
        add(join(dir, cmd), std::nullopt);
      if (colon == std::string_view::npos)
        break;
      path.remove_prefix(colon + 1);
    }
  }
  const uid_t uid = task_uid ? *task_uid : ::geteuid();
  for (const auto& c : candidates) {
    struct stat st {};
    if (!is_regular(c.path, st))
      continue;
    if (c.rel) {
      // A file of the task arrives as it was unpacked (0600, 0700 for its
      // owner only): 0555 added, as Nomad does, so that the task's user can
      // run it. Opened as a path (O_PATH opens nothing), then checked and
      // changed through that descriptor.
      auto fd = detail::open_beneath(td->fd.fd, td->path, *c.rel, O_PATH);
      if (fd) {
        unique_fd f(*fd);
        if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode))
          continue;  // not the file stat() saw: changed meanwhile
        if (auto made = make_task_file_executable(f.fd, c.path, uid); !made)
          return prefixed("binary \"" + std::string(cmd) + "\": ", made.error());
        return c.path;
      }
      // Reached through a symlink or ".." out of the task dir: as a host file.
    }
    if ((st.st_mode & 0111) != 0)
      return c.path;
    // Not executable and not ours to change: a PATH entry is skipped, as a
    // shell would; an absolute path is returned and exec reports EACCES.
    if (c.path == cmd)
      return c.path;
  }
  return make_error(errc::binary_not_found,
                    "binary \"" + std::string(cmd) + "\" could not be found");
}

result<void> host_strategy::validate(const exec_command& cmd) const {
  if (!cmd.task_dir.empty() && cmd.task_dir.front() != '/') {
    return make_error(errc::invalid_argument,
                      "task_dir \"" + cmd.task_dir + "\" is not an absolute path");
  }
  return {};
}

result<void> prepare_process(const exec_command& cmd, launch_plan& plan) {
  plan.parent_pid = ::getpid();

  if (!cmd.task_dir.empty()) {
    struct stat st {};
    if (::stat(cmd.task_dir.c_str(), &st) != 0)
      return make_system_error(errno, "task_dir \"" + cmd.task_dir + "\"");
    if (!S_ISDIR(st.st_mode)) {
      return make_error(errc::invalid_argument,
                        "task_dir \"" + cmd.task_dir + "\" is not a directory");
    }
  }

  // Environment: exactly as given, plus USER, LOGNAME and HOME of the task's user.
  plan.env_storage = cmd.env;
  if (!cmd.user.empty()) {
    auto id = lookup_user(cmd.user);
    if (!id)
      return id.error();
    plan.change_user = true;
    plan.uid = id->uid;
    plan.gid = id->gid;
    plan.groups = id->groups;
    if (!has_env(plan.env_storage, "USER"))
      plan.env_storage.push_back("USER=" + id->name);
    if (!has_env(plan.env_storage, "LOGNAME"))
      plan.env_storage.push_back("LOGNAME=" + id->name);
    if (!has_env(plan.env_storage, "HOME"))
      plan.env_storage.push_back("HOME=" + id->home);
  }

  if (cmd.controlling_tty && cmd.stdin_fd < 0)
    return make_error(errc::invalid_argument, "controlling_tty needs stdin_fd (a terminal)");
  if (cmd.stdin_fd >= 0) {
    auto in = dup_handed_fd("stdin_fd", cmd.stdin_fd);
    if (!in)
      return in.error();
    plan.stdin_fd = *in;
  } else {
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0)
      return make_system_error(errno, "open /dev/null");
    if (in < 3) {
      int moved = ::fcntl(in, F_DUPFD_CLOEXEC, 3);
      ::close(in);
      in = moved;
      if (in < 0)
        return make_system_error(errno, "dup /dev/null");
    }
    plan.stdin_fd = in;
  }
  plan.controlling_tty = cmd.controlling_tty;
  auto td = task_dir_ref::open(cmd.task_dir);
  if (!td)
    return td.error();
  auto out = cmd.stdout_fd >= 0 ? dup_handed_fd("stdout_fd", cmd.stdout_fd)
                                : open_output("stdout_path", cmd.stdout_path, *td, plan);
  if (!out)
    return out.error();
  plan.stdout_fd = *out;
  auto err = cmd.stderr_fd >= 0 ? dup_handed_fd("stderr_fd", cmd.stderr_fd)
                                : open_output("stderr_path", cmd.stderr_path, *td, plan);
  if (!err)
    return err.error();
  plan.stderr_fd = *err;

  auto* first = plan.oom_score_adj.data();
  auto [end, ec] = std::to_chars(first, first + plan.oom_score_adj.size() - 1, cmd.oom_score_adj);
  (void)ec;
  *end = '\0';
  return {};
}

result<void> host_strategy::before_fork(const exec_command& cmd, launch_plan& plan) {
  if (auto r = prepare_process(cmd, plan); !r)
    return r;

  auto exe = lookup_binary(cmd.cmd, cmd.task_dir, env_value(cmd.env, "PATH"),
                           plan.change_user ? std::optional<uid_t>(plan.uid) : std::nullopt);
  if (!exe)
    return exe.error();
  plan.executable = std::move(*exe);
  plan.argv_storage.clear();
  plan.argv_storage.push_back(cmd.cmd);
  plan.argv_storage.insert(plan.argv_storage.end(), cmd.args.begin(), cmd.args.end());

  plan.cwd = !cmd.work_dir.empty() ? cmd.work_dir : cmd.task_dir;
  if (!plan.cwd.empty()) {
    struct stat st {};
    if (::stat(plan.cwd.c_str(), &st) != 0)
      return make_system_error(errno, "work_dir \"" + plan.cwd + "\"");
    if (!S_ISDIR(st.st_mode)) {
      return make_error(errc::invalid_argument, "work_dir \"" + plan.cwd + "\" is not a directory");
    }
  }
  return {};
}

bool child_session_and_stdio(const launch_plan& plan, child_failure& f) noexcept {
  // Its own session and process group: signals to the group reach the whole
  // task, and a terminal's job control never touches it.
  if (::setsid() < 0)
    return fail_step(f, "setsid");

  // Before the credential change: the file belongs to the process's euid.
  // Lowering below the executor's value needs only that the new value is not
  // below oom_score_adj_min (set when a privileged process wrote it).
  {
    int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return fail_step(f, "open /proc/self/oom_score_adj");
    std::size_t len = 0;
    while (plan.oom_score_adj[len] != '\0')
      ++len;
    ssize_t n = ::write(fd, plan.oom_score_adj.data(), len);
    int saved = errno;
    ::close(fd);
    errno = saved;
    if (n < 0)
      return fail_step(f, "write oom_score_adj");
  }

  if (::dup2(plan.stdin_fd, 0) < 0)
    return fail_step(f, "dup2 stdin");
  if (::dup2(plan.stdout_fd, 1) < 0)
    return fail_step(f, "dup2 stdout");
  if (::dup2(plan.stderr_fd, 2) < 0)
    return fail_step(f, "dup2 stderr");
  // A terminal on stdin becomes the controlling terminal of the new session
  // (job control, SIGINT from ^C, SIGHUP when it hangs up); with an init
  // in between, init hands it to the command's own session instead.
  if (plan.controlling_tty && !plan.tty_by_init && ::ioctl(0, TIOCSCTTY, 0) != 0)
    return fail_step(f, "ioctl TIOCSCTTY");
  return true;
}

bool child_credentials(const launch_plan& plan, child_failure& f) noexcept {
  if (!plan.change_user)
    return true;
  // Raw syscalls: glibc's setuid() & co. broadcast to every thread of the
  // process (SIGSETXID), and with CLONE_VM those are the parent's threads.
  if (::syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0)
    return fail_step(f, "setgroups");
  if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0)
    return fail_step(f, "setgid");
  if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0)
    return fail_step(f, "setuid");
  return true;
}

bool child_parent_death(const launch_plan& plan, child_failure& f, bool check_parent) noexcept {
  // After the credential change, which clears the parent-death signal.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    return fail_step(f, "prctl PR_SET_PDEATHSIG");
  if (check_parent && ::getppid() != plan.parent_pid) {
    errno = ESRCH;
    return fail_step(f, "parent exited");
  }
  return true;
}

bool host_strategy::in_child(const launch_plan& plan, child_failure& f) const noexcept {
  if (!child_session_and_stdio(plan, f) || !child_credentials(plan, f))
    return false;
  if (!plan.cwd.empty() && ::chdir(plan.cwd.c_str()) != 0)
    return fail_step(f, "chdir");
  return child_parent_death(plan, f, true);
}

result<isolation_stack> make_isolation(const exec_command& cmd, const isolation_context& ctx) {
  std::vector<std::unique_ptr<isolation_strategy>> stack;
  if (cmd.isolation.empty() || cmd.isolation == "host") {
    // First: the child joins its cgroup while it still has the rights to.
    if (cmd.resource_limits || cmd.basic_process_cgroup)
      stack.push_back(std::make_unique<cgroup_strategy>(ctx.task_id, ctx.cgroups));
    stack.push_back(std::make_unique<host_strategy>());
    return stack;
  }
  if (cmd.isolation == "container") {
    // Always a cgroup: accounting, kill, and the device rules.
    auto cgroup = std::make_unique<cgroup_strategy>(ctx.task_id, ctx.cgroups);
    auto* raw = cgroup.get();
    stack.push_back(std::move(cgroup));
    stack.push_back(std::make_unique<container_strategy>(
        ctx.hostname.empty() ? ctx.task_id : ctx.hostname, raw));
    return stack;
  }
  return make_error(errc::unsupported, "isolation \"" + cmd.isolation +
                                           "\" is not supported (available: \"host\", "
                                           "\"container\")");
}

}  // namespace taskexec
