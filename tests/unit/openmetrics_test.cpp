// OpenMetrics text of a usage sample and of a daemon's Metrics answer: the
// exact text for known inputs, escaping, and refusals.
#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include "taskexec/openmetrics.hpp"

using namespace taskexec;
namespace json = boost::json;

BOOST_AUTO_TEST_SUITE(openmetrics_text)

BOOST_AUTO_TEST_CASE(a_usage_sample_writes_what_was_measured_and_nothing_else) {
  task_resource_usage u;
  u.total.memory.rss = 4096;
  u.total.memory.swap = 0;
  u.total.memory.measured = {"RSS", "Swap"};
  u.total.cpu.percent = 12.5;
  u.total.cpu.user_mode = 10;
  u.total.cpu.system_mode = 2.5;
  u.total.cpu.throttled_time = 1500000000;  // not measured: not written
  u.total.cpu.measured = {"Percent", "User Mode", "System Mode"};
  resource_usage p;
  p.memory.rss = 4096;
  p.cpu.percent = 12.5;
  u.pids[42] = p;
  std::vector<openmetrics::label> labels;
  labels.push_back({"task", "web \"1\"\\\n"});
  auto text = openmetrics::from_usage(u, labels);
  BOOST_REQUIRE(text.has_value());
  const std::string l = R"(task="web \"1\"\\\n")";
  const std::string expected =
      "# TYPE taskexec_task_memory_rss_bytes gauge\n"
      "# UNIT taskexec_task_memory_rss_bytes bytes\n"
      "# HELP taskexec_task_memory_rss_bytes Resident set size of the task.\n"
      "taskexec_task_memory_rss_bytes{" +
      l +
      "} 4096\n"
      "# TYPE taskexec_task_memory_swap_bytes gauge\n"
      "# UNIT taskexec_task_memory_swap_bytes bytes\n"
      "# HELP taskexec_task_memory_swap_bytes Swap used by the task.\n"
      "taskexec_task_memory_swap_bytes{" +
      l +
      "} 0\n"
      "# TYPE taskexec_task_cpu_percent gauge\n"
      "# HELP taskexec_task_cpu_percent CPU of the task over the last interval, percent of one "
      "core.\n"
      "taskexec_task_cpu_percent{" +
      l +
      "} 12.5\n"
      "# TYPE taskexec_task_cpu_user_percent gauge\n"
      "# HELP taskexec_task_cpu_user_percent User-mode CPU of the task over the last interval, "
      "percent of one core.\n"
      "taskexec_task_cpu_user_percent{" +
      l +
      "} 10\n"
      "# TYPE taskexec_task_cpu_system_percent gauge\n"
      "# HELP taskexec_task_cpu_system_percent Kernel-mode CPU of the task over the last interval, "
      "percent of one core.\n"
      "taskexec_task_cpu_system_percent{" +
      l +
      "} 2.5\n"
      "# TYPE taskexec_task_processes gauge\n"
      "# HELP taskexec_task_processes Live processes of the task.\n"
      "taskexec_task_processes{" +
      l +
      "} 1\n"
      "# TYPE taskexec_process_memory_rss_bytes gauge\n"
      "# UNIT taskexec_process_memory_rss_bytes bytes\n"
      "# HELP taskexec_process_memory_rss_bytes Resident set size of one process of the task.\n"
      "taskexec_process_memory_rss_bytes{" +
      l +
      ",pid=\"42\"} 4096\n"
      "# TYPE taskexec_process_cpu_percent gauge\n"
      "# HELP taskexec_process_cpu_percent CPU of one process of the task over the last interval, "
      "percent of one core.\n"
      "taskexec_process_cpu_percent{" +
      l +
      ",pid=\"42\"} 12.5\n"
      "# EOF\n";
  BOOST_TEST(*text == expected);
}

BOOST_AUTO_TEST_CASE(counters_end_in_total_and_cgroup_figures_appear_when_measured) {
  task_resource_usage u;
  u.total.cpu.throttled_periods = 7;
  u.total.cpu.throttled_time = 1500000000;
  u.total.cpu.measured = {"Throttled Periods", "Throttled Time"};
  u.total.memory.events_oom_kill = 2;
  auto text = openmetrics::from_usage(u);
  BOOST_REQUIRE(text.has_value());
  BOOST_TEST(text->find("# TYPE taskexec_task_cpu_throttled_periods counter\n") !=
             std::string::npos);
  BOOST_TEST(text->find("\ntaskexec_task_cpu_throttled_periods_total 7\n") != std::string::npos);
  BOOST_TEST(text->find("# UNIT taskexec_task_cpu_throttled_seconds seconds\n") !=
             std::string::npos);
  BOOST_TEST(text->find("\ntaskexec_task_cpu_throttled_seconds_total 1.5\n") != std::string::npos);
  BOOST_TEST(text->find("\ntaskexec_task_memory_oom_kills_total 2\n") != std::string::npos);
  BOOST_TEST(text->find("taskexec_task_processes 0\n") != std::string::npos);
  BOOST_TEST(text->find("taskexec_process_") == std::string::npos);  // no live process
  BOOST_TEST(text->ends_with("\n# EOF\n"));
}

BOOST_AUTO_TEST_CASE(a_bad_label_name_is_refused) {
  std::vector<openmetrics::label> labels;
  labels.push_back({"1task", "x"});
  auto text = openmetrics::from_usage(task_resource_usage{}, labels);
  BOOST_REQUIRE(!text.has_value());
  BOOST_TEST(text.error().code == make_error_code(errc::invalid_argument));
  BOOST_TEST(text.error().message.find("\"1task\"") != std::string::npos);
  auto m = openmetrics::from_daemon_metrics(json::object{}, labels);
  BOOST_TEST(!m.has_value());
}

BOOST_AUTO_TEST_CASE(a_metrics_answer_becomes_families) {
  const auto m = json::parse(R"js({"uptime_ms":1500,
    "connections":{"open":1,"total":3,"refused":1},
    "requests":{"Version":{"calls":2,"errors":0},"(unknown)":{"calls":1,"errors":1}},
    "limits_hit":{"pending":4},
    "journal":{"events":2,"bytes":190,"dropped":0,"next_seq":3,"followers":2},
    "stats":{"subscriptions":0,"intervals":0,"samples_sent":5,"samples_dropped":1,
             "ticks_late":0,"ticks_deferred":2},
    "sweep":{"sweeps":3,"passes":7,"killed":4},
    "reaper":{"reaped":1,"orphans":0,"watched":1},
    "from_the_future":{"x":1}})js")
                     .as_object();
  auto text = openmetrics::from_daemon_metrics(m);
  BOOST_REQUIRE(text.has_value());
  for (const char* line : {
           "taskexecd_uptime_seconds 1.5\n",
           "taskexecd_connections_open 1\n",
           "# TYPE taskexecd_connections counter\n",
           "taskexecd_connections_total 3\n",
           "taskexecd_connections_refused_total 1\n",
           "taskexecd_requests_total{method=\"(unknown)\"} 1\n",
           "taskexecd_requests_total{method=\"Version\"} 2\n",
           "taskexecd_request_errors_total{method=\"(unknown)\"} 1\n",
           "taskexecd_request_errors_total{method=\"Version\"} 0\n",
           "taskexecd_limits_hit_total{limit=\"pending\"} 4\n",
           "taskexecd_journal_events 2\n",
           "taskexecd_journal_bytes 190\n",
           "taskexecd_journal_dropped_total 0\n",
           "taskexecd_journal_followers 2\n",
           "taskexecd_sweeps_total 3\n",
           "taskexecd_sweep_passes_total 7\n",
           "taskexecd_sweep_killed_total 4\n",
           "taskexecd_stats_samples_total 5\n",
           "taskexecd_stats_samples_dropped_total 1\n",
           "taskexecd_stats_ticks_deferred_total 2\n",
           "taskexecd_reaper_reaped_total 1\n",
           "taskexecd_reaper_orphans_total 0\n",
           "taskexecd_reaper_watched 1\n",
       })
    BOOST_TEST(text->find(line) != std::string::npos, line);
  BOOST_TEST(text->find("future") == std::string::npos);
  BOOST_TEST(text->ends_with("\n# EOF\n"));

  auto bad =
      openmetrics::from_daemon_metrics(json::parse(R"({"connections":{"open":-1}})").as_object());
  BOOST_REQUIRE(!bad.has_value());
  BOOST_TEST(bad.error().message == "connections.open is not a non-negative integer");
}

BOOST_AUTO_TEST_SUITE_END()
