// The completion-token form of taskexec's asynchronous operations (Asio's
// universal asynchronous model), shared by task_executor, exec_session,
// exec_script and remote_executor.
//
// Every operation `op` of those classes that returns
// `asio::awaitable<result<T>>` has an `async_op(args..., token)` beside it:
//
//   co_await task.async_wait();                          // default token: asio::deferred
//   auto st = co_await task.async_wait(asio::use_awaitable);
//   task.async_wait([](boost::system::error_code ec, taskexec::process_state st) { ... });
//   std::future<process_state> f = task.async_wait(asio::use_future);
//   auto [ec, st] = co_await task.async_wait(asio::as_tuple(asio::use_awaitable));
//
// Completion signature: `void(boost::system::error_code, T)`, or
// `void(boost::system::error_code)` for an operation without a value. On an
// error, T is value-initialised (an empty exec_session, remote_executor, ...:
// only assign to it or destroy it). The error code is the one result<T>
// would carry (a taskexec::errc or a system error).
//
// Error details: the message result<T> carries ("chdir /x: No such file or
// directory", "binary \"foo\" could not be found") travels beside the code in
// a `diagnostics` object, as Boost.MySQL's does: each operation has an
// overload taking `diagnostics&` before the token, which is cleared on
// success and holds the message on failure. It must outlive the operation.
//
// Execution: the work runs on the object's executor (get_executor()), never
// inline in a foreign thread, so an operation may be initiated from any
// thread; the handler is invoked on its associated executor (by default the
// object's), never from inside the initiating function. The operation keeps
// work on both executors until the handler runs. The object must be alive
// when the operation starts on its executor (immediately when initiated
// from that executor's thread; for `deferred`, when the deferred operation
// is launched); as before, an executor destroyed while operations are
// pending completes them with errc::task_destroyed.
//
// Cancellation: the handler's associated cancellation slot is connected.
// Each operation documents the cancellation types it honours (terminal,
// partial, total; a type it does not honour is ignored) and what a
// cancelled operation leaves behind (docs/embedding.md has the table). A
// cancelled operation completes with errc::operation_canceled. So
// `experimental::parallel_group`, `awaitable_operators` and a timer that
// emits a cancellation_signal (what asio::cancel_after does in later Boost)
// all work.
//
// The work is compiled once in the library: each templated async_* entry
// point forwards to a compiled *_impl taking an asio::any_completion_handler.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <string>
#include <type_traits>
#include <utility>

namespace taskexec {

/// The message of a failed operation (Boost.MySQL's diagnostics): what
/// result<T>'s error carries beside the code, naming the child step and
/// errno, the file, the field. Empty after a success.
class diagnostics {
 public:
  const std::string& message() const noexcept { return message_; }
  void clear() noexcept { message_.clear(); }
  /// Set by the library when an operation fails.
  void assign(std::string message) { message_ = std::move(message); }

 private:
  std::string message_;
};

/// The default completion token of every async_* operation.
using default_completion_token = boost::asio::deferred_t;

namespace detail {

template <class T>
struct async_signature {
  using type = void(boost::system::error_code, T);
};
template <>
struct async_signature<void> {
  using type = void(boost::system::error_code);
};
template <class T>
using async_signature_t = typename async_signature<T>::type;

/// The type-erased handler a compiled *_impl receives.
template <class T>
using async_handler = boost::asio::any_completion_handler<async_signature_t<T>>;

/// A completion token, not the diagnostics of the other overload.
template <class Token>
concept async_token = !std::is_same_v<std::decay_t<Token>, diagnostics>;

/// Initiate an operation completing with `void(error_code[, T])`: `start`
/// receives the type-erased handler.
template <class T, class Token, class Start>
auto async_initiate_erased(Token&& token, Start start) {
  return boost::asio::async_initiate<Token, async_signature_t<T>>(
      [start = std::move(start)](auto handler) mutable {
        start(async_handler<T>(std::move(handler)));
      },
      token);
}

}  // namespace detail
}  // namespace taskexec
