// taskexecd's structured logs: launch, signal, exit and the requests that
// caused them at the default level (info), each figure a key of its own in
// JSON lines; journald's native fields on a journal socket, and `<N>` lines
// without one.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "daemon_client.hpp"
#include "harness.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::vector<json::object> json_lines(const std::string& path) {
  std::vector<json::object> out;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);)
    out.push_back(json::parse(l).as_object());
  return out;
}

const json::object* find_msg(const std::vector<json::object>& lines, std::string_view component,
                             std::string_view msg) {
  for (const auto& l : lines) {
    if (l.at("component").as_string() == component && l.at("msg").as_string() == msg)
      return &l;
  }
  return nullptr;
}

// A journal datagram's fields (KEY=value lines; no binary values expected here).
std::map<std::string, std::string> journal_fields(const std::string& d) {
  std::map<std::string, std::string> out;
  std::size_t at = 0;
  while (at < d.size()) {
    auto nl = d.find('\n', at);
    if (nl == std::string::npos)
      nl = d.size();
    const std::string line = d.substr(at, nl - at);
    if (auto eq = line.find('='); eq != std::string::npos)
      out[line.substr(0, eq)] = line.substr(eq + 1);
    at = nl + 1;
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(taskexecd_logs)

BOOST_AUTO_TEST_CASE(launch_signal_and_exit_are_json_lines_with_fields_at_the_default_level) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    const std::string log = d.dir / "daemon.log";
    // No --log-level: the daemon's default (info). The harness passes
    // --log-level warn, so an explicit info replaces it.
    co_await d.start(argv_of("--log-level", "info", "--log-format", "json", "--log-file", log));
    client c;
    co_await c.connect(d.socket);
    auto launched =
        co_await c.call(41, "Launch", json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
    BOOST_REQUIRE(launched.contains("result"));
    const auto pid = launched.at("result").at("pid").as_int64();
    json::object usr1;
    usr1["signal"] = "SIGUSR1";
    auto signalled = co_await c.call(42, "Signal", usr1);
    BOOST_TEST(signalled.contains("result"));
    auto waited = co_await c.call(43, "Wait");
    BOOST_REQUIRE(waited.contains("result"));
    BOOST_TEST(waited.at("result").at("exit_code").as_int64() == 138);

    // Every line below was written before the Wait was answered.
    const auto lines = json_lines(log);
    const std::string task_id = std::filesystem::absolute(d.socket).lexically_normal().string();

    const auto* l = find_msg(lines, "executor", "launched");
    BOOST_REQUIRE_MESSAGE(l, "no launched line in " << log);
    BOOST_TEST(l->at("level").as_string() == "info");
    BOOST_TEST(l->at("task_id").as_string() == task_id);
    BOOST_TEST(l->at("pid").as_int64() == pid);
    BOOST_TEST(l->at("exe").as_string() == "/bin/sleep");

    const auto* s = find_msg(lines, "executor", "signalled");
    BOOST_REQUIRE(s);
    BOOST_TEST(s->at("pid").as_int64() == pid);
    BOOST_TEST(s->at("signal").as_string() == "SIGUSR1");

    const auto* e = find_msg(lines, "executor", "exited");
    BOOST_REQUIRE(e);
    BOOST_TEST(e->at("pid").as_int64() == pid);
    BOOST_TEST(e->at("exit_code").as_int64() == 138);
    BOOST_TEST(e->at("signal").as_string() == "SIGUSR1");
    BOOST_TEST(e->at("oom_killed").as_bool() == false);
    BOOST_TEST(e->at("duration_ms").as_int64() >= 0);

    // The requests, with the client's ids.
    std::map<std::string, std::string> methods;  // request_id -> method
    for (const auto& x : lines) {
      if (x.at("component").as_string() == "rpc" && x.at("msg").as_string() == "request") {
        BOOST_TEST(x.at("duration_ms").is_int64());
        methods[std::string(x.at("request_id").as_string())] =
            std::string(x.at("method").as_string());
      }
    }
    BOOST_TEST(methods["41"] == "Launch");
    BOOST_TEST(methods["42"] == "Signal");
    BOOST_TEST(!methods.contains("43"));  // a Wait acts on nothing: debug

    auto destroyed = co_await c.call(44, "Destroy");
    BOOST_TEST(destroyed.contains("result"));
    auto daemon_exit = co_await d.task.wait();
    BOOST_TEST(daemon_exit->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(journald_format_sends_native_fields_to_the_journal_socket) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    const std::string journal = d.dir / "journal.sock";
    using dgram = asio::local::datagram_protocol;
    dgram::socket sink(harness::get().io, dgram::endpoint(journal));
    co_await d.start(
        argv_of("--log-level", "info", "--log-format", "journald", "--journal-socket", journal));
    client c;
    co_await c.connect(d.socket);
    auto launched = co_await c.call(1, "Launch", json::parse(R"({"cmd":"/bin/true"})"));
    BOOST_REQUIRE(launched.contains("result"));
    const auto pid = std::to_string(launched.at("result").at("pid").as_int64());
    auto waited = co_await c.call(2, "Wait");
    BOOST_REQUIRE(waited.contains("result"));

    // The datagrams were sent before the Wait was answered: they are queued.
    std::map<std::string, std::string> exited, launch;
    std::vector<char> buf(65536);
    while (sink.available() > 0) {
      const auto n = sink.receive(asio::buffer(buf));
      auto f = journal_fields(std::string(buf.data(), n));
      if (f["TASKEXEC_COMPONENT"] == "executor" &&
          f["MESSAGE"].find(" exited pid=") != std::string::npos)
        exited = f;
      if (f["TASKEXEC_COMPONENT"] == "executor" &&
          f["MESSAGE"].find(" launched pid=") != std::string::npos)
        launch = f;
    }
    BOOST_REQUIRE_MESSAGE(!exited.empty(), "no exited record on the journal socket");
    BOOST_TEST(exited["PRIORITY"] == "6");
    BOOST_TEST(exited["SYSLOG_IDENTIFIER"] == "taskexecd");
    BOOST_TEST(exited["PID"] == pid);
    BOOST_TEST(exited["EXIT_CODE"] == "0");
    BOOST_TEST(exited["OOM_KILLED"] == "false");
    BOOST_TEST(!exited["TASKEXEC_TASK_ID"].empty());
    BOOST_REQUIRE(!launch.empty());
    BOOST_TEST(launch["EXE"] == "/bin/true");

    auto destroyed = co_await c.call(3, "Destroy");
    BOOST_TEST(destroyed.contains("result"));
    auto daemon_exit = co_await d.task.wait();
    BOOST_TEST(daemon_exit->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(journald_format_without_a_journal_writes_priority_prefixed_lines) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    const std::string log = d.dir / "daemon.log";
    co_await d.start(argv_of("--log-level", "info", "--log-format", "journald", "--journal-socket",
                             std::string(d.dir / "no-journal.sock"), "--log-file", log));
    client c;
    co_await c.connect(d.socket);
    auto launched = co_await c.call(1, "Launch", json::parse(R"({"cmd":"/bin/true"})"));
    BOOST_REQUIRE(launched.contains("result"));
    auto waited = co_await c.call(2, "Wait");
    BOOST_REQUIRE(waited.contains("result"));
    std::ifstream in(log);
    bool exited = false;
    for (std::string l; std::getline(in, l);) {
      BOOST_TEST((l.starts_with("<6> [") || l.starts_with("<4> [") || l.starts_with("<7> [")), l);
      exited = exited ||
               (l.starts_with("<6> [executor]") && l.find(" exited pid=") != std::string::npos &&
                l.find(" exit_code=0") != std::string::npos);
    }
    BOOST_TEST(exited);
    auto destroyed = co_await c.call(3, "Destroy");
    BOOST_TEST(destroyed.contains("result"));
    auto daemon_exit = co_await d.task.wait();
    BOOST_TEST(daemon_exit->exit_code == 0);
  });
}

// SIGHUP under load, logrotate's way (rename, then SIGHUP), twice while a
// client keeps Signal requests in flight: every request's line is in exactly
// one of the three files, none lost or doubled; each new file starts with
// the reopen's line; the renamed files are closed; the daemon, its task and
// its socket go on.
BOOST_AUTO_TEST_CASE(sighup_under_load_with_a_rotated_log_file_loses_no_line) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    const std::string log = d.dir / "daemon.log";
    co_await d.start(argv_of("--log-level", "info", "--log-format", "json", "--log-file", log));
    const int daemon_pid = d.task.pid();
    client c;
    co_await c.connect(d.socket);
    auto launched =
        co_await c.call(1, "Launch", json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
    BOOST_REQUIRE(launched.contains("result"));
    const int task_pid = static_cast<int>(launched.at("result").at("pid").as_int64());

    // Rounds of 100 Signal requests (SIGWINCH: sleep ignores it) written at
    // once; after rounds 3 and 7 the file is renamed and SIGHUP sent while
    // that round's requests are still being answered.
    constexpr int rounds = 10, per_round = 100, first_id = 100;
    int id = first_id;
    for (int r = 0; r < rounds; ++r) {
      std::string batch;
      for (int i = 0; i < per_round; ++i)
        batch += R"({"jsonrpc":"2.0","id":)" + std::to_string(id + i) +
                 R"(,"method":"Signal","params":{"signal":"SIGWINCH"}})" + "\n";
      co_await c.send_raw(batch);
      if (r == 3 || r == 7) {
        std::filesystem::rename(log, log + (r == 3 ? ".1" : ".2"));
        BOOST_REQUIRE(::kill(daemon_pid, SIGHUP) == 0);
      }
      for (int i = 0; i < per_round; ++i) {
        auto answer = co_await c.response(id + i);
        BOOST_REQUIRE_MESSAGE(answer.contains("result"), json::serialize(answer));
      }
      id += per_round;
    }
    // Every request answered; its line was written before its answer.
    std::map<std::string, int> seen;  // request_id -> lines
    std::vector<std::vector<json::object>> files;
    for (const auto& f : {log + ".1", log + ".2", log})
      files.push_back(json_lines(f));
    for (const auto& lines : files) {
      for (const auto& x : lines) {
        if (x.at("component").as_string() == "rpc" && x.at("msg").as_string() == "request" &&
            x.at("method").as_string() == "Signal")
          ++seen[std::string(x.at("request_id").as_string())];
      }
    }
    BOOST_TEST(seen.size() == std::size_t(rounds * per_round));
    int once = 0;
    for (int i = first_id; i < first_id + rounds * per_round; ++i)
      once += seen[std::to_string(i)] == 1 ? 1 : 0;
    BOOST_TEST(once == rounds * per_round);
    // The second and third files begin with the reopen.
    for (std::size_t f = 1; f < files.size(); ++f) {
      BOOST_REQUIRE(!files[f].empty());
      BOOST_TEST(files[f].front().at("msg").as_string() == "SIGHUP: log file reopened");
    }
    BOOST_TEST(files[0].front().at("msg").as_string() != "SIGHUP: log file reopened");
    // The renamed files are closed: no descriptor of the daemon's points at them.
    int still_open = 0;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(daemon_pid) + "/fd")) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(e.path(), ec).string();
      if (target == log + ".1" || target == log + ".2")
        ++still_open;
    }
    BOOST_TEST(still_open == 0);
    // The daemon and its task go on; the socket still serves a new client.
    BOOST_TEST(alive(daemon_pid));
    BOOST_TEST(alive(task_pid));
    client fresh;
    co_await fresh.connect(d.socket);
    BOOST_TEST((co_await fresh.call(1, "Version")).contains("result"));
    BOOST_TEST((co_await c.call(2, "Destroy")).contains("result"));
    auto daemon_exit = co_await d.task.wait();
    BOOST_TEST(daemon_exit->exit_code == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
