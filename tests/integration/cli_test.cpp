// The taskexec CLI end to end: every command against a real daemon, human
// and --json output, exit codes, usage errors.
#include <signal.h>

#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <regex>

#include "harness.hpp"
#include "prog_run.hpp"
#include "taskexec/remote_executor.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

using cli_result = prog_result;

// The CLI run as a task.
struct cli_run : prog_run {
  asio::awaitable<void> start(std::vector<std::string> args) {
    co_await prog_run::start(TASKEXEC_CLI, std::move(args));
  }
};

asio::awaitable<cli_result> cli(std::vector<std::string> args) {
  cli_run c;
  co_await c.start(std::move(args));
  auto r = co_await c.finish();
  BOOST_TEST(std::filesystem::is_empty(c.runtime.path));  // `run` cleaned up
  co_return r;
}

// "launched pid 123" -> 123
int pid_in(const std::string& text) {
  std::smatch m;
  BOOST_REQUIRE_MESSAGE(std::regex_search(text, m, std::regex("pid ([0-9]+)")), text);
  return std::stoi(m[1]);
}

struct expect {
  std::vector<std::string> args;
  std::string first_line;
};

// Built outside coroutines: GCC 12 rejects brace-initialised string lists in
// them ("array used as initializer").
std::vector<expect> usage_cases() {
  return std::vector<expect>{
      {{}, "taskexec: no command given"},
      {{"bogus"}, "taskexec: unknown command \"bogus\""},
      {{"wait"}, "taskexec: wait needs --socket PATH, $TASKEXEC_SOCKET or --reattach CONFIG"},
      {{"launch", "--socket", "s"},
       "taskexec: launch needs a command: taskexec launch [OPTIONS] [--] CMD [ARG...]"},
      {{"version", "--socket", "s", "--", "x"}, "taskexec: unexpected argument \"x\" for version"},
      {{"signal", "--socket", "s"}, "taskexec: signal needs a SIGNAL"},
      {{"wait", "--socket", "s", "--timeout-ms", "soon"},
       "taskexec: --timeout-ms needs a duration (500ms, 5s, 2m; a bare number is milliseconds) "
       "from 0ms to 1000000000s, not \"soon\""},
      {{"start"}, "taskexec: start needs --socket PATH"},
      {{"version", "--colour"}, "taskexec: unknown option \"--colour\""},
      {{"run", "--env", "novalue", "--", "x"}, "taskexec: --env needs K=V, not \"novalue\""},
  };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(taskexec_cli)

BOOST_AUTO_TEST_CASE(run_gives_the_tasks_output_and_exit_code) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await cli(argv_of("run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"));
    BOOST_TEST(r.code == 7);
    BOOST_TEST(r.out == "out\n");
    BOOST_TEST(r.err == "err\n");

    auto j = co_await cli(
        argv_of("--json", "run", "--env", "X=42", "--", "/bin/sh", "-c", "echo $X; kill -USR1 $$"));
    BOOST_TEST(j.code == 128 + SIGUSR1);
    auto nl = j.out.find('\n');
    BOOST_TEST(j.out.substr(0, nl) == "42");
    auto st = json::parse(j.out.substr(nl + 1)).as_object();
    BOOST_TEST(st.at("signal").as_int64() == SIGUSR1);
    BOOST_TEST(st.at("exit_code").as_int64() == 138);

    auto missing = co_await cli(argv_of("run", "--", "no-such-binary-xyz"));
    BOOST_TEST(missing.code == 127);
    BOOST_TEST(missing.err == "taskexec: binary \"no-such-binary-xyz\" could not be found\n");
    BOOST_TEST(missing.out.empty());
  });
}

// Ctrl-C is passed on to the task as SIGINT, as docker does (before issue
// 19 it was a SIGTERM shutdown); cli_conventions_test has the escalation.
BOOST_AUTO_TEST_CASE(ctrl_c_on_run_shuts_the_task_down) {
  run([]() -> asio::awaitable<void> {
    cli_run c;
    co_await c.start(
        argv_of("run", "--", "/bin/sh", "-c",
                "trap 'kill $!; echo stopping; exit 42' INT; sleep 1000 & echo ready; wait"));
    BOOST_REQUIRE_EQUAL(co_await c.out.line(), "ready");
    BOOST_TEST((co_await c.t.signal(SIGINT)).has_value());
    auto r = co_await c.finish();
    BOOST_TEST(r.code == 42);  // SIGINT reached the task, which exited its own way
    BOOST_TEST(r.out == "stopping\n");
    BOOST_TEST(r.err.empty());
  });
}

BOOST_AUTO_TEST_CASE(every_command_against_a_started_daemon) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    const std::string sock = dir / "d.sock";
    auto started = co_await cli(argv_of("start", "--socket", sock));
    BOOST_REQUIRE_MESSAGE(started.code == 0, started.err);
    auto cfg = parse_reattach_config(started.out);
    BOOST_REQUIRE_MESSAGE(cfg, started.out);
    BOOST_TEST(cfg->socket == sock);
    BOOST_TEST(alive(cfg->pid));  // the daemon outlives the CLI
    write_file(dir / "cfg.json", started.out);

    auto v = co_await cli(argv_of("version", "--socket", sock));
    BOOST_TEST(v.out == "2.0.0\n");
    BOOST_TEST((co_await cli(argv_of("--json", "version", "--reattach", dir / "cfg.json"))).out ==
               "{\"version\":\"2.0.0\"}\n");

    auto l = co_await cli(argv_of("launch", "--socket", sock, "--", "/bin/sleep", "1000"));
    BOOST_TEST(l.code == 0);
    const int pid = pid_in(l.out);
    BOOST_TEST(l.out == "launched pid " + std::to_string(pid) + "\n");
    auto live = co_await cli(
        argv_of("--json", "stats", "--socket", sock, "--count", "2", "--interval-ms", "50"));
    BOOST_TEST(live.code == 0, live.err);
    auto first_nl = live.out.find('\n');
    BOOST_REQUIRE(first_nl != std::string::npos);
    std::vector<std::string> lines;
    lines.push_back(live.out.substr(0, first_nl));
    lines.push_back(live.out.substr(first_nl + 1));
    for (const auto& line : lines) {
      auto sample = json::parse(line).as_object();
      BOOST_TEST(sample.at("pids").as_object().contains(std::to_string(pid)));
    }
    auto table = co_await cli(argv_of("stats", "--socket", sock, "--count", "1"));
    BOOST_TEST(std::regex_search(table.out, std::regex("^PID +CPU % +USER % +SYS % +MEMORY +RSS")),
               table.out);
    BOOST_TEST(
        std::regex_search(table.out, std::regex("\ntask +0\\.00 +0\\.00 +0\\.00 +[0-9.]+ [KM]iB")),
        table.out);
    BOOST_TEST(std::regex_search(table.out, std::regex("\n" + std::to_string(pid) + " +0\\.00 ")),
               table.out);
    // exec: the command's output, its exit code; a timeout is a failure.
    auto ex = co_await cli(
        argv_of("exec", "--socket", sock, "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 6"));
    BOOST_TEST(ex.code == 6);
    BOOST_TEST(ex.out == "out\nerr\n");
    auto exj = co_await cli(argv_of("--json", "exec", "--socket", sock, "--", "/bin/true"));
    BOOST_TEST(exj.out == "{\"output\":\"\",\"output_base64\":\"\",\"exit_code\":0}\n");
    // The exact bytes on our stdout: not UTF-8, a NUL.
    auto raw = co_await cli(
        argv_of("exec", "--socket", sock, "--", "/bin/sh", "-c", "printf 'a\\377b\\000c\\n'"));
    BOOST_TEST(raw.code == 0);
    BOOST_TEST(raw.out == std::string("a\xff"
                                      "b\0c\n",
                                      6));
    auto slow = co_await cli(
        argv_of("exec", "--socket", sock, "--timeout-ms", "200", "--", "/bin/sleep", "1000"));
    BOOST_TEST(slow.code == 124);  // a timeout, as timeout(1)
    BOOST_TEST(slow.err == "taskexec: exec timed out after 200 ms\n");

    auto timed = co_await cli(argv_of("wait", "--socket", sock, "--timeout-ms", "10"));
    BOOST_TEST(timed.code == 124);
    BOOST_TEST(timed.err == "taskexec: the task did not exit within 10 ms\n");

    auto s = co_await cli(argv_of("signal", "--reattach", started.out, "SIGUSR2"));
    BOOST_TEST(s.code == 0);
    BOOST_TEST(s.out.empty());
    auto w = co_await cli(argv_of("wait", "--socket", sock));
    BOOST_TEST(w.out == "pid " + std::to_string(pid) + " was killed by SIGUSR2 (exit code 140)\n");
    auto wj = co_await cli(argv_of("wait", "--socket", sock, "--json"));
    BOOST_TEST(json::parse(wj.out).at("exit_code").as_int64() == 140);

    auto e = co_await cli(argv_of("events", "--socket", sock));
    BOOST_TEST(e.code == 0);
    BOOST_TEST(std::regex_search(e.out, std::regex("^SEQ +TIME +TYPE +DETAILS\n")), e.out);
    BOOST_TEST(std::regex_search(
                   e.out, std::regex("\n1 +[0-9:.]+ +launched +pid=" + std::to_string(pid) + "\n")),
               e.out);
    BOOST_TEST(std::regex_search(e.out, std::regex("\n2 +[0-9:.]+ +signalled +signal=12\n")),
               e.out);
    BOOST_TEST(std::regex_search(e.out, std::regex("\n3 +[0-9:.]+ +exited +pid [0-9]+ was killed "
                                                   "by SIGUSR2 \\(exit code 140\\)\n$")),
               e.out);
    auto ej = co_await cli(argv_of("--json", "events", "--since", "3", "--socket", sock));
    auto page = json::parse(ej.out).as_object();
    BOOST_TEST(page.at("events").as_array().size() == 1u);
    BOOST_TEST(page.at("next").as_int64() == 4);

    auto late = co_await cli(argv_of("signal", "--socket", sock, "15"));
    BOOST_TEST(late.code == 1);
    BOOST_TEST(late.err == "taskexec: task has exited\n");
    auto sd = co_await cli(
        argv_of("shutdown", "--socket", sock, "--signal", "SIGTERM", "--grace-ms", "100"));
    BOOST_TEST(sd.code == 0, sd.err);
    BOOST_TEST(sd.out == "task shut down\n");
    auto stats = co_await cli(argv_of("stats", "--socket", sock, "--count", "1"));
    BOOST_TEST(stats.code == 1);
    BOOST_TEST(stats.err == "taskexec: task has exited\n");

    auto d = co_await cli(argv_of("destroy", "--socket", sock));
    BOOST_TEST(d.out == "daemon destroyed\n");
    BOOST_TEST(co_await wait_gone(cfg->pid));
    auto gone = co_await cli(argv_of("version", "--reattach", dir / "cfg.json"));
    BOOST_TEST(gone.code == 3);  // the daemon cannot be reached
    BOOST_TEST(gone.err.find("taskexec: pid " + std::to_string(cfg->pid) + " is gone") == 0,
               gone.err);
  });
}

BOOST_AUTO_TEST_CASE(usage_errors_exit_2_with_a_reason) {
  run([]() -> asio::awaitable<void> {
    const auto cases = usage_cases();
    for (const auto& c : cases) {
      auto r = co_await cli(c.args);
      BOOST_TEST(r.code == 2);
      BOOST_TEST(r.err.substr(0, r.err.find('\n')) == c.first_line);
      BOOST_TEST(r.out.empty());
    }
    auto help = co_await cli(argv_of("--help"));
    BOOST_TEST(help.code == 0);
    BOOST_TEST(help.out.find("Usage: taskexec [OPTIONS] [SUBCOMMAND]") != std::string::npos);
    temp_dir dir;
    auto none = co_await cli(argv_of("version", "--socket", dir / "none.sock"));
    BOOST_TEST(none.code == 3);  // the daemon cannot be reached
    BOOST_TEST(none.err == "taskexec: cannot connect to taskexecd at " + (dir / "none.sock") +
                               ": No such file or directory\n");
  });
}

BOOST_AUTO_TEST_SUITE_END()
