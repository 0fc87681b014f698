// The cgroup file logic against a directory that stands in for cgroupfs.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include "taskexec/cgroups.hpp"
#include "taskexec/isolation/cgroup.hpp"

using namespace taskexec;
namespace fs = std::filesystem;

namespace {

struct stand_in {
  fs::path root;
  stand_in() {
    char t[] = "/tmp/taskexec-cgfs-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    root = t;
  }
  ~stand_in() { fs::remove_all(root); }
  std::string touch(const std::string& rel, const std::string& content = "") const {
    auto p = root / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    return p.string();
  }
  std::string read(const std::string& rel) const {
    return cgroup::read_file((root / rel).string()).value_or("<missing>");
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(cgroup_files)

BOOST_AUTO_TEST_CASE(nomads_memory_rule) {
  auto rule = [](std::int64_t mb, std::int64_t max) {
    task_resources r;
    r.memory_mb = mb;
    r.memory_max_mb = max;
    return cgroup::memory_rule(r);
  };
  constexpr std::int64_t mib = 1 << 20;
  BOOST_TEST((rule(256, 0).hard == 256 * mib));
  BOOST_TEST(!rule(256, 0).reservation.has_value());
  BOOST_TEST((rule(256, 512).hard == 512 * mib));
  BOOST_TEST((rule(256, 512).reservation == 256 * mib));
  BOOST_TEST((rule(256, -1).hard == -1));
  BOOST_TEST((rule(256, -1).reservation == 256 * mib));
  BOOST_TEST(!rule(0, 0).hard.has_value());
}

BOOST_AUTO_TEST_CASE(shares_convert_to_weights_as_runc_does) {
  BOOST_TEST(cgroup::shares_to_weight(2) == 1u);
  BOOST_TEST(cgroup::shares_to_weight(1024) == 39u);
  BOOST_TEST(cgroup::shares_to_weight(262144) == 10000u);
  BOOST_TEST(cgroup::shares_to_weight(0) == 1u);             // clamped
  BOOST_TEST(cgroup::shares_to_weight(1u << 30) == 10000u);  // clamped
}

BOOST_AUTO_TEST_CASE(v2_limits_are_written_to_their_files) {
  stand_in fs;
  for (const char* f : {"t/memory.max", "t/memory.low", "t/memory.swap.max", "t/cpu.weight",
                        "t/cpu.max", "t/cpuset.cpus", "t/pids.max"})
    fs.touch(f);
  task_resources r;
  r.memory_mb = 128;
  r.memory_max_mb = 256;
  r.cpu_shares = 1024;
  r.cpu_quota_us = 50000;
  r.cpu_period_us = 100000;
  r.cpuset_cpus = "0-1";
  r.pids_max = 100;
  auto ok = cgroup::apply_v2((fs.root / "t").string(), r);
  BOOST_TEST(ok.has_value(), (ok ? "" : ok.error().message));
  BOOST_TEST(fs.read("t/memory.max") == "268435456");
  BOOST_TEST(fs.read("t/memory.low") == "134217728");
  BOOST_TEST(fs.read("t/memory.swap.max") == "0");
  BOOST_TEST(fs.read("t/cpu.weight") == "39");
  BOOST_TEST(fs.read("t/cpu.max") == "50000 100000");
  BOOST_TEST(fs.read("t/cpuset.cpus") == "0-1");
  BOOST_TEST(fs.read("t/pids.max") == "100");

  task_resources unlimited;
  unlimited.memory_mb = 64;
  unlimited.memory_max_mb = -1;
  unlimited.cpu_period_us = 20000;
  BOOST_TEST(cgroup::apply_v2((fs.root / "t").string(), unlimited).has_value());
  BOOST_TEST(fs.read("t/memory.max") == "max");
  BOOST_TEST(fs.read("t/cpu.max") == "max 20000");
}

BOOST_AUTO_TEST_CASE(a_missing_controller_file_is_a_clear_error) {
  stand_in fs;
  fs.touch("t/cgroup.procs");
  task_resources r;
  r.pids_max = 10;
  auto e = cgroup::apply_v2((fs.root / "t").string(), r);
  BOOST_REQUIRE(!e);
  BOOST_TEST((e.error().code == make_error_code(errc::resource_config_failed)));
  BOOST_TEST(e.error().message == "resources.pids_max cannot be applied: " +
                                      (fs.root / "t/pids.max").string() + " does not exist");
}

BOOST_AUTO_TEST_CASE(v2_kill_events_and_pressure) {
  stand_in fs;
  fs.touch("t/cgroup.kill");
  fs.touch("t/cgroup.procs", "");
  fs.touch("t/cgroup.events", "populated 1\nfrozen 0\n");
  fs.touch("t/memory.events", "low 0\nhigh 3\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n");
  fs.touch("t/memory.pressure",
           "some avg10=1.50 avg60=0.20 avg300=0.00 total=123\n"
           "full avg10=0.75 avg60=0.10 avg300=0.00 total=45\n");
  const auto dir = (fs.root / "t").string();
  auto k = cgroup::kill_all(dir, true);
  BOOST_REQUIRE(k);
  BOOST_TEST(fs.read("t/cgroup.kill") == "1");
  BOOST_TEST((cgroup::populated(dir) == std::optional<bool>(true)));
  auto events = fs.read("t/memory.events");
  BOOST_TEST((cgroup::keyed_value(events, "oom_kill") == std::optional<std::uint64_t>(1)));
  BOOST_TEST((cgroup::keyed_value(events, "high") == std::optional<std::uint64_t>(3)));
  BOOST_TEST((cgroup::keyed_value(events, "oom") == std::optional<std::uint64_t>(1)));
  BOOST_TEST(!cgroup::keyed_value(events, "missing").has_value());
  auto psi = fs.read("t/memory.pressure");
  BOOST_TEST((cgroup::pressure_avg10(psi, "some") == std::optional<double>(1.5)));
  BOOST_TEST((cgroup::pressure_avg10(psi, "full") == std::optional<double>(0.75)));
}

BOOST_AUTO_TEST_CASE(task_ids_that_sanitize_alike_get_apart) {
  const auto a = cgroup_name_for("/run/a_b.sock"), b = cgroup_name_for("/run/a/b.sock");
  BOOST_TEST(a.rfind("run_a_b.sock-", 0) == 0u);
  BOOST_TEST(b.rfind("run_a_b.sock-", 0) == 0u);
  BOOST_TEST(a != b);
  BOOST_TEST(cgroup_name_for("web") == cgroup_name_for("web"));  // stable
  BOOST_TEST(cgroup_name_for("") != cgroup_name_for(""));        // unique when unnamed
}

BOOST_AUTO_TEST_CASE(layouts_are_detected) {
  stand_in v2;
  v2.touch("cgroup.controllers", "cpuset cpu io memory pids\n");
  auto l2 = cgroup::detect(v2.root.string());
  BOOST_TEST(cgroup::to_string(l2.kind) == "v2");
  BOOST_TEST(l2.has_v2("memory"));
  BOOST_TEST(!l2.has_v2("hugetlb"));

  stand_in hybrid;
  hybrid.touch("memory/cgroup.procs");
  hybrid.touch("cpu/cgroup.procs");
  hybrid.touch("unified/cgroup.controllers", "\n");
  auto lh = cgroup::detect(hybrid.root.string());
  BOOST_TEST(cgroup::to_string(lh.kind) == "hybrid");
  BOOST_TEST(lh.has_v1("memory"));
  BOOST_TEST(!lh.has_v1("pids"));
  BOOST_TEST(lh.unified == (hybrid.root / "unified").string());

  stand_in v1;
  v1.touch("pids/cgroup.procs");
  BOOST_TEST(cgroup::to_string(cgroup::detect(v1.root.string()).kind) == "v1");

  stand_in none;
  BOOST_TEST(cgroup::to_string(cgroup::detect(none.root.string()).kind) == "none");
}

BOOST_AUTO_TEST_SUITE_END()
