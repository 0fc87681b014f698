// The completion-token form of taskexec's operations (async.hpp), compiled
// once: each *_impl runs the operation's coroutine on the object's executor
// with co_spawn, connects the handler's cancellation slot (filtered to the
// types the operation honours), and completes the type-erased handler on
// its associated executor with `(error_code[, T])`, the error's message
// going to the caller's diagnostics.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "taskexec/async.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/coro.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/task_executor.hpp"

namespace taskexec {
namespace detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// The cancellation types an operation honours.
constexpr asio::cancellation_type_t cancel_none = asio::cancellation_type::none;
constexpr asio::cancellation_type_t cancel_partial =
    asio::cancellation_type::terminal | asio::cancellation_type::partial;
constexpr asio::cancellation_type_t cancel_total = asio::cancellation_type::terminal |
                                                   asio::cancellation_type::partial |
                                                   asio::cancellation_type::total;

template <class T>
using outcome = std::shared_ptr<std::optional<result<T>>>;

/// Complete `h` with `r` (or the error) and fill `diag`.
template <class T>
void complete(async_handler<T>& h, diagnostics* diag, std::optional<result<T>>& r,
              const std::exception_ptr& e) {
  error_code ec;
  std::string message;
  if (e) {
    ec = make_error_code(errc::internal);
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      message = std::string("internal error: ") + x.what();
    } catch (...) {
      message = "internal error";
    }
  } else if (!r) {
    ec = make_error_code(errc::internal);
    message = "internal error: the operation ended without a result";
  } else if (!*r) {
    ec = r->error().code;
    message = r->error().message;
  }
  if (diag) {
    if (ec)
      diag->assign(std::move(message));
    else
      diag->clear();
  }
  if constexpr (std::is_void_v<T>) {
    std::move(h)(ec);
  } else if (ec) {
    std::move(h)(ec, T{});
  } else {
    T value = std::move(**r);
    std::move(h)(ec, std::move(value));
  }
}

/// co_spawn's handler: runs on the handler's associated executor.
template <class T>
struct completion {
  async_handler<T> handler;
  diagnostics* diag;
  outcome<T> out;
  void operator()(const std::exception_ptr& e) {
    // The relay's handler leaves the caller's slot (as Asio's own
    // operations clear theirs when they complete).
    if (auto s = handler.get_cancellation_slot(); s.is_connected())
      s.clear();
    complete(handler, diag, *out, e);
  }
};

/// Run `make()`'s awaitable on `ex` and complete `h` with its result.
template <class T, class Make>
void start_op(const asio::any_io_executor& ex, Make make, async_handler<T> h, diagnostics* diag,
              asio::cancellation_type_t honoured) {
  if (!ex) {
    // An empty object (moved-from or value-initialised): no executor to
    // run on; fail on the handler's own, never inside the initiation.
    asio::post(asio::system_executor(), [h = std::move(h), diag]() mutable {
      auto hex = asio::get_associated_executor(h, asio::system_executor());
      hex.execute([h = std::move(h), diag]() mutable {
        std::optional<result<T>> r = result<T>(
            make_error(errc::invalid_argument, "operation on an empty object (moved-from)"));
        complete(h, diag, r, nullptr);
      });
    });
    return;
  }
  auto out = std::make_shared<std::optional<result<T>>>();
  // The caller's cancellation reaches the coroutine through a relay (see
  // cancel_relay: co_spawn's own forwarding can use freed memory when the
  // caller emits from another executor as the operation completes).
  auto relay = cancel_relay::connect(h.get_cancellation_slot(), ex);
  auto hex = asio::get_associated_executor(h, ex);
  asio::co_spawn(
      ex,
      [make = std::move(make), out, honoured, relay]() mutable -> asio::awaitable<void> {
        relay_done guard(*relay);
        // Only the types this operation honours reach it, and they reach
        // it as terminal: what each operation leaves behind when cancelled
        // (documented per operation) meets the guarantee of every type it
        // honours, and the coroutines below it (awaitable_operators, their
        // co_spawned halves) let only terminal cancellation through. A
        // cancelled operation completes with errc::operation_canceled, not
        // a throw.
        co_await asio::this_coro::reset_cancellation_state(
            [honoured](asio::cancellation_type_t t) { return t & honoured; },
            [](asio::cancellation_type_t t) {
              return t == asio::cancellation_type::none ? t : asio::cancellation_type::terminal;
            });
        co_await asio::this_coro::throw_if_cancelled(false);
        auto r = co_await make();
        out->emplace(std::move(r));
      },
      asio::bind_cancellation_slot(
          relay->signal.slot(), asio::bind_executor(hex, completion<T>{std::move(h), diag, out})));
}

}  // namespace
}  // namespace detail

using detail::cancel_none;
using detail::cancel_partial;
using detail::cancel_total;

// ---- task_executor ------------------------------------------------------

void task_executor::async_launch_impl(exec_command cmd, detail::async_handler<process_state> h,
                                      diagnostics* diag) {
  detail::start_op<process_state>(
      get_executor(),
      [self = this, cmd = std::move(cmd)]() mutable { return self->launch(std::move(cmd)); },
      std::move(h), diag, cancel_partial);
}

void task_executor::async_wait_impl(detail::async_handler<process_state> h, diagnostics* diag) {
  detail::start_op<process_state>(
      get_executor(), [self = this]() { return self->wait(); }, std::move(h), diag, cancel_total);
}

void task_executor::async_signal_impl(int signo, detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this, signo]() { return self->signal(signo); }, std::move(h), diag,
      cancel_none);
}

void task_executor::async_shutdown_impl(std::string signal_name, std::chrono::milliseconds grace,
                                        detail::async_handler<void> h, diagnostics* diag) {
  // shutdown() takes a string_view: the name lives in the lambda, which
  // co_spawn keeps until the coroutine ends.
  detail::start_op<void>(
      get_executor(),
      [self = this, name = std::move(signal_name), grace]() { return self->shutdown(name, grace); },
      std::move(h), diag, cancel_partial);
}

void task_executor::async_destroy_impl(detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this]() { return self->destroy(); }, std::move(h), diag,
      cancel_partial);
}

void task_executor::async_stats_impl(std::chrono::milliseconds interval,
                                     std::function<void(const task_resource_usage&)> on_sample,
                                     detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(),
      [self = this, interval, f = std::move(on_sample)]() mutable {
        return self->stats(interval, std::move(f));
      },
      std::move(h), diag, cancel_total);
}

void task_executor::async_exec_impl(std::string cmd, std::vector<std::string> args,
                                    std::chrono::milliseconds timeout,
                                    detail::async_handler<exec_result> h, diagnostics* diag) {
  detail::start_op<exec_result>(
      get_executor(),
      [self = this, cmd = std::move(cmd), args = std::move(args), timeout]() mutable {
        return self->exec(std::move(cmd), std::move(args), timeout);
      },
      std::move(h), diag, cancel_partial);
}

void task_executor::async_exec_streaming_impl(exec_session_options options,
                                              detail::async_handler<exec_session> h,
                                              diagnostics* diag) {
  detail::start_op<exec_session>(
      get_executor(),
      [self = this, o = std::move(options)]() mutable {
        return self->exec_streaming(std::move(o));
      },
      std::move(h), diag, cancel_partial);
}

void async_exec_script_impl(child_reaper& reaper, script_options options,
                            detail::async_handler<exec_result> h, diagnostics* diag) {
  detail::start_op<exec_result>(
      reaper.get_executor(),
      [&reaper, o = std::move(options)]() mutable { return exec_script(reaper, std::move(o)); },
      std::move(h), diag, cancel_partial);
}

// ---- exec_session -------------------------------------------------------

void exec_session::async_read_impl(detail::async_handler<exec_event> h, diagnostics* diag) {
  detail::start_op<exec_event>(
      get_executor(), [self = this]() { return self->read(); }, std::move(h), diag, cancel_total);
}

void exec_session::async_write_impl(std::string data, detail::async_handler<void> h,
                                    diagnostics* diag) {
  detail::start_op<void>(
      get_executor(),
      [self = this, data = std::move(data)]() mutable { return self->write(std::move(data)); },
      std::move(h), diag, cancel_partial);
}

// ---- remote_executor ----------------------------------------------------

void remote_executor::async_connect_impl(boost::asio::any_io_executor ex, std::string socket_path,
                                         connect_options options,
                                         detail::async_handler<remote_executor> h,
                                         diagnostics* diag) {
  auto run_on = ex;
  detail::start_op<remote_executor>(
      run_on,
      [ex = std::move(ex), p = std::move(socket_path), options]() mutable {
        return connect(std::move(ex), std::move(p), options);
      },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_launch_impl(exec_command cmd, detail::async_handler<process_state> h,
                                        diagnostics* diag) {
  detail::start_op<process_state>(
      get_executor(),
      [self = this, cmd = std::move(cmd)]() mutable { return self->launch(std::move(cmd)); },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_wait_impl(detail::async_handler<process_state> h, diagnostics* diag) {
  detail::start_op<process_state>(
      get_executor(), [self = this]() mutable { return self->wait(); }, std::move(h), diag,
      cancel_total);
}

void remote_executor::async_wait_for_impl(std::chrono::milliseconds timeout,
                                          detail::async_handler<process_state> h,
                                          diagnostics* diag) {
  detail::start_op<process_state>(
      get_executor(), [self = this, timeout]() mutable { return self->wait_for(timeout); },
      std::move(h), diag, cancel_total);
}

void remote_executor::async_signal_impl(int signo, detail::async_handler<void> h,
                                        diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this, signo]() mutable { return self->signal(signo); }, std::move(h),
      diag, cancel_partial);
}

void remote_executor::async_signal_impl(std::string signal_name, detail::async_handler<void> h,
                                        diagnostics* diag) {
  detail::start_op<void>(
      get_executor(),
      [self = this, signal_name = std::move(signal_name)]() mutable {
        return self->signal(std::move(signal_name));
      },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_shutdown_impl(std::string signal_name, std::chrono::milliseconds grace,
                                          detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(),
      [self = this, signal_name = std::move(signal_name), grace]() mutable {
        return self->shutdown(std::move(signal_name), grace);
      },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_destroy_impl(detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this]() mutable { return self->destroy(); }, std::move(h), diag,
      cancel_partial);
}

void remote_executor::async_update_resources_impl(task_resources resources,
                                                  detail::async_handler<void> h,
                                                  diagnostics* diag) {
  detail::start_op<void>(
      get_executor(),
      [self = this, resources = std::move(resources)]() mutable {
        return self->update_resources(std::move(resources));
      },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_version_impl(detail::async_handler<std::string> h, diagnostics* diag) {
  detail::start_op<std::string>(
      get_executor(), [self = this]() mutable { return self->version(); }, std::move(h), diag,
      cancel_total);
}

void remote_executor::async_metrics_impl(detail::async_handler<boost::json::object> h,
                                         diagnostics* diag) {
  detail::start_op<boost::json::object>(
      get_executor(), [self = this]() mutable { return self->metrics(); }, std::move(h), diag,
      cancel_total);
}

void remote_executor::async_events_impl(std::uint64_t since, std::size_t limit,
                                        detail::async_handler<event_page> h, diagnostics* diag) {
  detail::start_op<event_page>(
      get_executor(), [self = this, since, limit]() mutable { return self->events(since, limit); },
      std::move(h), diag, cancel_total);
}

void remote_executor::async_stats_impl(std::chrono::milliseconds interval,
                                       detail::async_handler<stats_stream> h, diagnostics* diag) {
  detail::start_op<stats_stream>(
      get_executor(), [self = this, interval]() mutable { return self->stats(interval); },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_follow_events_impl(std::uint64_t since,
                                               detail::async_handler<event_stream> h,
                                               diagnostics* diag) {
  detail::start_op<event_stream>(
      get_executor(), [self = this, since]() mutable { return self->follow_events(since); },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_exec_impl(std::string cmd, std::vector<std::string> args,
                                      std::chrono::milliseconds timeout,
                                      detail::async_handler<exec_result> h, diagnostics* diag) {
  detail::start_op<exec_result>(
      get_executor(),
      [self = this, cmd = std::move(cmd), args = std::move(args), timeout]() mutable {
        return self->exec(std::move(cmd), std::move(args), timeout);
      },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_exec_streaming_impl(exec_session_options options,
                                                detail::async_handler<remote_exec_session> h,
                                                diagnostics* diag) {
  detail::start_op<remote_exec_session>(
      get_executor(),
      [self = this, options = std::move(options)]() mutable {
        return self->exec_streaming(std::move(options));
      },
      std::move(h), diag, cancel_partial);
}

void remote_executor::async_call_impl(std::string method, boost::json::value params,
                                      detail::async_handler<boost::json::value> h,
                                      diagnostics* diag) {
  detail::start_op<boost::json::value>(
      get_executor(),
      [self = this, method = std::move(method), params = std::move(params)]() mutable {
        return self->call(std::move(method), std::move(params));
      },
      std::move(h), diag, cancel_partial);
}

void remote_exec_session::async_read_impl(detail::async_handler<exec_event> h, diagnostics* diag) {
  detail::start_op<exec_event>(
      get_executor(), [self = this]() mutable { return self->read(); }, std::move(h), diag,
      cancel_total);
}

void remote_exec_session::async_write_impl(std::string data, detail::async_handler<void> h,
                                           diagnostics* diag) {
  detail::start_op<void>(
      get_executor(),
      [self = this, data = std::move(data)]() mutable { return self->write(std::move(data)); },
      std::move(h), diag, cancel_partial);
}

void remote_exec_session::async_close_stdin_impl(detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this]() mutable { return self->close_stdin(); }, std::move(h), diag,
      cancel_partial);
}

void remote_exec_session::async_resize_impl(tty_size size, detail::async_handler<void> h,
                                            diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this, size]() mutable { return self->resize(size); }, std::move(h),
      diag, cancel_partial);
}

void remote_exec_session::async_kill_impl(detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this]() mutable { return self->kill(); }, std::move(h), diag,
      cancel_partial);
}

void stats_stream::async_next_impl(detail::async_handler<boost::json::object> h,
                                   diagnostics* diag) {
  detail::start_op<boost::json::object>(
      get_executor(), [self = this]() mutable { return self->next(); }, std::move(h), diag,
      cancel_total);
}

void stats_stream::async_cancel_impl(detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this]() mutable { return self->cancel(); }, std::move(h), diag,
      cancel_partial);
}

void event_stream::async_next_impl(detail::async_handler<boost::json::object> h,
                                   diagnostics* diag) {
  detail::start_op<boost::json::object>(
      get_executor(), [self = this]() mutable { return self->next(); }, std::move(h), diag,
      cancel_total);
}

void event_stream::async_cancel_impl(detail::async_handler<void> h, diagnostics* diag) {
  detail::start_op<void>(
      get_executor(), [self = this]() mutable { return self->cancel(); }, std::move(h), diag,
      cancel_partial);
}

void async_create_executor_impl(boost::asio::any_io_executor ex, create_options options,
                                detail::async_handler<created_executor> h, diagnostics* diag) {
  auto run_on = ex;
  detail::start_op<created_executor>(
      run_on,
      [ex = std::move(ex), o = std::move(options)]() mutable {
        return create_executor(std::move(ex), std::move(o));
      },
      std::move(h), diag, cancel_partial);
}

void async_reattach_to_executor_impl(boost::asio::any_io_executor ex, reattach_config config,
                                     connect_options options,
                                     detail::async_handler<remote_executor> h, diagnostics* diag) {
  auto run_on = ex;
  detail::start_op<remote_executor>(
      run_on,
      [ex = std::move(ex), c = std::move(config), options]() mutable {
        return reattach_to_executor(std::move(ex), std::move(c), options);
      },
      std::move(h), diag, cancel_partial);
}

}  // namespace taskexec
