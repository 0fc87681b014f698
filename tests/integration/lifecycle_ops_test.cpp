// wait and signal against a live task, in every state.
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

using namespace test_support;
using namespace taskexec;
using namespace asio::experimental::awaitable_operators;

BOOST_AUTO_TEST_SUITE(lifecycle_operations)

BOOST_AUTO_TEST_CASE(before_launch) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper, {.task_id = "early"});
    BOOST_TEST(t.version() == "2.0.0");
    BOOST_TEST(t.task_id() == "early");
    auto w = co_await t.wait();
    BOOST_REQUIRE(!w);
    BOOST_TEST(w.error().code == make_error_code(errc::not_launched));
    BOOST_TEST(w.error().message == "task not yet launched");
    auto s = co_await t.signal(SIGTERM);
    BOOST_REQUIRE(!s);
    BOOST_TEST(s.error().message == "task not yet launched");
    auto d = co_await t.shutdown("SIGTERM", 100ms);
    BOOST_REQUIRE(!d);
    BOOST_TEST(d.error().code == make_error_code(errc::not_launched));
  });
}

BOOST_AUTO_TEST_CASE(signal_semantics) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    task_executor t(harness::get().reaper);
    co_await launch_ready(t, out,
                          "trap 'echo got USR1' USR1; echo ready; while :; do sleep 0.01; done");

    auto bad = co_await t.signal(-3);
    BOOST_REQUIRE(!bad);
    BOOST_TEST(bad.error().code == make_error_code(errc::invalid_argument));
    BOOST_TEST(bad.error().message == "invalid signal number -3");
    BOOST_TEST(!(co_await t.signal(SIGRTMAX + 1)));

    BOOST_TEST((co_await t.signal(0)).has_value());  // existence check
    BOOST_TEST((co_await t.signal(SIGUSR1)).has_value());
    BOOST_TEST(co_await out.line() == "got USR1");

    BOOST_TEST((co_await t.signal(SIGKILL)).has_value());
    auto st = co_await t.wait();
    BOOST_REQUIRE(st);
    BOOST_TEST(st->exit_code == 128 + SIGKILL);
    BOOST_TEST(st->signal == SIGKILL);

    auto late = co_await t.signal(SIGTERM);
    BOOST_REQUIRE(!late);
    BOOST_TEST(late.error().code == make_error_code(errc::task_exited));
    BOOST_TEST(late.error().message == "task has exited");
    BOOST_TEST((t.state() == task_state::exited));
  });
}

BOOST_AUTO_TEST_CASE(concurrent_waiters_all_get_the_state) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    task_executor t(harness::get().reaper);
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");

    auto ex = co_await asio::this_coro::executor;
    std::vector<result<process_state>> got;
    int finished = 0;
    asio::steady_timer all_done(ex, 30s);  // cancelled by the fifth waiter
    for (int i = 0; i < 5; ++i) {
      asio::co_spawn(ex, t.wait(), [&](std::exception_ptr e, result<process_state> r) {
        BOOST_REQUIRE(!e);
        got.push_back(std::move(r));
        if (++finished == 5)
          all_done.cancel();
      });
    }
    BOOST_TEST((co_await t.signal(SIGTERM)).has_value());
    auto mine = co_await t.wait();
    BOOST_REQUIRE(mine);
    if (finished < 5)
      co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE_EQUAL(finished, 5);
    for (const auto& r : got) {
      BOOST_REQUIRE(r);
      BOOST_TEST(r->exit_code == 128 + SIGTERM);
      BOOST_TEST(r->signal == SIGTERM);
      BOOST_TEST(r->pid == mine->pid);
      BOOST_TEST((r->time == mine->time));
    }
    // After exit, wait returns at once with the same state.
    auto again = co_await t.wait();
    BOOST_TEST((again->time == mine->time));
  });
}

// A host task's processes are found by walking the executor's tree: a
// parent with 1000 children has a children list of 6 KiB or more, read
// whole (over several reads).
BOOST_AUTO_TEST_CASE(stats_find_every_process_of_a_wide_tree) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    task_executor t(harness::get().reaper);
    co_await launch_ready(t, out, "for i in $(seq 1000); do sleep 1000 & done; echo ready; wait");
    auto sampler = t.sampler();
    BOOST_REQUIRE(sampler);
    auto usage = sampler->sample();
    BOOST_TEST(usage.pids.size() == 1001u);  // the shell and its 1000 sleeps
    BOOST_TEST(usage.pids.contains(t.pid()));
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(wait_can_be_cancelled_and_resumed) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    task_executor t(harness::get().reaper);
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");

    asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
    auto first = co_await (t.wait() || timer.async_wait(asio::use_awaitable));
    BOOST_REQUIRE_EQUAL(first.index(), 1u);  // the timer won: the wait was cancelled
    BOOST_TEST((t.state() == task_state::running));

    // A direct cancelled wait reports operation_canceled.
    asio::steady_timer timer2(co_await asio::this_coro::executor, 20ms);
    auto second = co_await (t.wait() || timer2.async_wait(asio::use_awaitable));
    BOOST_TEST(second.index() == 1u);

    BOOST_TEST((co_await t.signal(SIGKILL)).has_value());
    auto st = co_await t.wait();
    BOOST_REQUIRE(st);
    BOOST_TEST(st->signal == SIGKILL);
  });
}

BOOST_AUTO_TEST_CASE(destroy_forgets_and_refuses) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    BOOST_REQUIRE(co_await t.launch(sh("exec sleep 1000")));
    const int pid = t.pid();
    BOOST_TEST((co_await t.destroy()).has_value());
    BOOST_TEST((t.state() == task_state::destroyed));
    BOOST_TEST(!t.exit_state().has_value());
    BOOST_TEST(!alive(pid));
    auto w = co_await t.wait();
    BOOST_REQUIRE(!w);
    BOOST_TEST(w.error().code == make_error_code(errc::task_destroyed));
    auto l = co_await t.launch(sh("true"));
    BOOST_TEST(l.error().code == make_error_code(errc::task_destroyed));
    auto d = co_await t.destroy();
    BOOST_TEST(d.error().code == make_error_code(errc::task_destroyed));
  });
}

BOOST_AUTO_TEST_CASE(destructor_kills_a_running_task) {
  run([]() -> asio::awaitable<void> {
    int pid = 0;
    {
      task_executor t(harness::get().reaper);
      BOOST_REQUIRE(co_await t.launch(sh("exec sleep 1000")));
      pid = t.pid();
    }
    BOOST_TEST(co_await wait_gone(pid));
  });
}

BOOST_AUTO_TEST_SUITE_END()
