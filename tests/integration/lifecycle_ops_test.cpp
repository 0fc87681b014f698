// wait and signal against a live task, in every state.
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/resource.h>

#include "harness.hpp"
#include "taskexec/stats.hpp"

using namespace test_support;
using namespace taskexec;
using namespace asio::experimental::awaitable_operators;

namespace {

// The CPU of every child this process has reaped (and of what they waited
// for): the kernel's account, in microseconds, independent of /proc.
std::chrono::nanoseconds reaped_children_cpu() {
  rusage ru{};
  BOOST_REQUIRE(::getrusage(RUSAGE_CHILDREN, &ru) == 0);
  return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

std::chrono::nanoseconds cpu_between(const usage_reading& a, const usage_reading& b) {
  return std::chrono::nanoseconds((b.user_ns + b.system_ns) - (a.user_ns + a.system_ns));
}

double ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

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

// Without a cgroup a task's CPU comes from its processes in /proc, and must
// count those that have ended: a shell looping over /bin/true burns about a
// core, nearly all of it in children that live a millisecond each (issue 17,
// item 14: a sum over the live processes showed 0 to 6 %). The truth it is
// held to is the kernel's account of the whole tree once reaped: our
// RUSAGE_CHILDREN grows by the shell's wait4 rusage (itself and every
// /bin/true it waited for) and by what we reap of the rest. That covers the
// launch to the kill; the sample covers [a, b] inside it, so the tree's CPU
// in [a, b] lies between the total less a core's worth of the two edges and
// the total.
BOOST_AUTO_TEST_CASE(task_cpu_usage) {
  run([]() -> asio::awaitable<void> {
    const auto before = reaped_children_cpu();
    const auto launched_at = std::chrono::steady_clock::now();
    pipe_reader out;
    task_executor t(harness::get().reaper);
    co_await launch_ready(t, out, "echo ready; while :; do /bin/true; done");
    auto sampler = t.sampler();
    BOOST_REQUIRE(sampler);
    const auto a = sampler->read();
    // The measured interval (not a synchronisation): two readings ~2 s apart.
    asio::steady_timer window(co_await asio::this_coro::executor, 2s);
    co_await window.async_wait(asio::use_awaitable);
    const auto b = sampler->read();
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
    const auto ended_at = std::chrono::steady_clock::now();
    const auto real = reaped_children_cpu() - before;

    BOOST_TEST(!b.cgroup);  // /proc mode
    const auto wall = b.at - a.at;
    const auto edges = (a.at - launched_at) + (ended_at - b.at);
    const auto counted = cpu_between(a, b);
    const double percent = usage_between(&a, b).total.cpu.percent;
    BOOST_TEST_MESSAGE("task_cpu_usage: sample " << percent << " % (" << ms(counted) << " ms over "
                                                 << ms(wall) << " ms); the tree's real use "
                                                 << ms(real) << " ms from launch to kill ("
                                                 << ms(edges) << " ms of it outside the sample)");
    BOOST_TEST(ms(real) > ms(wall) / 4);  // the loop did run (a busy box still gives it this)
    BOOST_TEST(ms(counted) >= 0.9 * (ms(real) - 1.5 * ms(edges)));
    BOOST_TEST(ms(counted) <= 1.1 * ms(real));
  });
}

// An orphan of the task (its parent gone, in a session of its own) is
// sampled while it lives, and its CPU stays counted once we reap it: the
// total grows by what wait4 reported for it.
BOOST_AUTO_TEST_CASE(task_cpu_counts_an_orphan_alive_and_reaped) {
  run([]() -> asio::awaitable<void> {
    int go[2];
    BOOST_REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
    pipe_reader out;
    task_executor t(harness::get().reaper);
    // The orphan, in a session of its own, says so, then waits for a line on
    // fd 3 (a background job's stdin is /dev/null), burns CPU and exits. The
    // subshell that started it has exited (and so re-parented it to us) by
    // the time "ready" comes; the two lines come in either order.
    auto cmd =
        sh("exec 3<&0; (setsid sh -c 'echo orphan $$; exec >/dev/null; read x <&3; i=0; "
           "while [ $i -lt 300000 ]; do i=$((i+1)); done' &); echo ready; "
           "exec sleep 1000 <&- 3<&- >/dev/null");
    cmd.stdout_fd = out.write_fd();
    cmd.stdin_fd = go[0];
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, "launch: " << (st ? "" : st.error().message));
    out.close_write();
    ::close(go[0]);
    const std::string first = co_await out.line();
    const std::string second = co_await out.line();
    const std::string& orphan_line = first == "ready" ? second : first;
    BOOST_REQUIRE(first == "ready" || second == "ready");
    BOOST_REQUIRE(orphan_line.starts_with("orphan "));
    const int orphan = std::stoi(orphan_line.substr(7));
    auto orphan_stat = taskexec::detail::read_proc_stat(orphan);
    BOOST_REQUIRE(orphan_stat);
    BOOST_TEST(orphan_stat->ppid == ::getpid());
    BOOST_TEST(orphan_stat->session == orphan);

    auto sampler = t.sampler();
    BOOST_REQUIRE(sampler);
    const auto alive = sampler->sample();
    BOOST_TEST(alive.pids.contains(orphan));

    const auto a = sampler->read();
    const auto before = reaped_children_cpu();
    asio::steady_timer reaped(co_await asio::this_coro::executor, 60s);
    bool orphan_reaped = false;
    auto sub = harness::get().reaper.subscribe([&](int p, int, bool) {
      if (p == orphan) {
        orphan_reaped = true;
        reaped.cancel();
      }
    });
    BOOST_REQUIRE(::write(go[1], "go\n", 3) == 3);
    ::close(go[1]);
    if (!orphan_reaped)
      co_await reaped.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_REQUIRE(orphan_reaped);
    sub.reset();
    const auto real = reaped_children_cpu() - before;  // the orphan's wait4 rusage
    const auto b = sampler->read();
    const auto counted = cpu_between(a, b);
    BOOST_TEST_MESSAGE("orphan: counted " << ms(counted) << " ms, wait4 " << ms(real) << " ms");
    BOOST_TEST(ms(real) > 20.0);
    BOOST_TEST(ms(counted) >= 0.9 * ms(real));
    BOOST_TEST(ms(counted) <= 1.1 * ms(real));
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
