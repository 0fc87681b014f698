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

BOOST_AUTO_TEST_SUITE_END()
