// The command-line conventions of taskexec, taskexecd and taskexec-stress
// (issue 19, item 1; docs/client.md): per-command options and --help, errors
// naming an unknown or misplaced option (exit 2), docker's short flags,
// durations, run --timeout (124), signal -9/KILL, Ctrl-C forwarded to the
// task, --json errors, the exit-code classes, --version, the generated bash
// completion; and item 5's CLI: `metrics` and `stats --format openmetrics`
// against a live daemon.
#include <signal.h>

#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <regex>
#include <sstream>

#include "harness.hpp"
#include "prog_run.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/version.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

asio::awaitable<prog_result> run_prog(std::string program, std::vector<std::string> args) {
  prog_run p;
  co_await p.start(std::move(program), std::move(args));
  co_return co_await p.finish();
}

asio::awaitable<prog_result> cli(std::vector<std::string> args) {
  co_return co_await run_prog(TASKEXEC_CLI, std::move(args));
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

struct usage_case {
  std::vector<std::string> args;
  std::string first_line;
};

// Built outside coroutines (GCC 12 and braced string lists).
std::vector<usage_case> usage_cases() {
  return std::vector<usage_case>{
      // Accepted and ignored before: an option of another command.
      {{"wait", "--socket", "s", "--memory-mb", "5"},
       "taskexec: wait takes no option \"--memory-mb\" (run, launch and update do)"},
      {{"run", "--timeout-msx", "300", "--", "/bin/true"},
       "taskexec: unknown option \"--timeout-msx\""},
      {{"version", "--socket", "s", "--limits"},
       "taskexec: version takes no option \"--limits\" (run and launch do)"},
      // Misplaced: a command's option before the command's name.
      {{"--env", "A=B", "run", "--", "/bin/true"},
       "taskexec: \"--env\" is an option of run: put it after \"run\""},
      {{"--memory-mb", "5", "wait"},
       "taskexec: wait takes no option \"--memory-mb\" (run, launch and update do)"},
      {{"--memory-mb", "5"},
       "taskexec: \"--memory-mb\" is an option of run, launch and update: put it after the "
       "command's name"},
      {{"--daemon", "/x", "wait", "--socket", "s"},
       "taskexec: \"--daemon\" is an option of run and start, not of wait"},
      {{"run", "--env", "novalue", "--", "/bin/true"},
       "taskexec: --env needs K=V, not \"novalue\""},
      {{"run", "--timeout", "300", "--", "/bin/true"},
       "taskexec: --timeout needs a duration (500ms, 5s, 2m: the unit is needed) from 0ms to "
       "1000000000s, not \"300\""},
      {{"wait", "--socket", "s", "--timeout-ms", "soon"},
       "taskexec: --timeout-ms needs a duration (500ms, 5s, 2m; a bare number is milliseconds) "
       "from 0ms to 1000000000s, not \"soon\""},
      {{"wait", "--socket", "s", "--timeout", "5s", "--timeout-ms", "5"},
       "taskexec: --timeout-ms excludes --timeout"},
      {{"stats", "--socket", "s", "--format", "xml"},
       "taskexec: --format: xml not in {table,json,openmetrics}"},
      {{"run"}, "taskexec: run needs a command: taskexec run [OPTIONS] [--] CMD [ARG...]"},
      {{"bogus"}, "taskexec: unknown command \"bogus\""},
      {{"signal", "--socket", "s", "9", "10"}, "taskexec: unexpected argument \"10\" for signal"},
  };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cli_conventions)

BOOST_AUTO_TEST_CASE(unknown_and_misplaced_options_exit_2_naming_them) {
  run([]() -> asio::awaitable<void> {
    const auto cases = usage_cases();
    for (const auto& c : cases) {
      auto r = co_await cli(c.args);
      BOOST_TEST(r.code == 2);
      BOOST_TEST(first_line(r.err) == c.first_line);
      BOOST_TEST(r.out.empty());
    }
    // The hint names the command's own help.
    auto w = co_await cli(argv_of("wait", "--socket", "s", "--memory-mb", "5"));
    BOOST_TEST(w.err.substr(w.err.find('\n') + 1) == "(see taskexec wait --help)\n");
  });
}

BOOST_AUTO_TEST_CASE(every_program_and_command_has_help_and_version_on_stdout) {
  run([]() -> asio::awaitable<void> {
    const std::string version = "taskexec 1.0.0\nprotocol taskexec-jsonrpc 2.0.0\nBoost 1.81.0\n";
    BOOST_TEST(std::string(library_version) == "1.0.0");
    auto v = co_await cli(argv_of("--version"));
    BOOST_TEST(v.code == 0);
    BOOST_TEST(v.out == version);
    BOOST_TEST(v.err.empty());
    auto dv = co_await run_prog(TASKEXECD, argv_of("--version"));
    BOOST_TEST(dv.code == 0);
    BOOST_TEST(dv.out == "taskexecd" + version.substr(8));
    auto sv = co_await run_prog(TASKEXEC_STRESS, argv_of("--version"));
    BOOST_TEST(sv.code == 0);
    BOOST_TEST(sv.out == "taskexec-stress" + version.substr(8));

    auto h = co_await cli(argv_of("--help"));
    BOOST_TEST(h.code == 0);
    BOOST_TEST(h.err.empty());
    BOOST_TEST(h.out.find("Usage: taskexec [OPTIONS] [SUBCOMMAND]") != std::string::npos, h.out);
    BOOST_TEST(h.out.find("124  a --timeout expired") != std::string::npos, h.out);
    // Each command's own options, and only those.
    auto rh = co_await cli(argv_of("run", "--help"));
    BOOST_TEST(rh.code == 0);
    BOOST_TEST(rh.out.find("Usage: taskexec run [OPTIONS] [CMD...]") != std::string::npos, rh.out);
    BOOST_TEST(rh.out.find("-e,--env K=V") != std::string::npos, rh.out);
    BOOST_TEST(rh.out.find("--timeout DURATION") != std::string::npos, rh.out);
    auto wh = co_await cli(argv_of("wait", "--help"));
    BOOST_TEST(wh.code == 0);
    BOOST_TEST(wh.out.find("Usage: taskexec wait [OPTIONS]") != std::string::npos, wh.out);
    BOOST_TEST(wh.out.find("--memory-mb") == std::string::npos, wh.out);
    // Help wins over what is missing (run without a command).
    auto sh = co_await cli(argv_of("signal", "-h"));
    BOOST_TEST(sh.code == 0);
    BOOST_TEST(sh.out.find("Usage: taskexec signal [OPTIONS] [SIGNAL]") != std::string::npos,
               sh.out);

    auto dh = co_await run_prog(TASKEXECD, argv_of("--help"));
    BOOST_TEST(dh.code == 0);
    BOOST_TEST(dh.out.find("--kill-grace DURATION") != std::string::npos, dh.out);
    auto dbad = co_await run_prog(TASKEXECD, argv_of("--socket", "x", "--bogus"));
    BOOST_TEST(dbad.code == 2);
    BOOST_TEST(first_line(dbad.err) == "taskexecd: unknown option \"--bogus\"");
    auto ch = co_await run_prog(TASKEXEC_STRESS, argv_of("churn", "--help"));
    BOOST_TEST(ch.code == 0);
    BOOST_TEST(ch.out.find("Usage: taskexec-stress churn [OPTIONS]") != std::string::npos, ch.out);
    BOOST_TEST(ch.out.find("--concurrency N") != std::string::npos, ch.out);
    auto cbad = co_await run_prog(TASKEXEC_STRESS, argv_of("churn", "--tasks", "3"));
    BOOST_TEST(cbad.code == 2);
    BOOST_TEST(first_line(cbad.err) ==
               "taskexec-stress: churn takes no option \"--tasks\" (fleet does)");
    auto cms = co_await run_prog(TASKEXEC_STRESS, argv_of("rpc-flood", "--phase-ms", "soon"));
    BOOST_TEST(cms.code == 2);
    BOOST_TEST(first_line(cms.err) ==
               "taskexec-stress: --phase-ms needs a whole number of milliseconds or a duration "
               "(5s, 2m), not \"soon\"");
  });
}

BOOST_AUTO_TEST_CASE(docker_flags_equals_values_and_durations) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    auto r = co_await cli(argv_of("run", "--env=A=1", "-e", "B=2", "-w", dir.str(), "--", "/bin/sh",
                                  "-c", "echo $A$B; pwd"));
    BOOST_TEST(r.code == 0, r.err);
    BOOST_TEST(r.out == "12\n" + dir.str() + "\n");
    // CMD without --: it starts at the first word that is not an option;
    // what follows is its own (-c is sh's).
    auto bare = co_await cli(
        argv_of("run", "-u", std::to_string(::getuid()), "/bin/sh", "-c", "id -u; exit 3"));
    BOOST_TEST(bare.code == 3, bare.err);
    BOOST_TEST(bare.out == std::to_string(::getuid()) + "\n");
  });
}

BOOST_AUTO_TEST_CASE(run_timeout_shuts_the_task_down_and_exits_124) {
  run([]() -> asio::awaitable<void> {
    auto t0 = std::chrono::steady_clock::now();
    auto r = co_await cli(argv_of("run", "--timeout", "300ms", "--", "/bin/sleep", "30"));
    auto took = std::chrono::steady_clock::now() - t0;
    BOOST_TEST(r.code == 124);
    BOOST_TEST(r.err == "taskexec: the task ran past its timeout of 300 ms and was shut down\n");
    BOOST_TEST(took < std::chrono::seconds(20));  // not the 30 s of its sleep
    // The task got SIGTERM (its trap says so) and the JSON state says how it ended.
    auto j = co_await cli(argv_of("--json", "run", "--timeout-ms", "300", "--", "/bin/sh", "-c",
                                  "trap 'echo term; exit 9' TERM; echo ready; "
                                  "while :; do sleep 0.05; done"));
    BOOST_TEST(j.code == 124);
    BOOST_TEST(j.out.find("ready\nterm\n") == 0, j.out);
    auto state = json::parse(j.out.substr(std::string("ready\nterm\n").size())).as_object();
    BOOST_TEST(state.at("exit_code").as_int64() == 9);
    auto err = json::parse(j.err).as_object();
    BOOST_TEST(err.at("exit_code").as_int64() == 124);
    BOOST_TEST(err.at("error").at("code").as_int64() == -32006);
    // A task done before its timeout: its own code.
    auto quick = co_await cli(argv_of("run", "--timeout", "1m", "--", "/bin/sh", "-c", "exit 4"));
    BOOST_TEST(quick.code == 4);
  });
}

BOOST_AUTO_TEST_CASE(ctrl_c_forwards_sigint_and_a_second_one_escalates) {
  run([]() -> asio::awaitable<void> {
    {
      // The task dies of the SIGINT: 130, as docker.
      prog_run c;
      co_await c.start(TASKEXEC_CLI,
                       argv_of("run", "--", "/bin/sh", "-c", "echo ready; exec sleep 1000"));
      BOOST_REQUIRE_EQUAL(co_await c.out.line(), "ready");
      BOOST_TEST((co_await c.t.signal(SIGINT)).has_value());
      auto r = co_await c.finish();
      BOOST_TEST(r.code == 130);
      BOOST_TEST(r.err.empty());
    }
    {
      // The task sees SIGINT itself (not SIGTERM) and ends its own way.
      prog_run c;
      co_await c.start(TASKEXEC_CLI,
                       argv_of("run", "--", "/bin/sh", "-c",
                               "trap 'echo int; exit 5' INT; trap 'echo term; exit 6' TERM; "
                               "echo ready; while :; do sleep 0.05; done"));
      BOOST_REQUIRE_EQUAL(co_await c.out.line(), "ready");
      BOOST_TEST((co_await c.t.signal(SIGINT)).has_value());
      auto r = co_await c.finish();
      BOOST_TEST(r.code == 5);
      BOOST_TEST(r.out == "int\n");
    }
    {
      // A task that ignores SIGINT: the second Ctrl-C shuts it down (SIGTERM).
      prog_run c;
      co_await c.start(TASKEXEC_CLI, argv_of("run", "--", "/bin/sh", "-c",
                                             "trap 'echo int' INT; trap 'echo term; exit 6' TERM; "
                                             "echo ready; while :; do sleep 0.05; done"));
      BOOST_REQUIRE_EQUAL(co_await c.out.line(), "ready");
      BOOST_TEST((co_await c.t.signal(SIGINT)).has_value());
      BOOST_REQUIRE_EQUAL(co_await c.out.line(), "int");
      BOOST_TEST((co_await c.t.signal(SIGINT)).has_value());
      auto r = co_await c.finish();
      BOOST_TEST(r.code == 6);
      BOOST_TEST(r.out == "term\n");
    }
  });
}

BOOST_AUTO_TEST_CASE(signals_by_kill_syntax_json_errors_and_exit_classes) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    const std::string sock = dir / "d.sock";
    // Unreachable: 3, in text and as JSON (no protocol code: nothing answered).
    auto none = co_await cli(argv_of("version", "--socket", sock));
    BOOST_TEST(none.code == 3);
    auto nonej = co_await cli(argv_of("--json", "version", "--socket", sock));
    BOOST_TEST(nonej.code == 3);
    BOOST_TEST(nonej.out.empty());
    BOOST_TEST(nonej.err ==
               "{\"error\":{\"code\":null,\"message\":\"cannot connect to taskexecd at " + sock +
                   ": No such file or directory\"},\"exit_code\":3}\n");
    // A usage error under --json: -32602 and 2.
    auto uj = co_await cli(argv_of("--json", "wait", "--socket", sock, "--memory-mb", "5"));
    BOOST_TEST(uj.code == 2);
    BOOST_TEST(uj.err ==
               "{\"error\":{\"code\":-32602,\"message\":\"wait takes no option \\\"--memory-mb\\\" "
               "(run, launch and update do)\"},\"exit_code\":2}\n");

    auto started = co_await cli(argv_of("start", "--socket", sock));
    BOOST_REQUIRE_MESSAGE(started.code == 0, started.err);
    auto cfg = parse_reattach_config(started.out);
    BOOST_REQUIRE(cfg);
    // A binary that is not there: 127, and -32004 under --json.
    auto missing = co_await cli(argv_of("--json", "launch", "--socket", sock, "--", "no-such-xyz"));
    BOOST_TEST(missing.code == 127);
    auto mj = json::parse(missing.err).as_object();
    BOOST_TEST(mj.at("error").at("code").as_int64() == -32004);
    BOOST_TEST(mj.at("error").at("message").as_string() ==
               "binary \"no-such-xyz\" could not be found");
    BOOST_TEST(mj.at("exit_code").as_int64() == 127);

    auto l = co_await cli(argv_of("launch", "--socket", sock, "--", "/bin/sleep", "1000"));
    BOOST_REQUIRE_EQUAL(l.code, 0);
    // wait --timeout: 124.
    auto timed = co_await cli(argv_of("wait", "--socket", sock, "--timeout", "20ms"));
    BOOST_TEST(timed.code == 124);
    BOOST_TEST(timed.err == "taskexec: the task did not exit within 20 ms\n");
    // exec of a missing binary: 127; exec --timeout: 124.
    auto exm = co_await cli(argv_of("exec", "--socket", sock, "--", "no-such-xyz"));
    BOOST_TEST(exm.code == 127);
    auto ext = co_await cli(
        argv_of("exec", "--socket", sock, "--timeout", "100ms", "--", "/bin/sleep", "1000"));
    BOOST_TEST(ext.code == 124);
    // signal -9, as kill(1).
    auto k = co_await cli(argv_of("signal", "--socket", sock, "-9"));
    BOOST_TEST(k.code == 0, k.err);
    auto w = co_await cli(argv_of("wait", "--socket", sock));
    BOOST_TEST(w.out.find("was killed by SIGKILL (exit code 137)") != std::string::npos, w.out);
    // The task is gone: -32003 under --json, exit 1.
    auto late = co_await cli(argv_of("--json", "signal", "--socket", sock, "KILL"));
    BOOST_TEST(late.code == 1);
    BOOST_TEST(late.err ==
               "{\"error\":{\"code\":-32003,\"message\":\"task has exited\"},\"exit_code\":1}\n");
    BOOST_TEST((co_await cli(argv_of("destroy", "--socket", sock))).code == 0);
    BOOST_TEST(co_await wait_gone(cfg->pid));
    // A reattach config whose daemon is gone: 3.
    auto gone = co_await cli(argv_of("version", "--reattach", started.out));
    BOOST_TEST(gone.code == 3);
  });
}

BOOST_AUTO_TEST_CASE(signal_by_name_without_sig) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    const std::string sock = dir / "d.sock";
    auto started = co_await cli(argv_of("start", "--socket", sock));
    BOOST_REQUIRE_MESSAGE(started.code == 0, started.err);
    auto cfg = parse_reattach_config(started.out);
    BOOST_REQUIRE(cfg);
    BOOST_REQUIRE_EQUAL(
        (co_await cli(argv_of("launch", "--socket", sock, "--", "/bin/sleep", "1000"))).code, 0);
    auto k = co_await cli(argv_of("signal", "--socket", sock, "KILL"));
    BOOST_TEST(k.code == 0, k.err);
    auto w = co_await cli(argv_of("--json", "wait", "--socket", sock));
    BOOST_TEST(json::parse(w.out).at("signal").as_int64() == SIGKILL);
    BOOST_TEST((co_await cli(argv_of("destroy", "--socket", sock))).code == 0);
    BOOST_TEST(co_await wait_gone(cfg->pid));
  });
}

// `taskexec metrics` and `stats --format openmetrics`, against a daemon: the
// exact counter lines, and a parse of the whole text.
BOOST_AUTO_TEST_CASE(metrics_and_stats_as_openmetrics) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    const std::string sock = dir / "d.sock";
    auto started = co_await cli(argv_of("start", "--socket", sock));
    BOOST_REQUIRE_MESSAGE(started.code == 0, started.err);
    auto cfg = parse_reattach_config(started.out);
    BOOST_REQUIRE(cfg);
    auto l = co_await cli(argv_of("launch", "--socket", sock, "--", "/bin/sleep", "1000"));
    BOOST_REQUIRE_EQUAL(l.code, 0);
    const std::string pid = std::to_string(std::stoi(l.out.substr(l.out.rfind(' ') + 1)));

    auto m = co_await cli(argv_of("metrics", "--socket", sock, "--label", "task=t1"));
    BOOST_TEST(m.code == 0, m.err);
    // Every line a comment or a sample; the text ends with # EOF.
    BOOST_TEST(m.out.ends_with("# EOF\n"));
    std::istringstream lines(m.out);
    const std::regex sample(R"(^[a-z_]+\{task="t1"(,[a-z_]+="[^"]*")*\} [0-9.e+-]+$)");
    const std::regex comment(R"(^# (TYPE|HELP|UNIT|EOF)( .*)?$)");
    for (std::string line; std::getline(lines, line);)
      BOOST_TEST((std::regex_match(line, sample) || std::regex_match(line, comment)), line);
    // The counters the sequence made: one Launch, this Metrics.
    BOOST_TEST(m.out.find("\ntaskexecd_requests_total{task=\"t1\",method=\"Launch\"} 1\n") !=
                   std::string::npos,
               m.out);
    BOOST_TEST(m.out.find("\ntaskexecd_request_errors_total{task=\"t1\",method=\"Launch\"} 0\n") !=
                   std::string::npos,
               m.out);
    BOOST_TEST(m.out.find("\ntaskexecd_requests_total{task=\"t1\",method=\"Metrics\"} 1\n") !=
                   std::string::npos,
               m.out);
    BOOST_TEST(m.out.find("\ntaskexecd_connections_open{task=\"t1\"} 1\n") != std::string::npos,
               m.out);
    BOOST_TEST(m.out.find("\ntaskexecd_journal_events{task=\"t1\"} 1\n") != std::string::npos,
               m.out);
    // --json: the daemon's answer as it is, the second Metrics call counted.
    auto mj = co_await cli(argv_of("--json", "metrics", "--socket", sock));
    auto answer = json::parse(mj.out).as_object();
    BOOST_TEST(answer.at("requests").at("Metrics").at("calls").as_int64() == 2);
    BOOST_TEST(answer.at("requests").at("Launch").at("calls").as_int64() == 1);

    auto s = co_await cli(
        argv_of("stats", "--socket", sock, "--format", "openmetrics", "--interval", "50ms"));
    BOOST_TEST(s.code == 0, s.err);
    BOOST_TEST(s.out.ends_with("# EOF\n"));
    BOOST_TEST(s.out.find("# EOF\n") == s.out.size() - 6);  // one sample
    BOOST_TEST(s.out.find("\ntaskexec_task_processes 1\n") != std::string::npos, s.out);
    BOOST_TEST(std::regex_search(s.out, std::regex("\ntaskexec_process_memory_rss_bytes\\{pid=\"" +
                                                   pid + "\"\\} [1-9][0-9]*\n")),
               s.out);
    BOOST_TEST((co_await cli(argv_of("destroy", "--socket", sock))).code == 0);
    BOOST_TEST(co_await wait_gone(cfg->pid));
  });
}

// The generated completion, as bash runs it.
BOOST_AUTO_TEST_CASE(bash_completion_completes_commands_and_each_ones_options) {
  run([]() -> asio::awaitable<void> {
    auto script = co_await cli(argv_of("--bash-completion"));
    BOOST_TEST(script.code == 0);
    temp_dir dir;
    write_file(dir / "taskexec.bash", script.out);
    auto complete = [&](const std::string& line) {
      return "source " + (dir / "taskexec.bash") + "; COMP_WORDS=(" + line +
             "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _taskexec_complete; "
             "echo \"${COMPREPLY[*]}\"";
    };
    auto subs = co_await run_prog("/bin/bash", argv_of("-c", complete("taskexec wa")));
    BOOST_TEST(subs.out == "wait\n");
    auto opts = co_await run_prog("/bin/bash", argv_of("-c", complete("taskexec run --memory-m")));
    BOOST_TEST(opts.out == "--memory-mb --memory-max-mb\n");
    auto none = co_await run_prog("/bin/bash", argv_of("-c", complete("taskexec wait --memory-m")));
    BOOST_TEST(none.out == "\n");
    auto iso =
        co_await run_prog("/bin/bash", argv_of("-c", complete("taskexec run --isolation c")));
    BOOST_TEST(iso.out == "container\n");
    auto sig = co_await run_prog("/bin/bash", argv_of("-c", complete("taskexec signal SIGK")));
    BOOST_TEST(sig.out == "SIGKILL\n");
  });
}

BOOST_AUTO_TEST_SUITE_END()
