// Error codes and the result type of every taskexec operation.
//
// Policy: failures a caller can cause or expect (bad input, wrong state, a
// missing binary, a task that will not die) are returned as values:
// `result<T>` holds either a T or an `error` (a code from `taskexec::errc` or
// the system category, plus a message that names what was wrong). Exceptions
// are reserved for bugs (std::logic_error) and for `result<T>::value()` on an
// error, which throws `taskexec::exception`.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace taskexec {

enum class errc {
  success = 0,
  invalid_argument = 1,  ///< a field of a request is malformed or out of range
  not_launched,          ///< the operation needs a launched task ("task not yet launched")
  already_launched,      ///< launch was called twice on one executor
  task_exited,           ///< the operation needs a running task
  task_destroyed,        ///< the executor was destroyed
  binary_not_found,      ///< `binary "<cmd>" could not be found`
  user_not_found,        ///< the task's user is not in the user database
  unsupported,           ///< the chosen isolation cannot honour a field
  launch_failed,         ///< a setup step in the child, or exec itself, failed
  shutdown_incomplete,   ///< processes of the task survived the shutdown bound
  operation_canceled,    ///< the awaiting operation was cancelled
  // Reported by remote_executor (a daemon's JSON-RPC errors map back to the
  // codes above where one fits):
  permission_denied,       ///< the daemon refused our uid (-32005)
  timed_out,               ///< a deadline passed (-32006; a handshake that did not come)
  resource_config_failed,  ///< resources could not be applied (-32008)
  unknown_subscription,    ///< no such Stats subscription or exec session (-32009)
  connection_failed,       ///< the daemon cannot be reached, or the connection was lost
  protocol_error,          ///< the peer broke the protocol (or we sent a bad request)
  reattach_refused,        ///< the saved config does not match a live daemon
  internal,                ///< the daemon reported an internal error (-32603)
  limit_reached,  ///< a daemon limit (connections, pending calls, subscriptions, sessions) (-32010)
  /// A cgroup still had processes finishing their exit: try again (only
  /// between a strategy's teardown and the executor, which retries; never
  /// the answer to a client).
  resource_busy,
};

const boost::system::error_category& category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), category()};
}

/// An error code with a message for humans. `message` is complete on its own
/// ("binary \"foo\" could not be found"); `code` is what programs branch on.
struct error {
  boost::system::error_code code;
  std::string message;

  friend bool operator==(const error& a, const error& b) = default;
};

error make_error(errc code, std::string message);
/// A system error from `errno_value`, message "<what>: <strerror>".
error make_system_error(int errno_value, std::string_view what);

template <class T>
using result = boost::system::result<T, error>;

/// Thrown by `result<T>::value()` on an error.
class exception : public boost::system::system_error {
 public:
  explicit exception(const error& e) : system_error(e.code, e.message), error_(e) {}
  const taskexec::error& error() const noexcept { return error_; }

 private:
  taskexec::error error_;
};

/// Found by ADL from boost::system::result<T, error>::value().
[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

}  // namespace taskexec

namespace boost::system {
template <>
struct is_error_code_enum<taskexec::errc> : std::true_type {};
}  // namespace boost::system
