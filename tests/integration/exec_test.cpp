// Exec: commands in a running task's context (host isolation here; the
// container and the task's user and cgroup are in the privileged tier).
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

using namespace test_support;
using namespace taskexec;
using namespace asio::experimental::awaitable_operators;

namespace {

asio::awaitable<exec_result> must_exec(task_executor& t, std::string cmd,
                                       std::vector<std::string> args,
                                       std::chrono::milliseconds timeout = 30s) {
  auto r = co_await t.exec(std::move(cmd), std::move(args), timeout);
  BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  co_return *r;
}

// Arguments built outside the coroutines (GCC 12 miscompiles braced lists
// of strings in a coroutine frame).
template <class... A>
std::vector<std::string> list(A... a) {
  return {std::string(a)...};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(exec_in_task)

BOOST_AUTO_TEST_CASE(output_exit_code_and_context) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    task_executor t(harness::get().reaper);
    pipe_reader out;
    auto cmd = sh("echo ready; exec sleep 1000");
    cmd.env.push_back("GREETING=from the task");
    cmd.task_dir = dir.str();
    cmd.stdout_fd = out.write_fd();
    BOOST_REQUIRE(co_await t.launch(cmd));
    out.close_write();
    BOOST_REQUIRE(co_await out.line() == "ready");

    auto ok = co_await must_exec(t, "/usr/bin/stat", list("/tmp"));
    BOOST_TEST(ok.exit_code == 0);
    BOOST_TEST(ok.output.size() > 100u);
    BOOST_TEST(!ok.timed_out);

    auto missing = co_await must_exec(t, "/usr/bin/stat", list("/no/such/file"));
    BOOST_TEST(missing.exit_code != 0);
    BOOST_TEST(missing.output ==
               "/usr/bin/stat: cannot statx '/no/such/file': No such file or directory\n");

    // The task's environment and working directory; stdout and stderr together.
    auto ctx = co_await must_exec(t, "/bin/sh",
                                  list("-c", "echo $GREETING; pwd; echo to-stderr >&2; exit 7"));
    BOOST_TEST(ctx.output == "from the task\n" + dir.str() + "\nto-stderr\n");
    BOOST_TEST(ctx.exit_code == 7);

    // A signal's death reads 128+N.
    auto killed = co_await must_exec(t, "/bin/sh", list("-c", "kill -TERM $$"));
    BOOST_TEST(killed.exit_code == 128 + SIGTERM);

    // Of 13893 bytes only the last 4096 are kept.
    auto big = co_await must_exec(t, "/usr/bin/seq", list("1", "3000"));
    std::string all;
    for (int i = 1; i <= 3000; ++i)
      all += std::to_string(i) + "\n";
    BOOST_REQUIRE(all.size() > 10000u);
    BOOST_TEST(big.output == all.substr(all.size() - 4096));

    auto nothing = co_await t.exec("/no/such/binary", list(), 30s);
    BOOST_REQUIRE(!nothing);
    BOOST_TEST((nothing.error().code == make_error_code(errc::binary_not_found)));
    auto empty = co_await t.exec("", list(), 30s);
    BOOST_REQUIRE(!empty);
    BOOST_TEST((empty.error().code == make_error_code(errc::invalid_argument)));

    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(a_timeout_kills_the_command_and_what_it_started) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    auto r = co_await must_exec(
        t, "/bin/sh",
        list("-c", "sleep 1000 & echo $!; setsid sleep 1000 & echo $!; exec sleep 1000"), 500ms);
    BOOST_TEST(r.timed_out);
    BOOST_TEST(r.exit_code == 128 + SIGKILL);
    std::stringstream ss(r.output);
    int background = 0, escaped = 0;
    ss >> background >> escaped;
    BOOST_REQUIRE(background > 0);
    BOOST_REQUIRE(escaped > 0);
    // Killed (a zombie until the reaper takes it, as our orphan).
    BOOST_TEST(co_await wait_gone(background));
    BOOST_TEST(co_await wait_gone(escaped));
    BOOST_TEST(alive(t.pid()));  // the task itself is untouched
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(a_writer_left_behind_does_not_hold_the_exec) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    // The command exits at once; `yes` keeps writing into its output.
    const std::string pidfile = dir / "yes.pid";
    auto r = co_await must_exec(t, "/bin/sh", list("-c", "yes & echo $! > " + pidfile));
    BOOST_TEST(r.exit_code == 0);
    BOOST_TEST(r.output.size() == exec_result::max_output);
    BOOST_TEST(r.output.find_first_not_of("y\n") == std::string::npos);
    // With the pipe's reader gone, the writer dies of SIGPIPE.
    const int yes = std::atoi(read_file(pidfile).c_str());
    BOOST_REQUIRE(yes > 0);
    BOOST_TEST(co_await wait_gone(yes));
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(many_at_once_and_only_while_running) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto early = co_await t.exec("/bin/true", list(), 30s);
    BOOST_REQUIRE(!early);
    BOOST_TEST((early.error().code == make_error_code(errc::not_launched)));

    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    // Ten at once, each sleeping a little so they overlap.
    std::vector<std::string> got(10);
    auto one = [&](int i) -> asio::awaitable<void> {
      auto r = co_await must_exec(t, "/bin/sh", list("-c", "sleep 0.2; echo " + std::to_string(i)));
      got[static_cast<std::size_t>(i)] = r.output;
    };
    co_await (one(0) && one(1) && one(2) && one(3) && one(4) && one(5) && one(6) && one(7) &&
              one(8) && one(9));
    for (int i = 0; i < 10; ++i)
      BOOST_TEST(got[static_cast<std::size_t>(i)] == std::to_string(i) + "\n");

    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
    auto late = co_await t.exec("/bin/true", list(), 30s);
    BOOST_REQUIRE(!late);
    BOOST_TEST((late.error().code == make_error_code(errc::task_exited)));
  });
}

BOOST_AUTO_TEST_CASE(exec_script_runs_a_check) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    write_file(dir / "check.sh", "#!/bin/sh\necho \"$STATUS in $(pwd) with $1\"\nexit 2\n", 0755);
    script_options o;
    o.name = "check.sh";  // found in dir
    o.args = list("arg1");
    o.dir = dir.str();
    o.env = list("STATUS=warning", "PATH=/usr/bin:/bin");
    o.timeout = 30s;
    auto r = co_await exec_script(harness::get().reaper, o);
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    BOOST_TEST(r->output == "warning in " + dir.str() + " with arg1\n");
    BOOST_TEST(r->exit_code == 2);
    BOOST_TEST(!r->timed_out);

    o.name = "/bin/sh";
    o.args = list("-c", "sleep 1000 & echo $!; exec sleep 1000");
    o.timeout = 300ms;
    auto slow = co_await exec_script(harness::get().reaper, o);
    BOOST_REQUIRE(slow);
    BOOST_TEST(slow->timed_out);
    BOOST_TEST(slow->exit_code == 128 + SIGKILL);
    const int background = std::atoi(slow->output.c_str());
    BOOST_REQUIRE(background > 0);
    BOOST_TEST(co_await wait_gone(background));  // killed with the script

    o.name = "no-such-check";
    auto missing = co_await exec_script(harness::get().reaper, o);
    BOOST_REQUIRE(!missing);
    BOOST_TEST((missing.error().code == make_error_code(errc::binary_not_found)));
    o.name = "/bin/true";
    o.env = list("NOEQUALS");
    auto bad = co_await exec_script(harness::get().reaper, o);
    BOOST_REQUIRE(!bad);
    BOOST_TEST((bad.error().code == make_error_code(errc::invalid_argument)));
  });
}

// A one-shot Exec (and a child of it that left its session) ends with the
// task: at a shutdown, at destroy, and when the task exits by itself. They
// once ran on after "task shut down" and "daemon destroyed".
namespace {
struct background_exec {
  bool done = false;
  result<exec_result> r;
};
void start_exec(task_executor& t, background_exec& b, std::vector<std::string> args) {
  asio::co_spawn(harness::get().io, t.exec("/bin/sh", std::move(args), 0ms),
                 [&b](std::exception_ptr e, result<exec_result> r) {
                   BOOST_REQUIRE(!e);
                   b.r = std::move(r);
                   b.done = true;
                 });
}
// The pids the Exec wrote (its own, then its escaped child's), once written.
asio::awaitable<std::pair<int, int>> exec_pids(const std::string& file) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int i = 0; i < 3000; ++i) {
    std::istringstream in(read_file(file));
    int self = 0, child = 0;
    if (in >> self >> child)
      co_return std::pair{self, child};
    timer.expires_after(10ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  BOOST_FAIL("the Exec did not write its pids to " << file);
  co_return std::pair{0, 0};
}
asio::awaitable<void> wait_done(background_exec& b) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int i = 0; i < 3000 && !b.done; ++i) {
    timer.expires_after(10ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

// One way of ending the task, with an Exec running that left a child in a
// session of its own. No structured bindings, contexts or temporaries around
// the co_awaits here: GCC 12 mishandles them in coroutine frames.
asio::awaitable<void> execs_end_with_the_task(const char* way) {
  const std::string how = way;
  temp_dir dir;
  const std::string pids = dir / "pids";
  const std::string stop = dir / "stop";
  task_executor t(harness::get().reaper);
  pipe_reader out;
  std::string script = "echo ready; exec sleep 1000";
  if (how == "exit")
    script = "echo ready; while [ ! -e " + stop + " ]; do sleep 0.02; done; exit 3";
  const std::string body = "setsid sleep 300 & echo $$ $! > " + pids + ".new; mv " + pids +
                           ".new " + pids + "; exec sleep 300";
  std::vector<std::string> args = list("-c", body);
  co_await launch_ready(t, out, script);
  background_exec b;
  start_exec(t, b, std::move(args));
  const std::pair<int, int> started = co_await exec_pids(pids);
  const int exec_pid = started.first;
  const int escaped = started.second;
  BOOST_REQUIRE(alive(exec_pid));
  BOOST_REQUIRE(alive(escaped));
  const std::string sigterm = "SIGTERM";
  if (how == "shutdown") {
    result<void> r = co_await t.shutdown(sigterm, 0ms);
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    // Nothing of the task is left once the shutdown says so.
    BOOST_TEST(!alive(exec_pid));
    BOOST_TEST(!alive(escaped));
  } else if (how == "destroy") {
    result<void> r = co_await t.destroy();
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
    BOOST_TEST(!alive(exec_pid));
  } else {
    write_file(stop, "\n", 0644);
    auto exited = co_await t.wait();
    BOOST_REQUIRE(exited.has_value());
    BOOST_TEST(exited->exit_code == 3);
  }
  const bool exec_gone = co_await wait_gone(exec_pid);
  BOOST_TEST(exec_gone);
  const bool escaped_gone = co_await wait_gone(escaped);
  BOOST_TEST(escaped_gone);
  co_await wait_done(b);
  BOOST_REQUIRE(b.done);
  BOOST_REQUIRE_MESSAGE(b.r, (b.r ? "" : b.r.error().message));
  BOOST_TEST(b.r->exit_code == 128 + SIGKILL);
  if (how == "exit") {
    result<void> r = co_await t.shutdown(sigterm, 0ms);
    BOOST_TEST(r.has_value());
  }
  BOOST_TEST(live_children().empty());
}
}  // namespace

BOOST_AUTO_TEST_CASE(execs_and_their_escaped_children_end_at_a_shutdown) {
  run([]() -> asio::awaitable<void> { co_await execs_end_with_the_task("shutdown"); });
}
BOOST_AUTO_TEST_CASE(execs_and_their_escaped_children_end_at_destroy) {
  run([]() -> asio::awaitable<void> { co_await execs_end_with_the_task("destroy"); });
}
BOOST_AUTO_TEST_CASE(execs_and_their_escaped_children_end_when_the_task_exits) {
  run([]() -> asio::awaitable<void> { co_await execs_end_with_the_task("exit"); });
}

BOOST_AUTO_TEST_SUITE_END()
