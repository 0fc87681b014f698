// usage_between: a sample from two readings of a task's counters, so that
// one reading can serve consumers of different intervals (the daemon's
// shared Stats schedules), each with the rates over its own interval.
#include <boost/test/unit_test.hpp>

#include "taskexec/stats.hpp"

using namespace taskexec;
using namespace std::chrono_literals;

namespace {

usage_reading reading_at(std::chrono::steady_clock::time_point at,
                         std::vector<usage_reading::process> procs) {
  usage_reading r;
  r.at = at;
  r.timestamp = std::chrono::system_clock::time_point(std::chrono::seconds(1000)) +
                (at - std::chrono::steady_clock::time_point());
  for (const auto& p : procs) {
    r.user_ns += p.user_ns;
    r.system_ns += p.system_ns;
  }
  r.processes = std::move(procs);
  return r;
}

usage_reading::process proc(int pid, std::uint64_t user_ms, std::uint64_t system_ms,
                            std::uint64_t rss = 4096) {
  usage_reading::process p;
  p.pid = pid;
  p.rss = rss;
  p.user_ns = user_ms * 1'000'000;
  p.system_ns = system_ms * 1'000'000;
  return p;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(usage_samples)

BOOST_AUTO_TEST_CASE(rates_are_over_the_time_between_the_two_readings) {
  const std::chrono::steady_clock::time_point t0{std::chrono::seconds(50)};
  const auto a = reading_at(t0, {proc(10, 100, 50), proc(20, 0, 0)});
  const auto b = reading_at(t0 + 100ms, {proc(10, 150, 60), proc(20, 10, 0)});
  const auto c = reading_at(t0 + 200ms, {proc(10, 200, 60), proc(30, 5, 5)});

  // A first sample has no rates; memory is as read.
  auto first = usage_between(nullptr, a);
  BOOST_TEST(first.total.cpu.percent == 0.0);
  BOOST_TEST(first.pids.at(10).cpu.percent == 0.0);
  BOOST_TEST(first.total.memory.rss == 8192u);
  BOOST_TEST((first.timestamp == a.timestamp));

  // Over 100 ms: pid 10 used 50 ms user and 10 ms system.
  auto ab = usage_between(&a, b);
  BOOST_TEST(ab.pids.at(10).cpu.user_mode == 50.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.pids.at(10).cpu.system_mode == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.pids.at(10).cpu.percent == 60.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.pids.at(20).cpu.percent == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ab.total.cpu.percent == 70.0, boost::test_tools::tolerance(1e-9));

  // The same reading `c` seen from two consumers: one whose previous was
  // `b` (100 ms before), one whose previous was `a` (200 ms before). Each
  // gets the rate over its own interval.
  auto bc = usage_between(&b, c);
  auto ac = usage_between(&a, c);
  BOOST_TEST(bc.pids.at(10).cpu.percent == 50.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ac.pids.at(10).cpu.percent == 55.0, boost::test_tools::tolerance(1e-9));
  // A process the earlier reading lacks has no rate yet; one gone is gone.
  BOOST_TEST(bc.pids.at(30).cpu.percent == 0.0);
  BOOST_TEST(!bc.pids.contains(20));
  BOOST_TEST((bc.timestamp == ac.timestamp));
}

BOOST_AUTO_TEST_CASE(a_cgroup_gives_the_totals) {
  const std::chrono::steady_clock::time_point t0{std::chrono::seconds(7)};
  auto a = reading_at(t0, {proc(10, 0, 0)});
  auto b = reading_at(t0 + 1s, {proc(10, 100, 0)});
  cgroup_counters cg;
  cg.rss = 1 << 20;
  cg.memory_measured = {"RSS"};
  cg.cpu_measured = {"Percent"};
  a.cgroup = cg;
  a.user_ns = 0;
  cg.user_ns = 500'000'000;  // the cgroup counts more than the processes listed
  b.cgroup = cg;
  b.user_ns = cg.user_ns;
  b.system_ns = 0;
  auto u = usage_between(&a, b);
  BOOST_TEST(u.total.memory.rss == 1u << 20);
  BOOST_TEST(u.total.cpu.percent == 50.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(u.pids.at(10).cpu.percent == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST((u.total.cpu.measured == std::vector<std::string>{"Percent"}));
}

BOOST_AUTO_TEST_SUITE_END()
