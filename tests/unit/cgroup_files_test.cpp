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
  BOOST_TEST(cgroup::kill_members({{dir}, dir, {}, {}}) == 0u);  // no pids listed
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

// Every mounted v1 hierarchy is the task's, not seven named ones: blkio and
// named hierarchies too; rdma and misc never (as Nomad).
BOOST_AUTO_TEST_CASE(every_v1_hierarchy_from_mountinfo) {
  const std::string mountinfo =
      "25 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup "
      "rw,cpu,cpuacct\n"
      "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
      "39 31 0:36 / /sys/fs/cgroup/rdma rw,relatime - cgroup cgroup rw,rdma\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
      "rw,xattr,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
      "42 31 0:39 / /sys/fs/cgroup/misc rw,relatime - cgroup cgroup rw,misc\n"
      "43 31 0:40 / /sys/fs/cgroup/net\\040cls rw,relatime - cgroup cgroup rw,net_cls\n"
      "44 1 0:35 / /mnt/blkio-again rw,relatime - cgroup cgroup rw,blkio\n"
      "45 31 0:35 / /sys/fs/cgroup/blkio2 rw,relatime - cgroup cgroup rw,blkio\n";
  auto h = cgroup::parse_mountinfo(mountinfo, "/sys/fs/cgroup/");
  using H = cgroup::hierarchy;
  const std::vector<H> want{
      H{"/sys/fs/cgroup/cpu,cpuacct", {"cpu", "cpuacct"}},
      H{"/sys/fs/cgroup/cpuset", {"cpuset"}},
      H{"/sys/fs/cgroup/memory", {"memory"}},
      H{"/sys/fs/cgroup/blkio", {"blkio"}},
      H{"/sys/fs/cgroup/systemd", {"name=systemd"}},
      H{"/sys/fs/cgroup/net cls", {"net_cls"}},
  };
  BOOST_TEST_REQUIRE(h.size() == want.size());
  for (std::size_t i = 0; i < h.size(); ++i) {
    BOOST_TEST(h[i].dir == want[i].dir);
    BOOST_TEST(h[i].controllers == want[i].controllers, boost::test_tools::per_element());
  }
  BOOST_TEST(cgroup::parse_mountinfo(mountinfo, "/elsewhere").empty());
}

BOOST_AUTO_TEST_CASE(every_v1_hierarchy_of_a_stand_in) {
  stand_in fs;
  for (const char* d : {"cpu,cpuacct", "memory", "blkio", "systemd", "rdma", "misc", "pids"})
    fs.touch(std::string(d) + "/cgroup.procs");
  fs::create_directory_symlink(fs.root / "cpu,cpuacct", fs.root / "cpu");
  fs.touch("unified/cgroup.controllers", "\n");
  fs.touch("not-a-hierarchy/README");
  auto l = cgroup::detect(fs.root.string());
  BOOST_TEST(cgroup::to_string(l.kind) == "hybrid");
  std::vector<std::string> dirs;
  for (const auto& h : l.hierarchies)
    dirs.push_back(fs::path(h.dir).filename().string());
  BOOST_TEST(
      dirs == (std::vector<std::string>{"blkio", "cpu,cpuacct", "memory", "pids", "systemd"}),
      boost::test_tools::per_element());
  BOOST_TEST(l.v1.at("cpu") == (fs.root / "cpu,cpuacct").string());
  BOOST_TEST(l.v1.at("cpuacct") == (fs.root / "cpu,cpuacct").string());
  BOOST_TEST(l.v1.at("name=systemd") == (fs.root / "systemd").string());
  BOOST_TEST(!l.has_v1("rdma"));
  BOOST_TEST(!l.has_v1("misc"));
}

// The task's cgroup files are opened without following a last symlink: a
// link planted where a cgroup file should be is refused, not written through.
BOOST_AUTO_TEST_CASE(cgroup_files_do_not_follow_symlinks) {
  stand_in fs;
  const auto target = fs.touch("target", "keep\n");
  fs::create_directories(fs.root / "t");
  fs::create_symlink(target, fs.root / "t/pids.max");
  auto w = cgroup::write_file((fs.root / "t/pids.max").string(), "1");
  BOOST_REQUIRE(!w);
  BOOST_TEST(w.error().message.find("Too many levels of symbolic links") != std::string::npos,
             w.error().message);
  BOOST_TEST(fs.read("target") == "keep\n");
  BOOST_TEST(!cgroup::read_file((fs.root / "t/pids.max").string()).has_value());
}

// Removal never waits: a cgroup that still has a member is "busy" at once,
// and the caller tries again later.
BOOST_AUTO_TEST_CASE(remove_once_answers_busy_without_waiting) {
  stand_in fs;
  fs.touch("t/child/cgroup.procs");
  const auto dir = (fs.root / "t").string();
  // A stand-in directory holds files, so rmdir fails ENOTEMPTY: a plain
  // error naming the directory (a live cgroup answers EBUSY: resource_busy).
  auto r = cgroup::remove_once(dir);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().message == "rmdir " + dir + "/child: Directory not empty");
  fs::remove(fs.root / "t/child/cgroup.procs");
  BOOST_TEST(cgroup::remove_once(dir).has_value());
  BOOST_TEST(!fs::exists(dir));
  BOOST_TEST(cgroup::remove_once(dir).has_value());  // idempotent
}

// The parsers a Stats sample uses on the files it keeps open: string views
// of the content, no allocation.
BOOST_AUTO_TEST_CASE(sample_parsers_read_exact_values) {
  // v1 memory.stat (a live one's lines, cut): keys that prefix others
  // ("rss" / "rss_huge", "total_swap" / "total_swapcached") are told apart.
  const std::string_view v1_stat =
      "cache 14893056\nrss 5222400\nrss_huge 0\nswap 0\nswapcached 7\n"
      "total_cache 1181143040\ntotal_rss 3970113536\ntotal_rss_huge 0\n"
      "total_swap 12288\ntotal_swapcached 4096\n";
  BOOST_TEST((cgroup::keyed_value(v1_stat, "rss") == std::optional<std::uint64_t>(5222400)));
  BOOST_TEST(
      (cgroup::keyed_value(v1_stat, "total_rss") == std::optional<std::uint64_t>(3970113536ull)));
  BOOST_TEST(
      (cgroup::keyed_value(v1_stat, "total_cache") == std::optional<std::uint64_t>(1181143040ull)));
  BOOST_TEST((cgroup::keyed_value(v1_stat, "total_swap") == std::optional<std::uint64_t>(12288)));
  BOOST_TEST(!cgroup::keyed_value(v1_stat, "total").has_value());
  BOOST_TEST(!cgroup::keyed_value(v1_stat.substr(0, 0), "rss").has_value());
  // The last line without its newline.
  BOOST_TEST((cgroup::keyed_value("a 1\nb 22", "b") == std::optional<std::uint64_t>(22)));
  BOOST_TEST(!cgroup::keyed_value("a x\n", "a").has_value());

  // v2 cpu.stat and v1 cpu.stat.
  const std::string_view v2_cpu =
      "usage_usec 1031\nuser_usec 712\nsystem_usec 319\nnr_periods 4\nnr_throttled 2\n"
      "throttled_usec 1500\nnr_bursts 0\nburst_usec 0\n";
  BOOST_TEST((cgroup::keyed_value(v2_cpu, "user_usec") == std::optional<std::uint64_t>(712)));
  BOOST_TEST((cgroup::keyed_value(v2_cpu, "system_usec") == std::optional<std::uint64_t>(319)));
  BOOST_TEST((cgroup::keyed_value(v2_cpu, "nr_throttled") == std::optional<std::uint64_t>(2)));
  BOOST_TEST((cgroup::keyed_value(v2_cpu, "throttled_usec") == std::optional<std::uint64_t>(1500)));
  const std::string_view v1_cpu = "nr_periods 9\nnr_throttled 3\nthrottled_time 123456789\n";
  BOOST_TEST(
      (cgroup::keyed_value(v1_cpu, "throttled_time") == std::optional<std::uint64_t>(123456789)));

  // One-number files: cpuacct.usage_user, memory.usage_in_bytes, "max".
  BOOST_TEST(cgroup::number_value("18446744073709551615\n") == UINT64_MAX);
  BOOST_TEST(cgroup::number_value("258048\n") == 258048u);
  BOOST_TEST(cgroup::number_value("  42\n") == 42u);
  BOOST_TEST(cgroup::number_value("12abc") == 12u);
  BOOST_TEST(cgroup::number_value("max\n") == 0u);
  BOOST_TEST(cgroup::number_value("") == 0u);
  BOOST_TEST(cgroup::number_value("18446744073709551616\n") == 0u);  // out of range

  // PSI.
  const std::string_view psi =
      "some avg10=12.34 avg60=0.00 avg300=0.00 total=5\n"
      "full avg10=0.05 avg60=0.00 avg300=0.00 total=1\n";
  BOOST_TEST((cgroup::pressure_avg10(psi, "some") == std::optional<double>(12.34)));
  BOOST_TEST((cgroup::pressure_avg10(psi, "full") == std::optional<double>(0.05)));
  BOOST_TEST(!cgroup::pressure_avg10("some avg60=1.00\n", "some").has_value());
  BOOST_TEST(!cgroup::pressure_avg10("some avg10=x avg60=1.00\n", "some").has_value());
  BOOST_TEST(!cgroup::pressure_avg10(psi, "none").has_value());

  // cgroup.procs into a list that already holds some pids: each pid once,
  // in the order first seen; what is not a positive number is skipped.
  std::vector<int> out{7};
  cgroup::add_procs("12\n7\n0\n-3\nx\n13\n12\n", out);
  BOOST_TEST((out == std::vector<int>{7, 12, 13}));
  cgroup::add_procs("", out);
  BOOST_TEST((out == std::vector<int>{7, 12, 13}));
  cgroup::add_procs("14", out);  // no newline at the end
  BOOST_TEST((out == std::vector<int>{7, 12, 13, 14}));
}

BOOST_AUTO_TEST_SUITE_END()
