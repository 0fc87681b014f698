// taskexecd --cgroup-parent (docs/operations.md, systemd): a PATH puts the
// task's cgroups below it in every hierarchy; `self` moves the daemon to the
// leaf <own>/daemon and puts the task at <own>/<task>, as under a unit with
// Delegate=yes. Root: cgroups.
#include <signal.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>

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

// The path of `pid` in the hierarchy whose /proc/<pid>/cgroup line has
// `controllers` ("" for the unified tree's 0:: line).
std::string cgroup_of(int pid, const std::string& controllers) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/cgroup"));
  for (std::string line; std::getline(in, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (line.substr(a + 1, b - a - 1) == controllers)
      return line.substr(b + 1);
  }
  return "?";
}

json::value limited_sleeper() {
  json::object p{{"cmd", "/bin/sleep"},
                 {"args", json::array{"1000"}},
                 {"resource_limits", true},
                 {"resources", json::object{{"pids_max", 64}}}};
  return p;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cgroup_parent, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(a_path_holds_the_tasks_cgroups_in_every_hierarchy) {
  TASKEXEC_REQUIRE_ROOT();
  const auto layout = cgroup::detect();
  BOOST_REQUIRE(layout.kind != cgroup::mode::none);
  const std::string parent = "taskexec-ops-test-" + std::to_string(::getpid());
  run([&]() -> asio::awaitable<void> {
    daemon_process d;
    std::vector<std::string> extra{"--task-id", "cgp-1", "--cgroup-parent"};
    extra.push_back("/" + parent + "/jobs");
    co_await d.start(std::move(extra));
    client c;
    co_await c.connect(d.socket);
    auto r = co_await c.call(1, "Launch", limited_sleeper());
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    const int pid = static_cast<int>(r.at("result").at("pid").as_int64());
    const std::string want = "/" + parent + "/jobs/" + cgroup_name_for("cgp-1");
    if (!layout.unified.empty())
      BOOST_TEST(cgroup_of(pid, "") == want);
    if (layout.has_v1("memory"))
      BOOST_TEST(cgroup_of(pid, "memory") == want);
    if (layout.has_v1("pids")) {
      BOOST_TEST(cgroup_of(pid, "pids") == want);
      BOOST_TEST(read_file(layout.v1.at("pids") + want + "/pids.max") == "64\n");
    }
    BOOST_TEST((co_await c.call(2, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
    // The task's cgroups are gone; the parent (ours) is left: remove it.
    for (const auto& h : layout.hierarchies) {
      BOOST_TEST(!fs::exists(h.dir + want), h.dir + want);
      ::rmdir((h.dir + "/" + parent + "/jobs").c_str());
      ::rmdir((h.dir + "/" + parent).c_str());
    }
    if (!layout.unified.empty()) {
      BOOST_TEST(!fs::exists(layout.unified + want));
      ::rmdir((layout.unified + "/" + parent + "/jobs").c_str());
      ::rmdir((layout.unified + "/" + parent).c_str());
    }
  });
}

BOOST_AUTO_TEST_CASE(self_moves_the_daemon_to_a_leaf_and_the_task_beside_it) {
  TASKEXEC_REQUIRE_ROOT();
  const auto layout = cgroup::detect();
  BOOST_REQUIRE(layout.kind != cgroup::mode::none);
  run([&]() -> asio::awaitable<void> {
    // The daemon in a cgroup of its own, as systemd starts a unit with
    // Delegate=yes: our executor's cgroup for it (basic_process_cgroup).
    temp_dir dir;
    const std::string socket = dir / "run/d.sock";
    task_executor daemon{harness::get().reaper};
    pipe_reader out;
    exec_command cmd;
    cmd.cmd = TASKEXECD;
    cmd.args = {"--socket",  socket,     "--log-level",     "warn",
                "--task-id", "cgp-self", "--cgroup-parent", "self"};
    cmd.basic_process_cgroup = true;
    cmd.stdout_fd = out.write_fd();
    auto started = co_await daemon.launch(cmd);
    BOOST_REQUIRE_MESSAGE(started, (started ? "" : started.error().message));
    out.close_write();
    BOOST_REQUIRE(!(co_await out.line()).empty());
    const std::string own_leaf =
        cgroup_of(started->pid, layout.unified.empty() ? "name=systemd" : "");
    BOOST_REQUIRE(own_leaf.ends_with("/daemon"));
    const std::string own = own_leaf.substr(0, own_leaf.size() - 7);
    BOOST_TEST(own.starts_with("/taskexec/"));  // where our executor put it
    client c;
    co_await c.connect(socket);
    auto r = co_await c.call(1, "Launch", limited_sleeper());
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    const int pid = static_cast<int>(r.at("result").at("pid").as_int64());
    const std::string want = own + "/" + cgroup_name_for("cgp-self");
    if (!layout.unified.empty())
      BOOST_TEST(cgroup_of(pid, "") == want);
    if (layout.has_v1("pids")) {
      BOOST_TEST(cgroup_of(started->pid, "pids") == own_leaf);  // moved there too
      BOOST_TEST(cgroup_of(pid, "pids") == want);
    }
    // Nothing but the leaf and the task below the daemon's own cgroup.
    if (!layout.unified.empty())
      BOOST_TEST(read_file(layout.unified + own + "/cgroup.procs") == "");
    BOOST_TEST((co_await c.call(2, "Destroy")).contains("result"));
    BOOST_TEST((co_await daemon.wait())->exit_code == 0);
    if (!layout.unified.empty())
      BOOST_TEST(!fs::exists(layout.unified + want));
  });
}

BOOST_AUTO_TEST_SUITE_END()
