// The impostor socket (docs/security.md, "No impostor socket"): a root
// daemon refuses a socket path that another user could change (a directory
// or a link of theirs on the way), and a root client refuses to send a byte
// to a socket that another user serves, unless told to expect that uid.
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>

#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/remote_executor.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace fs = std::filesystem;

namespace {

constexpr uid_t nobody = 65534;

struct finished {
  int exit_code = -1;
  std::string out, err;
};

// A program run to its end as root: exit code, stdout and stderr.
asio::awaitable<finished> run_to_end(const temp_dir& dir, std::string program,
                                     std::vector<std::string> args) {
  task_executor t(harness::get().reaper);
  exec_command cmd;
  cmd.cmd = std::move(program);
  cmd.args = std::move(args);
  cmd.stdout_path = dir / "out.log";
  cmd.stderr_path = dir / "err.log";
  ::unlink(cmd.stdout_path.c_str());
  ::unlink(cmd.stderr_path.c_str());
  auto st = co_await t.launch(cmd);
  BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
  auto done = co_await t.wait();
  BOOST_REQUIRE(done);
  co_return finished{done->exit_code, read_file(dir / "out.log"), read_file(dir / "err.log")};
}

// A directory `path` owned by nobody with `mode`.
void nobody_dir(const std::string& path, mode_t mode) {
  fs::create_directory(path);
  BOOST_REQUIRE(::chown(path.c_str(), nobody, nobody) == 0);
  BOOST_REQUIRE(::chmod(path.c_str(), mode) == 0);
}

// taskexecd's refusal of `socket`: exit 1, this message, no socket made.
asio::awaitable<void> require_refused(const temp_dir& dir, const std::string& socket,
                                      const std::string& message) {
  auto r = co_await run_to_end(dir, TASKEXECD, argv_of("--socket", socket));
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err == "taskexecd: " + message + "\n");
  BOOST_TEST(r.out.empty());  // no handshake
  BOOST_TEST(!fs::exists(fs::symlink_status(socket)));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(impostor_socket, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(a_socket_directory_of_another_user_is_refused) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir dir;
  run([&]() -> asio::awaitable<void> {
    // The socket's own directory, nobody's (not writable by anyone else).
    nobody_dir(dir / "own", 0700);
    co_await require_refused(dir, dir / "own/d.sock",
                             "socket directory \"" + (dir / "own") +
                                 "\" is owned by uid 65534 (mode 0700): every directory down to "
                                 "the socket must be owned by root");
    // A directory of nobody's above it: nobody could rename the daemon's
    // directory away and put their own in its place.
    nobody_dir(dir / "above", 0755);
    co_await require_refused(dir, dir / "above/run/d.sock",
                             "socket directory \"" + (dir / "above") +
                                 "\" is owned by uid 65534 (mode 0755): every directory down to "
                                 "the socket must be owned by root");
    BOOST_TEST(!fs::exists(dir / "above/run"));  // nothing made below it
  });
}

BOOST_AUTO_TEST_CASE(a_link_of_another_user_on_the_way_is_refused_and_root_links_are_followed) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir dir;
  run([&]() -> asio::awaitable<void> {
    // In a sticky directory like /tmp anyone may plant a link; it must not
    // lead the daemon into their directory.
    fs::create_directory(dir / "sticky");
    BOOST_REQUIRE(::chmod((dir / "sticky").c_str(), 01777) == 0);
    nobody_dir(dir / "theirs", 0755);
    fs::create_directory_symlink(dir / "theirs", dir / "sticky/link");
    BOOST_REQUIRE(::lchown((dir / "sticky/link").c_str(), nobody, nobody) == 0);
    co_await require_refused(dir, dir / "sticky/link/d.sock",
                             "socket directory \"" + (dir / "sticky/link") +
                                 "\" is a symbolic link owned by uid 65534: links on the way to "
                                 "the socket must be owned by root");

    // Root's own links are followed, and their targets checked:
    // /var/run -> /run on Debian.
    const std::string name = "taskexec-test-" + std::to_string(::getpid());
    const std::string socket = "/var/run/" + name + "/d.sock";
    struct remove_run_dir {
      std::string path;
      ~remove_run_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
      }
    } cleanup{"/run/" + name};
    task_executor d(harness::get().reaper);
    pipe_reader out;
    exec_command cmd;
    cmd.cmd = TASKEXECD;
    cmd.args = argv_of("--socket", socket, "--log-level", "off");
    cmd.stdout_fd = out.write_fd();
    BOOST_REQUIRE(co_await d.launch(cmd));
    out.close_write();
    BOOST_TEST(!(co_await out.line()).empty());  // the handshake
    struct stat st {};
    BOOST_REQUIRE(::stat(("/var/run/" + name).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 07777) == 0700u);
    auto c = co_await remote_executor::connect(co_await asio::this_coro::executor, socket);
    BOOST_REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
    BOOST_TEST((co_await c->version()).value() == "2.0.0");
    BOOST_TEST((co_await d.shutdown("SIGTERM", 5s)).has_value());
  });
}

// The attack end to end: nobody owns a directory on the way, so the daemon
// refuses it. Had it listened there, nobody could rename the daemon's
// directory away and serve the path: a root client (library or CLI) then
// sends it nothing, unless told to expect uid 65534.
BOOST_AUTO_TEST_CASE(an_impostor_gets_nothing_from_a_root_client) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir dir;
  ::chmod(dir.path.c_str(), 0755);  // nobody must reach the helper and the socket
  run([&]() -> asio::awaitable<void> {
    nobody_dir(dir / "theirs", 0755);
    const std::string socket = dir / "theirs/run/d.sock";
    co_await require_refused(dir, socket,
                             "socket directory \"" + (dir / "theirs") +
                                 "\" is owned by uid 65534 (mode 0755): every directory down to "
                                 "the socket must be owned by root");

    // nobody's socket at the path (its directory made as nobody would).
    nobody_dir(dir / "theirs/run", 0755);
    const auto helper = fs::path(dir.path) / "helper";
    fs::copy_file(TASKEXEC_TEST_HELPER, helper);
    ::chmod(helper.c_str(), 0755);
    task_executor impostor(harness::get().reaper);
    pipe_reader said;
    exec_command cmd;
    cmd.cmd = helper.string();
    cmd.args = argv_of("--impostor", socket, "4");
    cmd.user = "nobody";
    cmd.stdout_fd = said.write_fd();
    BOOST_REQUIRE(co_await impostor.launch(cmd));
    said.close_write();
    BOOST_REQUIRE_EQUAL(co_await said.line(), "listening");

    const std::string refusal =
        "socket " + socket + " is served by uid 65534, expected root: nothing was sent to it";
    // The library refuses before it sends a byte.
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await remote_executor::connect(ex, socket);
    BOOST_REQUIRE(!c);
    BOOST_TEST(c.error().code == make_error_code(errc::connection_failed));
    BOOST_TEST(c.error().message == refusal);
    BOOST_TEST(co_await said.line() == "0");
    // So does the CLI.
    auto cli = co_await run_to_end(dir, TASKEXEC_CLI, argv_of("--socket", socket, "version"));
    BOOST_TEST(cli.exit_code == 3);  // the daemon cannot be reached (issue 19 exit codes)
    BOOST_TEST(cli.err == "taskexec: " + refusal + "\n");
    BOOST_TEST(co_await said.line() == "0");
    // Told to expect uid 65534, both talk to it.
    connect_options trust;
    trust.expect_uid = nobody;
    auto c2 = co_await remote_executor::connect(ex, socket, trust);
    BOOST_REQUIRE_MESSAGE(c2, (c2 ? "" : c2.error().message));
    c2->close();
    BOOST_TEST(std::stoul(co_await said.line()) > 0u);
    cli = co_await run_to_end(dir, TASKEXEC_CLI,
                              argv_of("--socket", socket, "--expect-uid", "65534", "version"));
    BOOST_TEST(cli.exit_code == 0);
    BOOST_TEST(cli.err.empty());
    BOOST_TEST(std::stoul(co_await said.line()) > 0u);
    BOOST_TEST((co_await impostor.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
