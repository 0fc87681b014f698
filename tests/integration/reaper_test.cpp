// The reaper under load, orphans, and the parent-death signal.
#include <boost/test/unit_test.hpp>

#include <memory>

#include "harness.hpp"

using namespace test_support;
using namespace taskexec;

BOOST_AUTO_TEST_SUITE(reaper)

BOOST_AUTO_TEST_CASE(one_reaper_per_process) {
  BOOST_CHECK_THROW(child_reaper second(harness::get().io.get_executor()), std::logic_error);
  BOOST_TEST(child_reaper::current() == &harness::get().reaper);
}

BOOST_AUTO_TEST_CASE(five_hundred_tasks_launched_and_reaped_concurrently) {
  constexpr int n = 500;
  auto& reaper = harness::get().reaper;
  const auto orphans_before = reaper.orphans_reaped();
  const auto watched_before = reaper.watched_count();
  run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::unique_ptr<task_executor>> tasks;
    for (int i = 0; i < n; ++i)
      tasks.push_back(std::make_unique<task_executor>(reaper));
    // Launch all, then wait for all at once: 500 processes alive together.
    for (int i = 0; i < n; ++i) {
      auto r = co_await tasks[i]->launch(sh("read x; exit " + std::to_string(i % 200)));
      BOOST_REQUIRE_MESSAGE(r, "launch " << i << ": " << (r ? "" : r.error().message));
    }
    int finished = 0, right = 0;
    asio::steady_timer all(ex, 120s);
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(ex, tasks[i]->wait(), [&, i](std::exception_ptr e, result<process_state> r) {
        if (!e && r && r->exit_code == i % 200 && r->signal == 0)
          ++right;
        if (++finished == n)
          all.cancel();
      });
    }
    co_await all.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(finished == n);
    BOOST_TEST(right == n);
  });
  BOOST_TEST(reaper.watched_count() == watched_before);
  BOOST_TEST(reaper.orphans_reaped() == orphans_before);
  BOOST_TEST(zombie_children().empty());
  BOOST_TEST(live_children().empty());
}

BOOST_AUTO_TEST_CASE(unclaimed_children_are_reaped_and_counted) {
  auto& reaper = harness::get().reaper;
  run([&]() -> asio::awaitable<void> {
    const auto before = reaper.orphans_reaped();
    const auto total = reaper.total_reaped();
    task_executor t(reaper);
    pipe_reader out;
    // Three grandchildren orphaned at once: they come back to us and nobody
    // waits for them.
    auto cmd = sh("for i in 1 2 3; do (sleep 0.2 &) ; done; echo ready");
    cmd.stdout_fd = out.write_fd();
    BOOST_REQUIRE(co_await t.launch(cmd));
    out.close_write();
    BOOST_TEST(co_await out.line() == "ready");
    BOOST_TEST((co_await t.wait())->exit_code == 0);
    BOOST_TEST(co_await wait_total_reaped(total + 4));  // the task and three orphans
    BOOST_TEST(reaper.orphans_reaped() == before + 3);
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(task_dies_with_its_executor) {
  // The helper is itself an executor; it runs as our task so we can kill it.
  run([]() -> asio::awaitable<void> { co_await check_task_dies_with_its_executor(""); });
}

BOOST_AUTO_TEST_SUITE_END()
