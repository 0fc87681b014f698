#include "taskexec/task_executor.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <set>
#include <utility>

#include "exec_launch.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/detail/coro.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/detail/spawn.hpp"
#include "taskexec/detail/watchdog.hpp"
#include "taskexec/isolation/container.hpp"
#include "taskexec/isolation/host.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/shutdown_fsm.hpp"
#include "taskexec/signals.hpp"
#include "taskexec/stats.hpp"
#include "taskexec/validation.hpp"
#include "taskexec/version.hpp"

namespace taskexec {
namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

// Tasks of this process whose processes may still exist (launched, not yet
// swept clean, not destroyed). With exactly one, every unclaimed child of
// ours is that task's orphan; with more, orphans are attributed by session,
// process group and ancestry only.
int g_live_tasks = 0;

using detail::condition;
using detail::wait_on;
using detail::wake;

process_state decode_status(int pid, int status) {
  process_state ps;
  ps.pid = pid;
  ps.time = std::chrono::system_clock::now();
  if (WIFEXITED(status)) {
    ps.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    ps.signal = WTERMSIG(status);
    ps.exit_code = 128 + ps.signal;
  }
  return ps;
}

clock::time_point add_capped(clock::time_point now, std::chrono::milliseconds d,
                             clock::time_point cap) {
  if (cap <= now)
    return cap;
  if (d >= std::chrono::duration_cast<std::chrono::milliseconds>(cap - now))
    return cap;
  return now + d;
}

// How often a shutdown's sweep looks again while members it killed are
// still there and no reap of ours came.
constexpr std::chrono::milliseconds sweep_poll{50};

}  // namespace

namespace {
// Joins cgroups: the task's (the exec of a task without container isolation),
// or the watchdog's guard cgroup (the task and its Execs).
class cgroup_join final : public isolation_strategy {
 public:
  explicit cgroup_join(cgroup_membership m) : membership_(std::move(m)) {}
  std::string_view name() const noexcept override { return "cgroup-join"; }
  isolation_features features() const noexcept override { return 0; }
  result<void> validate(const exec_command&) const override { return {}; }
  result<void> before_fork(const exec_command&, launch_plan&) override { return {}; }
  bool in_child(const launch_plan&, child_failure& f) const noexcept override {
    return join_cgroups(membership_, f);
  }

 private:
  cgroup_membership membership_;
};
}  // namespace

struct task_executor::impl : std::enable_shared_from_this<impl> {
  impl(child_reaper& r, task_executor_options o)
      : reaper(r), executor(r.get_executor()), opts(std::move(o)) {}

  child_reaper& reaper;
  asio::any_io_executor executor;
  task_executor_options opts;
  lifecycle life;
  std::vector<std::unique_ptr<isolation_strategy>> strategies;
  int pid = 0;
  // The pid while it runs unreaped (0 otherwise): what the destructor
  // SIGKILLs from whatever thread it runs on.
  std::atomic<int> live_pid{0};
  std::uint64_t start_ticks = 0;
  std::optional<std::uint64_t> reaped_ticks;  // when the main process was reaped
  std::optional<process_state> exited;
  bool counted_live = false;
  bool sent_sigkill = false;  // we SIGKILLed the task (not an OOM, then)

  condition exit_cond;  // notified when the main process is reaped (or on destroy)

  // One shutdown at a time; concurrent callers share its result. A later
  // call with a shorter grace brings the running one's SIGKILL forward
  // (escalate), so SIGTERM to a daemon and Destroy are never held up by a
  // long grace somebody asked for earlier.
  bool shutdown_running = false;
  clock::time_point kill_at = clock::time_point::max();  // the running shutdown's SIGKILL
  bool kill_sent = false;                                // it has sent SIGKILL
  condition shutdown_cond;
  condition sweep_cond;  // a reap happened (or the executor was destroyed)
  std::optional<result<void>> shutdown_result;

  // Processes of the task seen by the last sweep or Stats reading (live or
  // zombie): orphans among them (children re-parented to us) stay the
  // task's, and their CPU counts for it when we reap them.
  std::set<std::pair<int, std::uint64_t>> known_members;
  bool known_member_pid(int p) const {
    auto it = known_members.lower_bound({p, 0});
    return it != known_members.end() && it->first == p;
  }
  /// Our unclaimed children that are the task's: every one while this is
  /// the one live task of the process, else those it is known to own.
  std::vector<int> adopted_children(const std::vector<detail::proc_stat>& table, int me) const;

  // /proc mode: the CPU of the task's processes that we reaped (the main
  // process, its orphans), from wait4().
  cpu_time reaped_cpu;
  bool main_cpu_counted = false;
  child_reaper::subscription reap_usage;
  void on_reaped(const child_reaper::reaped_child& c);

  // opts.watchdog: the watchdog, and the kill-only cgroup of a task that has
  // no cgroup of its own (empty otherwise).
  detail::watchdog dog;
  // False once the reaper has reaped it (its pid may then be recycled).
  std::shared_ptr<std::atomic<bool>> dog_alive;
  std::string guard_dir;
  result<void> guard_launch(strategy_stack& stack);
  result<void> start_watchdog(const strategy_stack& stack);

  void log(log_level l, const std::string& msg, std::span<const log_field> fields = {}) const {
    detail::log(l, "executor", opts.task_id, "", msg, fields);
  }
  // When the task was launched: an exit's duration_ms in the log.
  std::chrono::steady_clock::time_point launched_at{};

  void set_live(bool live) {
    if (live == counted_live)
      return;
    counted_live = live;
    g_live_tasks += live ? 1 : -1;
  }

  // A launch in progress: from the isolation stack to the running task.
  struct launch_attempt {
    strategy_stack stack;
    launch_plan plan;
    std::size_t prepared = 0;  // strategies whose before_fork ran
    exec_command cmd;
    std::uint64_t launch_ticks = 0;
  };
  result<std::unique_ptr<launch_attempt>> prepare_launch(exec_command cmd);
  error fail_launch(launch_attempt& at, const error& e);
  result<process_state> complete_launch(launch_attempt& at, const detail::spawned_child& child);
  static asio::awaitable<result<process_state>> do_launch(std::shared_ptr<impl> self,
                                                          exec_command cmd);
  // Notified when launches and Exec starts that await a report must give
  // up: the executor is destroyed, or the task has exited.
  condition launch_abort;
  void on_exit(int status);
  std::size_t sweep_once(std::vector<detail::proc_stat>& found,
                         std::set<std::pair<int, std::uint64_t>>& killed);
  // Counters of the shutdown sweeps (sweep_stats()); read from any thread.
  std::atomic<std::uint64_t> sweeps{0};
  std::atomic<std::uint64_t> sweep_passes{0};
  std::atomic<std::uint64_t> sweep_killed{0};
  asio::awaitable<void> run_shutdown(int signo, std::chrono::milliseconds grace);
  static asio::awaitable<result<process_state>> wait_exit(std::shared_ptr<impl> self);
  static asio::awaitable<result<void>> send_signal(std::shared_ptr<impl> self, int signo);
  static asio::awaitable<result<void>> destroy_now(std::shared_ptr<impl> self);
  static asio::awaitable<result<exec_session>> start_session(std::shared_ptr<impl> self,
                                                             exec_session_options options);
  static asio::awaitable<result<void>> stop(std::shared_ptr<impl> self, std::string signal_name,
                                            std::chrono::milliseconds grace);
  void mark_destroyed();
  void escalate(int signo, std::chrono::milliseconds grace);
  cgroup_strategy* cgroup() const {
    for (const auto& s : strategies) {
      if (auto* c = dynamic_cast<cgroup_strategy*>(s.get()); c && c->active())
        return c;
    }
    return nullptr;
  }
  std::vector<detail::proc_stat> member_stats();
  // For member_stats(): the stat files of the processes it read last, kept
  // open, and the pids listed (reused from sample to sample).
  detail::proc_files stat_files;
  std::vector<int> member_pids;
  // Samplers alive (sampler()): when the last goes, so do the files kept
  // open for them (here and the cgroup's).
  std::atomic<int> samplers{0};
  struct sampler_lease {
    std::weak_ptr<impl> owner;
    sampler_lease(const sampler_lease&) = delete;
    sampler_lease& operator=(const sampler_lease&) = delete;
    explicit sampler_lease(std::weak_ptr<impl> o) : owner(std::move(o)) {}
    ~sampler_lease() {
      auto s = owner.lock();
      if (!s || --s->samplers > 0)
        return;
      s->stat_files.keep_only({});
      if (auto* cg = s->cgroup())
        cg->release_sample_files();
    }
  };
  exec_command launched;  // the launch's command, for Exec's context
  /// The stack and command of an Exec in the task's context.
  result<std::pair<strategy_stack, exec_command>> exec_context(std::string cmd,
                                                               std::vector<std::string> args);
  // Exec sessions in the task's context: they end with the task.
  std::vector<std::weak_ptr<exec_session::state>> sessions;
  // One-shot Execs running (pid -> start time), likewise.
  std::map<int, std::uint64_t> running_execs;
  /// SIGKILL every running Exec and what it started (their coroutines see
  /// the exit and complete; the sweep waits for them).
  void kill_execs() {
    for (const auto& [p, ticks] : running_execs)
      detail::kill_tree(p, ticks);
  }
  void end_sessions() {
    auto live = std::move(sessions);
    sessions.clear();
    for (auto& w : live) {
      if (auto s = w.lock())
        exec_session_access::end_with_task(*s);
    }
  }
  static asio::awaitable<result<exec_result>> run_exec(std::shared_ptr<impl> self, std::string cmd,
                                                       std::vector<std::string> args,
                                                       std::chrono::milliseconds timeout);
  static asio::awaitable<result<void>> stats_loop(
      std::shared_ptr<impl> self, usage_sampler sampler, std::chrono::milliseconds interval,
      std::function<void(const task_resource_usage&)> on_sample);
  /// One pass over the strategies' teardown: true when all are done. A
  /// strategy answering errc::resource_busy (a cgroup whose killed
  /// processes are still exiting) is called again by the caller later;
  /// other failures are logged and not retried.
  bool teardown_once(bool last_try) {
    dog.release();  // it kills what is left of the task (nothing, by now) and exits
    bool busy = false;
    for (auto& s : strategies) {
      auto r = s->teardown();
      if (r)
        continue;
      const bool again = r.error().code == make_error_code(errc::resource_busy);
      busy = busy || again;
      if (!again || last_try)
        log(log_level::warning, "teardown " + std::string(s->name()) + ": " + r.error().message);
    }
    return !busy;
  }
  /// Teardown, retried every 20 ms up to 2 s while a strategy is busy, on
  /// timers: the io thread never sleeps for it.
  static asio::awaitable<void> teardown_async(std::shared_ptr<impl> self) {
    const auto until = clock::now() + std::chrono::seconds(2);
    asio::steady_timer timer(self->executor);
    while (!self->teardown_once(clock::now() >= until)) {
      if (clock::now() >= until)
        co_return;
      timer.expires_after(std::chrono::milliseconds(20));
      auto waited = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (std::get<0>(waited))
        co_return;
    }
  }
  /// Teardown without waiting: one pass now, and when that is not all, the
  /// retries in a coroutine of their own (which keeps the impl alive).
  void teardown() {
    if (teardown_once(false) || teardown_retrying)
      return;
    teardown_retrying = true;
    asio::co_spawn(executor, teardown_async(shared_from_this()),
                   [self = shared_from_this()](const std::exception_ptr&) {
                     self->teardown_retrying = false;
                   });
  }
  bool teardown_retrying = false;
};

// Before the spawn: admit, isolate, validate, prepare (before_fork) and
// start the watchdog. Synchronous; on failure everything is undone.
result<std::unique_ptr<task_executor::impl::launch_attempt>> task_executor::impl::prepare_launch(
    exec_command cmd) {
  if (auto a = life.admit(task_operation::launch); !a)
    return a.error();

  const isolation_context ctx{opts.task_id, opts.cgroups,
                              opts.hostname.empty() ? opts.task_id : opts.hostname};
  auto stack = opts.isolation ? opts.isolation(cmd, ctx) : make_isolation(cmd, ctx);
  if (!stack)
    return stack.error();
  if (stack->empty() || std::find(stack->begin(), stack->end(), nullptr) != stack->end())
    return make_error(errc::invalid_argument,
                      "the isolation factory returned no strategy, or a null one");
  isolation_features features = 0;
  for (const auto& s : *stack)
    features |= s->features();
  const std::string isolation_name = cmd.isolation.empty() ? "host" : cmd.isolation;
  if (auto v = validate_command(cmd, features, isolation_name); !v)
    return v.error();
  for (const auto& s : *stack) {
    if (auto v = s->validate(cmd); !v)
      return v.error();
  }

  life.on(task_event::launch_started);
  auto at = std::make_unique<launch_attempt>();
  at->stack = std::move(*stack);
  at->cmd = std::move(cmd);
  if (opts.watchdog) {
    if (auto g = guard_launch(at->stack); !g)
      return fail_launch(*at, g.error());
  }
  for (auto& s : at->stack) {
    if (auto r = s->before_fork(at->cmd, at->plan); !r)
      return fail_launch(*at, r.error());
    ++at->prepared;
  }
  at->plan.seal();
  // Before the task exists: from its first instruction on, a SIGKILL of this
  // process takes its whole tree along.
  if (opts.watchdog) {
    if (auto w = start_watchdog(at->stack); !w)
      return fail_launch(*at, w.error());
  }
  at->launch_ticks = detail::boot_ticks_now();
  return at;
}

// Undo a launch that did not get its task running. The executor may have
// been destroyed meanwhile: it then stays destroyed (its teardown released
// the watchdog already).
error task_executor::impl::fail_launch(launch_attempt& at, const error& e) {
  for (std::size_t i = 0; i < at.prepared; ++i)
    at.stack[i]->launch_failed(at.plan);
  at.prepared = 0;
  if (dog.armed())
    dog.release();  // it kills nothing (nothing started) and removes the cgroups
  else if (!guard_dir.empty())
    ::rmdir(guard_dir.c_str());
  guard_dir.clear();
  if (life.state() == task_state::launching)
    life.on(task_event::launch_failed);
  log(log_level::info, "launch failed: " + e.message);
  return e;
}

// After a successful spawn: the task runs.
result<process_state> task_executor::impl::complete_launch(launch_attempt& at,
                                                           const detail::spawned_child& child) {
  if (life.state() == task_state::destroyed) {
    // Destroyed while the launch awaited its report, which came first.
    detail::kill_spawned(child);
    return fail_launch(at, make_error(errc::task_destroyed, "task executor destroyed"));
  }
  pid = child.pid;
  // The main process's start time tells it apart from a later process that
  // gets the same pid; it is not reaped yet (the launch watches it), so
  // /proc still has it. Unless it was reaped while the launch awaited its
  // report: then the pid may be another process's already.
  auto st = child.exit_status ? std::nullopt : detail::read_proc_stat(pid);
  start_ticks = st ? st->start_ticks : at.launch_ticks;
  std::weak_ptr<impl> weak = shared_from_this();
  reap_usage = reaper.subscribe_usage([weak](const child_reaper::reaped_child& c) {
    if (auto self = weak.lock())
      self->on_reaped(c);
  });
  if (!child.exit_status) {
    live_pid = pid;
    reaper.watch(pid, [weak](int, int status) {
      if (auto self = weak.lock())
        self->on_exit(status);
    });
  }
  for (auto& s : at.stack)
    s->after_start(at.plan, pid);
  strategies = std::move(at.stack);
  launched = std::move(at.cmd);
  // The caller's descriptors (and a terminal of theirs), not ours to keep:
  // an Exec gets its own stdio.
  launched.stdout_fd = launched.stderr_fd = launched.stdin_fd = -1;
  launched.controlling_tty = false;
  life.on(task_event::launch_succeeded);
  set_live(true);
  // Reaped already: the task has run and exited; nothing may signal the pid.
  if (child.exit_status)
    on_exit(*child.exit_status);
  launched_at = std::chrono::steady_clock::now();
  if (detail::log_enabled(log_level::info)) {
    detail::log_fields f;
    f.add("pid", pid).add("exe", at.plan.executable);
    log(log_level::info, "launched", f.view());
  }
  process_state ps;
  ps.pid = pid;
  ps.time = std::chrono::system_clock::now();
  return ps;
}

asio::awaitable<result<process_state>> task_executor::impl::do_launch(std::shared_ptr<impl> self,
                                                                      exec_command cmd) {
  auto prepared = self->prepare_launch(std::move(cmd));
  if (!prepared)
    co_return prepared.error();
  // Owned by this frame: the executor may be destroyed while the launch
  // awaits its report (mark_destroyed then notifies launch_abort).
  std::unique_ptr<launch_attempt> at = std::move(*prepared);
  auto child = co_await detail::spawn(self->reaper, at->plan, at->stack,
                                      self->opts.launch_report_timeout, &self->launch_abort);
  if (!child) {
    if (self->life.state() == task_state::destroyed)
      co_return self->fail_launch(*at, make_error(errc::task_destroyed, "task executor destroyed"));
    co_return self->fail_launch(*at, child.error());
  }
  co_return self->complete_launch(*at, *child);
}

result<void> task_executor::impl::guard_launch(strategy_stack& stack) {
  for (const auto& s : stack) {
    if (dynamic_cast<cgroup_strategy*>(s.get()))
      return {};  // the watchdog kills through the task's own cgroup
  }
  const auto layout = cgroup::detect(opts.cgroups.root);
  auto dir = detail::make_guard_cgroup(layout, opts.cgroups.parent, cgroup_name_for(opts.task_id));
  if (!dir) {
    if (dir.error().code == make_error_code(errc::unsupported)) {
      log(log_level::warning, "no watchdog: " + dir.error().message +
                                  "; the task's children would outlive a SIGKILL of the executor");
      return {};
    }
    return dir.error();
  }
  guard_dir = std::move(*dir);
  cgroup_membership m;
  m.procs.push_back(guard_dir + "/cgroup.procs");
  // First: the child joins while it still has the rights to.
  stack.insert(stack.begin(), std::make_unique<cgroup_join>(std::move(m)));
  return {};
}

result<void> task_executor::impl::start_watchdog(const strategy_stack& stack) {
  std::vector<std::string> dirs;
  if (!guard_dir.empty()) {
    dirs.push_back(guard_dir);
  } else {
    for (const auto& s : stack) {
      if (auto* c = dynamic_cast<cgroup_strategy*>(s.get()); c && c->active())
        dirs = c->directories();
    }
  }
  const std::string kill_dir = detail::kill_directory(dirs);
  if (kill_dir.empty()) {
    log(log_level::warning,
        "no watchdog: no cgroup to kill the task through; the task's children would outlive a "
        "SIGKILL of the executor");
    return {};
  }
  auto w = detail::watchdog::start(kill_dir, dirs);
  if (!w)
    return w.error();
  dog = std::move(*w);
  dog_alive = std::make_shared<std::atomic<bool>>(true);
  reaper.watch(dog.pid(), [alive = dog_alive](int, int) { alive->store(false); });
  return {};
}

void task_executor::impl::on_exit(int status) {
  live_pid = 0;
  reaped_ticks = detail::boot_ticks_now();
  for (auto& s : strategies)
    status = s->exit_status(status);
  exited = decode_status(pid, status);
  // The kernel's OOM killer sends SIGKILL; its cgroup counts the kill. A
  // SIGKILL of our own (shutdown, destroy, Signal 9) is not an OOM.
  if (exited->signal == SIGKILL && !sent_sigkill) {
    if (auto* cg = cgroup(); cg && cg->oom_kills() > 0)
      exited->oom_killed = true;
  }
  if (life.state() == task_state::running)
    life.on(task_event::process_exited);
  end_sessions();
  kill_execs();
  launch_abort.notify_all();  // an Exec awaiting its report gives up
  exit_cond.notify_all();
  if (detail::log_enabled(log_level::info)) {
    detail::log_fields f;
    f.add("pid", pid).add("exit_code", exited->exit_code);
    if (exited->signal)
      f.add("signal", signal_name(exited->signal));
    f.add("oom_killed", exited->oom_killed);
    if (launched_at != std::chrono::steady_clock::time_point{}) {
      f.add("duration_ms",
            static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - launched_at)
                                          .count()));
    }
    log(exited->oom_killed ? log_level::warning : log_level::info,
        exited->oom_killed ? "exited: killed by the OOM killer" : "exited", f.view());
  }
}

std::vector<int> task_executor::impl::adopted_children(const std::vector<detail::proc_stat>& table,
                                                       int me) const {
  int my_session = 0;  // asked only when a child needs it (most samples: none does)
  const bool orphans_come_to_us = reaper.mode() == reaper_mode::adopt_orphans;
  std::vector<int> adopted;
  for (const auto& p : table) {
    if (p.ppid != me || p.pid == pid || reaper.watching(p.pid))
      continue;
    // Our own session's processes are the program's (std::system, popen, a
    // fork of its own): a task leads a session of its own, and no process
    // of it can join ours.
    if (my_session == 0)
      my_session = ::getsid(0);
    if (p.session == my_session)
      continue;
    // A process seen as the task's before it was re-parented stays its own.
    // Beyond those, only a subreaper's orphans may be the task's: while we
    // are the one live task, every unclaimed child outside our session is.
    // In exact mode nothing is re-parented to us, so an unclaimed child is
    // the program's.
    if ((orphans_come_to_us && counted_live && g_live_tasks == 1) ||
        known_members.contains({p.pid, p.start_ticks}))
      adopted.push_back(p.pid);
  }
  return adopted;
}

void task_executor::impl::on_reaped(const child_reaper::reaped_child& c) {
  // The main process: its exit handler (on_exit) ran just before. Other
  // children of ours: the task's when adopted_children() would have said
  // so. Their start time is gone with them: a known member's pid is taken
  // for it (the kernel recycles pids after the whole range, not within a
  // sampling interval).
  bool member = false;
  if (c.pid == pid) {
    member = c.claimed && !main_cpu_counted;
    main_cpu_counted = main_cpu_counted || member;
  } else if (!c.claimed) {
    // (Unclaimed reaps happen in adopt_orphans mode only.)
    member = (counted_live && g_live_tasks == 1) || known_member_pid(c.pid);
  }
  if (!member)
    return;
  reaped_cpu.user_ns += static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(c.user).count());
  reaped_cpu.system_ns += static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(c.system).count());
}

// Find every process of the task and SIGKILL it; returns how many exist
// (alive or zombie). Kills go through a pidfd opened and then checked against
// the start time seen in the scan, so a recycled pid is never hit.
std::size_t task_executor::impl::sweep_once(std::vector<detail::proc_stat>& found,
                                            std::set<std::pair<int, std::uint64_t>>& killed) {
  sweep_passes.fetch_add(1, std::memory_order_relaxed);
  const int me = ::getpid();
  // As the subreaper (adopt_orphans), every process of the task descends
  // from us: its orphans are re-parented to us, or to a subreaper inside the
  // task, never past us. So the walk down our own tree finds them all at a
  // cost in proportion to that tree, where a scan of /proc reads every
  // process of the machine (in a daemon's life, most of Destroy's work). In
  // exact mode orphans go to someone else: the whole of /proc then.
  std::vector<detail::proc_stat> table;
  if (reaper.mode() == reaper_mode::adopt_orphans) {
    if (auto descendants = detail::scan_descendants(me))
      table = std::move(*descendants);
    else
      table = detail::scan_processes();
  } else {
    table = detail::scan_processes();
  }
  found =
      detail::task_members(table, pid, start_ticks, reaped_ticks, me, adopted_children(table, me));
  // Execs still running in the task's context, and what they started: they
  // are the task's too (its cgroup holds them when it has one; without one
  // only this finds them).
  for (const auto& [exec_pid, exec_ticks] : running_execs) {
    for (auto& m : detail::task_members(table, exec_pid, exec_ticks, std::nullopt, me, {})) {
      bool known = false;
      for (const auto& f : found)
        known = known || f.pid == m.pid;
      if (!known)
        found.push_back(std::move(m));
    }
  }
  // Everything in the task's cgroup belongs to it, whatever its ancestry:
  // one write kills it all (cgroup.kill, or freeze / SIGKILL / thaw).
  if (auto* cg = cgroup()) {
    auto in_cgroup = cg->members();
    for (int m : in_cgroup) {
      bool known = false;
      for (const auto& f : found)
        known = known || f.pid == m;
      if (known)
        continue;
      bool listed = false;
      for (const auto& p : table) {
        if (p.pid == m) {
          found.push_back(p);
          listed = true;
        }
      }
      // Put into the cgroup from outside our tree (the walk above lists
      // our descendants only): counted all the same, so the sweep waits
      // for it to die before the cgroup is removed.
      if (!listed) {
        if (auto st = detail::read_proc_stat(m))
          found.push_back(std::move(*st));
      }
    }
    if (!in_cgroup.empty())
      cg->kill_members();
  }
  if (!found.empty() && detail::log_enabled(log_level::debug)) {
    std::string list;
    for (const auto& m : found)
      list += " " + std::to_string(m.pid) + "(" + m.comm + "," + m.state + ")";
    log(log_level::debug, "sweep found" + list);
  }
  // Remember this scan's members only: a process gone since cannot come
  // back, so the set stays as small as the task's live process tree.
  known_members.clear();
  for (const auto& m : found)
    known_members.insert({m.pid, m.start_ticks});
  for (const auto& m : found) {
    // No skipping of 'Z': a process whose main thread exited shows as a
    // zombie while its other threads run; SIGKILL on a real zombie is a no-op.
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, m.pid, 0));
    if (fd < 0)
      continue;  // gone since the scan
    auto now = detail::read_proc_stat(m.pid);
    if (now && now->start_ticks == m.start_ticks &&
        ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0) == 0 && m.pid != pid &&
        killed.insert({m.pid, m.start_ticks}).second)
      sweep_killed.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
  }
  return found.size();
}

asio::awaitable<void> task_executor::impl::run_shutdown(int signo,
                                                        std::chrono::milliseconds grace) {
  using fsm = shutdown_fsm;
  // Two deadlines: SIGKILL at the end of the grace (kill_at, which a later
  // call may bring forward), and the bound, counted from SIGKILL (or from
  // the start, when the task had exited already), for the kill and the
  // sweep. Saturating arithmetic: a grace of milliseconds::max() is capped
  // (max_shutdown_grace) and can never wrap a deadline into the past.
  grace = std::min(grace, std::chrono::milliseconds(max_shutdown_grace));
  kill_at = add_capped(clock::now(), grace, clock::time_point::max());
  kill_sent = false;
  auto bound_deadline = clock::time_point::max();
  auto start_bound = [&] {
    if (bound_deadline == clock::time_point::max())
      bound_deadline = add_capped(clock::now(), opts.shutdown_bound, clock::time_point::max());
  };
  shutdown_fsm machine(signo, grace, exited.has_value());

  // Every reap may be the last process of the task: wake the sweep.
  // Notified on every reap, and by mark_destroyed so a destroyed executor's
  // sweep stops at once.
  condition& reaped_cond = sweep_cond;
  child_reaper::subscription sub =
      reaper.subscribe([&reaped_cond](int, int, bool) { reaped_cond.notify_all(); });
  std::uint64_t reaps_seen = 0;

  std::vector<detail::proc_stat> survivors;
  std::set<std::pair<int, std::uint64_t>> killed;  // by this shutdown's sweep
  bool swept = false;
  auto act = machine.resume(fsm::event::started);
  for (;;) {
    // A destroyed executor has SIGKILLed its task; nobody waits for the rest.
    if (act.type == fsm::action_type::done || life.state() == task_state::destroyed)
      break;
    switch (act.type) {
      case fsm::action_type::send_signal:
        if (!exited) {
          sent_sigkill = sent_sigkill || act.signal == SIGKILL;
          ::kill(pid, act.signal);
        }
        act = machine.resume(exited ? fsm::event::task_exited : fsm::event::step_done);
        break;
      case fsm::action_type::kill_task:
        kill_sent = true;
        start_bound();
        if (!exited) {
          sent_sigkill = true;
          ::kill(pid, SIGKILL);
          if (detail::log_enabled(log_level::info)) {
            detail::log_fields f;
            f.add("pid", pid).add("signal", "SIGKILL");
            log(log_level::info, "shutdown: grace over", f.view());
          }
        }
        act = machine.resume(exited ? fsm::event::task_exited : fsm::event::step_done);
        break;
      case fsm::action_type::wait_exit: {
        if (exited) {
          act = machine.resume(fsm::event::task_exited);
          break;
        }
        // The grace (until kill_at, which escalate() may bring forward and
        // then notifies exit_cond), or after SIGKILL the bound.
        const bool in_grace = !kill_sent;
        const auto until = in_grace ? kill_at : bound_deadline;
        if (clock::now() < until)
          co_await wait_on(exit_cond, until);
        if (exited)
          act = machine.resume(fsm::event::task_exited);
        else if (clock::now() >= (in_grace ? kill_at : bound_deadline))
          act = machine.resume(in_grace ? fsm::event::wait_timed_out : fsm::event::deadline_passed);
        break;  // woken early (a shorter grace arrived, or a spurious wake): look again
      }
      case fsm::action_type::sweep:
        start_bound();  // a task that had exited: the bound starts with the sweep
        reaps_seen = reaped_cond.generation;
        if (!std::exchange(swept, true))
          sweeps.fetch_add(1, std::memory_order_relaxed);
        act = machine.resume(sweep_once(survivors, killed) ? fsm::event::sweep_found_some
                                                           : fsm::event::sweep_found_none);
        break;
      case fsm::action_type::wait_sweep: {
        // A reap since the scan may already have happened: only wait if not.
        // Members that are not our children (exact mode: nothing is
        // re-parented to us; or a subreaper inside the task) are reaped by
        // others: look again every sweep_poll as well.
        const auto poll_at = add_capped(clock::now(), sweep_poll, bound_deadline);
        if (reaped_cond.generation == reaps_seen)
          co_await wait_on(reaped_cond, poll_at);
        const bool again = reaped_cond.generation != reaps_seen || clock::now() < bound_deadline;
        act = machine.resume(again ? fsm::event::step_done : fsm::event::deadline_passed);
        break;
      }
      case fsm::action_type::done:
        break;
    }
  }
  sub.reset();
  kill_at = clock::time_point::max();

  if (life.state() == task_state::destroyed) {
    shutdown_result = make_error(errc::task_destroyed, "task executor destroyed during shutdown");
  } else if (act.failed) {
    std::string msg = "shutdown incomplete after " + std::to_string(opts.shutdown_bound.count()) +
                      " ms: " + act.reason;
    if (!survivors.empty()) {
      msg += "; survivors:";
      for (const auto& s : survivors)
        msg += " " + std::to_string(s.pid) + " (" + s.comm + ")";
    }
    log(log_level::warning, msg);
    shutdown_result = make_error(errc::shutdown_incomplete, msg);
  } else {
    set_live(false);
    // The shutdown answers once the task's cgroups are gone (or given up on).
    co_await teardown_async(shared_from_this());
    shutdown_result = result<void>{};
  }
  shutdown_running = false;
  shutdown_cond.notify_all();
}

std::vector<detail::proc_stat> task_executor::impl::member_stats() {
  if (auto* cg = cgroup()) {
    // The cgroup lists the members: no walk of /proc.
    cg->sample_members(member_pids);
    std::vector<detail::proc_stat> out;
    out.reserve(member_pids.size());
    for (int p : member_pids)
      if (auto st = stat_files.stat(p))
        out.push_back(std::move(*st));
    stat_files.keep_only(member_pids);
    return out;
  }
  if (pid <= 0)
    return {};
  // Every member descends from us: we are the subreaper of the task's
  // orphans (child_reaper). So the walk down our own tree finds them all,
  // at a cost in proportion to that tree (in a daemon, one task's; embedded,
  // every task of the process), not to the machine's process count (a node
  // with a thousand daemons samples each task every second).
  // Orphans re-parented to us are adopted as the sweep does (the one live
  // task's, or members seen before), so a daemonised process (setsid, its
  // parent gone) is sampled while it lives and its CPU counted once reaped.
  const int me = ::getpid();
  // Our watchdog starts nothing: its files are not read each sample.
  const int helper = dog.armed() && dog_alive && dog_alive->load() ? dog.pid() : 0;
  auto descendants = detail::scan_descendants(me, &stat_files, helper);
  auto table = descendants ? std::move(*descendants) : detail::scan_processes();
  member_pids.assign(1, me);
  for (const auto& p : table)
    member_pids.push_back(p.pid);
  stat_files.keep_only(member_pids);
  auto members =
      detail::task_members(table, pid, start_ticks, reaped_ticks, me, adopted_children(table, me));
  // Remember them, as long as they exist: a member missing from this walk
  // (the kernel's children lists are no snapshot) is kept while its pid
  // still has its start time.
  std::set<std::pair<int, std::uint64_t>> known;
  for (const auto& m : members)
    known.insert({m.pid, m.start_ticks});
  // (An Exec's process that the sweep found stays so too.)
  for (const auto& k : known_members) {
    if (known.contains(k))
      continue;
    if (auto st = detail::read_proc_stat(k.first); st && st->start_ticks == k.second)
      known.insert(k);
  }
  known_members = std::move(known);
  return members;
}

// A shutdown is running and another call arrives: it shares that run, and
// its own grace still holds. Its signal goes out too (the task may handle
// SIGTERM and not the signal asked for first), and SIGKILL comes no later
// than its grace allows.
void task_executor::impl::escalate(int signo, std::chrono::milliseconds grace) {
  if (kill_sent || exited)
    return;  // SIGKILL has gone out, or nothing is left to signal
  grace = std::min(grace, std::chrono::milliseconds(max_shutdown_grace));
  const auto at = add_capped(clock::now(), grace, clock::time_point::max());
  if (grace.count() > 0 && signo != SIGKILL) {
    ::kill(pid, signo);
  }
  if (at < kill_at) {
    log(log_level::info,
        "shutdown escalated: SIGKILL in " + std::to_string(grace.count()) + " ms at the latest");
    kill_at = at;
    exit_cond.notify_all();  // the running shutdown's grace wait looks again
  }
}

void task_executor::impl::mark_destroyed() {
  if (life.state() == task_state::destroyed)
    return;
  life.on(task_event::destroyed);
  end_sessions();
  kill_execs();
  set_live(false);
  teardown();                 // idempotent: also after a completed shutdown
  launch_abort.notify_all();  // a launch or an Exec awaiting its report gives up
  exit_cond.notify_all();
  shutdown_cond.notify_all();
  sweep_cond.notify_all();
}

task_executor::task_executor(child_reaper& reaper, task_executor_options options)
    : impl_(std::make_shared<impl>(reaper, std::move(options))) {}

task_executor::~task_executor() {
  // No waiting in a destructor: SIGKILL the task and its group now, from
  // this thread (the strand may never run again: a program ending). The
  // pid is not reaped yet, so neither it nor its group id can have been
  // reused (its reap on the strand, if it comes meanwhile, is microseconds
  // of a race against the recycling of a whole pid range).
  if (const int p = impl_->live_pid.load(); p > 0) {
    ::kill(-p, SIGKILL);
    ::kill(p, SIGKILL);
  }
  auto end = [self = impl_] { self->mark_destroyed(); };
  // The state lives on the strand: end it there (at once when we are on
  // it, or when nothing runs the io_context any more).
  try {
    detail::run_on_strand(impl_->executor, std::move(end));
  } catch (...) {
    // post allocates: nothing more can be done in a destructor
  }
}

using detail::no_throw_on_cancel;

asio::awaitable<result<process_state>> task_executor::launch(exec_command cmd) {
  // The analyzer counts the parameter's move into the coroutine frame as a
  // first move of `cmd`: this is the only one.
  co_return co_await detail::on_strand(
      impl_->executor,
      impl::do_launch(impl_, std::move(cmd)));  // NOLINT(clang-analyzer-cplusplus.Move)
}

asio::awaitable<result<process_state>> task_executor::impl::wait_exit(std::shared_ptr<impl> self) {
  if (auto a = self->life.admit(task_operation::wait); !a)
    co_return a.error();
  while (!self->exited && self->life.state() != task_state::destroyed) {
    auto w = co_await wait_on(self->exit_cond, clock::time_point::max());
    if (w == wake::cancelled && !self->exited)
      co_return make_error(errc::operation_canceled, "wait canceled");
  }
  if (self->life.state() == task_state::destroyed)
    co_return make_error(errc::task_destroyed, "task executor destroyed");
  co_return *self->exited;
}

namespace {

// One exec's state, shared by its coroutine, its output reader and its
// reaper callback.
struct exec_state {
  explicit exec_state(const asio::any_io_executor& ex) : out(ex) {}
  strategy_stack stack;
  asio::posix::stream_descriptor out;
  std::string output;
  std::optional<int> status;
  condition done;
  bool reader_done = false;  // the output reader saw EOF, an error or a cancel
  condition reader_cond;

  void keep(const char* data, std::size_t n) {
    output.append(data, n);
    if (output.size() > exec_result::max_output)
      output.erase(0, output.size() - exec_result::max_output);
  }
};

asio::awaitable<void> read_output(std::shared_ptr<exec_state> st) {
  std::array<char, 4096> buf;
  for (;;) {
    auto [ec, n] =
        co_await st->out.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    st->keep(buf.data(), n);
    if (ec) {
      st->reader_done = true;
      st->reader_cond.notify_all();
      co_return;
    }
  }
}

/// Called with the command once it runs (the executor tracks its Execs).
using on_started_fn = std::function<void(const started_command&)>;
asio::awaitable<result<exec_result>> run_collecting(child_reaper& reaper,
                                                    std::shared_ptr<exec_state> st, exec_command c,
                                                    std::chrono::milliseconds timeout,
                                                    on_started_fn on_started = {},
                                                    launch_wait wait = {});

// Joins a network namespace (exec_script's netns).
class netns_join final : public isolation_strategy {
 public:
  explicit netns_join(std::string path) : path_(std::move(path)) {}
  ~netns_join() override {
    if (fd_ >= 0)
      ::close(fd_);
  }
  std::string_view name() const noexcept override { return "netns"; }
  isolation_features features() const noexcept override { return 0; }
  result<void> validate(const exec_command&) const override { return {}; }
  result<void> before_fork(const exec_command&, launch_plan&) override {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      return make_system_error(errno, "network namespace \"" + path_ + "\"");
    if (::ioctl(fd_, NS_GET_NSTYPE) != CLONE_NEWNET) {
      return make_error(errc::invalid_argument,
                        "netns \"" + path_ + "\" is not a network namespace");
    }
    return {};
  }
  bool in_child(const launch_plan&, child_failure& f) const noexcept override {
    return ::setns(fd_, CLONE_NEWNET) == 0 || fail_step(f, "setns network namespace");
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

namespace {
asio::awaitable<result<exec_result>> run_script(child_reaper& reaper, script_options o) {
  if (o.name.empty())
    co_return make_error(errc::invalid_argument, "name is empty");
  auto st = std::make_shared<exec_state>(co_await asio::this_coro::executor);
  if (!o.netns_path.empty())
    st->stack.push_back(std::make_unique<netns_join>(o.netns_path));
  st->stack.push_back(std::make_unique<host_strategy>());
  exec_command c;
  c.cmd = std::move(o.name);
  c.args = std::move(o.args);
  c.env = std::move(o.env);
  c.task_dir = o.dir;
  c.work_dir = std::move(o.dir);
  if (auto v = validate_command(c, 0, "host"); !v)
    co_return v.error();
  co_return co_await no_throw_on_cancel(
      run_collecting(reaper, std::move(st), std::move(c), o.timeout));
}

}  // namespace

asio::awaitable<result<exec_result>> exec_script(child_reaper& reaper, script_options o) {
  co_return co_await detail::on_strand(reaper.get_executor(), run_script(reaper, std::move(o)));
}

result<std::pair<strategy_stack, exec_command>> task_executor::impl::exec_context(
    std::string cmd, std::vector<std::string> args) {
  if (auto a = life.admit(task_operation::exec); !a)
    return a.error();
  if (cmd.empty())
    return make_error(errc::invalid_argument, "cmd is empty");
  strategy_stack stack;
  container_strategy* container = nullptr;
  for (const auto& s : strategies) {
    if (auto* c = dynamic_cast<container_strategy*>(s.get()))
      container = c;
  }
  if (container) {
    stack.push_back(container->enter());
  } else {
    if (auto* cg = cgroup())
      stack.push_back(std::make_unique<cgroup_join>(cg->membership()));
    if (!guard_dir.empty()) {
      cgroup_membership m;
      m.procs.push_back(guard_dir + "/cgroup.procs");
      stack.push_back(std::make_unique<cgroup_join>(std::move(m)));
    }
    stack.push_back(std::make_unique<host_strategy>());
  }
  exec_command c = launched;
  c.cmd = std::move(cmd);
  c.args = std::move(args);
  return std::pair{std::move(stack), std::move(c)};
}

asio::awaitable<result<exec_result>> task_executor::impl::run_exec(
    std::shared_ptr<impl> self, std::string cmd, std::vector<std::string> args,
    std::chrono::milliseconds timeout) {
  auto ctx = self->exec_context(std::move(cmd), std::move(args));
  if (!ctx)
    co_return ctx.error();
  auto st = std::make_shared<exec_state>(co_await asio::this_coro::executor);
  st->stack = std::move(ctx->first);
  // Tracked while it runs: it ends with the task, and a shutdown or destroy
  // kills it and what it started (without a cgroup nothing else would).
  // Untracked after the await, not by a guard object: GCC 12 destroys such
  // frame locals out of order. An entry left by an exception is harmless:
  // kill_tree checks the start time, so a reused pid is never hit.
  auto tracked = std::make_shared<int>(0);
  std::weak_ptr<impl> weak = self;
  on_started_fn on_started = [weak, tracked](const started_command& c) {
    auto s = weak.lock();
    if (s && s->life.state() == task_state::running) {
      s->running_execs[c.pid] = c.start_ticks;
      *tracked = c.pid;
    } else {
      // The task ended while the command awaited its launch report.
      detail::kill_tree(c.pid, c.start_ticks);
    }
  };
  launch_wait wait;
  wait.report_timeout = self->opts.launch_report_timeout;
  wait.abort = &self->launch_abort;
  result<exec_result> r = co_await run_collecting(
      self->reaper, std::move(st), std::move(ctx->second), timeout, on_started, wait);
  if (*tracked > 0)
    self->running_execs.erase(*tracked);
  if (!r && r.error().code == make_error_code(errc::operation_canceled)) {
    // Given up because the task ended (launch_abort): say so.
    if (auto a = self->life.admit(task_operation::exec); !a)
      co_return a.error();
  }
  co_return r;
}

namespace {

// Launch `c` through `st->stack`, collect its combined output, wait for it
// (killing its session and descendants at `timeout`), and report.
asio::awaitable<result<exec_result>> run_collecting(child_reaper& reaper,
                                                    std::shared_ptr<exec_state> st, exec_command c,
                                                    std::chrono::milliseconds timeout,
                                                    on_started_fn on_started, launch_wait wait) {
  auto ex = co_await asio::this_coro::executor;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    co_return make_system_error(errno, "pipe2");
  st->out.assign(pipefd[0]);
  c.stdout_fd = c.stderr_fd = pipefd[1];
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } write_end{pipefd[1]};  // the plan holds its own copies

  std::function<void(int)> on_exit = [st](int status) {
    st->status = status;
    st->done.notify_all();
  };
  auto started = co_await start_command(reaper, st->stack, c, std::move(on_exit), wait);
  if (!started)
    co_return started.error();
  const int pid = started->pid;
  if (on_started)
    on_started(*started);
  ::close(write_end.fd);
  write_end.fd = -1;
  asio::co_spawn(ex, read_output(st), asio::detached);

  const auto deadline = timeout.count() > 0
                            ? add_capped(clock::now(), timeout, clock::time_point::max())
                            : clock::time_point::max();
  bool timed_out = false, cancelled = false, killed = false;
  while (!st->status) {
    clock::time_point until = deadline;
    if (killed)
      until = clock::now() + std::chrono::seconds(30);
    auto w = co_await wait_on(st->done, until);
    if (st->status)
      break;
    if (w == wake::notified)
      continue;
    cancelled = cancelled || w == wake::cancelled;
    if (killed)
      break;  // killed 30 s ago and still not reaped, or cancelled: stop waiting
    timed_out = w == wake::timed_out;
    killed = true;
    detail::kill_tree(pid, started->start_ticks);
  }
  // The output: until EOF, or a short grace after the exit when processes
  // the command left behind keep the pipe open (their later writes are not
  // waited for). Only the reader reads; closing cancels it.
  if (!cancelled && !st->reader_done)
    co_await wait_on(st->reader_cond, clock::now() + std::chrono::milliseconds(100));
  boost::system::error_code ignored;
  st->out.close(ignored);
  while (!cancelled && !st->reader_done) {
    if (co_await wait_on(st->reader_cond, clock::now() + std::chrono::seconds(5)) != wake::notified)
      break;
  }
  if (cancelled)
    co_return make_error(errc::operation_canceled, "exec canceled");
  if (!st->status)
    co_return make_error(errc::shutdown_incomplete,
                         "exec: pid " + std::to_string(pid) + " survived SIGKILL for 30 s");
  exec_result r;
  r.output = std::move(st->output);
  r.exit_code = decode_status(pid, *st->status).exit_code;
  r.timed_out = timed_out;
  co_return r;
}

}  // namespace

asio::awaitable<result<exec_result>> task_executor::exec(std::string cmd,
                                                         std::vector<std::string> args,
                                                         std::chrono::milliseconds timeout) {
  co_return co_await detail::on_strand(
      impl_->executor, impl::run_exec(impl_, std::move(cmd), std::move(args), timeout));
}

asio::awaitable<result<exec_session>> task_executor::exec_streaming(exec_session_options options) {
  co_return co_await detail::on_strand(impl_->executor,
                                       impl::start_session(impl_, std::move(options)));
}

asio::awaitable<result<exec_session>> task_executor::impl::start_session(
    std::shared_ptr<impl> self, exec_session_options options) {
  auto ctx = self->exec_context(std::move(options.cmd), std::move(options.args));
  if (!ctx)
    co_return ctx.error();
  // Keep a small registry: sessions already gone are dropped on each start.
  std::erase_if(self->sessions, [](const auto& w) { return w.expired(); });
  std::shared_ptr<exec_session::state> state;
  options.cmd = std::move(ctx->second.cmd);
  options.args = std::move(ctx->second.args);
  launch_wait wait;
  wait.report_timeout = self->opts.launch_report_timeout;
  wait.abort = &self->launch_abort;
  auto session = co_await no_throw_on_cancel(
      exec_session_access::start(self->reaper, std::move(ctx->first), std::move(ctx->second),
                                 std::move(options), state, wait));
  if (!session) {
    if (session.error().code == make_error_code(errc::operation_canceled)) {
      // Given up because the task ended (launch_abort): say so.
      if (auto a = self->life.admit(task_operation::exec); !a)
        co_return a.error();
    }
    co_return session.error();
  }
  if (self->life.state() != task_state::running) {
    // The task ended while the command awaited its launch report.
    exec_session_access::end_with_task(*state);
    co_return self->life.admit(task_operation::exec).error();
  }
  self->sessions.push_back(state);
  co_return std::move(*session);
}

asio::awaitable<result<process_state>> task_executor::wait() {
  co_return co_await detail::on_strand(impl_->executor, impl::wait_exit(impl_));
}

asio::awaitable<result<void>> task_executor::signal(int signo) {
  co_return co_await detail::on_strand(impl_->executor, impl::send_signal(impl_, signo));
}

asio::awaitable<result<void>> task_executor::impl::send_signal(std::shared_ptr<impl> self,
                                                               int signo) {
  if (!valid_signal_number(signo)) {
    co_return make_error(errc::invalid_argument, "invalid signal number " + std::to_string(signo));
  }
  if (auto a = self->life.admit(task_operation::signal); !a)
    co_return a.error();
  self->sent_sigkill = self->sent_sigkill || signo == SIGKILL;
  int target = self->pid;
  for (const auto& s : self->strategies)
    target = s->signal_target(target, signo);
  if (::kill(target, signo) != 0) {
    co_return make_system_error(
        errno, "signal " + signal_name(signo) + " to pid " + std::to_string(target));
  }
  if (signo != 0 && detail::log_enabled(log_level::info)) {
    detail::log_fields f;
    f.add("pid", target).add("signal", signal_name(signo));
    self->log(log_level::info, "signalled", f.view());
  }
  co_return result<void>{};
}

result<usage_sampler> task_executor::sampler() {
  auto self = impl_;
  if (auto a = self->life.admit(task_operation::stats); !a)
    return a.error();
  std::weak_ptr<impl> weak = self;
  ++self->samplers;
  auto lease = std::make_shared<impl::sampler_lease>(weak);
  return usage_sampler(
      [weak, lease]() -> std::vector<detail::proc_stat> {
        auto s = weak.lock();
        return s ? s->member_stats() : std::vector<detail::proc_stat>{};
      },
      [weak]() -> std::optional<cgroup_counters> {
        auto s = weak.lock();
        auto* cg = s ? s->cgroup() : nullptr;
        if (!cg)
          return std::nullopt;
        return cg->read();
      },
      [weak]() -> cpu_time {
        auto s = weak.lock();
        return s ? s->reaped_cpu : cpu_time{};
      });
}

asio::awaitable<result<void>> task_executor::stats(
    std::chrono::milliseconds interval, std::function<void(const task_resource_usage&)> on_sample) {
  if (interval.count() <= 0)
    co_return make_error(errc::invalid_argument, "interval must be positive");
  auto s = sampler();
  if (!s)
    co_return s.error();
  co_return co_await detail::on_strand(
      impl_->executor, impl::stats_loop(impl_, std::move(*s), interval, std::move(on_sample)));
}

asio::awaitable<result<void>> task_executor::impl::stats_loop(
    std::shared_ptr<impl> self, usage_sampler sampler, std::chrono::milliseconds interval,
    std::function<void(const task_resource_usage&)> on_sample) {
  auto* s = &sampler;
  asio::steady_timer timer(self->executor);
  // Samples are due on a fixed schedule (first, first + interval, ...), so
  // the time a sample takes does not push the later ones back. One that is
  // late by more than an interval restarts the schedule instead of bursting.
  auto due = asio::steady_timer::clock_type::now();
  for (;;) {
    if (self->life.state() != task_state::running)
      co_return result<void>{};
    on_sample(s->sample());
    due += interval;
    if (auto now = asio::steady_timer::clock_type::now(); due < now)
      due = now + interval;
    timer.expires_at(due);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec)
      co_return make_error(errc::operation_canceled, "stats canceled");
  }
}

result<void> task_executor::update_resources(const task_resources& r) {
  auto self = impl_;
  if (auto a = self->life.admit(task_operation::update_resources); !a)
    return a.error();
  auto* cg = self->cgroup();
  if (!cg) {
    return make_error(errc::unsupported,
                      "the task has no cgroup (launch it with resource_limits, as root): its "
                      "resources cannot change");
  }
  return cg->update(r);
}

asio::awaitable<result<void>> task_executor::shutdown(std::string_view signal_name,
                                                      std::chrono::milliseconds grace) {
  co_return co_await detail::on_strand(impl_->executor,
                                       impl::stop(impl_, std::string(signal_name), grace));
}

asio::awaitable<result<void>> task_executor::impl::stop(std::shared_ptr<impl> self,
                                                        std::string signal_name_in,
                                                        std::chrono::milliseconds grace) {
  auto signo = signal_from_name(signal_name_in);
  if (!signo)
    co_return make_error(errc::invalid_argument,
                         "unknown signal \"" + std::string(signal_name_in) + "\"");
  if (grace.count() < 0)
    co_return make_error(errc::invalid_argument, "grace period is negative");
  if (auto a = self->life.admit(task_operation::shutdown); !a)
    co_return a.error();

  if (self->shutdown_running) {
    self->escalate(*signo, grace);
  } else {
    self->shutdown_running = true;
    self->shutdown_result.reset();
    if (detail::log_enabled(log_level::info)) {
      detail::log_fields f;
      f.add("pid", self->pid)
          .add("signal", signal_name(*signo))
          .add("grace_ms", static_cast<std::int64_t>(grace.count()));
      self->log(log_level::info, "shutdown", f.view());
    }
    // Its own coroutine: a caller that is cancelled stops waiting, the
    // shutdown goes on (bounded) for everyone else.
    asio::co_spawn(
        self->executor, self->run_shutdown(*signo, grace), [self](const std::exception_ptr& e) {
          if (e) {
            try {
              std::rethrow_exception(e);
            } catch (const std::exception& ex) {
              self->log(log_level::error, std::string("shutdown failed: ") + ex.what());
            }
            self->shutdown_running = false;
            self->shutdown_result =
                make_error(errc::shutdown_incomplete, "shutdown failed with an internal error");
            self->shutdown_cond.notify_all();
            std::rethrow_exception(e);
          }
        });
  }
  while (!self->shutdown_result || self->shutdown_running) {
    if (self->life.state() == task_state::destroyed)
      co_return make_error(errc::task_destroyed, "task executor destroyed");
    auto w = co_await wait_on(self->shutdown_cond, clock::time_point::max());
    if (w == wake::cancelled)
      co_return make_error(errc::operation_canceled, "shutdown wait canceled");
  }
  co_return *self->shutdown_result;
}

asio::awaitable<result<void>> task_executor::destroy() {
  co_return co_await detail::on_strand(impl_->executor, impl::destroy_now(impl_));
}

asio::awaitable<result<void>> task_executor::impl::destroy_now(std::shared_ptr<impl> self) {
  if (auto a = self->life.admit(task_operation::destroy); !a)
    co_return a.error();
  result<void> r;
  if (self->life.state() == task_state::running || self->life.state() == task_state::exited) {
    r = co_await no_throw_on_cancel(impl::stop(self, "SIGKILL", std::chrono::milliseconds{0}));
    if (!r && r.error().code == make_error_code(errc::operation_canceled))
      co_return r;  // not destroyed: the caller gave up waiting
  }
  self->mark_destroyed();
  self->exited.reset();
  co_return r;
}

std::string_view task_executor::version() const noexcept {
  return executor_version;
}
task_state task_executor::state() const noexcept {
  return impl_->life.state();
}
int task_executor::pid() const noexcept {
  return impl_->pid;
}
std::optional<process_state> task_executor::exit_state() const {
  return impl_->exited;
}
const std::string& task_executor::task_id() const noexcept {
  return impl_->opts.task_id;
}
asio::any_io_executor task_executor::get_executor() const {
  return impl_->executor;
}
task_executor::sweep_counters task_executor::sweep_stats() const noexcept {
  sweep_counters c;
  c.sweeps = impl_->sweeps.load(std::memory_order_relaxed);
  c.passes = impl_->sweep_passes.load(std::memory_order_relaxed);
  c.killed = impl_->sweep_killed.load(std::memory_order_relaxed);
  return c;
}

}  // namespace taskexec
