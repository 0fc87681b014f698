// ExecStreaming in a container task: the same cases as on the host, run
// inside the task's namespaces and root (embedded and through taskexecd),
// and a session's context: hostname, user, mount namespace, the task's PID
// namespace.
#include <boost/test/unit_test.hpp>

#include <filesystem>

#include "exec_streaming_cases.hpp"
#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/remote_executor.hpp"
#include "test_root.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace fs = std::filesystem;

namespace {

template <class T>
std::string why(const result<T>& r) {
  return r ? std::string() : r.error().message;
}

std::string task_id(const std::string& what) {
  return "ct-stream-" + what + "-" + std::to_string(::getpid());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(exec_streaming_container, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(the_cases_inside_a_container_task) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root({"stty", "head", "id"});
    const auto id = task_id("embedded");
    task_executor t(harness::get().reaper, {.task_id = id});
    pipe_reader out;
    auto cmd = in_container(root, "echo ready; exec sleep 1000");
    cmd.user = "nobody";
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, why(st));
    out.close_write();
    BOOST_REQUIRE(co_await out.line() == "ready");
    // Pids the commands print are of the task's PID namespace.
    co_await run_streaming_cases(
        [&t](exec_session_options o) { return open_embedded(t, std::move(o)); }, false);

    // The session is the task's: hostname, user, root, mount namespace, and
    // a process inside its PID namespace (init is the task's, pid 1).
    auto d = co_await open_embedded(
        t, session_of(
               argv_of("/bin/sh", "-c",
                       "hostname; id -u; readlink /proc/self/ns/mnt; cat /proc/1/comm; ls -1 /"),
               true));
    auto tr = co_await drain(*d);
    const auto mnt = fs::read_symlink("/proc/" + std::to_string(st->pid) + "/ns/mnt").string();
    BOOST_TEST(
        tr.out ==
        id + "\r\n65534\r\n" + mnt +
            "\r\ntaskexec-init\r\nbin\r\ndev\r\netc\r\nlib\r\nlib64\r\nproc\r\nsys\r\nusr\r\n");
    BOOST_TEST(tr.exit_code == 0);
    // A binary only the host has is not found inside.
    auto host_only = co_await t.exec_streaming(session_of(argv_of("/bin/kill", "-l"), false));
    BOOST_REQUIRE(!host_only);
    BOOST_TEST(host_only.error().message == "file /bin/kill not found under path " + root.str());

    // The task's end ends the session.
    auto running = co_await open_embedded(t, session_of(argv_of("/bin/sleep", "1000"), true));
    const int pid = running->pid();
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0s)).has_value());
    BOOST_TEST((co_await drain(*running)).exit_code == 128 + SIGKILL);
    BOOST_TEST(co_await wait_gone(pid));
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(the_cases_through_the_daemon_for_a_container_task) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root({"stty", "head", "id"});
    temp_dir dir;
    create_options o;
    o.daemon_path = TASKEXECD;
    o.socket_path = dir / "run/d.sock";
    o.log_file = dir / "taskexecd.log";
    o.hostname = task_id("remote");
    auto created = co_await create_executor(harness::get().io.get_executor(), o);
    BOOST_REQUIRE_MESSAGE(created, why(created));
    daemon_guard guard(created->config.pid);
    auto& c = created->client;
    auto cmd = in_container(root, "exec sleep 1000");
    auto st = co_await c.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, why(st));
    co_await run_streaming_cases(
        [&c](exec_session_options so) { return open_remote(c, std::move(so)); }, false);
    BOOST_TEST((co_await c.destroy()).has_value());
    BOOST_TEST(co_await wait_gone(created->config.pid));
  });
}

BOOST_AUTO_TEST_SUITE_END()
