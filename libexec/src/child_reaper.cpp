#include "taskexec/child_reaper.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

#include "taskexec/logging.hpp"

namespace taskexec {
namespace asio = boost::asio;

namespace {
std::atomic<child_reaper*> g_current{nullptr};
}

struct child_reaper::impl {
  explicit impl(const asio::any_io_executor& ex) : executor(ex), sfd(ex) {}

  asio::any_io_executor executor;
  asio::posix::stream_descriptor sfd;
  std::unordered_map<int, exit_handler> watchers;
  std::map<std::uint64_t, reap_usage_listener> listeners;
  std::uint64_t next_listener = 1;
  std::uint64_t orphans = 0;
  std::uint64_t total = 0;
  bool stopped = false;

  void drain_signalfd() {
    signalfd_siginfo buf[16];
    while (::read(sfd.native_handle(), buf, sizeof buf) > 0) {
    }
  }

  void reap() {
    for (;;) {
      int status = 0;
      struct rusage ru {};
      int pid = ::wait4(-1, &status, WNOHANG | __WALL, &ru);
      if (pid <= 0)
        break;  // 0: children left but none exited; -1/ECHILD: none at all
      ++total;
      bool claimed = false;
      if (auto it = watchers.find(pid); it != watchers.end()) {
        claimed = true;
        exit_handler h = std::move(it->second);
        watchers.erase(it);
        try {
          if (h)
            h(pid, status);
        } catch (const std::exception& e) {
          detail::log(log_level::error, "reaper", "", "",
                      std::string("exit handler threw: ") + e.what());
        }
      } else {
        ++orphans;
        if (detail::log_enabled(log_level::debug)) {
          detail::log(
              log_level::debug, "reaper", "", "",
              "reaped unclaimed pid " + std::to_string(pid) + " status " + std::to_string(status));
        }
      }
      if (!listeners.empty()) {
        reaped_child child;
        child.pid = pid;
        child.wait_status = status;
        child.claimed = claimed;
        auto us = [](const timeval& tv) {
          return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
        };
        child.user = us(ru.ru_utime);
        child.system = us(ru.ru_stime);
        // Listeners may end subscriptions (theirs or others) while we iterate.
        std::vector<std::uint64_t> ids;
        ids.reserve(listeners.size());
        for (auto& [id, l] : listeners)
          ids.push_back(id);
        for (auto id : ids) {
          auto it = listeners.find(id);
          if (it == listeners.end())
            continue;
          auto l = it->second;
          try {
            l(child);
          } catch (const std::exception& e) {
            detail::log(log_level::error, "reaper", "", "",
                        std::string("reap listener threw: ") + e.what());
          }
        }
      }
    }
  }
};

namespace {

asio::awaitable<void> reaper_loop(std::shared_ptr<child_reaper::impl> self) {
  for (;;) {
    auto [ec] = co_await self->sfd.async_wait(asio::posix::stream_descriptor::wait_read,
                                              asio::as_tuple(asio::use_awaitable));
    if (self->stopped || ec == asio::error::operation_aborted)
      co_return;
    if (ec)
      throw std::system_error(ec.value(), std::generic_category(), "reaper: signalfd wait");
    self->drain_signalfd();
    self->reap();
  }
}

}  // namespace

child_reaper::child_reaper(const asio::any_io_executor& ex) {
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

    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
      throw std::system_error(errno, std::generic_category(), "prctl(PR_SET_CHILD_SUBREAPER)");
    }
    int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
      throw std::system_error(errno, std::generic_category(), "signalfd(SIGCHLD)");
    impl_ = std::make_shared<impl>(ex);
    impl_->sfd.assign(fd);
  } catch (...) {
    g_current = nullptr;
    throw;
  }

  // Children that exited before SIGCHLD was routed to the signalfd left no
  // readable event: reap once at start.
  impl_->reap();
  asio::co_spawn(ex, reaper_loop(impl_), [](const std::exception_ptr& e) {
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
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->sfd.cancel(ignored);
  impl_->watchers.clear();
  impl_->listeners.clear();
  g_current = nullptr;
}

void child_reaper::watch(int pid, exit_handler handler) {
  impl_->watchers[pid] = std::move(handler);
}
void child_reaper::unwatch(int pid) noexcept {
  impl_->watchers.erase(pid);
}
bool child_reaper::watching(int pid) const noexcept {
  return impl_->watchers.contains(pid);
}

child_reaper::subscription child_reaper::subscribe(reap_listener listener) {
  return subscribe_usage([l = std::move(listener)](const reaped_child& c) {
    if (l)
      l(c.pid, c.wait_status, c.claimed);
  });
}

child_reaper::subscription child_reaper::subscribe_usage(reap_usage_listener listener) {
  auto id = impl_->next_listener++;
  impl_->listeners.emplace(id, std::move(listener));
  return subscription(impl_, id);
}

void child_reaper::subscription::reset() noexcept {
  if (auto owner = owner_.lock(); owner && id_ != 0)
    owner->listeners.erase(id_);
  owner_.reset();
  id_ = 0;
}

std::uint64_t child_reaper::orphans_reaped() const noexcept {
  return impl_->orphans;
}
std::uint64_t child_reaper::total_reaped() const noexcept {
  return impl_->total;
}
std::size_t child_reaper::watched_count() const noexcept {
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
