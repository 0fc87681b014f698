// detail::on_strand: a caller's cancellation reaches the operation on the
// strand while it runs, and nothing once it is done. Boost 1.81's co_spawn
// forwards a cancellation by posting a pointer into the caller's slot; a
// caller whose slot went away before that post ran made it use freed memory
// (taskexecd crashed when a client vanished mid-call). The first case is
// that sequence, step by step (ASan reports the old code's use after free).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <exception>
#include <optional>

#include "taskexec/detail/coro.hpp"

namespace asio = boost::asio;

namespace {

// 1: the timer fired or was cancelled by timer.cancel() before any
// cancellation; 2: ended by a cancellation through the slot.
asio::awaitable<int> wait_on(asio::steady_timer& t, int& ran_to_end) {
  auto waited = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  (void)waited;  // aborted either way: what ended it is the cancellation state
  const auto cs = co_await asio::this_coro::cancellation_state;
  ++ran_to_end;
  co_return cs.cancelled() != asio::cancellation_type::none ? 2 : 1;
}

// Yields through its executor's queue until `release`: its resumption is
// always queued on the strand, ahead of anything posted there later.
asio::awaitable<int> spin_until(const bool& release, int& ran_to_end) {
  const auto ex = co_await asio::this_coro::executor;
  while (!release)
    co_await asio::post(ex, asio::use_awaitable);
  const auto cs = co_await asio::this_coro::cancellation_state;
  ++ran_to_end;
  co_return cs.cancelled() != asio::cancellation_type::none ? 2 : 1;
}

struct fixture {
  asio::io_context io;
  asio::any_io_executor strand = asio::make_strand(io.get_executor());
  asio::steady_timer timer{strand, std::chrono::hours(1)};
  std::optional<asio::cancellation_signal> caller_signal{std::in_place};
  int ran_to_end = 0;
  std::optional<int> got;
  bool failed = false;
  bool release = false;

  // The caller runs on the io_context (not the strand), its cancellation
  // bound to caller_signal, which goes away as the caller completes (as a
  // connection's request signal does).
  void start(bool spin = false) {
    asio::co_spawn(
        io,
        [this, spin]() -> asio::awaitable<int> {
          auto op = spin ? spin_until(release, ran_to_end) : wait_on(timer, ran_to_end);
          int v = co_await taskexec::detail::on_strand(strand, std::move(op));
          co_return v;
        },
        asio::bind_cancellation_slot(caller_signal->slot(), [this](std::exception_ptr e, int v) {
          failed = e != nullptr;
          got = v;
          caller_signal.reset();
        }));
    if (spin) {
      for (int i = 0; i < 20; ++i)
        io.poll_one();  // spinning now: never idle until released
    } else {
      io.poll();
    }
    io.restart();
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(coro)

BOOST_FIXTURE_TEST_CASE(a_cancellation_after_the_end_reaches_nothing, fixture) {
  start(true);
  BOOST_REQUIRE_EQUAL(ran_to_end, 0);  // spinning on the strand
  // From a handler on the io_context (where a connection cancels its
  // requests): the operation's last step is queued on the strand, then the
  // caller's cancellation, which must cross to the strand, after it.
  asio::post(io, [this] {
    release = true;
    caller_signal->emit(asio::cancellation_type::terminal);
  });
  // The operation ends, the caller resumes and completes (its signal goes),
  // then the queued cancellation runs: it must touch nothing of either.
  io.poll();
  BOOST_TEST(!failed);
  BOOST_TEST(ran_to_end == 1);
  BOOST_TEST(got.value_or(-1) == 1);
  BOOST_TEST(!caller_signal.has_value());
}

BOOST_FIXTURE_TEST_CASE(a_cancellation_while_it_runs_reaches_it, fixture) {
  start();
  BOOST_REQUIRE_EQUAL(ran_to_end, 0);
  asio::post(io, [this] { caller_signal->emit(asio::cancellation_type::terminal); });
  io.poll();
  BOOST_TEST(!failed);
  BOOST_TEST(ran_to_end == 1);
  BOOST_TEST(got.value_or(-1) == 2);  // its timer was cancelled through the slot
}

BOOST_FIXTURE_TEST_CASE(no_cancellation_no_effect, fixture) {
  start();
  timer.expires_after(std::chrono::milliseconds(0));  // fires at once (cancels the wait: 1)
  io.poll();
  BOOST_TEST(!failed);
  BOOST_TEST(got.value_or(-1) == 1);
}

BOOST_AUTO_TEST_SUITE_END()
