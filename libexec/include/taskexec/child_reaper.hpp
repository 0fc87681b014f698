// child_reaper: reaps the children of a process that are ours (the tasks,
// Exec commands and watchdogs the library starts, and what its owner hands to
// watch()), and reports each one's exit.
//
// Two modes (reaper_mode):
//  - exact (the default, for programs that embed the library): each watched
//    child is tracked by a pidfd taken when it was created (CLONE_PIDFD) and
//    reaped with waitid(P_PIDFD). waitpid(-1) is never called: a child that
//    anything else in the program starts (std::system, popen, Boost.Process,
//    fork) is never waited for, never signalled and never taken for a task's.
//    The process is not made a child subreaper: a task's daemonised
//    grandchildren are re-parented to init (or to a subreaper above us), not
//    to us; a shutdown finds them through the task's cgroup (when it has
//    one), its session and process group and the tree below its processes,
//    never by adoption. (A subreaper that never calls waitpid(-1) would pile
//    up zombies of the program's own double-forked children.) If the program
//    made itself a subreaper before, that is left as it is.
//  - adopt_orphans (the daemon's mode, taskexecd's and taskexec-stress's; an
//    explicit opt-in for an embedder that owns every child of its process):
//    the process becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so
//    orphans of a task come back to us, and every wake-up drains
//    wait4(-1, WNOHANG): every child of the process is reaped, watched or not
//    (an unwatched one counts as an orphan, and the shutdown sweep may take
//    an orphan outside our own session for the task's while one task lives).
//
// Either way, construction:
//  - blocks SIGCHLD in the calling thread and resets an ignored SIGCHLD to its
//    default (an ignored SIGCHLD makes the kernel discard exit statuses);
//  - opens a signalfd for SIGCHLD and starts a coroutine on the reaper's
//    strand (get_executor()) that, on each wake-up, reaps what has exited
//    (signals coalesce: one SIGCHLD may stand for many exits), keeping each
//    child's resource use (rusage: wait4's, or the waitid system call's fifth
//    argument in exact mode).
//
// No exit is lost between the creation of a child and watch(): in exact mode
// only watch() itself looks at the pidfd's owner (and looks once more right
// after the watch, on the strand, for a child that exited before it); in
// adopt_orphans mode, whoever creates a child off the reaper's strand holds a
// launch_guard from before the clone until watch() (waitpid(-1) waits for
// it). The library's own launches do this.
//
// Requirements on an embedding program:
//  - Block SIGCHLD in every thread. Threads inherit the creating thread's
//    mask, so construct the reaper (or block SIGCHLD yourself) before starting
//    any thread. A thread with SIGCHLD unblocked may take the signal instead of
//    the signalfd and exits would be noticed late. (std::system, popen and
//    Boost.Process's waits do not need the signal: they wait for their pid.)
//  - exact mode: wait for your own children by their pid (waitpid(pid),
//    pclose, std::system, Boost.Process's wait) as usual; never call
//    waitpid(-1) or wait() while the library's children may exit: a child of
//    the library reaped by you has its exit reported as code 255.
//  - adopt_orphans mode: never call wait(), waitpid() or waitid() for any
//    child, and detach Boost.Process handles: the reaper reaps every child of
//    the process. Use `watch` to learn a child's exit status.
//  - One reaper per process: constructing a second one throws std::logic_error.
//
// The reaper always has a wait pending on its signalfd, so io_context::run()
// does not return while it lives: stop the io_context (or destroy the reaper)
// when the program is done.
//
// Thread-safety: every member function may be called from any thread, while
// io_context::run() runs on any number of threads. Exit handlers and
// listeners run on the reaper's strand (get_executor()), one at a time; the
// task_executors and exec sessions of the process keep their state on that
// same strand. A subscription may be reset from any thread; a listener
// already running on the strand then finishes.
// Lifetime: destroying the reaper stops its coroutine; SIGCHLD stays blocked;
// the pidfds of children still watched are closed (they are not reaped).
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

namespace taskexec {

/// What a child_reaper reaps (see the header's comment).
enum class reaper_mode {
  exact,          ///< only watched children, by pidfd; never waitpid(-1); no subreaper
  adopt_orphans,  ///< subreaper; drains waitpid(-1): every child of the process
};

class child_reaper {
 public:
  /// Called with the pid and the raw wait status (decode with WIFEXITED etc.).
  using exit_handler = std::function<void(int pid, int wait_status)>;
  /// Called after every reaped child, claimed or not.
  using reap_listener = std::function<void(int pid, int wait_status, bool claimed)>;

  /// A reaped child with the CPU time wait4() reported for it: its own and
  /// that of the children it waited for (its cutime and cstime), in full,
  /// since its start (rusage's ru_utime and ru_stime, microseconds).
  struct reaped_child {
    int pid = 0;
    int wait_status = 0;
    bool claimed = false;  ///< an exit handler (watch) took it
    std::chrono::microseconds user{0}, system{0};
  };
  using reap_usage_listener = std::function<void(const reaped_child&)>;

  /// Throws std::system_error when the signalfd cannot be created (or, in
  /// adopt_orphans mode, the process cannot become a subreaper), and
  /// std::logic_error when another reaper exists in this process. `ex`: an
  /// io_context's executor (the reaper makes a strand of it).
  explicit child_reaper(const boost::asio::any_io_executor& ex,
                        reaper_mode mode = reaper_mode::exact);
  ~child_reaper();
  child_reaper(const child_reaper&) = delete;
  child_reaper& operator=(const child_reaper&) = delete;

  reaper_mode mode() const noexcept;

  /// Deliver the exit status of our child `pid` to `handler`, once, on the
  /// reaper's strand. `pidfd` (a pidfd of `pid`, from CLONE_PIDFD or
  /// pidfd_open while the child could not have been reaped) is taken over
  /// and closed once the child is reaped or unwatched. A child that has
  /// exited already is reaped right after (posted to the strand). Watching
  /// a pid watched already replaces its handler (and closes the new pidfd).
  /// `pidfd` < 0: the reaper opens one (pidfd_open); then call it while
  /// `pid` cannot have been reaped (exact mode: nobody else reaps it;
  /// adopt_orphans mode: on the reaper's strand with no suspension since the
  /// child was made, or under a launch_guard). In exact mode a pid that
  /// cannot be opened (reaped by someone else) gets its handler called with
  /// an exit code of 255.
  void watch(int pid, int pidfd, exit_handler handler);
  /// watch(pid, -1, handler).
  void watch(int pid, exit_handler handler);
  /// Forget a watch. adopt_orphans: the pid will be reaped and counted as an
  /// orphan. exact: it is never reaped by us (a zombie until its owner
  /// reaps it).
  void unwatch(int pid) noexcept;
  bool watching(int pid) const noexcept;

  struct impl;  // opaque

  /// Held by whoever creates a child off the reaper's strand, from before
  /// the clone until watch(): in adopt_orphans mode the reaper's
  /// waitpid(-1) waits until it is released (many may be held at once).
  /// In exact mode it holds nothing. Not to be held across a suspension.
  class launch_guard {
   public:
    launch_guard() = default;
    explicit launch_guard(std::shared_ptr<impl> owner);
    launch_guard(launch_guard&& o) noexcept : owner_(std::move(o.owner_)) {}
    launch_guard& operator=(launch_guard&&) = delete;
    ~launch_guard();

   private:
    std::shared_ptr<impl> owner_;
  };
  [[nodiscard]] launch_guard guard_launch();

  /// A subscription to every reap; unsubscribes when destroyed or reset,
  /// and is safe to destroy after the reaper is gone.
  class subscription {
   public:
    subscription() = default;
    subscription(std::weak_ptr<impl> owner, std::uint64_t id) : owner_(std::move(owner)), id_(id) {}
    subscription(subscription&& o) noexcept
        : owner_(std::move(o.owner_)), id_(std::exchange(o.id_, 0)) {}
    subscription& operator=(subscription&& o) noexcept {
      if (this != &o) {
        reset();
        owner_ = std::move(o.owner_);
        id_ = std::exchange(o.id_, 0);
      }
      return *this;
    }
    ~subscription() { reset(); }
    void reset() noexcept;

   private:
    std::weak_ptr<impl> owner_;
    std::uint64_t id_ = 0;
  };

  /// Call `listener` after every reap, on the reaper's strand, until the
  /// subscription ends. The listener may end subscriptions (its own too)
  /// while it runs.
  [[nodiscard]] subscription subscribe(reap_listener listener);
  /// The same, with each child's CPU time. Listeners run in the order they
  /// subscribed, after the child's exit handler (if any), before the next
  /// child is reaped: on the reaper's strand nothing of the library can look
  /// at the process table in between (the child has left /proc by then).
  [[nodiscard]] subscription subscribe_usage(reap_usage_listener listener);

  /// Children reaped that nobody watched (adopt_orphans: re-parented
  /// orphans, mostly; exact: always 0).
  std::uint64_t orphans_reaped() const noexcept;
  /// All children reaped since construction.
  std::uint64_t total_reaped() const noexcept;
  /// Pids currently watched (launched tasks and commands not yet reaped).
  std::size_t watched_count() const noexcept;

  /// Reap now, without waiting for the signalfd (also done on every wake-up).
  /// Call it on the reaper's strand (handlers run inline).
  void reap_now();

  /// The reaper's strand: where handlers and listeners run, and where the
  /// task_executors and exec sessions that use this reaper keep their state.
  boost::asio::any_io_executor get_executor() const;

  /// The reaper of this process, or nullptr.
  static child_reaper* current() noexcept;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace taskexec
