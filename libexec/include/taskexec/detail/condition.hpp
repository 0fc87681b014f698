// The condition variable of the async world, shared by the executor's
// coroutines. Internal.
//
// Waiters park a steady_timer on the condition; notify_all() cancels them
// all and each waiter re-checks its predicate. One io_context, no locks.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace taskexec::detail {

struct condition {
  std::vector<boost::asio::steady_timer*> waiters;
  std::uint64_t generation = 0;
  void notify_all() {
    ++generation;
    for (auto* t : waiters)
      t->cancel();
  }
};

enum class wake { notified, timed_out, cancelled };

/// Suspend until notified, `deadline`, or cancellation of the awaiting
/// coroutine. `cond` must outlive the wait (it lives in state the caller
/// keeps alive).
inline boost::asio::awaitable<wake> wait_on(condition& cond,
                                            std::chrono::steady_clock::time_point deadline) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  const auto start = cond.generation;
  asio::steady_timer t(ex, deadline);
  // Deregistered however the frame ends, even destroyed without resuming.
  struct registration {
    condition& c;
    asio::steady_timer* t;
    ~registration() { std::erase(c.waiters, t); }
  } reg{cond, &t};
  cond.waiters.push_back(&t);
  auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  if (cond.generation != start)
    co_return wake::notified;
  if (ec == asio::error::operation_aborted)
    co_return wake::cancelled;
  co_return wake::timed_out;
}

}  // namespace taskexec::detail
