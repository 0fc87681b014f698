// clone_launcher: a Boost.Process v2 launcher (it derives from
// boost::process::v2::posix::default_launcher and drives initializers through
// v2's hooks, so stock v2 initializers such as process_start_dir or
// process_environment work with it) that launches the way posix_spawn does:
//  - clone(CLONE_VM | CLONE_VFORK) on a private stack: no page-table copy of
//    the executor, and the parent resumes once the child has exec'd or failed;
//  - no io_context::notify_fork in the child (the stock launchers call it,
//    and it allocates and takes locks between fork and exec);
//  - every descriptor but 0..2 and `fd_whitelist` closed with close_range;
//  - default dispositions for every signal and an empty mask before exec;
//  - a failure in an initializer's on_exec_setup, or in exec, is reported
//    through a CLOEXEC pipe as {errno, step};
//  - the pid is returned as it is: no basic_process is made, because the
//    child_reaper does all waiting; the clone makes a pidfd (CLONE_PIDFD),
//    kept in `child_pidfd` for the caller to hand to child_reaper::watch.
//
// Hooks, as in Boost.Process v2: on_setup (parent, before the clone; may
// allocate; the place to add to `env` or `fd_whitelist`), on_exec_setup
// (child; async-signal-safe only, noexcept in effect: a throw there aborts
// the child), on_error (parent, with the failing errno) and on_success
// (parent). on_fork_error and on_exec_error are not called: a clone failure
// goes to on_error, and the child runs nothing after a failed exec but its
// report. The child shares the parent's memory until exec: the only parent
// memory it writes is `failure`. A child killed by a signal before exec is
// reported as launched (as with posix_spawn); its wait status tells.
//
// Including this header needs BOOST_PROCESS_USE_STD_FS (paths are
// std::filesystem::path), as the library is built with it.
#pragma once

#ifndef BOOST_PROCESS_USE_STD_FS
#error \
    "taskexec's launcher uses Boost.Process v2 with std::filesystem: define BOOST_PROCESS_USE_STD_FS"
#endif

// Boost 1.81's default_launcher.hpp uses boost::optional and boost::decay
// without including them.
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
// clang-format off
#include <boost/process/v2/posix/default_launcher.hpp>
// clang-format on

#include <filesystem>
#include <tuple>
#include <utility>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/isolation/launch_plan.hpp"

namespace taskexec::detail {

class clone_launcher : public boost::process::v2::posix::default_launcher {
 public:
  /// Written by the child when a step fails (then also sent through the pipe).
  child_failure failure{};
  /// After a child-side failure: the pid of the child, which has exited and
  /// must still be reaped (claim it from the child_reaper).
  int failed_pid = -1;
  /// The pidfd of the last child (CLONE_PIDFD, close-on-exec), or -1: the
  /// caller takes it (std::exchange) for child_reaper::watch; a launcher
  /// destroyed with one closes it.
  int child_pidfd = -1;

  clone_launcher() = default;
  clone_launcher(const clone_launcher&) = delete;
  clone_launcher& operator=(const clone_launcher&) = delete;
  ~clone_launcher();
  /// The pidfd, taken over by the caller.
  int take_pidfd() noexcept { return std::exchange(child_pidfd, -1); }

  /// Extra clone(2) flags for the child: namespaces (CLONE_NEWNS, NEWPID,
  /// NEWUTS, NEWIPC). CLONE_VM | CLONE_VFORK | SIGCHLD are always set.
  int clone_flags = 0;
  /// When >= 0: exec this descriptor (execveat AT_EMPTY_PATH) instead of
  /// the path given to launch(), which then only names it in messages.
  int exec_fd = -1;
  /// Descriptors passed through exec at fixed numbers: after the others are
  /// closed, each `from` is dup2()ed onto `to` (which the exec keeps). Every
  /// `from` must be above every `to`.
  std::vector<std::pair<int, int>> fd_map;
  /// When >= 0: the error pipe is also passed through exec at this number,
  /// and the launch is not complete until every copy of its write end is
  /// closed; a report written there (by a program the child execs, such as
  /// taskexec-init for the process it starts) fails the launch like a
  /// child-side failure. The process that holds it must make it
  /// close-on-exec for what it execs in turn. Such a launch is made in two
  /// steps, start() and finish(), so that the wait for the report in between
  /// never blocks a thread (spawn() in spawn.hpp waits on an io_context);
  /// launch() refuses it.
  int report_fd = -1;

  /// Launch `exe` with `argv` (nullptr-terminated, argv[0] included) and the
  /// environment `env` (a default_launcher member; an initializer such as
  /// process_environment may set it). Returns the pid, or an error naming the
  /// step ("setgid: Operation not permitted", "exec \"/x\": ...).
  /// report_fd must be < 0 (errc::invalid_argument otherwise): use start()
  /// and finish().
  template <class... Inits>
  result<int> launch(const std::filesystem::path& exe, const char* const* argv, Inits&&... inits);

  /// A child that start() launched: its pid and, when a report is awaited
  /// (report_fd >= 0), the read end of the report pipe (non-blocking,
  /// close-on-exec), which finish() reads and closes.
  struct started {
    int pid = -1;
    int report = -1;
  };

  /// The first step of a launch: the clone, with the initializers' hooks as
  /// launch() runs them. It returns once the child has exec'd or failed
  /// (CLONE_VFORK): with report_fd < 0 the launch is then complete (the
  /// child's failure is this call's error, and `report` is -1); with
  /// report_fd >= 0 the report is still due: wait until `report` is
  /// readable (a record or EOF) without blocking, and call finish().
  /// on_success means "exec'd"; a failure that finish() reads later reaches
  /// no initializer.
  template <class... Inits>
  result<started> start(const std::filesystem::path& exe, const char* const* argv,
                        Inits&&... inits);

  /// The second step of a launch with a report. `abandoned` null: `s.report`
  /// is readable; its EOF returns the pid, a record the child's failure (as
  /// launch() words it). `abandoned` set: the wait ended without a report
  /// (a timeout, a cancel) and that error is returned. Either way the pipe
  /// is closed, and on failure the child is SIGKILLed and waited for
  /// (WNOWAIT: it stays for the reaper; `failed_pid` names it), so nothing
  /// of it is left where the caller cleans up. `child_gone`: the child was
  /// reaped meanwhile; its pid may be another process's now, so it is
  /// neither signalled nor waited for.
  result<int> finish(started s, const std::filesystem::path& exe, const error* abandoned,
                     bool child_gone);

  /// The stock fork-based entry points of default_launcher are hidden.
  template <class... Args>
  void operator()(Args&&...) = delete;

 private:
  using child_setup_fn = bool (*)(void* context) noexcept;
  result<started> clone_and_exec(const char* exe, const char* const* argv, child_setup_fn setup,
                                 void* context);
  /// Read the child's report from `fd` (closing it): EOF, or nothing while
  /// report_fd < 0, is success.
  result<int> read_report(int child, int fd, const char* exe, bool child_gone);

  template <class Init>
  static bool exec_setup_one(clone_launcher& l, const std::filesystem::path& exe,
                             const char* const* argv, Init& init) noexcept {
    if constexpr (requires { init.on_exec_setup(l, exe, argv); }) {
      auto ec = init.on_exec_setup(l, exe, argv);
      if (ec) {
        if (l.failure.step[0] == '\0')
          l.fail_step(ec.value(), "initializer");
        return false;
      }
    }
    return true;
  }

  void fail_step(int error, const char* step) noexcept {
    failure.error = error;
    std::size_t i = 0;
    for (; step[i] != '\0' && i + 1 < failure.step.size(); ++i)
      failure.step[i] = step[i];
    failure.step[i] = '\0';
  }
};

template <class... Inits>
result<int> clone_launcher::launch(const std::filesystem::path& exe, const char* const* argv,
                                   Inits&&... inits) {
  if (report_fd >= 0) {
    return make_error(errc::invalid_argument,
                      "a launch that awaits a report: use start() and finish()");
  }
  auto s = start(exe, argv, std::forward<Inits>(inits)...);
  if (!s)
    return s.error();
  return s->pid;
}

template <class... Inits>
result<clone_launcher::started> clone_launcher::start(const std::filesystem::path& exe,
                                                      const char* const* argv, Inits&&... inits) {
  const char* const* args = argv;
  boost::system::error_code ec;
  auto setup_one = [&](auto& init) {
    if (ec)
      return;
    if constexpr (requires { init.on_setup(*this, exe, args); })
      ec = init.on_setup(*this, exe, args);
  };
  (setup_one(inits), ...);
  (void)setup_one;  // unused when there are no initializers
  auto error_one = [&](auto& init, const boost::system::error_code& e) {
    if constexpr (requires { init.on_error(*this, exe, args, e); })
      init.on_error(*this, exe, args, e);
  };
  (void)error_one;
  if (ec) {
    (error_one(inits, ec), ...);
    return make_system_error(ec.value(), "launch setup");
  }

  struct context {
    clone_launcher* self;
    const std::filesystem::path* exe;
    const char* const* args;
    std::tuple<std::remove_reference_t<Inits>&...> inits;
  } ctx{this, &exe, args, std::tie(inits...)};
  child_setup_fn setup = [](void* p) noexcept -> bool {
    auto* c = static_cast<context*>(p);
    return std::apply(
        [&](auto&... i) { return (exec_setup_one(*c->self, *c->exe, c->args, i) && ...); },
        c->inits);
  };

  auto r = clone_and_exec(exe.c_str(), args, setup, &ctx);
  if (!r) {
    // Initializers get the errno of what failed (a child step, exec, or
    // clone), not our launch_failed code.
    const int errno_value = failure.error ? failure.error : r.error().code.value();
    const boost::system::error_code os_error(errno_value, boost::system::system_category());
    (error_one(inits, os_error), ...);
    return r;
  }
  auto success_one = [&](auto& init) {
    if constexpr (requires { init.on_success(*this, exe, args); })
      init.on_success(*this, exe, args);
  };
  (success_one(inits), ...);
  (void)success_one;
  return r;
}

}  // namespace taskexec::detail
