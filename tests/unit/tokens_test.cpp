// The completion-token API (async.hpp) without a process: every token kind
// completes with the error code and the message result<T> carries, never
// inside the initiating function, on the handler's associated executor,
// from any thread. Cancellation with real processes is in the integration
// tier (tests/integration/tokens_test.cpp).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "taskexec/child_reaper.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/task_executor.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using taskexec::errc;
using taskexec::make_error_code;

namespace {

// The one reaper of the unit tier (no child is ever started here).
struct unit_reaper {
  asio::io_context io;
  taskexec::child_reaper reaper{io.get_executor()};
  static unit_reaper& get() {
    static unit_reaper r;
    return r;
  }
};

// Run the reaper's io_context until `done` or a generous bound.
template <class Pred>
void run_until(Pred done, std::chrono::seconds bound = 30s) {
  auto& io = unit_reaper::get().io;
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "timed out");
    io.run_one_for(50ms);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tokens)

BOOST_AUTO_TEST_CASE(callback_completes_later_with_the_code_and_diagnostics) {
  auto& u = unit_reaper::get();
  taskexec::task_executor task(u.reaper);
  taskexec::diagnostics diag;
  diag.assign("stale");
  bool called = false;
  error_code got;
  task.async_wait(diag, [&](error_code ec, taskexec::process_state) {
    called = true;
    got = ec;
  });
  BOOST_TEST(!called);  // never inside the initiating function
  run_until([&] { return called; });
  BOOST_TEST(got == make_error_code(errc::not_launched));
  BOOST_TEST(diag.message() == "task not yet launched");

  // Every operation, before a launch, with a plain callback.
  int done = 0;
  std::vector<error_code> codes;
  auto cb = [&](error_code ec, auto&&...) {
    codes.push_back(ec);
    ++done;
  };
  task.async_signal(SIGTERM, cb);
  task.async_shutdown("SIGTERM", 10ms, cb);
  task.async_exec("/bin/true", {}, 0ms, cb);
  taskexec::exec_session_options so;
  so.cmd = "/bin/true";
  task.async_exec_streaming(so, cb);
  task.async_stats(
      10ms, [](const taskexec::task_resource_usage&) {}, cb);
  BOOST_TEST(done == 0);
  run_until([&] { return done == 5; });
  for (const auto& ec : codes)
    BOOST_TEST(ec == make_error_code(errc::not_launched), ec.message());
}

BOOST_AUTO_TEST_CASE(diagnostics_are_cleared_on_success) {
  auto& u = unit_reaper::get();
  taskexec::task_executor task(u.reaper);
  taskexec::diagnostics diag;
  diag.assign("stale");
  std::optional<error_code> got;
  task.async_destroy(diag, [&](error_code ec) { got = ec; });
  run_until([&] { return got.has_value(); });
  BOOST_TEST(!*got);
  BOOST_TEST(diag.message().empty());
  BOOST_TEST((task.state() == taskexec::task_state::destroyed));
  // After destroy, the code names it.
  got.reset();
  task.async_wait(diag, [&](error_code ec, taskexec::process_state) { got = ec; });
  run_until([&] { return got.has_value(); });
  BOOST_TEST(*got == make_error_code(errc::task_destroyed));
  BOOST_TEST(diag.message() == "task executor destroyed");
}

BOOST_AUTO_TEST_CASE(deferred_is_lazy_and_awaits_with_use_awaitable_and_as_tuple) {
  auto& u = unit_reaper::get();
  taskexec::task_executor task(u.reaper);
  auto op = task.async_wait();  // default token: deferred; nothing runs yet
  bool finished = false;
  error_code thrown, tupled, deferred_tupled;
  asio::co_spawn(
      u.io,
      [&]() -> asio::awaitable<void> {
        try {
          auto st = co_await std::move(op);
          (void)st;
        } catch (const boost::system::system_error& e) {
          thrown = e.code();
        }
        auto t = co_await task.async_signal(0, asio::as_tuple(asio::use_awaitable));
        tupled = std::get<0>(t);
        auto t2 = co_await task.async_wait(asio::as_tuple(asio::deferred));
        deferred_tupled = std::get<0>(t2);
        finished = true;
      },
      asio::detached);
  run_until([&] { return finished; });
  BOOST_TEST(thrown == make_error_code(errc::not_launched));
  BOOST_TEST(tupled == make_error_code(errc::not_launched));
  BOOST_TEST(deferred_tupled == make_error_code(errc::not_launched));
}

BOOST_AUTO_TEST_CASE(use_future_from_another_thread) {
  auto& u = unit_reaper::get();
  taskexec::task_executor task(u.reaper);
  std::atomic<bool> stop{false};
  u.io.restart();
  std::thread runner([&] {
    while (!stop)
      u.io.run_one_for(20ms);
  });
  // Initiated from this thread: the work runs on the io thread.
  auto f = task.async_wait(asio::use_future);
  auto g = task.async_destroy(asio::use_future);
  const bool ready =
      f.wait_for(30s) == std::future_status::ready && g.wait_for(30s) == std::future_status::ready;
  stop = true;
  runner.join();
  BOOST_REQUIRE(ready);
  try {
    f.get();
    BOOST_FAIL("wait before launch succeeded");
  } catch (const boost::system::system_error& e) {
    BOOST_TEST(e.code() == make_error_code(errc::not_launched));
  }
  g.get();  // destroy before launch succeeds
  BOOST_TEST((task.state() == taskexec::task_state::destroyed));
}

BOOST_AUTO_TEST_CASE(handler_runs_on_its_associated_executor) {
  auto& u = unit_reaper::get();
  taskexec::task_executor task(u.reaper);
  asio::io_context other;
  auto guard = asio::make_work_guard(other);
  std::thread other_thread([&] { other.run(); });
  auto strand = asio::make_strand(other);
  std::atomic<bool> called{false};
  std::atomic<bool> on_strand{false};
  task.async_wait(asio::bind_executor(strand, [&](error_code ec, taskexec::process_state) {
    on_strand = strand.running_in_this_thread() && ec == make_error_code(errc::not_launched);
    called = true;
  }));
  run_until([&] { return called.load(); });
  guard.reset();
  other_thread.join();
  BOOST_TEST(on_strand.load());
}

BOOST_AUTO_TEST_CASE(parallel_group_of_operations) {
  auto& u = unit_reaper::get();
  taskexec::task_executor task(u.reaper);
  bool finished = false;
  error_code a, b;
  asio::experimental::make_parallel_group(task.async_wait(asio::deferred),
                                          task.async_signal(SIGTERM, asio::deferred))
      .async_wait(asio::experimental::wait_for_all(), [&](std::array<std::size_t, 2>, error_code ea,
                                                          taskexec::process_state, error_code eb) {
        a = ea;
        b = eb;
        finished = true;
      });
  run_until([&] { return finished; });
  BOOST_TEST(a == make_error_code(errc::not_launched));
  BOOST_TEST(b == make_error_code(errc::not_launched));
}

BOOST_AUTO_TEST_CASE(empty_objects_fail_without_crashing) {
  std::promise<error_code> p1, p2;
  taskexec::exec_session session;
  taskexec::diagnostics diag;
  session.async_read(diag, [&](error_code ec, taskexec::exec_event) { p1.set_value(ec); });
  taskexec::remote_executor remote;
  remote.async_version([&](error_code ec, std::string) { p2.set_value(ec); });
  auto f1 = p1.get_future(), f2 = p2.get_future();
  BOOST_REQUIRE(f1.wait_for(30s) == std::future_status::ready);
  BOOST_REQUIRE(f2.wait_for(30s) == std::future_status::ready);
  BOOST_TEST(f1.get() == make_error_code(errc::invalid_argument));
  BOOST_TEST(f2.get() == make_error_code(errc::invalid_argument));
  BOOST_TEST(diag.message() == "operation on an empty object (moved-from)");
}

BOOST_AUTO_TEST_SUITE_END()
