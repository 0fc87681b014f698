// Coroutine helpers shared by the executors. Internal.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>

namespace taskexec::detail {

/// Run `op` with throw_if_cancelled off, so a cancelled wait completes with
/// errc::operation_canceled instead of throwing, and restore the caller's
/// setting afterwards (it belongs to the caller's whole coroutine chain).
template <class T>
boost::asio::awaitable<T> no_throw_on_cancel(boost::asio::awaitable<T> op) {
  namespace this_coro = boost::asio::this_coro;
  const bool previous = co_await this_coro::throw_if_cancelled();
  co_await this_coro::throw_if_cancelled(false);
  T r = co_await std::move(op);
  co_await this_coro::throw_if_cancelled(previous);
  co_return r;
}

}  // namespace taskexec::detail
