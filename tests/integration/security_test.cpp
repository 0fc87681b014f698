// The socket's security (docs/security.md): its permissions and its
// directory's, paths that are refused, no abstract socket, and every limit
// a caller can reach answering -32010 with the limit in data.limit while
// the daemon goes on serving. (Another uid refused: tests/privileged/peer_test.cpp.)
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/server.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

// taskexecd run to its end with these arguments: its exit code and stderr.
struct finished {
  int exit_code = -1;
  std::string err;
};
asio::awaitable<finished> run_daemon(const temp_dir& dir, std::vector<std::string> args) {
  task_executor t(harness::get().reaper);
  exec_command cmd;
  cmd.cmd = TASKEXECD;
  cmd.args = std::move(args);
  cmd.stderr_path = dir / "daemon.err";
  cmd.stdout_path = dir / "daemon.out";
  // Appended to: each run's own.
  ::unlink(cmd.stderr_path.c_str());
  ::unlink(cmd.stdout_path.c_str());
  auto st = co_await t.launch(cmd);
  BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
  auto done = co_await t.wait();
  BOOST_REQUIRE(done);
  co_return finished{done->exit_code, read_file(dir / "daemon.err")};
}

// The next response of `c` with this id; notifications met meanwhile go to
// `notes` (the plain client stashes responses only).
asio::awaitable<json::object> response_of(client& c, int id, std::vector<json::object>* notes) {
  for (;;) {
    auto v = co_await c.next();
    BOOST_REQUIRE_MESSAGE(!v.is_null(), "connection closed waiting for id " << id);
    auto& o = v.as_object();
    if (!o.contains("id")) {
      if (notes)
        notes->push_back(o);
      continue;
    }
    if (o.at("id").is_int64() && o.at("id").as_int64() == id)
      co_return o;
  }
}

void require_limit_error(const json::object& r, const std::string& message, std::int64_t limit) {
  BOOST_REQUIRE_MESSAGE(r.contains("error"), json::serialize(r));
  BOOST_TEST(r.at("error").at("code").as_int64() == -32010);
  BOOST_TEST(r.at("error").at("message").as_string() == message);
  BOOST_TEST(r.at("error").at("data").at("limit").as_int64() == limit);
}

// {"<key>": value}, built outside the coroutines (GCC 12).
json::value member(const std::string& key, const std::string& value) {
  json::object o;
  o[key] = value;
  return o;
}

// Socket inodes the process holds, from /proc/<pid>/fd.
std::set<std::string> socket_inodes(int pid) {
  std::set<std::string> out;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (target.starts_with("socket:["))
      out.insert(target.substr(8, target.size() - 9));
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(socket_security)

BOOST_AUTO_TEST_CASE(the_socket_is_0600_in_a_0700_directory_and_owned_by_the_daemon) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    struct stat s {};
    BOOST_REQUIRE(::lstat(d.socket.c_str(), &s) == 0);
    BOOST_TEST(S_ISSOCK(s.st_mode));
    BOOST_TEST((s.st_mode & 07777) == 0600u);
    BOOST_TEST(s.st_uid == ::geteuid());
    struct stat dir {};
    BOOST_REQUIRE(::stat((d.dir / "run").c_str(), &dir) == 0);
    BOOST_TEST((dir.st_mode & 07777) == 0700u);  // created by the daemon
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(a_directory_others_may_write_is_refused_on_the_way_to_the_socket) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    // Anyone could replace the socket in a directory anyone may write.
    const std::string open_dir = dir / "open";
    std::filesystem::create_directory(open_dir);
    BOOST_REQUIRE(::chmod(open_dir.c_str(), 0777) == 0);
    auto r = co_await run_daemon(dir, argv_of("--socket", open_dir + "/d.sock"));
    BOOST_TEST(r.exit_code == 1);
    BOOST_TEST(r.err == "taskexecd: socket directory \"" + open_dir +
                            "\" (mode 0777) is writable by group and others without the sticky "
                            "bit: they could replace the socket\n");
    BOOST_TEST(!std::filesystem::exists(open_dir + "/d.sock"));
    // The group too, and above the socket's own directory too (whoever may
    // write there can rename the daemon's directory away).
    const std::string group_dir = dir / "group";
    std::filesystem::create_directory(group_dir);
    BOOST_REQUIRE(::chmod(group_dir.c_str(), 0775) == 0);
    r = co_await run_daemon(dir, argv_of("--socket", group_dir + "/run/d.sock"));
    BOOST_TEST(r.exit_code == 1);
    BOOST_TEST(r.err == "taskexecd: socket directory \"" + group_dir +
                            "\" (mode 0775) is writable by group without the sticky bit: they "
                            "could replace the socket\n");
    BOOST_TEST(!std::filesystem::exists(group_dir + "/run"));

    // With the sticky bit (as /tmp), others cannot rename or remove what is
    // not theirs: fine above the socket, but not as its own directory.
    BOOST_REQUIRE(::chmod(open_dir.c_str(), 01777) == 0);
    r = co_await run_daemon(dir, argv_of("--socket", open_dir + "/d.sock"));
    BOOST_TEST(r.exit_code == 1);
    BOOST_TEST(r.err == "taskexecd: socket directory \"" + open_dir +
                            "\" (mode 1777) is writable by group and others: the socket's own "
                            "directory must be writable by its owner only\n");
    daemon_process d;
    d.socket = open_dir + "/run/d.sock";
    pipe_reader out;
    exec_command cmd;
    cmd.cmd = TASKEXECD;
    cmd.args = argv_of("--socket", d.socket, "--log-level", "warn");
    cmd.stdout_fd = out.write_fd();
    BOOST_REQUIRE(co_await d.task.launch(cmd));
    out.close_write();
    BOOST_TEST(!(co_await out.line()).empty());  // the handshake
    struct stat made {};
    BOOST_REQUIRE(::stat((open_dir + "/run").c_str(), &made) == 0);
    BOOST_TEST((made.st_mode & 07777) == 0700u);
    client c;
    co_await c.connect(d.socket);
    BOOST_TEST((co_await c.call(1, "Version")).contains("result"));
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(abstract_sockets_are_never_used) {
  run([]() -> asio::awaitable<void> {
    // A path with a NUL (a leading one names an abstract socket) is refused
    // by the server and the client.
    task_executor task(harness::get().reaper);
    rpc::server_options o;
    o.socket_path = std::string("\0taskexec-abstract", 18);
    auto s = std::make_shared<rpc::server>(co_await asio::this_coro::executor, task, o);
    auto l = s->listen();
    BOOST_REQUIRE(!l);
    BOOST_TEST(l.error().message == "socket path contains a NUL byte");
    auto c = co_await remote_executor::connect(co_await asio::this_coro::executor,
                                               std::string("\0taskexec-abstract", 18));
    BOOST_REQUIRE(!c);
    BOOST_TEST(c.error().code == make_error_code(errc::invalid_argument));
    BOOST_TEST(c.error().message == "socket path contains a NUL byte");

    // A daemon serving two clients: every Unix socket it holds is bound to
    // its path in the filesystem; none is abstract ('@' in /proc/net/unix).
    daemon_process d;
    co_await d.start();
    client a, b;
    co_await a.connect(d.socket);
    co_await b.connect(d.socket);
    BOOST_REQUIRE((co_await a.call(1, "Version")).contains("result"));
    BOOST_REQUIRE((co_await b.call(1, "Version")).contains("result"));
    const int pid = static_cast<int>(d.hello.at("pid").as_int64());
    const auto mine = socket_inodes(pid);
    std::ifstream unix_table("/proc/net/unix");
    std::string line;
    std::getline(unix_table, line);  // the header
    int bound = 0, seen = 0;
    while (std::getline(unix_table, line)) {
      std::istringstream fields(line);
      std::string num, refs, proto, flags, type, st, inode, path;
      fields >> num >> refs >> proto >> flags >> type >> st >> inode >> path;
      if (!mine.contains(inode))
        continue;
      ++seen;
      BOOST_TEST_MESSAGE("daemon socket " << inode << " " << path);
      BOOST_TEST(!path.starts_with("@"));
      bound += path == d.socket;
    }
    BOOST_TEST(seen >= 3);   // the listener and the two accepted connections
    BOOST_TEST(bound >= 3);  // each named by the socket's path
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(the_connection_limit_answers_minus_32010_and_closes) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start(argv_of("--max-connections", "2"));
    client a, b, over;
    co_await a.connect(d.socket);
    BOOST_REQUIRE((co_await a.call(1, "Version")).contains("result"));
    co_await b.connect(d.socket);
    BOOST_REQUIRE((co_await b.call(1, "Version")).contains("result"));
    co_await over.connect(d.socket);
    auto refused = co_await over.next();
    BOOST_REQUIRE(refused.is_object());
    BOOST_TEST(refused.at("id").is_null());
    require_limit_error(refused.as_object(), "too many connections (limit 2)", 2);
    BOOST_TEST((co_await over.next()).is_null());  // then closed
    // The two served go on being served.
    BOOST_TEST((co_await a.call(2, "Version")).contains("result"));
    BOOST_TEST((co_await b.call(2, "Version")).contains("result"));
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(requests_pending_past_256_are_refused_and_the_connection_still_serves) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c, other;
    co_await c.connect(d.socket);
    co_await other.connect(d.socket);
    co_await launch_sleeper(other, 1);
    // 256 Waits in one write, then a Version, a Signal, an Events and a
    // 257th Wait: the reader takes them in order, so all come when 256 are
    // pending. Calls that complete without waiting never count and are
    // answered; the Wait is refused.
    std::string text;
    for (int i = 0; i < 256; ++i)
      text +=
          R"({"jsonrpc":"2.0","id":)" + std::to_string(1000 + i) + R"(,"method":"Wait"})" + "\n";
    text += R"({"jsonrpc":"2.0","id":1,"method":"Version"})"
            "\n";
    text += R"({"jsonrpc":"2.0","id":4,"method":"Signal","params":{"signal":"SIGCONT"}})"
            "\n";
    text +=
        R"([{"jsonrpc":"2.0","id":5,"method":"Events"},{"jsonrpc":"2.0","id":6,"method":"Wait"}])"
        "\n";
    text += R"({"jsonrpc":"2.0","id":2,"method":"Wait"})"
            "\n";
    co_await c.send_raw(text);
    // Four answers (the batch's is one array), in whatever order.
    std::map<std::int64_t, json::object> answers;
    for (int i = 0; i < 4; ++i) {
      auto v = co_await c.next();
      BOOST_REQUIRE(!v.is_null());
      if (v.is_array()) {
        for (const auto& a : v.as_array())
          answers[a.at("id").as_int64()] = a.as_object();
      } else {
        answers[v.at("id").as_int64()] = v.as_object();
      }
    }
    BOOST_REQUIRE_EQUAL(answers.size(), 5u);
    BOOST_TEST(answers[1].contains("result"), json::serialize(answers[1]));  // Version
    BOOST_TEST(answers[4].contains("result"), json::serialize(answers[4]));  // Signal
    BOOST_TEST(answers[5].contains("result"), json::serialize(answers[5]));  // Events
    require_limit_error(answers[6], "too many requests pending on this connection (limit 256)",
                        256);
    require_limit_error(answers[2], "too many requests pending on this connection (limit 256)",
                        256);
    // Another connection is not limited by this one.
    BOOST_TEST((co_await other.call(2, "Version")).contains("result"));
    BOOST_TEST((co_await other.call(3, "Signal", json::parse(R"({"signal":"SIGTERM"})")))
                   .contains("result"));
    for (int i = 0; i < 256; ++i) {
      auto r = co_await c.response(1000 + i);
      BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
      BOOST_TEST(r.at("result").at("signal").as_int64() == SIGTERM);
    }
    // Nothing pending any more: served again.
    BOOST_TEST((co_await c.call(3, "Version")).contains("result"));
    BOOST_TEST((co_await other.call(4, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(stats_subscriptions_past_16_are_refused_until_one_is_cancelled) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    co_await launch_sleeper(c, 1);
    std::vector<json::object> samples;
    std::string first;
    for (int i = 0; i < 16; ++i) {
      co_await c.send(10 + i, "Stats", json::parse(R"({"interval_ms":600000})"));
      auto r = co_await response_of(c, 10 + i, &samples);
      BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
      if (i == 0)
        first = std::string(r.at("result").at("subscription").as_string());
    }
    co_await c.send(2, "Stats", json::parse(R"({"interval_ms":600000})"));
    require_limit_error(co_await response_of(c, 2, &samples),
                        "too many Stats subscriptions on this connection (limit 16)", 16);
    co_await c.send(3, "Stats.Cancel", member("subscription", first));
    BOOST_TEST((co_await response_of(c, 3, &samples)).contains("result"));
    co_await c.send(4, "Stats", json::parse(R"({"interval_ms":600000})"));
    BOOST_TEST((co_await response_of(c, 4, &samples)).contains("result"));
    co_await c.send(5, "Destroy");
    BOOST_TEST((co_await response_of(c, 5, &samples)).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(exec_sessions_past_16_are_refused_until_one_ends) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    co_await launch_sleeper(c, 1);
    std::vector<json::object> notes;
    const auto start = json::parse(R"({"cmd":"/bin/cat"})");
    std::string first;
    for (int i = 0; i < 16; ++i) {
      co_await c.send(10 + i, "ExecStreaming.Start", start);
      auto r = co_await response_of(c, 10 + i, &notes);
      BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
      if (i == 0)
        first = std::string(r.at("result").at("session").as_string());
    }
    co_await c.send(2, "ExecStreaming.Start", start);
    require_limit_error(co_await response_of(c, 2, &notes),
                        "too many exec sessions on this connection (limit 16)", 16);
    // The first session's stdin closed: cat exits, and its slot is free
    // once the daemon has said so (ExecStreaming.Exited).
    co_await c.send(3, "ExecStreaming.Input",
                    json::parse(R"({"close":true,"session":")" + first + "\"}"));
    BOOST_TEST((co_await response_of(c, 3, &notes)).contains("result"));
    auto exited = [&] {
      for (const auto& n : notes)
        if (n.at("method").as_string() == "ExecStreaming.Exited" &&
            n.at("params").at("session").as_string() == first)
          return true;
      return false;
    };
    while (!exited()) {
      auto v = co_await c.next();
      BOOST_REQUIRE(!v.is_null());
      notes.push_back(v.as_object());
    }
    co_await c.send(4, "ExecStreaming.Start", start);
    BOOST_TEST((co_await response_of(c, 4, &notes)).contains("result"));
    // As root the daemon has a watchdog, which exits after it (re-parented
    // to us): it is reaped once gone, and only then is nothing left.
    int watchdog = 0;
    for (const auto& p : taskexec::detail::scan_processes())
      if (p.ppid == d.task.pid() && p.comm == "taskexec-watch")
        watchdog = p.pid;
    co_await c.send(5, "Destroy");
    BOOST_TEST((co_await response_of(c, 5, &notes)).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
    if (watchdog > 0)
      BOOST_TEST(co_await wait_reaped(watchdog));
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_SUITE_END()
