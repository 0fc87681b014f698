// The completion-token API (async.hpp) with real processes: each token kind
// (a plain callback, deferred, use_awaitable, use_future from another
// thread, as_tuple, experimental::parallel_group, a timer that emits a
// cancellation signal as asio::cancel_after does) drives launch, wait,
// signal, shutdown and exec; each operation is cancelled with each type it
// honours (and a type it does not honour is ignored), and what is left
// behind is checked.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <atomic>
#include <future>
#include <thread>

#include "harness.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/isolation/host.hpp"
#include "taskexec/remote_executor.hpp"

using namespace test_support;
using namespace taskexec;
using boost::system::error_code;

namespace {

const error_code canceled = make_error_code(errc::operation_canceled);

/// Emits `type` on its signal once `after` has passed (cancel_after-style).
struct cancel_after {
  cancel_after(std::chrono::milliseconds after, asio::cancellation_type type)
      : timer(harness::get().io, after) {
    timer.async_wait([this, type](error_code ec) {
      if (!ec)
        signal.emit(type);
    });
  }
  asio::cancellation_slot slot() { return signal.slot(); }
  asio::cancellation_signal signal;
  asio::steady_timer timer;
};

/// Pump the harness io_context until `done()` (bounded).
template <class Pred>
void pump_until(Pred done, std::chrono::seconds bound = 60s) {
  auto& io = harness::get().io;
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "timed out");
    io.run_one_for(50ms);
  }
}

/// A pause on the io_context (not synchronisation: lets a command run on).
asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

/// Wait (bounded) until `path` holds a line, and return it as a pid.
asio::awaitable<int> pid_from_file(const std::string& path) {
  for (int i = 0; i < 3000; ++i) {
    auto text = read_file(path);
    if (!text.empty() && text.back() == '\n')
      co_return std::stoi(text);
    co_await pause(10ms);
  }
  BOOST_FAIL("no pid in " << path);
  co_return 0;
}

const std::array<asio::cancellation_type, 3> all_types = {asio::cancellation_type::terminal,
                                                          asio::cancellation_type::partial,
                                                          asio::cancellation_type::total};
const std::array<asio::cancellation_type, 2> partial_types = {asio::cancellation_type::terminal,
                                                              asio::cancellation_type::partial};

// The host strategy, with the launch's report pipe passed to the task at fd
// 3 while `hold_report` is set: the task holds it as taskexec-init would,
// so the launch suspends awaiting its report (as a container's does).
class report_strategy final : public isolation_strategy {
 public:
  explicit report_strategy(bool hold) : hold_(hold) {}
  std::string_view name() const noexcept override { return "report"; }
  isolation_features features() const noexcept override { return host_.features(); }
  result<void> validate(const exec_command& cmd) const override { return host_.validate(cmd); }
  result<void> before_fork(const exec_command& cmd, launch_plan& plan) override {
    auto r = host_.before_fork(cmd, plan);
    if (r && hold_)
      plan.report_fd = 3;
    return r;
  }
  bool in_child(const launch_plan& plan, child_failure& f) const noexcept override {
    return host_.in_child(plan, f);
  }
  void after_start(const launch_plan& plan, int pid) override { host_.after_start(plan, pid); }
  void launch_failed(const launch_plan& plan) noexcept override { host_.launch_failed(plan); }
  result<void> teardown() override { return host_.teardown(); }

 private:
  bool hold_;
  host_strategy host_;
};

// The common sequence, through a token that throws on errors (deferred,
// use_awaitable): launch, exec, signal, wait, shutdown.
template <class Token>
asio::awaitable<void> drive_throwing(Token tok) {
  task_executor t(harness::get().reaper);
  auto cmd = sh("exec sleep 30");
  auto st = co_await t.async_launch(cmd, tok);
  BOOST_TEST(st.pid > 0);
  BOOST_TEST(alive(st.pid));
  auto args = argv_of("-c", "echo hi; exit 5");
  auto ex = co_await t.async_exec("/bin/sh", args, 10s, tok);
  BOOST_TEST(ex.output == "hi\n");
  BOOST_TEST(ex.exit_code == 5);
  co_await t.async_signal(SIGKILL, tok);
  auto done = co_await t.async_wait(tok);
  BOOST_TEST(done.signal == SIGKILL);
  BOOST_TEST(done.pid == st.pid);
  co_await t.async_shutdown("SIGTERM", 1s, tok);  // after the exit it still sweeps
  // An error is a system_error with the code; diagnostics have the message.
  error_code got;
  try {
    co_await t.async_signal(SIGTERM, tok);
  } catch (const boost::system::system_error& e) {
    got = e.code();
  }
  BOOST_TEST(got == make_error_code(errc::task_exited));
}

// The same through as_tuple(inner): nothing throws.
template <class Token>
asio::awaitable<void> drive_tuple(Token tok) {
  task_executor t(harness::get().reaper);
  auto cmd = sh("exec sleep 30");
  auto launched = co_await t.async_launch(cmd, tok);
  BOOST_REQUIRE(!std::get<0>(launched));
  const int pid = std::get<1>(launched).pid;
  BOOST_TEST(alive(pid));
  auto args = argv_of("-c", "echo hi; exit 5");
  auto ex = co_await t.async_exec("/bin/sh", args, 10s, tok);
  BOOST_TEST(!std::get<0>(ex));
  BOOST_TEST(std::get<1>(ex).output == "hi\n");
  BOOST_TEST(std::get<1>(ex).exit_code == 5);
  auto sig = co_await t.async_signal(SIGKILL, tok);
  BOOST_TEST(!std::get<0>(sig));
  auto done = co_await t.async_wait(tok);
  BOOST_TEST(!std::get<0>(done));
  BOOST_TEST(std::get<1>(done).signal == SIGKILL);
  auto down = co_await t.async_shutdown("SIGTERM", 1s, tok);
  BOOST_TEST(!std::get<0>(down));
  auto late = co_await t.async_signal(SIGTERM, tok);
  BOOST_TEST(std::get<0>(late) == make_error_code(errc::task_exited));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tokens)

BOOST_AUTO_TEST_CASE(deferred_drives_every_operation) {
  run([]() -> asio::awaitable<void> { co_await drive_throwing(asio::deferred); });
}

BOOST_AUTO_TEST_CASE(use_awaitable_drives_every_operation) {
  run([]() -> asio::awaitable<void> { co_await drive_throwing(asio::use_awaitable); });
}

BOOST_AUTO_TEST_CASE(as_tuple_drives_every_operation) {
  run([]() -> asio::awaitable<void> {
    co_await drive_tuple(asio::as_tuple(asio::use_awaitable));
    co_await drive_tuple(asio::as_tuple(asio::deferred));
  });
}

BOOST_AUTO_TEST_CASE(callbacks_drive_every_operation) {
  task_executor t(harness::get().reaper);
  std::vector<std::string> steps;
  process_state launched, done;
  exec_result ex;
  bool finished = false;
  diagnostics diag;
  auto fail = [&](const char* what, error_code ec) {
    steps.push_back(std::string(what) + " failed: " + ec.message() + ": " + diag.message());
    finished = true;
  };
  auto cmd = sh("exec sleep 30");
  t.async_launch(cmd, diag, [&](error_code ec, process_state st) {
    if (ec)
      return fail("launch", ec);
    launched = st;
    steps.push_back("launch");
    t.async_exec("/bin/sh", argv_of("-c", "echo hi; exit 5"), 10s, diag,
                 [&](error_code ec2, exec_result r) {
                   if (ec2)
                     return fail("exec", ec2);
                   ex = std::move(r);
                   steps.push_back("exec");
                   t.async_signal(SIGKILL, diag, [&](error_code ec3) {
                     if (ec3)
                       return fail("signal", ec3);
                     steps.push_back("signal");
                     t.async_wait(diag, [&](error_code ec4, process_state st4) {
                       if (ec4)
                         return fail("wait", ec4);
                       done = st4;
                       steps.push_back("wait");
                       t.async_shutdown("SIGTERM", 1s, diag, [&](error_code ec5) {
                         if (ec5)
                           return fail("shutdown", ec5);
                         steps.push_back("shutdown");
                         finished = true;
                       });
                     });
                   });
                 });
  });
  BOOST_TEST(steps.empty());  // nothing completes inside the initiation
  pump_until([&] { return finished; });
  const std::vector<std::string> want = {"launch", "exec", "signal", "wait", "shutdown"};
  BOOST_TEST(steps == want, boost::test_tools::per_element());
  BOOST_TEST(ex.output == "hi\n");
  BOOST_TEST(ex.exit_code == 5);
  BOOST_TEST(done.signal == SIGKILL);
  BOOST_TEST(done.pid == launched.pid);
  BOOST_TEST(diag.message().empty());
}

// Operations initiated from a thread that does not run the io_context:
// the work runs on the io thread; the futures become ready.
BOOST_AUTO_TEST_CASE(use_future_from_another_thread_drives_every_operation) {
  auto& io = harness::get().io;
  task_executor t(harness::get().reaper);
  io.restart();
  std::atomic<bool> stop{false};
  std::thread runner([&] {
    while (!stop)
      io.run_one_for(20ms);
  });
  struct joiner {
    std::atomic<bool>& stop;
    std::thread& th;
    void now() {
      stop = true;
      if (th.joinable())
        th.join();
    }
    ~joiner() { now(); }
  } join{stop, runner};
  auto ready = [](auto& f) { return f.wait_for(60s) == std::future_status::ready; };

  auto launched = t.async_launch(sh("exec sleep 30"), asio::use_future);
  BOOST_REQUIRE(ready(launched));
  const auto st = launched.get();
  BOOST_TEST(st.pid > 0);
  auto ex = t.async_exec("/bin/sh", argv_of("-c", "echo hi; exit 5"), 10s, asio::use_future);
  BOOST_REQUIRE(ready(ex));
  const auto r = ex.get();
  BOOST_TEST(r.output == "hi\n");
  BOOST_TEST(r.exit_code == 5);
  auto waited = t.async_wait(asio::use_future);  // pending while we signal
  auto sig = t.async_signal(SIGKILL, asio::use_future);
  BOOST_REQUIRE(ready(sig));
  sig.get();
  BOOST_REQUIRE(ready(waited));
  BOOST_TEST(waited.get().signal == SIGKILL);
  auto down = t.async_shutdown("SIGTERM", 1s, asio::use_future);
  BOOST_REQUIRE(ready(down));
  down.get();
  auto late = t.async_signal(SIGTERM, asio::use_future);
  BOOST_REQUIRE(ready(late));
  // The io thread is done with the operation (its promise released) before
  // this thread takes the exception: the exception object's reference
  // count lives in libstdc++, which ThreadSanitizer does not see, so a free
  // of it there after our read here was reported as a race.
  join.now();
  BOOST_CHECK_EXCEPTION(late.get(), boost::system::system_error, [](const auto& e) {
    return e.code() == make_error_code(errc::task_exited);
  });
}

BOOST_AUTO_TEST_CASE(parallel_group_drives_every_operation) {
  run([]() -> asio::awaitable<void> {
    namespace x = asio::experimental;
    auto& reaper = harness::get().reaper;
    task_executor a(reaper), b(reaper);
    auto cmd = sh("exec sleep 30");
    auto launched = co_await x::make_parallel_group(a.async_launch(cmd, asio::deferred),
                                                    b.async_launch(cmd, asio::deferred))
                        .async_wait(x::wait_for_all(), asio::use_awaitable);
    BOOST_REQUIRE(!std::get<1>(launched));
    BOOST_REQUIRE(!std::get<3>(launched));
    BOOST_TEST(alive(a.pid()));
    BOOST_TEST(alive(b.pid()));

    // The signal beside the Execs is one the task survives (SIGCONT): an
    // Exec ends with its task, so a SIGKILL here would race the Exec of `a`.
    auto args2 = argv_of("-c", "exit 2");
    auto args3 = argv_of("-c", "exit 3");
    auto execs =
        co_await x::make_parallel_group(a.async_exec("/bin/sh", args2, 10s, asio::deferred),
                                        b.async_exec("/bin/sh", args3, 10s, asio::deferred),
                                        a.async_signal(SIGCONT, asio::deferred))
            .async_wait(x::wait_for_all(), asio::use_awaitable);
    BOOST_TEST(!std::get<1>(execs));
    BOOST_TEST(std::get<2>(execs).exit_code == 2);
    BOOST_TEST(!std::get<3>(execs));
    BOOST_TEST(std::get<4>(execs).exit_code == 3);
    BOOST_TEST(!std::get<5>(execs));
    BOOST_TEST(alive(a.pid()));

    auto ends = co_await x::make_parallel_group(
                    a.async_wait(asio::deferred), a.async_signal(SIGKILL, asio::deferred),
                    b.async_shutdown("SIGTERM", 5s, asio::deferred), b.async_wait(asio::deferred))
                    .async_wait(x::wait_for_all(), asio::use_awaitable);
    BOOST_TEST(!std::get<1>(ends));
    BOOST_TEST(std::get<2>(ends).signal == SIGKILL);
    BOOST_TEST(!std::get<3>(ends));
    BOOST_TEST(!std::get<4>(ends));
    BOOST_TEST(!std::get<5>(ends));
    BOOST_TEST(std::get<6>(ends).signal == SIGTERM);

    // wait_for_one: the timer wins, the wait is cancelled (all types), the
    // task runs on.
    task_executor c(reaper);
    auto c_started = co_await c.async_launch(cmd);
    asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
    auto raced = co_await x::make_parallel_group(c.async_wait(asio::deferred),
                                                 timer.async_wait(asio::deferred))
                     .async_wait(x::wait_for_one(), asio::use_awaitable);
    BOOST_TEST(std::get<0>(raced)[0] == 1u);
    BOOST_TEST(std::get<1>(raced) == canceled);
    BOOST_TEST(alive(c_started.pid));
    BOOST_TEST((c.state() == task_state::running));
    co_await c.async_shutdown("SIGKILL", 0ms);
  });
}

// ---- cancellation, per operation and type ---------------------------

BOOST_AUTO_TEST_CASE(a_cancelled_wait_changes_nothing) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto cmd = sh("exec sleep 30");
    auto st = co_await t.async_launch(cmd);
    for (auto type : all_types) {
      cancel_after c(30ms, type);
      auto r = co_await t.async_wait(
          asio::bind_cancellation_slot(c.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_TEST(std::get<0>(r) == canceled, "type " << static_cast<int>(type));
      BOOST_TEST((t.state() == task_state::running));
      BOOST_TEST(alive(st.pid));
    }
    co_await t.async_signal(SIGKILL);
    auto done = co_await t.async_wait();
    BOOST_TEST(done.signal == SIGKILL);
  });
}

// terminal and partial: the caller stops waiting, the shutdown goes on
// (the task ignores SIGTERM and is SIGKILLed after the grace); total is
// not honoured: the shutdown completes.
BOOST_AUTO_TEST_CASE(a_cancelled_shutdown_goes_on) {
  run([]() -> asio::awaitable<void> {
    for (auto type : partial_types) {
      task_executor t(harness::get().reaper);
      pipe_reader out;
      auto cmd = sh("trap '' TERM; echo ready; exec sleep 30");
      cmd.stdout_fd = out.write_fd();
      auto st = co_await t.async_launch(cmd);
      out.close_write();
      BOOST_REQUIRE(co_await out.line() == "ready");
      cancel_after c(100ms, type);
      auto r = co_await t.async_shutdown(
          "SIGTERM", 1500ms,
          asio::bind_cancellation_slot(c.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_TEST(std::get<0>(r) == canceled);
      BOOST_TEST(alive(st.pid));  // in its grace
      auto done = co_await t.async_wait();
      BOOST_TEST(done.signal == SIGKILL);  // the shutdown went on
      auto again = co_await t.async_shutdown("SIGTERM", 1500ms, asio::as_tuple(asio::deferred));
      BOOST_TEST(!std::get<0>(again));
    }
    task_executor t(harness::get().reaper);
    pipe_reader out;
    auto cmd = sh("trap '' TERM; echo ready; exec sleep 30");
    cmd.stdout_fd = out.write_fd();
    co_await t.async_launch(cmd);
    out.close_write();
    BOOST_REQUIRE(co_await out.line() == "ready");
    cancel_after c(50ms, asio::cancellation_type::total);
    auto r = co_await t.async_shutdown(
        "SIGTERM", 300ms,
        asio::bind_cancellation_slot(c.slot(), asio::as_tuple(asio::use_awaitable)));
    BOOST_TEST(!std::get<0>(r));  // total is ignored: the shutdown completed
    BOOST_TEST((t.state() == task_state::exited));
    BOOST_TEST(t.exit_state()->signal == SIGKILL);
  });
}

// terminal and partial: nothing is destroyed; the SIGKILL goes on.
BOOST_AUTO_TEST_CASE(a_cancelled_destroy_destroys_nothing) {
  run([]() -> asio::awaitable<void> {
    for (auto type : partial_types) {
      task_executor t(harness::get().reaper);
      auto cmd = sh("exec sleep 30");
      auto st = co_await t.async_launch(cmd);
      asio::cancellation_signal sig;
      std::optional<error_code> got;
      // Initiated on the io thread, the operation has started (and is
      // waiting for the task's end) when the call returns.
      t.async_destroy(asio::bind_cancellation_slot(sig.slot(), [&](error_code ec) { got = ec; }));
      sig.emit(type);
      auto done = co_await t.async_wait();
      BOOST_REQUIRE(got.has_value());
      BOOST_TEST(*got == canceled);
      BOOST_TEST(done.signal == SIGKILL);
      BOOST_TEST(done.pid == st.pid);
      BOOST_TEST((t.state() == task_state::exited));  // not destroyed
      co_await t.async_destroy();
      BOOST_TEST((t.state() == task_state::destroyed));
    }
  });
}

// terminal and partial: the command (and what it started) is killed, the
// task runs on; total is ignored: the command runs to its end.
BOOST_AUTO_TEST_CASE(a_cancelled_exec_kills_the_command_only) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    task_executor t(harness::get().reaper);
    auto cmd = sh("exec sleep 30");
    auto st = co_await t.async_launch(cmd);
    for (auto type : partial_types) {
      const auto file = dir / ("pid" + std::to_string(static_cast<int>(type)));
      auto args = argv_of("-c", "sleep 30 & echo $! > " + file + "; wait");
      asio::cancellation_signal sig;
      std::optional<error_code> got;
      t.async_exec(
          "/bin/sh", args, 0ms,
          asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, exec_result) { got = ec; }));
      const int grandchild = co_await pid_from_file(file);
      BOOST_TEST(!got.has_value());
      sig.emit(type);
      BOOST_TEST(co_await wait_gone(grandchild));  // the command's descendants too
      for (int i = 0; i < 3000 && !got; ++i)
        co_await pause(10ms);
      BOOST_REQUIRE(got.has_value());
      BOOST_TEST(*got == canceled);
      BOOST_TEST(alive(st.pid));
      BOOST_TEST((t.state() == task_state::running));
    }
    cancel_after c(50ms, asio::cancellation_type::total);
    auto args = argv_of("-c", "sleep 0.3; exit 4");
    auto r = co_await t.async_exec(
        "/bin/sh", args, 0ms,
        asio::bind_cancellation_slot(c.slot(), asio::as_tuple(asio::use_awaitable)));
    BOOST_TEST(!std::get<0>(r));
    BOOST_TEST(std::get<1>(r).exit_code == 4);
    co_await t.async_shutdown("SIGKILL", 0ms);
  });
}

// Every type ends the sampling; the task runs on.
BOOST_AUTO_TEST_CASE(a_cancelled_stats_stops_sampling) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto cmd = sh("exec sleep 30");
    auto st = co_await t.async_launch(cmd);
    for (auto type : all_types) {
      asio::cancellation_signal sig;
      int samples = 0;
      bool emitted = false;
      auto& io = harness::get().io;
      auto r = co_await t.async_stats(
          20ms,
          [&](const task_resource_usage&) {
            if (++samples == 2 && !emitted) {
              emitted = true;
              asio::post(io, [&sig, type] { sig.emit(type); });
            }
          },
          asio::bind_cancellation_slot(sig.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_TEST(std::get<0>(r) == canceled);
      BOOST_TEST(samples >= 2);
      BOOST_TEST(alive(st.pid));
    }
    co_await t.async_shutdown("SIGKILL", 0ms);
  });
}

// A launch that suspends (awaiting its report): terminal and partial kill
// the child and leave the executor able to launch again; total is not
// honoured (the launch ends by its report timeout).
BOOST_AUTO_TEST_CASE(a_cancelled_launch_is_undone) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    auto hold = std::make_shared<bool>(true);
    task_executor_options o;
    o.task_id = "tokens-launch";
    o.launch_report_timeout = 500ms;
    o.isolation = [hold](const exec_command&, const isolation_context&) -> result<isolation_stack> {
      isolation_stack s;
      s.push_back(std::make_unique<report_strategy>(*hold));
      return s;
    };
    for (auto type : partial_types) {
      task_executor t(harness::get().reaper, o);
      const auto file = dir / ("launch" + std::to_string(static_cast<int>(type)));
      auto cmd = sh("echo $$ > " + file + "; exec sleep 30");
      asio::cancellation_signal sig;
      std::optional<error_code> got;
      diagnostics diag;
      t.async_launch(cmd, diag,
                     asio::bind_cancellation_slot(sig.slot(),
                                                  [&](error_code ec, process_state) { got = ec; }));
      const int child = co_await pid_from_file(file);
      BOOST_TEST(!got.has_value());  // awaiting its report
      sig.emit(type);
      for (int i = 0; i < 3000 && !got; ++i)
        co_await pause(10ms);
      BOOST_REQUIRE(got.has_value());
      BOOST_TEST(*got == canceled);
      BOOST_TEST(!diag.message().empty());
      BOOST_TEST(co_await wait_gone(child));
      BOOST_TEST((t.state() == task_state::not_launched));
      *hold = false;  // launches again, without holding the report
      auto again = sh("exit 6");
      auto st = co_await t.async_launch(again);
      BOOST_TEST(st.pid > 0);
      auto done = co_await t.async_wait();
      BOOST_TEST(done.exit_code == 6);
      *hold = true;
    }
    task_executor t(harness::get().reaper, o);
    cancel_after c(50ms, asio::cancellation_type::total);
    auto cmd = sh("exec sleep 30");
    diagnostics diag;
    auto r = co_await t.async_launch(
        cmd, diag, asio::bind_cancellation_slot(c.slot(), asio::as_tuple(asio::use_awaitable)));
    BOOST_TEST(std::get<0>(r) == make_error_code(errc::timed_out));
    BOOST_TEST(diag.message().find("no report within 500 ms") != std::string::npos, diag.message());
    BOOST_TEST((t.state() == task_state::not_launched));
  });
}

// signal and a launch that does not suspend complete as if not cancelled.
BOOST_AUTO_TEST_CASE(operations_that_do_not_suspend_ignore_cancellation) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    asio::cancellation_signal sig;
    std::optional<error_code> launched, signalled;
    t.async_launch(sh("exec sleep 30"),
                   asio::bind_cancellation_slot(
                       sig.slot(), [&](error_code ec, process_state) { launched = ec; }));
    sig.emit(asio::cancellation_type::terminal);
    co_await pause(1ms);
    BOOST_REQUIRE(launched.has_value());
    BOOST_TEST(!*launched);
    BOOST_TEST((t.state() == task_state::running));
    asio::cancellation_signal sig2;
    t.async_signal(
        SIGKILL, asio::bind_cancellation_slot(sig2.slot(), [&](error_code ec) { signalled = ec; }));
    sig2.emit(asio::cancellation_type::terminal);
    auto done = co_await t.async_wait();
    BOOST_REQUIRE(signalled.has_value());
    BOOST_TEST(!*signalled);
    BOOST_TEST(done.signal == SIGKILL);
  });
}

// exec_session: a cancelled read consumes nothing and the session goes on;
// exec_streaming and write through tokens.
BOOST_AUTO_TEST_CASE(exec_session_operations_and_a_cancelled_read) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto cmd = sh("exec sleep 30");
    co_await t.async_launch(cmd);
    exec_session_options so;
    so.cmd = "/bin/cat";
    auto s = co_await t.async_exec_streaming(so);
    BOOST_TEST(alive(s.pid()));
    for (auto type : all_types) {
      cancel_after c(30ms, type);
      auto r = co_await s.async_read(
          asio::bind_cancellation_slot(c.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_TEST(std::get<0>(r) == canceled);
      BOOST_TEST(alive(s.pid()));
    }
    co_await s.async_write("ping\n");
    auto ev = co_await s.async_read();
    BOOST_TEST((ev.kind == exec_event::type::output));
    BOOST_TEST(ev.data == "ping\n");
    BOOST_TEST(s.close_stdin().has_value());
    std::string rest;
    for (int i = 0; i < 10; ++i) {
      auto e = co_await s.async_read();
      if (e.kind == exec_event::type::exited) {
        BOOST_TEST(e.exit_code == 0);
        break;
      }
    }
    co_await t.async_shutdown("SIGKILL", 0ms);
  });
}

// exec_script: a cancelled script is killed; the diagnostics of a failed one.
BOOST_AUTO_TEST_CASE(exec_script_through_tokens) {
  run([]() -> asio::awaitable<void> {
    auto& reaper = harness::get().reaper;
    script_options o;
    o.name = "/bin/sh";
    o.args = argv_of("-c", "echo out; exit 3");
    auto r = co_await async_exec_script(reaper, o);
    BOOST_TEST(r.output == "out\n");
    BOOST_TEST(r.exit_code == 3);
    temp_dir dir;
    const auto file = dir / "script";
    o.args = argv_of("-c", "echo $$ > " + file + "; exec sleep 30");
    for (auto type : partial_types) {
      ::unlink(file.c_str());
      asio::cancellation_signal sig;
      std::optional<error_code> got;
      async_exec_script(
          reaper, o,
          asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, exec_result) { got = ec; }));
      const int pid = co_await pid_from_file(file);
      sig.emit(type);
      BOOST_TEST(co_await wait_gone(pid));
      for (int i = 0; i < 3000 && !got; ++i)
        co_await pause(10ms);
      BOOST_REQUIRE(got.has_value());
      BOOST_TEST(*got == canceled);
    }
    script_options missing;
    missing.name = "no-such-binary-anywhere";
    diagnostics diag;
    auto m = co_await async_exec_script(reaper, missing, diag, asio::as_tuple(asio::deferred));
    BOOST_TEST(std::get<0>(m) == make_error_code(errc::binary_not_found));
    BOOST_TEST(diag.message().find("no-such-binary-anywhere") != std::string::npos, diag.message());
  });
}

// Error details travel beside the code: the child step and errno, the binary.
BOOST_AUTO_TEST_CASE(diagnostics_name_the_child_step_and_the_binary) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto cmd = sh("true");
    cmd.work_dir = "/nonexistent-dir-for-tokens";
    diagnostics diag;
    auto r = co_await t.async_launch(cmd, diag, asio::as_tuple(asio::deferred));
    BOOST_TEST(std::get<0>(r) == error_code(ENOENT, boost::system::system_category()));
    BOOST_TEST(diag.message().find("/nonexistent-dir-for-tokens") != std::string::npos,
               diag.message());
    BOOST_TEST(diag.message().find("No such file or directory") != std::string::npos,
               diag.message());
    // A step in the child: exec itself fails.
    temp_dir dir;
    const auto bogus = dir / "bogus";
    write_file(bogus, "not an executable\n", 0755);
    task_executor v(harness::get().reaper);
    exec_command bad;
    bad.cmd = bogus;
    auto e = co_await v.async_launch(bad, diag, asio::as_tuple(asio::deferred));
    BOOST_TEST(std::get<0>(e) == make_error_code(errc::launch_failed));
    BOOST_TEST(diag.message().find("Exec format error") != std::string::npos, diag.message());
    BOOST_TEST(diag.message().find(bogus) != std::string::npos, diag.message());
    task_executor u(harness::get().reaper);
    exec_command missing;
    missing.cmd = "no-such-binary-for-tokens";
    auto m = co_await u.async_launch(missing, diag, asio::as_tuple(asio::deferred));
    BOOST_TEST(std::get<0>(m) == make_error_code(errc::binary_not_found));
    BOOST_TEST(diag.message() == "binary \"no-such-binary-for-tokens\" could not be found");
  });
}

/// A daemon of our own, its socket in `dir`.
create_options daemon_options(const temp_dir& dir) {
  create_options co;
  co.daemon_path = TASKEXECD;
  co.socket_path = dir / "run/d.sock";
  co.kill_grace = 2000ms;
  return co;
}

// remote_executor through tokens against a real daemon.
BOOST_AUTO_TEST_CASE(remote_executor_through_tokens) {
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    auto co = daemon_options(dir);
    auto created = co_await async_create_executor(io.get_executor(), co);
    auto& c = created.client;
    BOOST_TEST(co_await c.async_version() == "2.0.0");
    auto cmd = sh("exec sleep 30");
    auto st = co_await c.async_launch(cmd);
    BOOST_TEST(alive(st.pid));
    auto args = argv_of("-c", "echo hi; exit 5");
    auto ex = co_await c.async_exec("/bin/sh", args, 10000ms);
    BOOST_TEST(ex.output == "hi\n");
    BOOST_TEST(ex.exit_code == 5);
    for (auto type : all_types) {
      cancel_after cw(30ms, type);
      auto w = co_await c.async_wait(
          asio::bind_cancellation_slot(cw.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_TEST(std::get<0>(w) == canceled);
      BOOST_TEST(c.connected());
    }
    diagnostics diag;
    auto bad = co_await c.async_signal("SIGNOPE", diag, asio::as_tuple(asio::deferred));
    BOOST_TEST(std::get<0>(bad) == make_error_code(errc::invalid_argument));
    BOOST_TEST(!diag.message().empty());
    co_await c.async_signal(SIGKILL);
    auto done = co_await c.async_wait();
    BOOST_TEST(done.signal == SIGKILL);
    co_await c.async_shutdown("SIGTERM", 1000ms);
    co_await c.async_destroy();
    BOOST_TEST(co_await wait_gone(created.config.pid));
    // A second connect to the gone daemon fails with its code.
    auto again = co_await remote_executor::async_connect(io.get_executor(), co.socket_path, {},
                                                         diag, asio::as_tuple(asio::deferred));
    BOOST_TEST(std::get<0>(again) == make_error_code(errc::connection_failed));
  });
}

// Events follow through tokens: async_follow_events, async_next (a cancelled
// one consumes nothing), async_cancel.
BOOST_AUTO_TEST_CASE(remote_events_follow_through_tokens) {
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    auto co = daemon_options(dir);
    auto created = co_await async_create_executor(io.get_executor(), co);
    auto& c = created.client;
    diagnostics diag;
    auto stream = co_await c.async_follow_events(0, diag, asio::use_awaitable);
    BOOST_TEST(stream.subscription() == "events-1");
    BOOST_TEST((stream.get_executor() == c.get_executor()));
    // Nothing happened yet: a next() waits, and each type of cancellation
    // ends the wait without consuming anything.
    for (auto type : all_types) {
      cancel_after cn(30ms, type);
      auto none = co_await stream.async_next(
          asio::bind_cancellation_slot(cn.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_TEST(std::get<0>(none) == canceled);
    }
    auto cmd = sh("exec sleep 30");
    co_await c.async_launch(cmd);
    co_await c.async_signal(SIGKILL);
    const std::vector<std::string> expected{"launched", "signalled", "exited"};
    for (std::size_t i = 0; i < expected.size(); ++i) {
      // A plain callback for the first, deferred for the others.
      boost::json::object e;
      if (i == 0) {
        bool done = false;
        error_code got;
        asio::steady_timer called(io, 20s);
        stream.async_next([&](error_code ec, boost::json::object ev) {
          got = ec;
          e = std::move(ev);
          done = true;
          called.cancel();
        });
        co_await called.async_wait(asio::as_tuple(asio::use_awaitable));
        BOOST_REQUIRE(done);
        BOOST_TEST(!got);
      } else {
        e = co_await stream.async_next();
      }
      BOOST_TEST(e.at("type").as_string() == expected[i]);
      BOOST_TEST(e.at("seq").to_number<std::uint64_t>() == i + 1);
    }
    co_await stream.async_cancel();
    auto after = co_await stream.async_next(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(std::get<0>(after) == canceled);
    co_await c.async_destroy();
  });
}

// A count in the daemon's Metrics (`section`.`member`), asked until it is
// `want` or 20 s have passed.
asio::awaitable<std::int64_t> metric_until(remote_executor& c, const char* section,
                                           const char* member, std::int64_t want) {
  std::int64_t n = -1;
  for (int i = 0; i < 400 && n != want; ++i) {
    if (i)
      co_await pause(50ms);
    auto m = co_await c.async_metrics();
    n = m.at(section).at(member).as_int64();
  }
  co_return n;
}

// The processes whose parent is `pid`, counted until there are `want` or 20 s.
asio::awaitable<std::size_t> children_until(int pid, std::size_t want) {
  std::size_t n = 0;
  for (int i = 0; i < 400; ++i) {
    if (i)
      co_await pause(50ms);
    n = 0;
    for (const auto& p : taskexec::detail::scan_processes())
      n += p.ppid == pid ? 1 : 0;
    if (n == want)
      break;
  }
  co_return n;
}

// A remote call that opens something on the daemon (a follower, a Stats
// subscription, an exec session), cancelled while its answer is due (the
// daemon is stopped with SIGSTOP, so the answer cannot come first): what
// the late answer names is ended on the daemon at once, not left to the
// connection's end.
BOOST_AUTO_TEST_CASE(a_cancelled_remote_open_leaves_nothing_open) {
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    auto co = daemon_options(dir);
    auto created = co_await async_create_executor(io.get_executor(), co);
    auto& c = created.client;
    const int daemon = created.config.pid;
    auto cmd = sh("exec sleep 30");
    co_await c.async_launch(cmd);
    for (auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial}) {
      BOOST_REQUIRE(::kill(daemon, SIGSTOP) == 0);
      cancel_after cf(50ms, type);
      auto f = co_await c.async_follow_events(
          0, asio::bind_cancellation_slot(cf.slot(), asio::as_tuple(asio::use_awaitable)));
      cancel_after cs(50ms, type);
      auto s = co_await c.async_stats(
          1000ms, asio::bind_cancellation_slot(cs.slot(), asio::as_tuple(asio::use_awaitable)));
      exec_session_options eo;
      eo.cmd = "/bin/sleep";
      eo.args = argv_of("300");
      cancel_after ce(50ms, type);
      auto e = co_await c.async_exec_streaming(
          eo, asio::bind_cancellation_slot(ce.slot(), asio::as_tuple(asio::use_awaitable)));
      BOOST_REQUIRE(::kill(daemon, SIGCONT) == 0);
      BOOST_TEST(std::get<0>(f) == canceled);
      BOOST_TEST(std::get<0>(s) == canceled);
      BOOST_TEST(std::get<0>(e) == canceled);
      BOOST_TEST(c.connected());
      // The daemon answered all three after all; each is ended.
      const auto followers = co_await metric_until(c, "journal", "followers", 0);
      BOOST_TEST(followers == 0);
      const auto subscriptions = co_await metric_until(c, "stats", "subscriptions", 0);
      BOOST_TEST(subscriptions == 0);
      // The session's command, if it got to run, is gone: the daemon's
      // children are the task and its watchdog again.
      BOOST_TEST(co_await children_until(daemon, 2) == 2u);
    }
    co_await c.async_destroy();
  });
}

BOOST_AUTO_TEST_SUITE_END()
