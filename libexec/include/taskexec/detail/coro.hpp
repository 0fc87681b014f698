// Coroutine helpers shared by the executors. Internal.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <utility>

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

/// Run `f` on `strand` (the child_reaper's): at once when the calling
/// thread is on it or when nothing runs its io_context any more (stopped),
/// else posted. For destructors and other synchronous entry points.
template <class F>
void run_on_strand(const boost::asio::any_io_executor& strand, F f) {
  namespace asio = boost::asio;
  const auto* s = strand.target<asio::strand<asio::any_io_executor>>();
  bool now = s == nullptr || s->running_in_this_thread();
  if (!now) {
    // Named: target() points into the executor it is called on.
    const asio::any_io_executor inner = s->get_inner_executor();
    const auto* io = inner.target<asio::io_context::executor_type>();
    now = io != nullptr && io->context().stopped();
  }
  if (now)
    f();
  else
    asio::post(strand, std::move(f));
}

template <class T>
boost::asio::awaitable<std::optional<T>> as_optional(boost::asio::awaitable<T> op) {
  namespace this_coro = boost::asio::this_coro;
  co_await this_coro::throw_if_cancelled(false);
  // Named, not a temporary spanning the co_await (GCC 12 destroys such
  // temporaries twice).
  T v = co_await std::move(op);
  std::optional<T> r;
  r.emplace(std::move(v));
  co_return r;
}

/// Forwards a caller's cancellation to an operation co_spawned on another
/// executor. Boost 1.81's co_spawn forwards it itself by posting a raw
/// pointer to a signal that lives in the caller's slot: when the operation
/// completes and the caller's slot is cleared (its request done) before
/// that post runs, the post uses freed memory (seen: taskexecd crashed
/// when a client vanished mid-call). Here each cancellation is posted with
/// the relay itself, and emitted only while the operation's body runs.
struct cancel_relay {
  boost::asio::cancellation_signal signal;  // bound to the co_spawn
  bool done = false;                        // set on the operation's executor as its body ends

  /// A relay whose handler is installed in `from` (the caller's slot, when
  /// connected): cancellations are posted to `ex` and emitted there.
  static std::shared_ptr<cancel_relay> connect(boost::asio::cancellation_slot from,
                                               const boost::asio::any_io_executor& ex) {
    auto r = std::make_shared<cancel_relay>();
    if (from.is_connected()) {
      from.assign([r, ex](boost::asio::cancellation_type_t t) {
        boost::asio::post(ex, [r, t] {
          if (!r->done)
            r->signal.emit(t);
        });
      });
    }
    return r;
  }
};

/// Sets a relay's `done` when the scope ends (on the operation's executor).
struct relay_done {
  cancel_relay& relay;
  explicit relay_done(cancel_relay& r) : relay(r) {}
  relay_done(const relay_done&) = delete;
  relay_done& operator=(const relay_done&) = delete;
  ~relay_done() { relay.done = true; }
};

/// `op` as_optional, then the relay is done.
template <class T>
boost::asio::awaitable<std::optional<T>> relayed(boost::asio::awaitable<T> op,
                                                 std::shared_ptr<cancel_relay> relay) {
  relay_done guard{*relay};
  auto inner = as_optional(std::move(op));
  std::optional<T> v = co_await std::move(inner);
  co_return v;
}

/// Run `op` on `strand` (the child_reaper's, where the executors' state
/// lives) and resume the caller on its own executor, whatever thread runs
/// it: the caller's cancellation reaches `op` (co_spawn forwards it, on the
/// strand), an exception of `op` is rethrown here, and, like
/// no_throw_on_cancel, a cancel never throws. Already on the strand: `op`
/// is awaited in place.
template <class T>
boost::asio::awaitable<T> on_strand(boost::asio::any_io_executor strand,
                                    boost::asio::awaitable<T> op) {
  namespace asio = boost::asio;
  namespace this_coro = boost::asio::this_coro;
  const bool previous = co_await this_coro::throw_if_cancelled();
  co_await this_coro::throw_if_cancelled(false);
  const asio::any_io_executor here = co_await this_coro::executor;
  std::optional<T> r;
  if (here == strand) {
    T v = co_await std::move(op);
    r.emplace(std::move(v));
  } else {
    // The caller's cancellation reaches `op` through a relay (see
    // cancel_relay), not through co_spawn's own forwarding.
    const auto cs = co_await this_coro::cancellation_state;
    asio::cancellation_slot from = cs.slot();
    auto relay = cancel_relay::connect(from, strand);
    auto spawned =
        asio::co_spawn(strand, relayed(std::move(op), relay),
                       asio::bind_cancellation_slot(relay->signal.slot(), asio::use_awaitable));
    std::optional<T> got = co_await std::move(spawned);
    if (from.is_connected())
      from.clear();
    r.emplace(std::move(*got));
  }
  co_await this_coro::throw_if_cancelled(previous);
  co_return std::move(*r);
}

}  // namespace taskexec::detail
