// taskexec-stress's figures and leak check, without processes: the
// latency recorder against exact percentiles, the report's text and JSON,
// and the leak check against a stand-in /proc tree.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "leak_check.hpp"
#include "report.hpp"

namespace fs = std::filesystem;
using namespace stress;

namespace {

struct temp_tree {
  fs::path root;
  temp_tree() {
    char tmpl[] = "/tmp/taskexec-stress-unit-XXXXXX";
    root = ::mkdtemp(tmpl);
  }
  ~temp_tree() { fs::remove_all(root); }
  void write(const std::string& rel, const std::string& content) {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << content;
  }
};

std::string stat_line(int pid, const std::string& comm, char state, int ppid) {
  return std::to_string(pid) + " (" + comm + ") " + state + " " + std::to_string(ppid) +
         " 1 1 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 4242 2301952 225 0 0 0\n";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stress_recorder)

BOOST_AUTO_TEST_CASE(small_values_are_exact) {
  latency_recorder r;
  for (std::uint64_t v = 1; v <= 50; ++v)
    r.record(v);
  BOOST_TEST(r.count() == 50u);
  BOOST_TEST(r.min() == 1u);
  BOOST_TEST(r.max() == 50u);
  BOOST_TEST(r.quantile(0.5) == 25u);
  BOOST_TEST(r.quantile(0.9) == 45u);
  BOOST_TEST(r.quantile(1.0) == 50u);
  BOOST_TEST(r.quantile(0.0) == 1u);
  BOOST_TEST(r.mean() == 25.5);
}

BOOST_AUTO_TEST_CASE(percentiles_within_one_sixty_fourth) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(13.0, 1.5);  // around 0.5 ms, long tail
  std::vector<std::uint64_t> values;
  latency_recorder r;
  for (int i = 0; i < 100000; ++i) {
    auto v = static_cast<std::uint64_t>(dist(rng)) + 1;
    values.push_back(v);
    r.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    auto exact = values[static_cast<std::size_t>(std::ceil(q * 100000.0)) - 1];
    auto got = r.quantile(q);
    // The bucket's upper end: never below the exact value, at most 1/64 above.
    BOOST_TEST(got >= exact);
    BOOST_TEST(static_cast<double>(got) <= static_cast<double>(exact) * (1.0 + 1.0 / 64) + 1);
  }
  BOOST_TEST(r.quantile(1.0) == values.back());
}

BOOST_AUTO_TEST_CASE(buckets_cover_every_value) {
  for (std::uint64_t v : std::initializer_list<std::uint64_t>{
           0, 63, 64, 127, 128, 1000, 123456789, (1ull << 63) - 1, 1ull << 63, UINT64_MAX}) {
    int b = latency_recorder::bucket_of(v);
    BOOST_TEST_INFO("value " << v);
    BOOST_TEST(b >= 0);
    BOOST_TEST(b < latency_recorder::bucket_count);
    BOOST_TEST(latency_recorder::bucket_upper(b) >= v);
    if (b > 0)
      BOOST_TEST(latency_recorder::bucket_upper(b - 1) < v);
  }
}

BOOST_AUTO_TEST_CASE(merge_adds_counts) {
  latency_recorder a, b;
  a.record(10);
  a.record(20);
  b.record(5);
  b.record(1000);
  a.merge(b);
  BOOST_TEST(a.count() == 4u);
  BOOST_TEST(a.min() == 5u);
  BOOST_TEST(a.max() == 1000u);
  BOOST_TEST(a.quantile(0.5) == 10u);
}

BOOST_AUTO_TEST_CASE(bins_span_min_to_max_in_1_2_5_steps) {
  latency_recorder r;
  r.record(1'500);   // 1.5 us: the 2 us bin
  r.record(3'000);   // the 5 us bin
  r.record(3'500);   // the 5 us bin
  r.record(40'000);  // the 50 us bin
  auto bins = r.bins();
  std::vector<std::uint64_t> uppers, counts;
  for (auto& [u, c] : bins) {
    uppers.push_back(u);
    counts.push_back(c);
  }
  BOOST_TEST(uppers == (std::vector<std::uint64_t>{2'000, 5'000, 10'000, 20'000, 50'000}),
             boost::test_tools::per_element());
  BOOST_TEST(counts == (std::vector<std::uint64_t>{1, 2, 0, 0, 1}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(empty_recorder_reports_zeros) {
  latency_recorder r;
  BOOST_TEST(r.quantile(0.99) == 0u);
  BOOST_TEST(r.min() == 0u);
  BOOST_TEST(r.bins().empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stress_rendering)

BOOST_AUTO_TEST_CASE(durations_read_well) {
  BOOST_TEST(format_duration(999) == "999 ns");
  BOOST_TEST(format_duration(1'500) == "1.5 us");
  BOOST_TEST(format_duration(2'345'000) == "2.35 ms");
  BOOST_TEST(format_duration(3'000'000'000ull) == "3.00 s");
}

BOOST_AUTO_TEST_CASE(text_and_json_carry_every_figure) {
  scenario_report r;
  r.name = "churn";
  r.summary = "10 cycles";
  r.histogram_of = "cycle";
  for (std::uint64_t v = 1; v <= 10; ++v)
    r.latency("cycle").record(v * 1'000'000);
  r.compare("cycles per second", 350, "/s", "raw spawn", 1400, ">= 300/s", true);
  r.add_check("every cycle ran", true, "10 of 10");
  r.add_check("leak check", false, "1 leftover process (pid 42)");
  BOOST_TEST(!r.ok());
  auto text = render_text(r);
  BOOST_TEST(text.find("== churn: 10 cycles") != std::string::npos);
  BOOST_TEST(text.find("p99.9") != std::string::npos);
  BOOST_TEST(text.find("histogram of cycle:") != std::string::npos);
  BOOST_TEST(text.find("ratio 0.25x") != std::string::npos);
  BOOST_TEST(text.find("target >= 300/s: met") != std::string::npos);
  BOOST_TEST(text.find("[FAIL] leak check: 1 leftover process (pid 42)") != std::string::npos);
  BOOST_TEST(text.find("result: FAIL") != std::string::npos);
  auto j = render_json(r);
  BOOST_TEST(j.at("ok").as_bool() == false);
  BOOST_TEST(j.at("latency").at("cycle").at("count").as_uint64() == 10u);
  BOOST_TEST(j.at("latency").at("cycle").at("max_ns").as_uint64() == 10'000'000u);
  BOOST_TEST(j.at("comparisons").at(0).at("ratio").as_double() == 0.25);
  BOOST_TEST(j.at("checks").as_array().size() == 2u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stress_leak_check)

BOOST_AUTO_TEST_CASE(smaps_rollup_figures) {
  auto m = parse_smaps_rollup(
      "\n55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  1200 kB\nPss:   345 kB\n"
      "Pss_Anon: 200 kB\nShared_Clean: 10 kB\nPrivate_Dirty:   256 kB\nReferenced: 1200 kB\n"
      "Anonymous:   212 kB\nLazyFree: 0 kB\n");
  BOOST_TEST(m.pss_kib == 345);
  BOOST_TEST(m.private_dirty_kib == 256);
  BOOST_TEST(m.anonymous_kib == 212);
  BOOST_TEST(parse_smaps_rollup("\nnothing here").pss_kib == -1);
}

BOOST_AUTO_TEST_CASE(fields_of_status) {
  // The fields of /proc/<pid>/status are tab-separated; the one named, not
  // another on the same line's neighbours, and not a key that merely ends
  // like it.
  const std::string status =
      "Name:\ttaskexecd\nVmHWM:\t   9000 kB\nVmRSS:\t    4321 kB\nRssAnon:\t    1000 kB\n"
      "RssFile:\t    3321 kB\n";
  BOOST_TEST(parse_status_kib(status, "VmRSS") == 4321);
  BOOST_TEST(parse_status_kib(status, "RssAnon") == 1000);
  BOOST_TEST(parse_status_kib(status, "VmHWM") == 9000);
  BOOST_TEST(parse_status_kib("VmRSS:\t12 kB\n", "VmRSS") == 12);
  BOOST_TEST(parse_status_kib("Name:\tx\nXVmRSS:\t5 kB\n", "VmRSS") == -1);
  BOOST_TEST(parse_status_kib("Name:\tkthreadd\n", "RssAnon") == -1);  // kernel threads have none
  BOOST_TEST(read_status_kib("/proc", ::getpid(), "VmRSS") > 0);
  BOOST_TEST(read_status_kib("/proc", ::getpid(), "RssAnon") > 0);
  BOOST_TEST(read_status_kib("/nonexistent", 1, "VmRSS") == -1);
}

BOOST_AUTO_TEST_CASE(finds_zombies_leftovers_cgroups_and_sockets) {
  temp_tree proc, cg, run;
  const int self = 100;
  // Us; a zombie child of ours; a zombie of someone else; a process with
  // the marker (a leftover); one with a longer entry that merely starts
  // like it; one without.
  proc.write("100/stat", stat_line(100, "taskexec-stress", 'S', 1));
  proc.write("100/environ", std::string("TASKEXEC_STRESS_RUN=r1\0", 23));
  proc.write("101/stat", stat_line(101, "true", 'Z', 100));
  proc.write("102/stat", stat_line(102, "other", 'Z', 1));
  proc.write("103/stat", stat_line(103, "sleep (x) y", 'S', 1));
  proc.write("103/environ", std::string("PATH=/bin\0TASKEXEC_STRESS_RUN=r1\0", 33));
  proc.write("104/stat", stat_line(104, "bash", 'S', 1));
  proc.write("104/environ", std::string("TASKEXEC_STRESS_RUN=r11\0", 24));
  proc.write("105/stat", stat_line(105, "init", 'S', 0));
  proc.write("105/environ", std::string("HOME=/\0", 7));
  proc.write("self/fd/0", "");
  fs::create_directories(cg.root / "memory/taskexec/old-task");

  leak_options o;
  o.proc_root = proc.root.string();
  o.marker = "TASKEXEC_STRESS_RUN=r1";
  o.self_pid = self;
  o.run_dir = run.root.string();
  o.cgroup_parents = {(cg.root / "memory/taskexec").string(), (cg.root / "pids/taskexec").string()};
  auto before = take_baseline(o);
  BOOST_TEST(before.cgroups.size() == 1u);
  BOOST_TEST(find_leaks(o, before).leftover == (std::vector<int>{103}),
             boost::test_tools::per_element());

  fs::create_directories(cg.root / "pids/taskexec/new-task");
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  auto sock = (run.root / "d.sock").string();
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", sock.c_str());
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  ::close(fd);
  run.write("plain.log", "not a socket");

  auto f = find_leaks(o, before);
  BOOST_TEST(f.zombies == (std::vector<int>{101}), boost::test_tools::per_element());
  BOOST_TEST(f.leftover == (std::vector<int>{103}), boost::test_tools::per_element());
  BOOST_TEST(f.cgroups == (std::vector<std::string>{(cg.root / "pids/taskexec/new-task").string()}),
             boost::test_tools::per_element());
  BOOST_TEST(f.sockets == (std::vector<std::string>{sock}), boost::test_tools::per_element());
  BOOST_TEST(!f.clean());
  BOOST_TEST(f.describe() ==
             "1 zombie (pid 101); 1 leftover process (pid 103); 1 leftover cgroup (" +
                 (cg.root / "pids/taskexec/new-task").string() + "); 1 leftover socket (" + sock +
                 ")");
}

BOOST_AUTO_TEST_CASE(only_cgroups_named_after_the_run_are_its_leaks) {
  temp_tree proc, cg;
  proc.write("self/fd/0", "");
  fs::create_directories(cg.root / "unified/taskexec");
  leak_options o;
  o.proc_root = proc.root.string();
  o.cgroup_parents = {(cg.root / "unified/taskexec").string()};
  o.cgroup_marks = {"4242-1700000000", "taskexec-stress-AbC123"};
  auto before = take_baseline(o);
  // Another run's daemon and task, beside ours: a churn task (run id) and
  // a daemon's (socket in the run directory).
  fs::create_directories(cg.root /
                         "unified/taskexec/tmp_taskexec-stress-XyZ789_grace-5.sock-0b89b309");
  fs::create_directories(cg.root / "unified/taskexec/taskexec-stress-99-1700000000-3-12345678");
  const auto churn = cg.root / "unified/taskexec/taskexec-stress-4242-1700000000-0-89abcdef";
  const auto daemon = cg.root / "unified/taskexec/tmp_taskexec-stress-AbC123_fleet-1.sock-01234567";
  fs::create_directories(churn);
  fs::create_directories(daemon);
  auto f = find_leaks(o, before);
  BOOST_TEST(f.cgroups == (std::vector<std::string>{churn.string(), daemon.string()}),
             boost::test_tools::per_element());
  o.cgroup_marks.clear();  // no marks: every new cgroup counts
  BOOST_TEST(find_leaks(o, before).cgroups.size() == 4u);
}

BOOST_AUTO_TEST_CASE(a_clean_tree_is_clean) {
  temp_tree proc, run;
  proc.write("100/stat", stat_line(100, "taskexec-stress", 'S', 1));
  proc.write("self/fd/0", "");
  leak_options o;
  o.proc_root = proc.root.string();
  o.marker = "TASKEXEC_STRESS_RUN=r1";
  o.self_pid = 100;
  o.run_dir = run.root.string();
  auto f = find_leaks(o, take_baseline(o));
  BOOST_TEST(f.clean());
  BOOST_TEST(f.describe() == "nothing leaked");
}

BOOST_AUTO_TEST_CASE(descriptor_growth_is_a_leak) {
  temp_tree proc;
  proc.write("self/fd/0", "");
  leak_options o;
  o.proc_root = proc.root.string();
  auto before = take_baseline(o);
  proc.write("self/fd/1", "");
  auto f = find_leaks(o, before);
  BOOST_TEST(!f.clean());
  BOOST_TEST(f.describe() == "our descriptors grew from " + std::to_string(before.own_fds) +
                                 " to " + std::to_string(before.own_fds + 1));
}

BOOST_AUTO_TEST_SUITE_END()
