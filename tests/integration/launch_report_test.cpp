// A launch that awaits a report (a container's: taskexec-init holds the
// report pipe until the task runs) waits on the io_context: the thread goes
// on with timers, the reaper and other executors meanwhile.
//
// No container here (no root needed): the plan passes the report pipe at
// fd 3 to an ordinary program, which holds it as taskexec-init would. What
// it does with it (nothing, a failure record, exit with a child still
// holding it) makes the report slow, failed or late.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <map>
#include <optional>

#include "harness.hpp"
#include "taskexec/detail/condition.hpp"
#include "taskexec/detail/spawn.hpp"
#include "taskexec/isolation/host.hpp"

using namespace test_support;
using namespace taskexec;
using clock_type = std::chrono::steady_clock;

namespace {

// One launch through detail::spawn (as task_executor and Exec make them),
// run in a coroutine of its own; `done` expires when it has completed.
struct report_launch {
  explicit report_launch(const asio::any_io_executor& ex) : done(ex, 120s) {}
  std::vector<std::unique_ptr<isolation_strategy>> stack;
  launch_plan plan;
  detail::condition abort;
  int failed_pid = -1;
  std::optional<result<detail::spawned_child>> outcome;
  asio::steady_timer done;
  std::optional<int> exit_status;  // delivered through watch_spawned
};

// The host stack's plan for `sh -c script`, with the report pipe at fd 3.
std::shared_ptr<report_launch> prepare(const char* script) {
  auto l = std::make_shared<report_launch>(harness::get().io.get_executor());
  const auto cmd = sh(script);
  auto stack = make_isolation(cmd, {"launch-report", {}, ""});
  BOOST_REQUIRE(stack);
  l->stack = std::move(*stack);
  for (const auto& s : l->stack)
    BOOST_REQUIRE(s->validate(cmd));
  for (auto& s : l->stack) {
    auto r = s->before_fork(cmd, l->plan);
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  }
  l->plan.report_fd = 3;
  l->plan.seal();
  return l;
}

// After the launch: its exit handed on (success), or the strategies undone.
void settle(const std::shared_ptr<report_launch>& l) {
  if (!*l->outcome) {
    for (auto& s : l->stack)
      s->launch_failed(l->plan);
    return;
  }
  const int pid = (*l->outcome)->pid;
  for (auto& s : l->stack)
    s->after_start(l->plan, pid);
  detail::watch_spawned(harness::get().reaper, **l->outcome, [l](int, int status) {
    l->exit_status = status;
    l->done.expires_at(asio::steady_timer::time_point::min());
  });
}

asio::awaitable<void> run_launch(std::shared_ptr<report_launch> l,
                                 std::chrono::milliseconds report_timeout) {
  auto r = co_await detail::spawn(harness::get().reaper, l->plan, l->stack, report_timeout,
                                  &l->abort, &l->failed_pid);
  l->outcome = std::move(r);
  settle(l);
  // Not cancel(): an expiry in the past also completes waits that start later.
  l->done.expires_at(asio::steady_timer::time_point::min());
}

// The raw wait status of every child reaped while it lives.
struct reaps {
  std::map<int, int> status;
  asio::steady_timer changed{harness::get().io, 120s};
  child_reaper::subscription sub = harness::get().reaper.subscribe([this](int pid, int st, bool) {
    status[pid] = st;
    changed.cancel();
  });
};

asio::awaitable<std::optional<int>> reaped_status(reaps& r, int pid) {
  const auto bound = clock_type::now() + 30s;
  while (!r.status.contains(pid) && clock_type::now() < bound) {
    r.changed.expires_at(bound);
    co_await r.changed.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (!r.status.contains(pid))
    co_return std::nullopt;
  co_return r.status[pid];
}

// Wait on a timer due `after` from now: how late it fired.
asio::awaitable<clock_type::duration> lateness(asio::steady_timer& t,
                                               std::chrono::milliseconds after) {
  const auto due = clock_type::now() + after;
  t.expires_at(due);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return clock_type::now() - due;
}

long ms(clock_type::duration d) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(launch_report)

BOOST_AUTO_TEST_CASE(the_io_thread_runs_while_a_launch_awaits_its_report) {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    reaps reaped;
    // sleep holds the report pipe and never reports: the launch times out.
    auto slow = prepare("exec sleep 60");
    // Armed first: co_spawn may run the launch's first steps inline.
    asio::steady_timer tick(ex);
    const auto due = clock_type::now() + 100ms;
    tick.expires_at(due);
    asio::co_spawn(ex, run_launch(slow, 3000ms), asio::detached);
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto first_late = clock_type::now() - due;
    const bool timer_while_pending = !slow->outcome;

    // Another executor's whole life meanwhile.
    task_executor other(harness::get().reaper);
    auto started = co_await other.launch(sh("exit 7"));
    BOOST_REQUIRE_MESSAGE(started, (started ? "" : started.error().message));
    auto exited = co_await other.wait();
    const bool other_while_pending = !slow->outcome;

    // The longest the io thread was away, until the launch completes.
    auto largest = first_late;
    while (!slow->outcome) {
      const auto gap = co_await lateness(tick, 10ms);
      largest = std::max(largest, gap);
    }
    BOOST_TEST_MESSAGE("io thread during a launch awaiting its report: the first timer fired "
                       << ms(first_late) << " ms late, the largest gap was " << ms(largest)
                       << " ms");

    BOOST_TEST(timer_while_pending);
    BOOST_TEST(ms(first_late) < 1000);  // a bound for a stall, not a timing target
    BOOST_TEST(other_while_pending);
    BOOST_REQUIRE(exited);
    BOOST_TEST(exited->exit_code == 7);

    BOOST_REQUIRE(!*slow->outcome);
    BOOST_TEST(slow->outcome->error().code == make_error_code(errc::timed_out));
    BOOST_TEST(slow->outcome->error().message ==
               "launch timed out: no report within 3000 ms after exec");
    // The child was killed, and is reaped (claimed by the launch).
    BOOST_REQUIRE(slow->failed_pid > 0);
    auto st = co_await reaped_status(reaped, slow->failed_pid);
    BOOST_REQUIRE(st);
    BOOST_TEST(WIFSIGNALED(*st));
    BOOST_TEST(WTERMSIG(*st) == SIGKILL);
    BOOST_TEST(!harness::get().reaper.watching(slow->failed_pid));
  });
}

BOOST_AUTO_TEST_CASE(a_report_that_comes_late_fails_the_launch) {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    reaps reaped;
    // A failure record as taskexec-init writes one, in one write ({int
    // errno; char step[56]}: ENOENT, "report-step"), after a while; then
    // it lingers.
    auto l = prepare(
        "sleep 0.5; { printf '\\002'; head -c 3 /dev/zero; printf report-step; head -c 45 "
        "/dev/zero; } | dd bs=60 count=1 iflag=fullblock status=none >&3; exec sleep 60");
    asio::co_spawn(ex, run_launch(l, 30000ms), asio::detached);
    asio::steady_timer tick(ex);
    co_await lateness(tick, 100ms);
    const bool timer_while_pending = !l->outcome;
    co_await l->done.async_wait(asio::as_tuple(asio::use_awaitable));

    BOOST_TEST(timer_while_pending);
    BOOST_REQUIRE(l->outcome);
    BOOST_REQUIRE(!*l->outcome);
    BOOST_TEST(l->outcome->error().code == make_error_code(errc::launch_failed));
    BOOST_TEST(l->outcome->error().message == "report-step: No such file or directory");
    BOOST_REQUIRE(l->failed_pid > 0);
    auto st = co_await reaped_status(reaped, l->failed_pid);
    BOOST_REQUIRE(st);
    BOOST_TEST(WIFSIGNALED(*st));
    BOOST_TEST(WTERMSIG(*st) == SIGKILL);
  });
}

BOOST_AUTO_TEST_CASE(a_child_reaped_while_its_report_is_awaited_keeps_its_exit_status) {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    // The shell exits at once; the sleep it leaves behind holds the report
    // pipe: the reaper reaps the child long before the launch completes.
    auto l = prepare("sleep 0.5 & exit 5");
    asio::co_spawn(ex, run_launch(l, 30000ms), asio::detached);
    asio::steady_timer tick(ex);
    co_await lateness(tick, 100ms);
    const bool timer_while_pending = !l->outcome;
    co_await l->done.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE(l->outcome);
    BOOST_REQUIRE_MESSAGE(*l->outcome, (*l->outcome ? "" : (*l->outcome).error().message));
    const bool reaped_before_the_report = (*l->outcome)->exit_status.has_value();
    // The status reaches the handler all the same (posted).
    l->done.expires_at(clock_type::now() + 30s);
    if (!l->exit_status)
      co_await l->done.async_wait(asio::as_tuple(asio::use_awaitable));

    BOOST_TEST(timer_while_pending);
    BOOST_TEST(reaped_before_the_report);
    BOOST_REQUIRE(l->exit_status);
    BOOST_TEST(WIFEXITED(*l->exit_status));
    BOOST_TEST(WEXITSTATUS(*l->exit_status) == 5);
  });
}

BOOST_AUTO_TEST_CASE(an_abort_kills_a_launch_awaiting_its_report) {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    reaps reaped;
    auto l = prepare("exec sleep 60");
    asio::co_spawn(ex, run_launch(l, 30000ms), asio::detached);
    asio::steady_timer tick(ex);
    co_await lateness(tick, 100ms);
    const bool timer_while_pending = !l->outcome;
    l->abort.notify_all();  // as task_executor's destruction does
    co_await l->done.async_wait(asio::as_tuple(asio::use_awaitable));

    BOOST_TEST(timer_while_pending);
    BOOST_REQUIRE(l->outcome);
    BOOST_REQUIRE(!*l->outcome);
    BOOST_TEST(l->outcome->error().code == make_error_code(errc::operation_canceled));
    BOOST_REQUIRE(l->failed_pid > 0);
    auto st = co_await reaped_status(reaped, l->failed_pid);
    BOOST_REQUIRE(st);
    BOOST_TEST(WTERMSIG(*st) == SIGKILL);
  });
}

BOOST_AUTO_TEST_CASE(a_cancel_kills_a_launch_awaiting_its_report) {
  run([]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    reaps reaped;
    auto l = prepare("exec sleep 60");
    asio::cancellation_signal cancel;
    asio::co_spawn(ex, run_launch(l, 30000ms),
                   asio::bind_cancellation_slot(cancel.slot(), asio::detached));
    asio::steady_timer tick(ex);
    co_await lateness(tick, 100ms);
    const bool timer_while_pending = !l->outcome;
    cancel.emit(asio::cancellation_type::terminal);
    co_await l->done.async_wait(asio::as_tuple(asio::use_awaitable));

    BOOST_TEST(timer_while_pending);
    BOOST_REQUIRE(l->outcome);
    BOOST_REQUIRE(!*l->outcome);
    BOOST_TEST(l->outcome->error().code == make_error_code(errc::operation_canceled));
    BOOST_REQUIRE(l->failed_pid > 0);
    auto st = co_await reaped_status(reaped, l->failed_pid);
    BOOST_REQUIRE(st);
    BOOST_TEST(WTERMSIG(*st) == SIGKILL);
  });
}

BOOST_AUTO_TEST_SUITE_END()
