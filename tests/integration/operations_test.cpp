// Operations (docs/operations.md) against a real taskexecd: Events followed
// (launched, signalled, exited in order; the overflow of a follower that
// does not read; Events.Cancel), `taskexec events --follow`, the exit file
// that outlives a SIGKILLed daemon and what reattach makes of it, socket
// activation with an inherited listener (systemd-socket-activate) and
// READY=1 / STOPPING=1 on a test NOTIFY_SOCKET.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/exit_file.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

template <class T>
std::string why(const result<T>& r) {
  return r ? std::string() : r.error().message;
}

create_options options_in(const temp_dir& dir) {
  create_options o;
  o.daemon_path = TASKEXECD;
  o.socket_path = dir / "run/d.sock";
  o.log_file = dir / "taskexecd.log";
  o.kill_grace = std::chrono::milliseconds(2000);
  return o;
}

// Until `pid` is gone or a zombie, waiting on a timer between looks, at most
// `bound` (an upper bound for a hang).
asio::awaitable<bool> gone(int pid, std::chrono::milliseconds bound = std::chrono::seconds(20)) {
  asio::steady_timer t(harness::get().io);
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = detail::read_proc_stat(pid);
    if (!st || st->state == 'Z')
      co_return true;
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

std::string type_of(const json::object& e) {
  return std::string(e.at("type").as_string());
}

bool have_socket_activate() {
  return ::access("/usr/bin/systemd-socket-activate", X_OK) == 0;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(operations)

BOOST_AUTO_TEST_CASE(events_follow_streams_launched_signalled_exited_in_order) {
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    auto created = co_await create_executor(io.get_executor(), options_in(dir));
    BOOST_REQUIRE_MESSAGE(created, why(created));
    auto& a = created->client;
    auto followed = co_await a.follow_events(0);
    BOOST_REQUIRE_MESSAGE(followed, why(followed));
    auto& stream = *followed;
    BOOST_TEST(stream.subscription() == "events-1");
    // A second client follows on the command line, as JSON lines.
    pipe_reader out;
    task_executor cli{harness::get().reaper};
    exec_command c;
    c.cmd = TASKEXEC_CLI;
    c.args = {"--json", "--socket", created->config.socket, "events", "--follow"};
    c.stdout_fd = out.write_fd();
    auto started = co_await cli.launch(c);
    BOOST_REQUIRE_MESSAGE(started, why(started));
    out.close_write();

    auto launched = co_await a.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE_MESSAGE(launched, why(launched));
    BOOST_TEST((co_await a.signal("SIGTERM")).has_value());
    auto st = co_await a.wait();
    BOOST_REQUIRE_MESSAGE(st, why(st));

    const std::vector<std::string> expected{"launched", "signalled", "exited"};
    for (std::size_t i = 0; i < expected.size(); ++i) {
      auto e = co_await stream.next();
      BOOST_REQUIRE_MESSAGE(e, why(e));
      BOOST_TEST(type_of(*e) == expected[i]);
      BOOST_TEST(e->at("seq").to_number<std::uint64_t>() == i + 1);
      BOOST_TEST(stream.next_seq() == i + 2);
      auto line = co_await out.line();
      BOOST_REQUIRE_MESSAGE(!line.empty(), "taskexec events --follow printed nothing");
      auto printed = json::parse(line).as_object();
      BOOST_TEST(json::serialize(printed) == json::serialize(*e));
    }
    // Ended by Events.Cancel: answered, and nothing more comes.
    BOOST_TEST((co_await stream.cancel()).has_value());
    auto after = co_await stream.next();
    BOOST_TEST((after.error().code == make_error_code(errc::operation_canceled)));
    // Destroy: the CLI's follower ends with Events.End "stopping", exit 0.
    BOOST_TEST((co_await a.destroy()).has_value());
    auto rest = co_await out.rest();
    BOOST_TEST(rest == "");
    auto ended = co_await cli.wait();
    BOOST_REQUIRE(ended);
    BOOST_TEST(ended->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_follower_that_does_not_read_is_ended_with_where_to_resume) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client slow, busy, other;
    co_await slow.connect(d.socket);
    co_await busy.connect(d.socket);
    co_await other.connect(d.socket);
    co_await launch_sleeper(busy, 1);
    auto f = co_await slow.call(1, "Events", json::parse(R"({"since":0,"follow":true})"));
    BOOST_REQUIRE_MESSAGE(f.contains("result"), json::serialize(f));
    BOOST_TEST(f.at("result").at("subscription") == "events-1");
    BOOST_TEST(f.at("result").at("events").as_array().size() == 1u);  // launched
    BOOST_TEST(f.at("result").at("next") == 2);
    // Cancel: unknown ids are -32009; a known one ends.
    auto o = co_await other.call(1, "Events", json::parse(R"({"follow":true})"));
    const std::string other_id(o.at("result").at("subscription").as_string());
    auto wrong =
        co_await other.call(2, "Events.Cancel", json::parse(R"({"subscription":"events-1"})"));
    BOOST_TEST(error_code_of(wrong) == -32009);  // not this connection's
    json::object cancel{{"subscription", other_id}};
    auto ok = co_await other.call(3, "Events.Cancel", cancel);
    BOOST_TEST(json::serialize(ok.at("result")) == "{}");
    // Signals (SIGCONT: the sleeper goes on) until far more than the 1 MiB
    // a connection may queue has gone to the follower that does not read.
    constexpr int batches = 20, per_batch = 1000;
    for (int b = 0; b < batches; ++b) {
      std::string text;
      for (int i = 0; i < per_batch; ++i)
        text += R"({"jsonrpc":"2.0","id":)" + std::to_string(10 + b * per_batch + i) +
                R"(,"method":"Signal","params":{"signal":"SIGCONT"}})" + "\n";
      co_await busy.send_raw(text);
      for (int i = 0; i < per_batch; ++i) {
        auto r = co_await busy.response(10 + b * per_batch + i);
        BOOST_REQUIRE(r.contains("result"));
      }
    }
    // The follower: events in order from seq 2, then Events.End with
    // reason overflow and next = the first seq it did not get.
    std::uint64_t expect = 2;
    json::object end;
    for (int i = 0; i < batches * per_batch + 1; ++i) {
      auto v = co_await slow.next();
      BOOST_REQUIRE(!v.is_null());
      const auto& m = v.as_object();
      if (m.at("method") == "Events.End") {
        end = m.at("params").as_object();
        break;
      }
      BOOST_REQUIRE(m.at("method") == "Events.Event");
      BOOST_REQUIRE(m.at("params").at("subscription") == "events-1");
      BOOST_REQUIRE(m.at("params").at("event").at("seq").to_number<std::uint64_t>() == expect);
      ++expect;
    }
    BOOST_REQUIRE(!end.empty());
    BOOST_TEST(end.at("reason") == "overflow");
    BOOST_TEST(end.at("next").to_number<std::uint64_t>() == expect);
    BOOST_TEST(expect > 1000u);  // it got a good part first
    BOOST_TEST(expect < 2u + batches * per_batch);
    // Nothing more for it: an ended follower cannot be cancelled.
    auto late =
        co_await slow.call(2, "Events.Cancel", json::parse(R"({"subscription":"events-1"})"));
    BOOST_TEST(error_code_of(late) == -32009);
    auto destroyed = co_await busy.call(99999, "Destroy");
    BOOST_TEST(destroyed.contains("result"));
  });
}

BOOST_AUTO_TEST_CASE(exit_file_outlives_a_sigkilled_daemon_and_reattach_returns_it) {
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    auto o = options_in(dir);
    o.task_id = "ops-exit-1";
    o.exit_dir = dir / "exits";
    auto created = co_await create_executor(io.get_executor(), o);
    BOOST_REQUIRE_MESSAGE(created, why(created));
    const auto cfg = created->config;
    BOOST_TEST(cfg.exit_file == dir / "exits/ops-exit-1.json");
    auto& a = created->client;
    auto launched = co_await a.launch(sh("exit 7"));
    BOOST_REQUIRE_MESSAGE(launched, why(launched));
    auto st = co_await a.wait();
    BOOST_REQUIRE_MESSAGE(st, why(st));
    BOOST_TEST(st->exit_code == 7);
    // The file is written before `exited` is recorded: once the journal
    // has it, the file is there.
    auto ev = co_await a.events(0);
    BOOST_REQUIRE(ev);
    BOOST_REQUIRE(ev->events.size() == 2u);
    BOOST_TEST(type_of(ev->events[1]) == "exited");
    a.close();
    BOOST_REQUIRE(::kill(cfg.pid, SIGKILL) == 0);
    BOOST_REQUIRE(co_await gone(cfg.pid));

    auto rec = rpc::read_exit_file(cfg.exit_file);
    BOOST_REQUIRE_MESSAGE(rec, why(rec));
    BOOST_TEST(rec->task_id == "ops-exit-1");
    BOOST_TEST(rec->daemon_pid == cfg.pid);
    BOOST_TEST(rec->daemon_start_time == cfg.pid_start_time);
    BOOST_TEST((rec->state == *st));

    // Reattach: the daemon is gone, its exit state is not.
    auto b = co_await reattach_to_executor(io.get_executor(), cfg);
    BOOST_REQUIRE_MESSAGE(b, why(b));
    BOOST_TEST(!b->connected());
    auto again = co_await b->wait();
    BOOST_REQUIRE_MESSAGE(again, why(again));
    BOOST_TEST((*again == *st));
    auto bounded = co_await b->wait_for(std::chrono::milliseconds(10));
    BOOST_TEST((bounded.value() == *st));
    auto sig = co_await b->signal(SIGTERM);
    BOOST_TEST((sig.error().code == make_error_code(errc::connection_failed)));

    // taskexec --reattach CONFIG wait prints it too.
    pipe_reader out;
    task_executor cli{harness::get().reaper};
    exec_command c;
    c.cmd = TASKEXEC_CLI;
    c.args = {"--json", "--reattach", to_json(cfg), "wait"};
    c.stdout_fd = out.write_fd();
    BOOST_REQUIRE((co_await cli.launch(c)).has_value());
    out.close_write();
    auto printed = co_await out.rest();
    BOOST_TEST(printed == json::serialize(json::value_from(*st)) + "\n");
    BOOST_TEST((co_await cli.wait())->exit_code == 0);

    // Another daemon's file (a config whose start time differs): refused.
    auto other = cfg;
    other.pid_start_time += 1;
    auto refused = co_await reattach_to_executor(io.get_executor(), other);
    BOOST_REQUIRE(!refused);
    BOOST_TEST((refused.error().code == make_error_code(errc::reattach_refused)));
    BOOST_TEST(refused.error().message.find("another daemon") != std::string::npos,
               refused.error().message);
    // No exit file: refused as before, saying so.
    auto missing = cfg;
    missing.exit_file = dir / "exits/none.json";
    auto none = co_await reattach_to_executor(io.get_executor(), missing);
    BOOST_REQUIRE(!none);
    BOOST_TEST(none.error().message.find("no exit state") != std::string::npos);
  });
}

BOOST_AUTO_TEST_CASE(socket_activation_and_readiness) {
  if (!have_socket_activate()) {
    BOOST_TEST_MESSAGE("skipped: no /usr/bin/systemd-socket-activate (Debian's systemd)");
    return;
  }
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    const std::string sock = dir / "activated.sock";
    const std::string notify = dir / "notify";
    asio::local::datagram_protocol::socket notes(io);
    notes.open();
    notes.bind(asio::local::datagram_protocol::endpoint(notify));
    // systemd-socket-activate listens, and on the first connection runs
    // taskexecd with the listening socket as fd 3 (LISTEN_FDS=1).
    task_executor act{harness::get().reaper};
    exec_command c;
    c.cmd = "/usr/bin/systemd-socket-activate";
    c.args = {"-l",        sock,          "-E",  "NOTIFY_SOCKET=" + notify, TASKEXECD, "--task-id",
              "activated", "--log-level", "warn"};
    c.env = {"PATH=/usr/bin:/bin"};
    pipe_reader err;
    c.stderr_fd = err.write_fd();
    auto started = co_await act.launch(c);
    BOOST_REQUIRE_MESSAGE(started, why(started));
    err.close_write();
    // The socket exists once systemd-socket-activate says it listens.
    auto said = co_await err.line();
    BOOST_TEST_MESSAGE("systemd-socket-activate: " << said);
    BOOST_REQUIRE(std::filesystem::exists(sock));

    auto r = co_await remote_executor::connect(io.get_executor(), sock);
    BOOST_REQUIRE_MESSAGE(r, why(r));
    BOOST_TEST(r->daemon_pid() == started->pid);  // exec'd in place
    std::array<char, 64> buf{};
    auto n = co_await notes.async_receive(asio::buffer(buf), asio::use_awaitable);
    BOOST_TEST(std::string(buf.data(), n) == "READY=1");
    auto launched = co_await r->launch(sh("exit 0"));
    BOOST_REQUIRE_MESSAGE(launched, why(launched));
    BOOST_TEST((co_await r->wait())->exit_code == 0);
    BOOST_TEST((co_await r->destroy()).has_value());
    n = co_await notes.async_receive(asio::buffer(buf), asio::use_awaitable);
    BOOST_TEST(std::string(buf.data(), n) == "STOPPING=1");
    auto ended = co_await act.wait();
    BOOST_REQUIRE(ended);
    BOOST_TEST(ended->exit_code == 0);
    // The socket file is systemd's: left where it was.
    BOOST_TEST(std::filesystem::exists(sock));
  });
}

BOOST_AUTO_TEST_CASE(an_inherited_socket_that_is_not_a_stream_listener_is_refused) {
  if (!have_socket_activate()) {
    BOOST_TEST_MESSAGE("skipped: no /usr/bin/systemd-socket-activate (Debian's systemd)");
    return;
  }
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    const std::string sock = dir / "dgram.sock";
    task_executor act{harness::get().reaper};
    exec_command c;
    c.cmd = "/usr/bin/systemd-socket-activate";
    c.args = {"--datagram", "-l", sock, TASKEXECD, "--task-id", "x"};
    c.env = {"PATH=/usr/bin:/bin"};
    pipe_reader err;
    c.stderr_fd = err.write_fd();
    BOOST_REQUIRE((co_await act.launch(c)).has_value());
    err.close_write();
    (void)co_await err.line();  // listening
    // A datagram wakes it (datagram sockets activate on the first message).
    asio::local::datagram_protocol::socket s(io);
    s.open();
    s.send_to(asio::buffer(std::string("x")), asio::local::datagram_protocol::endpoint(sock));
    auto said = co_await err.rest();
    auto ended = co_await act.wait();
    BOOST_REQUIRE(ended);
    BOOST_TEST(ended->exit_code == 2);
    BOOST_TEST(
        said.find("inherited descriptor 3 is not an AF_UNIX stream socket") != std::string::npos,
        said);
  });
}

BOOST_AUTO_TEST_SUITE_END()
