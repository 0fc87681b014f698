// The daemon's SO_PEERCRED check: a caller of another uid is refused even
// when the socket's file permissions would let it in.
#include <sys/stat.h>

#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <sstream>

#include "harness.hpp"
#include "privileged.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace json = boost::json;

namespace {
// Start taskexecd as our task; returns its socket once the handshake is read.
asio::awaitable<std::string> start_daemon(task_executor& d, const temp_dir& dir,
                                          std::vector<std::string> extra) {
  const std::string socket = dir / "d.sock";
  pipe_reader out;
  exec_command cmd;
  cmd.cmd = TASKEXECD;
  cmd.args = {"--socket", socket, "--log-level", "off"};
  cmd.args.insert(cmd.args.end(), extra.begin(), extra.end());
  cmd.stdout_fd = out.write_fd();
  BOOST_REQUIRE(co_await d.launch(cmd));
  out.close_write();
  BOOST_REQUIRE(!(co_await out.line()).empty());
  // The temporary directory is 0700; open it to others. The socket itself is
  // 0600, or 0666 when --allow-uid is given.
  ::chmod(dir.path.c_str(), 0711);
  if (std::find(extra.begin(), extra.end(), "--allow-uid") == extra.end())
    ::chmod(socket.c_str(), 0666);  // only the peer check stands in the way
  co_return socket;
}

// Call the daemon as user nobody; returns the first line it answers. The
// helper is copied next to the socket: the build tree may not be reachable
// for nobody (CI clones anywhere).
asio::awaitable<std::string> helper_as_nobody(const std::string& socket,
                                              std::vector<std::string> args) {
  const auto helper = std::filesystem::path(socket).parent_path() / "rpc-helper";
  std::filesystem::copy_file(TASKEXEC_TEST_HELPER, helper,
                             std::filesystem::copy_options::overwrite_existing);
  ::chmod(helper.c_str(), 0755);
  exec_command cmd;
  cmd.cmd = helper.string();
  cmd.args = std::move(args);
  cmd.user = "nobody";
  auto out = co_await output_of(cmd);
  BOOST_REQUIRE_MESSAGE(!out.empty(), "no answer for nobody");
  co_return out;
}

asio::awaitable<json::object> call_as_nobody(const std::string& socket,
                                             const std::string& request) {
  std::vector<std::string> args{"--rpc", socket, request};
  co_return json::parse(co_await helper_as_nobody(socket, std::move(args))).as_object();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(peer_check, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(another_uid_is_refused) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir dir;
  run([&]() -> asio::awaitable<void> {
    task_executor d(harness::get().reaper);
    auto socket = co_await start_daemon(d, dir, {});
    auto r = co_await call_as_nobody(socket, R"({"jsonrpc":"2.0","id":1,"method":"Version"})");
    BOOST_TEST(r.at("error").at("code").as_int64() == -32005);
    BOOST_TEST(r.at("error").at("message").as_string() ==
               "permission denied: uid 65534 may not call this daemon");
    BOOST_TEST(r.at("id").is_null());
    // The client library reports it as permission_denied, in the daemon's words.
    std::vector<std::string> args{"--remote-version", socket};
    auto said = co_await helper_as_nobody(socket, std::move(args));
    BOOST_TEST(said == std::to_string(static_cast<int>(errc::permission_denied)) +
                           " permission denied: uid 65534 may not call this daemon\n");
    BOOST_TEST((co_await d.shutdown("SIGTERM", 5s)).has_value());
  });
}

// A refused peer is logged, but once a minute per uid however often it
// tries: a peer cannot fill the daemon's log.
BOOST_AUTO_TEST_CASE(a_peer_refused_again_and_again_is_logged_once) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir dir;
  run([&]() -> asio::awaitable<void> {
    task_executor d(harness::get().reaper);
    const std::string log = dir / "daemon.log";
    auto socket = co_await start_daemon(d, dir, argv_of("--log-level", "warn", "--log-file", log));
    for (int i = 0; i < 5; ++i) {
      auto r = co_await call_as_nobody(socket, R"({"jsonrpc":"2.0","id":1,"method":"Version"})");
      BOOST_TEST(r.at("error").at("code").as_int64() == -32005);
    }
    // Each refusal's line (if any) is written before its answer is sent.
    std::istringstream in(read_file(log));
    std::vector<std::string> refused;
    for (std::string l; std::getline(in, l);)
      if (l.find("uid 65534") != std::string::npos)
        refused.push_back(l);
    BOOST_REQUIRE_EQUAL(refused.size(), 1u);
    BOOST_TEST(refused[0].find("refused a connection of uid 65534: not allowed to call this "
                               "daemon (-32005)") != std::string::npos,
               refused[0]);
    BOOST_TEST((co_await d.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(an_allowed_uid_may_call) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir dir;
  run([&]() -> asio::awaitable<void> {
    task_executor d(harness::get().reaper);
    std::vector<std::string> allow{"--allow-uid", "65534"};
    auto socket = co_await start_daemon(d, dir, std::move(allow));
    auto r = co_await call_as_nobody(socket, R"({"jsonrpc":"2.0","id":1,"method":"Version"})");
    BOOST_TEST(r.at("result").at("version").as_string() == "2.0.0");
    BOOST_TEST((co_await d.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_SUITE_END()
