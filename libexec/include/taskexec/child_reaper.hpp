// child_reaper: the one place in a process that reaps children.
//
// Construction, on the thread that will run the io_context:
//  - blocks SIGCHLD in the calling thread and resets an ignored SIGCHLD to its
//    default (an ignored SIGCHLD makes the kernel discard exit statuses);
//  - makes the process a child subreaper (PR_SET_CHILD_SUBREAPER), so orphans
//    of a task (daemonised grandchildren) are re-parented to us, not to init;
//  - opens a signalfd for SIGCHLD and starts a coroutine that, on each
//    wake-up, drains wait4(-1, WNOHANG) (signals coalesce: one SIGCHLD may
//    stand for many exits), keeping each child's resource use.
//
// Requirements on an embedding program:
//  - Block SIGCHLD in every thread. Threads inherit the creating thread's
//    mask, so construct the reaper (or block SIGCHLD yourself) before starting
//    any thread. A thread with SIGCHLD unblocked may take the signal instead of
//    the signalfd and exits would be noticed late.
//  - Never call wait(), waitpid() or waitid() for any child, and detach
//    Boost.Process handles: the reaper reaps every child of the process. Use
//    `watch` to learn a child's exit status.
//  - One reaper per process: constructing a second one throws std::logic_error.
//
// The reaper always has a wait pending on its signalfd, so io_context::run()
// does not return while it lives: stop the io_context (or destroy the reaper)
// when the program is done.
//
// Thread-safety: none; use from the thread running the io_context.
// Lifetime: destroying the reaper stops its coroutine; SIGCHLD stays blocked.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

namespace taskexec {

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

  /// Throws std::system_error when the signalfd cannot be created, and
  /// std::logic_error when another reaper exists in this process.
  explicit child_reaper(const boost::asio::any_io_executor& ex);
  ~child_reaper();
  child_reaper(const child_reaper&) = delete;
  child_reaper& operator=(const child_reaper&) = delete;

  /// Deliver the exit status of `pid` to `handler`, once. Register right after
  /// the fork, before returning to the io_context: the reaper runs on the same
  /// thread, so it cannot reap the pid in between. A pid nobody watches is
  /// reaped all the same and counted as an orphan.
  void watch(int pid, exit_handler handler);
  /// Forget a watch; the pid will be reaped and counted as an orphan.
  void unwatch(int pid) noexcept;
  bool watching(int pid) const noexcept;

  struct impl;  // opaque

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

  /// Call `listener` after every reap, until the subscription ends. The
  /// listener may end subscriptions (its own too) while it runs.
  [[nodiscard]] subscription subscribe(reap_listener listener);
  /// The same, with each child's CPU time. Listeners run in the order they
  /// subscribed, after the child's exit handler (if any), before the next
  /// child is reaped: on the io_context's thread nothing can look at the
  /// process table in between (the child has left /proc by then).
  [[nodiscard]] subscription subscribe_usage(reap_usage_listener listener);

  /// Children reaped that nobody watched (re-parented orphans, mostly).
  std::uint64_t orphans_reaped() const noexcept;
  /// All children reaped since construction.
  std::uint64_t total_reaped() const noexcept;
  /// Pids currently watched (launched tasks and commands not yet reaped).
  std::size_t watched_count() const noexcept;

  /// Reap now, without waiting for the signalfd (also done on every wake-up).
  void reap_now();

  boost::asio::any_io_executor get_executor() const;

  /// The reaper of this process, or nullptr.
  static child_reaper* current() noexcept;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace taskexec
