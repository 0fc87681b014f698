// A SIGKILLed daemon takes its task's whole tree along: the watchdog
// (taskexec-init -w) kills the task's cgroup (its own, or the kill-only
// guard cgroup of a task without limits) and removes it. Children of the
// task, one that left its session, and what an Exec left behind all go.
#include <signal.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <set>
#include <sstream>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/cgroups.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/isolation/cgroup.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// Every directory of the task's cgroups (each hierarchy, the guard's too).
std::vector<std::string> task_cgroups(const daemon_process& d) {
  auto l = cgroup::detect();
  const std::string name = "/taskexec/" + cgroup_name_for(d.socket);
  std::set<std::string> roots;
  for (const auto& [controller, root] : l.v1)
    roots.insert(root);
  if (!l.unified.empty())
    roots.insert(l.unified);
  std::vector<std::string> out;
  for (const auto& r : roots)
    if (fs::exists(r + name))
      out.push_back(r + name);
  return out;
}

// The numbers in `file` once it holds `count` of them (written by the task).
asio::awaitable<std::vector<int>> pids_in(const std::string& file, std::size_t count) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 3000; ++i) {
    std::istringstream in(read_file(file));
    std::vector<int> pids;
    int p = 0;
    while (in >> p)
      pids.push_back(p);
    if (pids.size() == count)
      co_return pids;
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  BOOST_FAIL("no " << count << " pids in " << file);
  co_return std::vector<int>{};
}

asio::awaitable<bool> cgroups_gone(const daemon_process& d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 3000; ++i) {
    if (task_cgroups(d).empty())
      co_return true;
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

// The task: two children, one that left the session, and (for
// with_exec) an Exec's child that left its session too; then SIGKILL the
// daemon. Everything must go, and the cgroups with it.
asio::awaitable<void> sigkill_the_daemon(bool limits, bool with_exec) {
  daemon_process d;
  co_await d.start();
  client c;
  co_await c.connect(d.socket);
  const std::string pids = d.dir / "pids";
  const std::string script =
      "sleep 100 & a=$!; sleep 200 & b=$!; setsid sleep 300 & c=$!; echo $$ $a $b $c > " + pids +
      ".new; mv " + pids + ".new " + pids + "; wait";
  json::object launch{{"cmd", "/bin/sh"}, {"args", json::array{"-c", script}}};
  if (limits) {
    launch["resource_limits"] = true;
    launch["resources"] = json::object{{"pids_max", 100}};
  }
  const std::string launch_method = "Launch";
  auto r = co_await c.call(1, launch_method, launch);
  BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
  std::vector<int> tree = co_await pids_in(pids, 4);
  BOOST_REQUIRE_EQUAL(tree.size(), 4u);
  if (with_exec) {
    json::object exec{{"cmd", "/bin/sh"},
                      {"args", json::array{"-c", "setsid sleep 400 >/dev/null 2>&1 & echo $!"}}};
    const std::string exec_method = "Exec";
    auto e = co_await c.call(2, exec_method, exec);
    BOOST_REQUIRE_MESSAGE(e.contains("result"), json::serialize(e));
    const int left = std::atoi(std::string(e.at("result").at("output").as_string()).c_str());
    BOOST_REQUIRE(left > 0);
    tree.push_back(left);
  }
  for (int p : tree)
    BOOST_REQUIRE(alive(p));
  BOOST_REQUIRE(!task_cgroups(d).empty());

  auto killed = co_await d.task.signal(SIGKILL);
  BOOST_REQUIRE(killed.has_value());
  auto daemon = co_await d.task.wait();
  BOOST_REQUIRE(daemon.has_value());
  BOOST_TEST(daemon->signal == SIGKILL);
  for (int p : tree) {
    const bool gone = co_await wait_gone(p);
    BOOST_TEST(gone, "pid " << p << " outlived the SIGKILLed daemon");
  }
  const bool removed = co_await cgroups_gone(d);
  BOOST_TEST(removed);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(watchdog)

BOOST_AUTO_TEST_CASE(a_sigkilled_daemon_takes_the_tasks_tree_along) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> { co_await sigkill_the_daemon(false, false); });
}

BOOST_AUTO_TEST_CASE(a_sigkilled_daemon_takes_a_limited_tasks_tree_along) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> { co_await sigkill_the_daemon(true, false); });
}

BOOST_AUTO_TEST_CASE(a_sigkilled_daemon_takes_what_an_exec_left_along) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> { co_await sigkill_the_daemon(false, true); });
}

// Without a SIGKILL nothing is killed early: the task runs until Destroy,
// which ends it, and the guard cgroup goes with the daemon.
BOOST_AUTO_TEST_CASE(the_watchdog_waits_for_the_daemon) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    const std::string launch_method = "Launch";
    auto r = co_await c.call(1, launch_method,
                             json::parse(R"({"cmd":"/bin/sh","args":["-c","exec sleep 1000"]})"));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    const int task = static_cast<int>(r.at("result").at("pid").as_int64());
    const auto dirs = task_cgroups(d);
    BOOST_REQUIRE_EQUAL(dirs.size(), 1u);  // the guard alone
    BOOST_TEST(read_file(dirs[0] + "/cgroup.procs") == std::to_string(task) + "\n");
    // The daemon's watchdog is running, outside the task's cgroup.
    int watchdog = 0;
    for (const auto& p : taskexec::detail::scan_processes())
      if (p.ppid == d.task.pid() && p.comm == "taskexec-watch")
        watchdog = p.pid;
    BOOST_REQUIRE(watchdog > 0);
    BOOST_TEST(read_file(dirs[0] + "/cgroup.procs").find(std::to_string(watchdog)) ==
               std::string::npos);
    // It keeps nothing of the daemon's but its pipe (fd 3): not the
    // listening socket, which would answer connects after the daemon died.
    // It closes the rest as it starts: wait (bounded) until it has.
    const std::string fd_dir = "/proc/" + std::to_string(watchdog) + "/fd";
    std::string fds;
    for (int i = 0; i < 500; ++i) {
      std::set<int> open;
      for (const auto& e : std::filesystem::directory_iterator(fd_dir))
        open.insert(std::stoi(e.path().filename().string()));
      fds.clear();
      for (int fd : open)
        fds += std::to_string(fd) + " ";
      if (fds == "0 1 2 3 ")
        break;
      asio::steady_timer pause(co_await asio::this_coro::executor, 10ms);
      co_await pause.async_wait(asio::use_awaitable);
    }
    BOOST_TEST(fds == "0 1 2 3 ");
    BOOST_TEST(alive(task));
    const std::string destroy_method = "Destroy";
    BOOST_TEST((co_await c.call(2, destroy_method)).contains("result"));
    auto daemon = co_await d.task.wait();
    BOOST_REQUIRE(daemon.has_value());
    BOOST_TEST(daemon->exit_code == 0);
    const bool gone = co_await wait_gone(task);
    BOOST_TEST(gone);
    const bool removed = co_await cgroups_gone(d);
    BOOST_TEST(removed);
  });
}

BOOST_AUTO_TEST_SUITE_END()
