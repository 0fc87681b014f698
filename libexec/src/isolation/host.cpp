#include "taskexec/isolation/host.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "process_setup.hpp"
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

// Open a stdout/stderr destination: append to a file (created 0644), or a
// FIFO (which must already have a reader: a writer waiting for a reader would
// block the executor), or /dev/null for an empty path. The result is >= 3
// and CLOEXEC: the child dup2()s it onto 1 or 2.
result<int> open_output(std::string_view field, const std::string& path,
                        const std::string& task_dir) {
  std::string p = path.empty() ? "/dev/null" : path;
  if (p.front() != '/' && !task_dir.empty())
    p = join(task_dir, p);
  struct stat st {};
  int fd;
  if (::stat(p.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) {
    fd = ::open(p.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENXIO) {
      return make_error(errc::invalid_argument,
                        std::string(field) + " \"" + p + "\" is a FIFO with no reader");
    }
    if (fd >= 0) {
      int flags = ::fcntl(fd, F_GETFL);
      ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    }
  } else {
    fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
  }
  if (fd < 0)
    return make_system_error(errno, std::string("open ") + std::string(field) + " \"" + p + "\"");
  if (fd < 3) {
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    ::close(fd);
    if (moved < 0)
      return make_system_error(saved, "dup");
    fd = moved;
  }
  return fd;
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

result<std::string> lookup_binary(std::string_view cmd, std::string_view task_dir,
                                  std::string_view path_env) {
  std::vector<std::string> candidates;
  if (!task_dir.empty()) {
    candidates.push_back(join(join(task_dir, "local"), cmd));
    candidates.push_back(join(task_dir, cmd));
  }
  if (!cmd.empty() && cmd.front() == '/') {
    candidates.emplace_back(cmd);
  } else if (cmd.find('/') == std::string_view::npos) {
    std::string_view path = path_env.empty() ? k_default_path : path_env;
    while (true) {
      auto colon = path.find(':');
      std::string_view dir = path.substr(0, colon);
      if (!dir.empty())
        candidates.push_back(join(dir, cmd));
      if (colon == std::string_view::npos)
        break;
      path.remove_prefix(colon + 1);
    }
  }
  // Only files of the task get execute bits added: a host binary (an
  // absolute path outside task_dir, or one found in PATH) is never changed.
  // The file is opened without following a final symlink, then checked and
  // changed through that descriptor (fchmod), with its real path read from
  // /proc/self/fd: a symlink, "..", or a file swapped meanwhile cannot make
  // us change a file outside the task dir. A task dir of "/" owns nothing.
  std::error_code fs_ec;
  auto task_root = task_dir.empty() ? std::filesystem::path()
                                    : std::filesystem::canonical(std::string(task_dir), fs_ec);
  if (fs_ec || task_root == "/")
    task_root.clear();
  // 1: made executable; 0: not ours to change; -errno: failed.
  auto make_executable = [&](const std::string& c) -> int {
    if (task_root.empty())
      return 0;
    int fd = ::open(c.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
      return 0;  // a symlink (ELOOP), or gone
    struct stat st {};
    int result = 0;
    std::error_code ec;
    auto real = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    auto rel = real.lexically_relative(task_root);
    const bool inside = !ec && !rel.empty() && *rel.begin() != "..";
    if (inside && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      result =
          (st.st_mode & 0111) != 0 || ::fchmod(fd, (st.st_mode & 07777) | 0555) == 0 ? 1 : -errno;
    }
    ::close(fd);
    return result;
  };
  for (const auto& c : candidates) {
    struct stat st {};
    if (!is_regular(c, st))
      continue;
    if ((st.st_mode & 0111) != 0)
      return c;
    // A file of the task may arrive without execute bits (an artifact
    // unpacked 0600): make it executable, as Nomad does.
    int made = make_executable(c);
    if (made > 0)
      return c;
    if (made < 0)
      return make_system_error(-made, "chmod \"" + c + "\"");
    // Not executable and not ours to change: a PATH entry is skipped, as a
    // shell would; an absolute path is returned and exec reports EACCES.
    if (c == cmd)
      return c;
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
  auto out = cmd.stdout_fd >= 0 ? dup_handed_fd("stdout_fd", cmd.stdout_fd)
                                : open_output("stdout_path", cmd.stdout_path, cmd.task_dir);
  if (!out)
    return out.error();
  plan.stdout_fd = *out;
  auto err = cmd.stderr_fd >= 0 ? dup_handed_fd("stderr_fd", cmd.stderr_fd)
                                : open_output("stderr_path", cmd.stderr_path, cmd.task_dir);
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

  auto exe = lookup_binary(cmd.cmd, cmd.task_dir, env_value(cmd.env, "PATH"));
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

result<std::vector<std::unique_ptr<isolation_strategy>>> make_isolation(
    const exec_command& cmd, const isolation_context& ctx) {
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
