// Faults that need root, around a daemon whose task is in a cgroup: fork
// failing under pids.max, a task that forks faster than it can be killed,
// its cgroup removed under the daemon, a full filesystem for stdout. Each
// ends with the right answer, the daemon still serving, and nothing left.
#include <signal.h>
#include <sys/mount.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <set>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/cgroups.hpp"
#include "taskexec/isolation/cgroup.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// The task's v1 pids cgroup, or its v2 directory on a pure v2 host.
std::string pids_dir(const daemon_process& d) {
  auto l = cgroup::detect();
  const std::string name = "/taskexec/" + cgroup_name_for(d.socket);
  return l.kind == cgroup::mode::v2 ? l.unified + name : l.v1.at("pids") + name;
}

// Every directory of the task's cgroups (each v1 hierarchy, the v2 tree),
// and the root of each, deepest first.
std::vector<std::pair<std::string, std::string>> cgroup_dirs(const daemon_process& d) {
  auto l = cgroup::detect();
  const std::string name = "/taskexec/" + cgroup_name_for(d.socket);
  std::set<std::string> roots;
  for (const auto& [controller, root] : l.v1)
    roots.insert(root);
  if (!l.unified.empty())
    roots.insert(l.unified);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : roots)
    if (fs::exists(r + name))
      out.emplace_back(r + name, r);
  return out;
}

// Until `file` holds `value` (a cgroup counter has no event: a bounded poll).
asio::awaitable<bool> file_reaches(const std::string& file, const std::string& value) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 2000; ++i) {
    if (read_file(file) == value)
      co_return true;
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

json::value limited_launch(const std::string& script, int pids_max) {
  json::object p{{"cmd", "/bin/sh"},
                 {"args", json::array{"-c", script}},
                 {"resource_limits", true},
                 {"resources", json::object{{"pids_max", pids_max}}}};
  return p;
}

json::value fork_bomb(int pids_max) {
  json::object p{{"cmd", TASKEXEC_TEST_HELPER},
                 {"args", json::array{"--fork-bomb"}},
                 {"resource_limits", true},
                 {"resources", json::object{{"pids_max", pids_max}}}};
  return p;
}

// 1 MiB to stdout_path; the writer's status to stderr_path.
json::value flood_into(const std::string& out, const std::string& err) {
  json::object p{{"cmd", "/bin/sh"},
                 {"args", json::array{"-c", "head -c 1048576 /dev/zero; echo \"rc=$?\" >&2"}},
                 {"stdout_path", out},
                 {"stderr_path", err}};
  return p;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_faults_privileged, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(exec_at_the_tasks_pids_max_fails_with_eagain) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    auto r = co_await c.call(1, "Launch", limited_launch("exec sleep 1000", 1));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    BOOST_REQUIRE(co_await file_reaches(pids_dir(d) + "/pids.current", "1\n"));
    // One process and pids.max 1: a command started inside the task is
    // refused as a fork inside it would be.
    auto refused = co_await c.call(2, "Exec", json::parse(R"({"cmd":"/bin/true"})"));
    BOOST_REQUIRE_MESSAGE(refused.contains("error"), json::serialize(refused));
    BOOST_TEST(error_code_of(refused) == -32004);
    BOOST_TEST(refused.at("error").at("message").as_string() ==
               "join cgroup: its pids.max is reached: Resource temporarily unavailable");
    // Nothing left in it: the refused child joined the cgroup, saw the
    // limit and exited, and its count goes once it is reaped (the answer
    // may come first: the pids controller counts a zombie until its reap).
    BOOST_TEST(co_await file_reaches(pids_dir(d) + "/pids.current", "1\n"));
    BOOST_TEST((co_await c.call(3, "Version")).contains("result"));
    // Room for one more: the same Exec runs.
    auto more =
        co_await c.call(4, "UpdateResources", json::parse(R"({"resources":{"pids_max":2}})"));
    BOOST_REQUIRE_MESSAGE(more.contains("result"), json::serialize(more));
    auto ran = co_await c.call(5, "Exec", json::parse(R"({"cmd":"/bin/true"})"));
    BOOST_REQUIRE_MESSAGE(ran.contains("result"), json::serialize(ran));
    BOOST_TEST(ran.at("result").at("exit_code").as_int64() == 0);
    BOOST_TEST((co_await c.call(6, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
    BOOST_TEST(cgroup_dirs(d).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_task_that_forks_faster_than_it_is_killed_is_stopped) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    // A fork bomb held at 200 processes by its pids.max (so as not to take
    // the machine): each one killed is replaced at once.
    auto r = co_await c.call(1, "Launch", fork_bomb(200));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    BOOST_REQUIRE(co_await file_reaches(pids_dir(d) + "/pids.current", "200\n"));
    auto down = co_await c.call(2, "Shutdown",
                                json::parse(R"({"signal":"SIGTERM","grace_period_ms":100})"));
    BOOST_TEST(down.contains("result"), json::serialize(down));
    auto waited = co_await c.call(3, "Wait");
    BOOST_TEST(waited.at("result").at("signal").as_int64() == SIGKILL);
    BOOST_TEST((co_await c.call(4, "Version")).contains("result"));
    BOOST_TEST((co_await c.call(5, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
    BOOST_TEST(cgroup_dirs(d).empty());  // removed: every process of it was gone
  });
}

BOOST_AUTO_TEST_CASE(the_tasks_cgroup_removed_under_the_daemon) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    auto r = co_await c.call(1, "Launch", limited_launch("exec sleep 1000", 64));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    const int pid = static_cast<int>(r.at("result").at("pid").as_int64());
    // An administrator moves the task out and removes its cgroups.
    const auto dirs = cgroup_dirs(d);
    BOOST_REQUIRE(!dirs.empty());
    for (const auto& [dir, root] : dirs)
      write_file(root + "/cgroup.procs", std::to_string(pid));
    for (const auto& [dir, root] : dirs)
      BOOST_REQUIRE_MESSAGE(::rmdir(dir.c_str()) == 0, dir << ": " << std::strerror(errno));

    // Stats still answers, and samples (the cgroup's counters are gone).
    client watcher;
    co_await watcher.connect(d.socket);
    co_await watcher.send(1, "Stats", json::parse(R"({"interval_ms":60000})"));
    auto answer = (co_await watcher.next()).as_object();
    BOOST_TEST(answer.contains("result"), json::serialize(answer));
    auto sample = co_await watcher.next();
    BOOST_TEST(sample.is_object());
    BOOST_TEST(sample.at("method").as_string() == "Stats.Sample", json::serialize(sample));
    watcher.close();
    BOOST_TEST((co_await c.call(3, "Version")).contains("result"));
    BOOST_TEST(
        (co_await c.call(4, "Signal", json::parse(R"({"signal":"SIGTERM"})"))).contains("result"));
    auto waited = co_await c.call(5, "Wait");
    BOOST_TEST(waited.at("result").at("signal").as_int64() == SIGTERM);
    BOOST_TEST((co_await c.call(6, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
    BOOST_TEST(!alive(pid));
    BOOST_TEST(cgroup_dirs(d).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_full_filesystem_for_stdout_fails_the_tasks_writes_not_the_daemon) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    const std::string small = d.dir / "small";
    fs::create_directory(small);
    BOOST_REQUIRE(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k") == 0);
    struct unmount {
      std::string path;
      ~unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } guard{small};
    client c;
    co_await c.connect(d.socket);
    auto r = co_await c.call(1, "Launch", flood_into(small + "/out", d.dir / "err"));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    BOOST_TEST((co_await c.call(2, "Wait")).at("result").at("exit_code").as_int64() == 0);
    BOOST_TEST(read_file(d.dir / "err") ==
               "head: error writing 'standard output': No space left on device\nrc=1\n");
    BOOST_TEST(fs::file_size(small + "/out") == 64u * 1024);
    BOOST_TEST((co_await c.call(3, "Version")).contains("result"));
    BOOST_TEST((co_await c.call(4, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
