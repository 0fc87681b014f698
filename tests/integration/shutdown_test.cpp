// Shutdown: grace, escalation, and the sweep of everything the task started.
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

using namespace test_support;
using namespace taskexec;

BOOST_AUTO_TEST_SUITE(shutdown_escalation)

BOOST_AUTO_TEST_CASE(grace_lets_the_task_exit_cleanly) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out,
                          "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.01; done");
    auto start = std::chrono::steady_clock::now();
    auto r = co_await t.shutdown("SIGTERM", 20s);
    BOOST_TEST_MESSAGE("graceful shutdown took "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count()
                       << " ms");
    BOOST_TEST(r.has_value());
    auto st = co_await t.wait();
    BOOST_REQUIRE(st);
    BOOST_TEST(st->exit_code == 0);  // it exited by itself, not by SIGKILL
    BOOST_TEST(st->signal == 0);
    BOOST_TEST(co_await out.rest() == "bye\n");
    // Well inside the grace: the shutdown returned on the exit, not at the deadline.
    BOOST_TEST((std::chrono::steady_clock::now() - start < 20s));
  });
}

BOOST_AUTO_TEST_CASE(a_task_ignoring_the_signal_is_killed_after_grace) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "trap '' TERM INT; echo ready; while :; do sleep 0.01; done");
    auto start = std::chrono::steady_clock::now();
    auto r = co_await t.shutdown("SIGTERM", 300ms);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(r.has_value());
    auto st = co_await t.wait();
    BOOST_TEST(st->signal == SIGKILL);
    BOOST_TEST(st->exit_code == 128 + SIGKILL);
    BOOST_TEST((took >= 300ms));  // the grace was honoured before SIGKILL
  });
}

BOOST_AUTO_TEST_CASE(zero_grace_kills_at_once_and_default_signal_is_sigint) {
  run([]() -> asio::awaitable<void> {
    {
      task_executor t(harness::get().reaper);
      pipe_reader out;
      co_await launch_ready(t, out, "trap '' TERM INT; echo ready; exec sleep 1000");
      BOOST_TEST((co_await t.shutdown("SIGTERM", 0ms)).has_value());
      BOOST_TEST((co_await t.wait())->signal == SIGKILL);
    }
    {
      task_executor t(harness::get().reaper);
      pipe_reader out;
      co_await launch_ready(t, out, "echo ready; exec sleep 1000");
      BOOST_TEST((co_await t.shutdown()).has_value());  // SIGINT, 5 s grace
      BOOST_TEST((co_await t.wait())->signal == SIGINT);
    }
  });
}

BOOST_AUTO_TEST_CASE(bad_arguments_and_after_exit) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    BOOST_REQUIRE(co_await t.launch(sh("exit 5")));
    auto bad = co_await t.shutdown("SIGNOPE", 10ms);
    BOOST_REQUIRE(!bad);
    BOOST_TEST(bad.error().code == make_error_code(errc::invalid_argument));
    BOOST_TEST(bad.error().message == "unknown signal \"SIGNOPE\"");
    BOOST_TEST(!(co_await t.shutdown("SIGTERM", -1ms)));
    auto st = co_await t.wait();
    BOOST_TEST(st->exit_code == 5);
    // After exit: succeeds (and sweeps), twice.
    BOOST_TEST((co_await t.shutdown("SIGTERM", 10ms)).has_value());
    BOOST_TEST((co_await t.shutdown("SIGTERM", 10ms)).has_value());
    BOOST_TEST((co_await t.wait())->exit_code == 5);  // the exit state is kept
  });
}

BOOST_AUTO_TEST_CASE(concurrent_shutdowns_share_one) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "trap '' TERM; echo ready; exec sleep 1000");
    auto ex = co_await asio::this_coro::executor;
    int done = 0;
    asio::steady_timer both(ex, 30s);
    for (int i = 0; i < 2; ++i) {
      asio::co_spawn(ex, t.shutdown("SIGTERM", 200ms), [&](std::exception_ptr e, result<void> r) {
        BOOST_REQUIRE(!e);
        BOOST_TEST(r.has_value());
        if (++done == 2)
          both.cancel();
      });
    }
    co_await both.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(done == 2);
    BOOST_TEST((co_await t.wait())->signal == SIGKILL);
  });
}

BOOST_AUTO_TEST_CASE(escaped_descendants_are_killed_and_reaped) {
  // The case: a child that left the session with setsid.
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    std::vector<std::string> lines;
    co_await launch_ready(t, out, "setsid sleep 1000 & echo $!; sleep 1000 & echo ready; wait",
                          &lines, 1);
    const int escaped = std::stoi(lines.at(0));
    BOOST_REQUIRE(alive(escaped));
    auto r = co_await t.shutdown("SIGTERM", 200ms);
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    BOOST_TEST(!alive(escaped));
    BOOST_TEST(co_await wait_gone(escaped));
    BOOST_TEST(zombie_children().empty());
    BOOST_TEST(live_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(daemonised_orphans_are_attributed_and_killed) {
  // A double fork before the shutdown: the grandchild's parent is gone, so it
  // was re-parented to us (the subreaper) long before we look for it.
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    std::vector<std::string> lines;
    co_await launch_ready(
        t, out, "setsid sh -c 'sleep 1000 & echo $!' ; echo ready; exec sleep 1000", &lines, 1);
    const int daemon = std::stoi(lines.at(0));
    auto st = detail::read_proc_stat(daemon);
    BOOST_REQUIRE(st);
    BOOST_TEST(st->ppid == ::getpid());  // adopted by the subreaper
    auto r = co_await t.shutdown("SIGTERM", 100ms);
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    BOOST_TEST(co_await wait_gone(daemon));
    BOOST_TEST(zombie_children().empty());
    BOOST_TEST(live_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(wait_returns_at_the_main_exit_not_the_grandchild) {
  // `(sleep 30 &)` keeps running after the main process exits: wait must not
  // wait for it; the shutdown afterwards removes it.
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto start = std::chrono::steady_clock::now();
    BOOST_REQUIRE(co_await t.launch(sh("(sleep 30 >/dev/null &); exec sleep 1")));
    auto st = co_await t.wait();
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_REQUIRE(st);
    BOOST_TEST(st->exit_code == 0);
    BOOST_TEST((took >= 900ms));
    BOOST_TEST((took < 20s));  // about 1 s, certainly not 30
    BOOST_TEST((co_await t.shutdown("SIGTERM", 100ms)).has_value());
    BOOST_TEST(live_children().empty());
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(a_process_whose_main_thread_exited_is_still_killed) {
  // It shows as 'Z' in /proc while its other thread runs: the sweep must
  // SIGKILL it all the same.
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    std::vector<std::string> lines;
    co_await launch_ready(t, out,
                          std::string(TASKEXEC_TEST_HELPER) +
                              " --zombie-leader & echo $!; echo ready; exec sleep 1000",
                          &lines, 1);
    const int leader = std::stoi(lines.at(0));
    auto r = co_await t.shutdown("SIGTERM", 0ms);
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    BOOST_TEST(co_await wait_gone(leader, 5000ms));
    BOOST_TEST(live_children().empty());
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(an_exited_tasks_sweep_leaves_other_tasks_orphans_alone) {
  run([]() -> asio::awaitable<void> {
    task_executor a(harness::get().reaper);
    BOOST_REQUIRE(co_await a.launch(sh("exit 0")));
    BOOST_TEST((co_await a.wait())->exit_code == 0);
    BOOST_TEST((co_await a.shutdown("SIGTERM", 0ms)).has_value());

    // B leaves an orphan that is re-parented to us.
    task_executor b(harness::get().reaper);
    pipe_reader out;
    std::vector<std::string> lines;
    co_await launch_ready(
        b, out, "setsid sh -c 'sleep 1000 & echo $!' ; echo ready; exec sleep 1000", &lines, 1);
    const int orphan = std::stoi(lines.at(0));
    BOOST_REQUIRE(alive(orphan));

    // Sweeping A again (destroy) must not take B's orphan.
    BOOST_TEST((co_await a.destroy()).has_value());
    BOOST_TEST(alive(orphan));
    BOOST_TEST((co_await b.shutdown("SIGTERM", 0ms)).has_value());
    BOOST_TEST(co_await wait_gone(orphan));
  });
}

// A shutdown with a signal the task does not die of and the longest grace
// runs; then another call with a short grace (as SIGTERM to a daemon, or
// Destroy) must bring SIGKILL forward instead of joining the long wait.
namespace {
struct long_shutdown {
  bool done = false;
  taskexec::result<void> r;
};
// A plain function: GCC 12 mishandles init-captures in lambdas made inside
// coroutines.
void start_long_shutdown(task_executor& t, long_shutdown& s, std::chrono::milliseconds grace) {
  asio::co_spawn(harness::get().io, t.shutdown("SIGWINCH", grace),
                 [&s](std::exception_ptr e, taskexec::result<void> r) {
                   BOOST_REQUIRE(!e);
                   s.r = std::move(r);
                   s.done = true;
                 });
}
constexpr const char* k_winch_script =
    "trap 'echo winch' WINCH; trap '' TERM INT; echo ready; while :; do sleep 0.05; done";
}  // namespace

BOOST_AUTO_TEST_CASE(a_later_shutdown_with_a_short_grace_escalates_a_long_one) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, k_winch_script);
    long_shutdown first;
    start_long_shutdown(t, first, std::chrono::milliseconds::max());
    // The long shutdown is in its grace once the task has its signal.
    BOOST_REQUIRE_EQUAL(co_await out.line(), "winch");
    const auto start = std::chrono::steady_clock::now();
    auto r = co_await t.shutdown("SIGTERM", 200ms);
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    BOOST_TEST((std::chrono::steady_clock::now() - start < 30s));  // not an hour
    BOOST_TEST(first.done);  // both calls share the run that just ended
    BOOST_TEST(first.r.has_value(), (first.r ? "" : first.r.error().message));
    auto st = co_await t.wait();
    BOOST_REQUIRE(st);
    BOOST_TEST(st->signal == SIGKILL);  // TERM is ignored: SIGKILL ended it
    BOOST_TEST(live_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(destroy_kills_at_once_during_a_long_grace) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    const int pid = co_await launch_ready(t, out, k_winch_script);
    long_shutdown first;
    start_long_shutdown(t, first, std::chrono::hours(1));
    BOOST_REQUIRE_EQUAL(co_await out.line(), "winch");
    const auto start = std::chrono::steady_clock::now();
    auto r = co_await t.destroy();
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    BOOST_TEST((std::chrono::steady_clock::now() - start < 30s));
    BOOST_TEST(first.done);
    BOOST_TEST(first.r.has_value(), (first.r ? "" : first.r.error().message));
    BOOST_TEST(co_await wait_gone(pid));
    BOOST_TEST((t.state() == task_state::destroyed));
  });
}

BOOST_AUTO_TEST_CASE(the_longest_grace_does_not_overflow_the_deadline) {
  // now + milliseconds::max() once wrapped into the past: the grace ended at
  // once, and the forced SIGKILL was reported as "survived SIGKILL".
  run([]() -> asio::awaitable<void> {
    {
      task_executor t(harness::get().reaper);
      pipe_reader out;
      co_await launch_ready(t, out, "echo ready; exec sleep 1000");
      auto r = co_await t.shutdown("SIGTERM", std::chrono::milliseconds::max());
      BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
      BOOST_TEST((co_await t.wait())->signal == SIGTERM);  // the grace was honoured
    }
    {
      task_executor t(harness::get().reaper);
      pipe_reader out;
      co_await launch_ready(t, out, k_winch_script);
      long_shutdown first;
      start_long_shutdown(t, first, std::chrono::milliseconds::max());
      BOOST_REQUIRE_EQUAL(co_await out.line(), "winch");
      auto r = co_await t.shutdown("SIGKILL", 0ms);
      BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
      BOOST_TEST(first.r.has_value(), (first.r ? "" : first.r.error().message));
      BOOST_TEST((co_await t.wait())->signal == SIGKILL);
    }
  });
}

BOOST_AUTO_TEST_SUITE_END()
