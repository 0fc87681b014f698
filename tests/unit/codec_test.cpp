#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdint>

#include "taskexec/codec.hpp"

using namespace taskexec;
namespace json = boost::json;

namespace {
decode_error fails(std::string_view text) {
  auto r = decode_exec_command(json::parse(text));
  BOOST_REQUIRE_MESSAGE(!r, "decoded: " << text);
  return r.error();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(codec)

BOOST_AUTO_TEST_CASE(full_exec_command_decodes) {
  auto r = decode_exec_command(json::parse(R"({
    "cmd": "/bin/app", "args": ["-v", "x"], "env": ["A=1"], "user": "nobody",
    "task_dir": "/t", "work_dir": "/t/w", "stdout_path": "/t/out", "stderr_path": "/t/err",
    "isolation": "container", "resource_limits": true, "basic_process_cgroup": false,
    "resources": {"cpu_shares": 512, "cpu_quota_us": 50000, "cpu_period_us": 100000,
                  "cpuset_cpus": "0-1", "memory_mb": 256, "memory_max_mb": -1, "pids_max": 100},
    "oom_score_adj": -500, "no_pivot_root": true,
    "mounts": [{"task_path": "/data", "host_path": "/srv", "readonly": true, "propagation_mode": "private"}],
    "devices": [{"task_path": "/dev/fuse", "host_path": "/dev/fuse", "cgroup_permissions": "rwm"}],
    "network_isolation": {"mode": "group", "path": "/var/run/netns/n1"},
    "default_pid_mode": "private", "default_ipc_mode": "host", "capabilities": ["CAP_NET_RAW"]})"));
  BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  const auto& c = *r;
  BOOST_TEST(c.cmd == "/bin/app");
  BOOST_TEST(c.args == (std::vector<std::string>{"-v", "x"}), boost::test_tools::per_element());
  BOOST_TEST(c.user == "nobody");
  BOOST_TEST(c.isolation == "container");
  BOOST_TEST(c.resource_limits);
  BOOST_TEST(c.resources.cpu_shares == 512);
  BOOST_TEST(c.resources.memory_max_mb == -1);
  BOOST_TEST(c.resources.cpuset_cpus == "0-1");
  BOOST_TEST(c.oom_score_adj == -500);
  BOOST_REQUIRE_EQUAL(c.mounts.size(), 1u);
  BOOST_TEST(c.mounts[0].readonly);
  BOOST_TEST(c.devices.at(0).cgroup_permissions == "rwm");
  BOOST_REQUIRE(c.network_isolation);
  BOOST_TEST(c.network_isolation->path == "/var/run/netns/n1");
  BOOST_TEST(c.capabilities.at(0) == "CAP_NET_RAW");

  // Encoding and decoding again gives the same command.
  auto again = decode_exec_command(json::value_from(c));
  BOOST_REQUIRE(again);
  BOOST_TEST((*again == c));
}

BOOST_AUTO_TEST_CASE(absent_fields_keep_defaults) {
  auto c = json::value_to<exec_command>(json::parse(R"({"cmd": "true"})"));
  BOOST_TEST(c.cmd == "true");
  BOOST_TEST(c.args.empty());
  BOOST_TEST(c.oom_score_adj == 0);
  BOOST_TEST(!c.network_isolation);
  BOOST_TEST((c.resources == task_resources{}));
}

BOOST_AUTO_TEST_CASE(errors_name_the_field) {
  auto e = fails(R"({"cmd": "x", "colour": "red"})");
  BOOST_TEST(e.field == "colour");
  BOOST_TEST(e.message == "unknown field \"colour\"");

  e = fails(R"({"cmd": 5})");
  BOOST_TEST(e.field == "cmd");
  BOOST_TEST(e.message == "cmd must be a string");

  e = fails(R"({"cmd": "x", "args": ["a", 1]})");
  BOOST_TEST(e.field == "args[1]");
  BOOST_TEST(e.message == "args[1] must be a string");

  e = fails(R"({"cmd": "x", "resources": {"cpu_shares": "lots"}})");
  BOOST_TEST(e.field == "resources.cpu_shares");
  BOOST_TEST(e.message == "resources.cpu_shares must be an integer");

  e = fails(R"({"cmd": "x", "resources": {"memory_mb": 1, "swap": 2}})");
  BOOST_TEST(e.field == "resources.swap");

  e = fails(R"({"cmd": "x", "resources": {"memory_mb": -5}})");
  BOOST_TEST(e.message == "resources.memory_mb must be between 0 and 9223372036854775807");

  e = fails(R"({"cmd": "x", "oom_score_adj": 1001})");
  BOOST_TEST(e.message == "oom_score_adj must be between -1000 and 1000");

  e = fails(R"({"cmd": "x", "oom_score_adj": 18446744073709551615})");
  BOOST_TEST(e.field == "oom_score_adj");

  e = fails(R"({"cmd": "x", "oom_score_adj": 1.5})");
  BOOST_TEST(e.message == "oom_score_adj must be an integer");

  e = fails(
      R"({"cmd": "x", "mounts": [{"task_path": "/a", "host_path": "/b", "readonly": "yes"}]})");
  BOOST_TEST(e.field == "mounts[0].readonly");
  BOOST_TEST(e.message == "mounts[0].readonly must be true or false");

  e = fails(R"({"cmd": "x", "network_isolation": {"path": "/n", "labels": {}}})");
  BOOST_TEST(e.field == "network_isolation.labels");

  e = fails(R"([1, 2])");
  BOOST_TEST(e.field == "");
  BOOST_TEST(e.message == "params must be an object");

  BOOST_CHECK_THROW(json::value_to<exec_command>(json::parse(R"({"cmd": []})")), decode_exception);
}

BOOST_AUTO_TEST_CASE(process_state_round_trip) {
  process_state p;
  p.pid = 42;
  p.exit_code = 137;
  p.signal = 9;
  p.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  auto v = json::value_from(p);
  BOOST_TEST(
      json::serialize(v) ==
      R"({"pid":42,"exit_code":137,"signal":9,"time_unix_nano":1700000000000000000,"oom_killed":false})");
  BOOST_TEST((json::value_to<process_state>(v) == p));
  BOOST_CHECK_THROW(json::value_to<process_state>(json::parse(R"({"pid": -1})")), decode_exception);
}

BOOST_AUTO_TEST_CASE(append_json_writes_what_serialize_of_value_from_writes) {
  auto same = [](const task_resource_usage& u) {
    std::string out = "prefix:";
    append_json(out, u);
    const std::string expected = "prefix:" + json::serialize(json::value_from(u));
    BOOST_TEST(out == expected);
  };
  // Empty: a first sample of a task with nothing measured.
  same(task_resource_usage{});
  // /proc mode: two processes, rates with fractions.
  task_resource_usage p;
  p.timestamp =
      std::chrono::system_clock::time_point(std::chrono::nanoseconds(1733520000123456789));
  p.total.memory.rss = 1234567;
  p.total.memory.swap = 4096;
  p.total.memory.measured = {"RSS", "Swap"};
  p.total.cpu.system_mode = 0.1;
  p.total.cpu.user_mode = 12.345678901234567;
  p.total.cpu.percent = 12.445678901234567;
  p.total.cpu.total_ticks = 329.1234;
  p.total.cpu.measured = {"System Mode", "User Mode", "Percent"};
  resource_usage one;
  one.memory.rss = 8192;
  one.memory.measured = {"RSS", "Swap"};
  one.cpu.user_mode = 1e-7;
  one.cpu.percent = 100;
  one.cpu.measured = {"System Mode", "User Mode", "Percent"};
  p.pids[42] = one;
  one.cpu.user_mode = 3.0e10;
  p.pids[7] = one;
  same(p);
  // cgroup mode, with pressure and events (some of each only), a name that
  // needs escaping and the largest counters.
  task_resource_usage c = p;
  c.total.memory.cache = UINT64_MAX;
  c.total.memory.usage = 1;
  c.total.memory.max_usage = 2;
  c.total.memory.kernel_usage = 3;
  c.total.memory.kernel_max_usage = 4;
  c.total.memory.measured = {"RSS",
                             "Cache",
                             "Swap",
                             "Usage",
                             "Max Usage",
                             "Kernel Usage",
                             "Kernel Max Usage",
                             "a \"quoted\"\\ name\n"};
  c.total.memory.pressure_full_avg10 = 0.05;
  c.total.memory.events_max = 3;
  c.total.cpu.throttled_periods = 17;
  c.total.cpu.throttled_time = 123456789012;
  same(c);
  c.total.memory.pressure_some_avg10 = 12.34;
  c.total.memory.events_high = 0;
  c.total.memory.events_oom_kill = 1;
  c.timestamp = std::chrono::system_clock::time_point(std::chrono::nanoseconds(-5));
  same(c);
  c.total.memory.pressure_full_avg10.reset();
  c.total.memory.events_max.reset();
  same(c);
}

BOOST_AUTO_TEST_SUITE_END()
