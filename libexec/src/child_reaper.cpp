#include "taskexec/child_reaper.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "taskexec/logging.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace taskexec {
namespace asio = boost::asio;

namespace {
std::atomic<child_reaper*> g_current{nullptr};

// The raw wait status (as wait4 gives it) of a waitid() result.
int wait_status_of(const siginfo_t& si) {
  switch (si.si_code) {
    case CLD_EXITED:
      return (si.si_status & 0xff) << 8;
    case CLD_KILLED:
      return si.si_status & 0x7f;
    case CLD_DUMPED:
      return (si.si_status & 0x7f) | 0x80;
    default:
      return 0;
  }
}
constexpr int lost_status = 255 << 8;  // exit code 255: reaped by someone else
}  // namespace

struct child_reaper::impl {
  impl(const asio::any_io_executor& ex, reaper_mode m)
      : executor(asio::make_strand(ex)), sfd(executor), mode(m) {}

  struct watcher {
    int pidfd = -1;
    exit_handler handler;
  };
  struct reaped {
    reaped_child child;
    exit_handler handler;
  };

  asio::any_io_executor executor;  // the strand
  asio::posix::stream_descriptor sfd;
  const reaper_mode mode;
  // Held shared from a clone until its watch(), exclusive around waitpid(-1).
  std::shared_mutex gate;
  mutable std::mutex mu;  // everything below
  std::unordered_map<int, watcher> watchers;
  std::map<std::uint64_t, reap_usage_listener> listeners;
  std::uint64_t next_listener = 1;
  std::uint64_t orphans = 0;
  std::uint64_t total = 0;
  bool stopped = false;

  ~impl() {
    for (auto& [pid, w] : watchers) {
      if (w.pidfd >= 0)
        ::close(w.pidfd);
    }
  }

  void drain_signalfd() {
    signalfd_siginfo buf[16];
    while (::read(sfd.native_handle(), buf, sizeof buf) > 0) {
    }
  }

  static std::chrono::microseconds us(const timeval& tv) {
    return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  }

  // exact: look at one watched child through its pidfd. True when it was
  // reaped (or lost), with its entry moved to `out`. Called with `mu` held.
  static bool try_reap(int pid, watcher& w, std::vector<reaped>& out) {
    siginfo_t si{};
    struct rusage ru {};
    // The system call, not glibc's waitid(): its fifth argument is the
    // child's rusage, as wait4 gives it.
    long r = ::syscall(SYS_waitid, P_PIDFD, w.pidfd, &si, WEXITED | WNOHANG | __WALL, &ru);
    int status = 0;
    if (r == 0) {
      if (si.si_pid == 0)
        return false;  // still running
      status = wait_status_of(si);
    } else if (errno == EINTR || errno == EAGAIN) {
      return false;
    } else {
      // ECHILD: somebody else reaped it (a waitpid(-1) of the program).
      detail::log(log_level::warning, "reaper", "", "",
                  "pid " + std::to_string(pid) + " was reaped by someone else (" +
                      std::strerror(errno) + "): its exit status is lost");
      status = lost_status;
    }
    reaped rc;
    rc.child.pid = pid;
    rc.child.wait_status = status;
    rc.child.claimed = true;
    rc.child.user = us(ru.ru_utime);
    rc.child.system = us(ru.ru_stime);
    rc.handler = std::move(w.handler);
    ::close(w.pidfd);
    w.pidfd = -1;
    out.push_back(std::move(rc));
    return true;
  }

  std::vector<reaped> collect() {
    std::vector<reaped> out;
    if (mode == reaper_mode::exact) {
      std::lock_guard lk(mu);
      for (auto it = watchers.begin(); it != watchers.end();) {
        if (try_reap(it->first, it->second, out))
          it = watchers.erase(it);
        else
          ++it;
      }
      total += out.size();
      return out;
    }
    // adopt_orphans: every child of the process. No clone is between its
    // clone and its watch() while we hold the gate.
    std::unique_lock g(gate);
    for (;;) {
      int status = 0;
      struct rusage ru {};
      int pid = ::wait4(-1, &status, WNOHANG | __WALL, &ru);
      if (pid <= 0)
        break;  // 0: children left but none exited; -1/ECHILD: none at all
      reaped rc;
      rc.child.pid = pid;
      rc.child.wait_status = status;
      rc.child.user = us(ru.ru_utime);
      rc.child.system = us(ru.ru_stime);
      std::lock_guard lk(mu);
      ++total;
      if (auto it = watchers.find(pid); it != watchers.end()) {
        rc.child.claimed = true;
        rc.handler = std::move(it->second.handler);
        if (it->second.pidfd >= 0)
          ::close(it->second.pidfd);
        watchers.erase(it);
      } else {
        ++orphans;
      }
      out.push_back(std::move(rc));
    }
    return out;
  }

  void deliver(std::vector<reaped>& list) {
    for (auto& r : list) {
      const auto& c = r.child;
      if (c.claimed) {
        try {
          if (r.handler)
            r.handler(c.pid, c.wait_status);
        } catch (const std::exception& e) {
          detail::log(log_level::error, "reaper", "", "",
                      std::string("exit handler threw: ") + e.what());
        }
      } else if (detail::log_enabled(log_level::debug)) {
        detail::log(log_level::debug, "reaper", "", "",
                    "reaped unclaimed pid " + std::to_string(c.pid) + " status " +
                        std::to_string(c.wait_status));
      }
      // Listeners may end subscriptions (theirs or others) while we iterate.
      std::vector<std::uint64_t> ids;
      {
        std::lock_guard lk(mu);
        ids.reserve(listeners.size());
        for (auto& [id, l] : listeners)
          ids.push_back(id);
      }
      for (auto id : ids) {
        reap_usage_listener l;
        {
          std::lock_guard lk(mu);
          auto it = listeners.find(id);
          if (it == listeners.end())
            continue;
          l = it->second;
        }
        try {
          l(c);
        } catch (const std::exception& e) {
          detail::log(log_level::error, "reaper", "", "",
                      std::string("reap listener threw: ") + e.what());
        }
      }
    }
  }

  void reap() {
    auto list = collect();
    deliver(list);
  }

  // exact: one child, right after its watch (it may have exited before).
  void reap_one(int pid) {
    std::vector<reaped> out;
    {
      std::lock_guard lk(mu);
      auto it = watchers.find(pid);
      if (it == watchers.end() || !try_reap(pid, it->second, out))
        return;
      watchers.erase(it);
      ++total;
    }
    deliver(out);
  }
};

namespace {

asio::awaitable<void> reaper_loop(std::shared_ptr<child_reaper::impl> self) {
  for (;;) {
    auto [ec] = co_await self->sfd.async_wait(asio::posix::stream_descriptor::wait_read,
                                              asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted)
      co_return;
    {
      std::lock_guard lk(self->mu);
      if (self->stopped)
        co_return;
    }
    if (ec)
      throw std::system_error(ec.value(), std::generic_category(), "reaper: signalfd wait");
    self->drain_signalfd();
    self->reap();
  }
}

}  // namespace

child_reaper::child_reaper(const asio::any_io_executor& ex, reaper_mode mode) {
  child_reaper* expected = nullptr;
  if (!g_current.compare_exchange_strong(expected, this)) {
    throw std::logic_error("child_reaper: only one reaper per process");
  }
  try {
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, SIGCHLD);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);

    // An ignored SIGCHLD (or SA_NOCLDWAIT) makes the kernel reap children
    // itself and throw their exit statuses away.
    struct sigaction cur {};
    ::sigaction(SIGCHLD, nullptr, &cur);
    if (cur.sa_handler == SIG_IGN || (cur.sa_flags & SA_NOCLDWAIT)) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(SIGCHLD, &dfl, nullptr);
    }

    if (mode == reaper_mode::adopt_orphans && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
      throw std::system_error(errno, std::generic_category(), "prctl(PR_SET_CHILD_SUBREAPER)");
    }
    int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
      throw std::system_error(errno, std::generic_category(), "signalfd(SIGCHLD)");
    impl_ = std::make_shared<impl>(ex, mode);
    impl_->sfd.assign(fd);
  } catch (...) {
    g_current = nullptr;
    throw;
  }

  // Children that exited before SIGCHLD was routed to the signalfd left no
  // readable event: reap once at start (adopt_orphans: nothing is watched
  // yet, so this is all of them; exact: nothing).
  impl_->reap();
  asio::co_spawn(impl_->executor, reaper_loop(impl_), [](const std::exception_ptr& e) {
    if (!e)
      return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& err) {
      detail::log(log_level::error, "reaper", "", "", std::string("reaper stopped: ") + err.what());
    }
    std::rethrow_exception(e);
  });
}

child_reaper::~child_reaper() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopped = true;
    for (auto& [pid, w] : impl_->watchers) {
      if (w.pidfd >= 0)
        ::close(w.pidfd);
    }
    impl_->watchers.clear();
    impl_->listeners.clear();
  }
  // The descriptor belongs to the strand: cancel its wait there.
  asio::post(impl_->executor, [self = impl_] {
    boost::system::error_code ignored;
    self->sfd.cancel(ignored);
  });
  g_current = nullptr;
}

reaper_mode child_reaper::mode() const noexcept {
  return impl_->mode;
}

void child_reaper::watch(int pid, int pidfd, exit_handler handler) {
  {
    std::lock_guard lk(impl_->mu);
    if (auto it = impl_->watchers.find(pid); it != impl_->watchers.end()) {
      // Watched already (a launch's own watch, taken over): a new handler.
      if (pidfd >= 0 && pidfd != it->second.pidfd) {
        if (it->second.pidfd < 0)
          it->second.pidfd = pidfd;
        else
          ::close(pidfd);
      }
      it->second.handler = std::move(handler);
      return;
    }
  }
  if (pidfd < 0)
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0 && impl_->mode == reaper_mode::exact) {
    const int err = errno;
    detail::log(log_level::warning, "reaper", "", "",
                "watch pid " + std::to_string(pid) + ": pidfd_open: " + std::strerror(err));
    asio::post(impl_->executor, [pid, h = std::move(handler)] {
      if (h)
        h(pid, lost_status);
    });
    return;
  }
  {
    // (adopt_orphans without a pidfd: reaped through waitpid(-1) all the same.)
    std::lock_guard lk(impl_->mu);
    auto& w = impl_->watchers[pid];
    if (w.pidfd >= 0 && pidfd >= 0)
      ::close(pidfd);  // watched meanwhile by another thread: keep its descriptor
    else if (w.pidfd < 0)
      w.pidfd = pidfd;
    w.handler = std::move(handler);
  }
  if (impl_->mode == reaper_mode::exact) {
    // It may have exited before the watch, its SIGCHLD consumed by a reap
    // that did not know it yet: look once more, on the strand.
    asio::post(impl_->executor, [weak = std::weak_ptr<impl>(impl_), pid] {
      if (auto self = weak.lock())
        self->reap_one(pid);
    });
  }
}

void child_reaper::watch(int pid, exit_handler handler) {
  watch(pid, -1, std::move(handler));
}

void child_reaper::unwatch(int pid) noexcept {
  std::lock_guard lk(impl_->mu);
  if (auto it = impl_->watchers.find(pid); it != impl_->watchers.end()) {
    if (it->second.pidfd >= 0)
      ::close(it->second.pidfd);
    impl_->watchers.erase(it);
  }
}
bool child_reaper::watching(int pid) const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->watchers.contains(pid);
}

child_reaper::launch_guard::launch_guard(std::shared_ptr<impl> owner) : owner_(std::move(owner)) {
  if (owner_)
    owner_->gate.lock_shared();
}
child_reaper::launch_guard::~launch_guard() {
  if (owner_)
    owner_->gate.unlock_shared();
}
child_reaper::launch_guard child_reaper::guard_launch() {
  if (impl_->mode == reaper_mode::exact)
    return launch_guard();
  return launch_guard(impl_);
}

child_reaper::subscription child_reaper::subscribe(reap_listener listener) {
  return subscribe_usage([l = std::move(listener)](const reaped_child& c) {
    if (l)
      l(c.pid, c.wait_status, c.claimed);
  });
}

child_reaper::subscription child_reaper::subscribe_usage(reap_usage_listener listener) {
  std::lock_guard lk(impl_->mu);
  auto id = impl_->next_listener++;
  impl_->listeners.emplace(id, std::move(listener));
  return subscription(impl_, id);
}

void child_reaper::subscription::reset() noexcept {
  if (auto owner = owner_.lock(); owner && id_ != 0) {
    std::lock_guard lk(owner->mu);
    owner->listeners.erase(id_);
  }
  owner_.reset();
  id_ = 0;
}

std::uint64_t child_reaper::orphans_reaped() const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->orphans;
}
std::uint64_t child_reaper::total_reaped() const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->total;
}
std::size_t child_reaper::watched_count() const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->watchers.size();
}
void child_reaper::reap_now() {
  impl_->reap();
}
asio::any_io_executor child_reaper::get_executor() const {
  return impl_->executor;
}
child_reaper* child_reaper::current() noexcept {
  return g_current.load();
}

}  // namespace taskexec
