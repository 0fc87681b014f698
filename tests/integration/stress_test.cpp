// taskexec-stress in its short mode: every scenario runs to its end and
// passes its checks, the figures are the exact counts asked for, and the
// leak check catches a leak planted on purpose (and cleans it up).
#include <boost/test/unit_test.hpp>

#include "harness.hpp"
#include "stress_run.hpp"

using namespace test_support;

namespace {

constexpr const char* mixed_methods[] = {"Version", "Signal(0)", "Events", "Stats",
                                         "Exec(/bin/true)"};

void expect_pass(const stress_result& r) {
  BOOST_TEST_INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  BOOST_TEST(r.code == 0);
  BOOST_REQUIRE_MESSAGE(!r.report.empty(), "no JSON report");
  BOOST_TEST(r.report.at("ok").as_bool(), r.failed_checks());
  BOOST_TEST(r.scenario().at("leaks").at("clean").as_bool());
  BOOST_TEST(processes_of_run(std::string(r.report.at("run_id").as_string())).empty());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stress)

BOOST_AUTO_TEST_CASE(churn_through_daemons) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(argv_of("churn", "--count", "30", "--concurrency", "3"));
    expect_pass(r);
    BOOST_TEST(r.figure("cycles").to_number<std::int64_t>() == 30);
    BOOST_TEST(r.figure("failed").to_number<std::int64_t>() == 0);
    BOOST_TEST(r.scenario().at("latency").at("launch").at("count").to_number<std::uint64_t>() ==
               30u);
    BOOST_TEST(r.out.find("p99.9") != std::string::npos);
    BOOST_TEST(r.out.find("histogram of cycle:") != std::string::npos);
    BOOST_TEST(r.out.find("raw posix_spawn+waitpid") != std::string::npos);
  });
}

BOOST_AUTO_TEST_CASE(churn_embedded) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(argv_of("churn", "--count", "60", "--embedded"));
    expect_pass(r);
    BOOST_TEST(r.figure("cycles").to_number<std::int64_t>() == 60);
    BOOST_TEST(r.scenario().at("latency").at("destroy").at("count").to_number<std::uint64_t>() ==
               60u);
  });
}

BOOST_AUTO_TEST_CASE(fleet_holds_every_task_with_its_samples) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(
        argv_of("fleet", "--tasks", "6", "--seconds", "2", "--interval-ms", "500"));
    expect_pass(r);
    BOOST_TEST(r.figure("tasks").to_number<std::int64_t>() == 6);
    BOOST_TEST(r.figure("missed_samples").to_number<std::int64_t>() == 0);
    BOOST_TEST(r.figure("dropped_samples").to_number<std::int64_t>() == 0);
    // Every task's daemon was measured: a daemon has some memory of its own.
    BOOST_TEST(r.figure("daemons_pss_kib").to_number<std::int64_t>() > 6 * 64);
  });
}

BOOST_AUTO_TEST_CASE(rpc_flood_answers_every_call) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(argv_of("rpc-flood", "--connections", "4", "--phase-ms", "300"));
    expect_pass(r);
    BOOST_TEST(r.figure("failures").to_number<std::int64_t>() == 0);
    auto& lat = r.scenario().at("latency").as_object();
    for (const char* m : mixed_methods) {
      BOOST_TEST_INFO(m);
      BOOST_TEST(lat.at(m).at("count").to_number<std::uint64_t>() > 0u);
    }
  });
}

BOOST_AUTO_TEST_CASE(reaper_storm_reaps_every_orphan) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(argv_of("reaper-storm", "--children", "300", "--embedded"));
    expect_pass(r);
    BOOST_TEST(r.figure("children").to_number<std::int64_t>() == 300);
    BOOST_TEST(r.figure("daemonised").to_number<std::int64_t>() == 150);
    BOOST_TEST(r.figure("orphans_reaped").to_number<double>() == 150.0);
    auto d = co_await run_stress(argv_of("reaper-storm", "--children", "300"));
    expect_pass(d);
    BOOST_TEST(d.figure("children").to_number<std::int64_t>() == 300);
  });
}

BOOST_AUTO_TEST_CASE(output_flood_loses_no_byte) {
  run([]() -> asio::awaitable<void> {
    auto file = co_await run_stress(argv_of("output-flood", "--mib", "4", "--rounds", "2"));
    expect_pass(file);
    BOOST_TEST(file.figure("bytes_per_round").to_number<std::int64_t>() == 4 << 20);
    BOOST_TEST(file.figure("bad_rounds").to_number<std::int64_t>() == 0);
    auto fifo =
        co_await run_stress(argv_of("output-flood", "--mib", "4", "--rounds", "1", "--fifo"));
    expect_pass(fifo);
    auto embedded = co_await run_stress(
        argv_of("output-flood", "--mib", "4", "--rounds", "1", "--fifo", "--embedded"));
    expect_pass(embedded);
  });
}

BOOST_AUTO_TEST_CASE(faults_leave_the_task_and_daemon_right) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(argv_of("faults", "--rounds", "1", "--reconnects", "60"));
    expect_pass(r);
    BOOST_TEST(r.figure("clients_killed").to_number<std::int64_t>() == 5);
    BOOST_TEST(r.figure("reconnects").to_number<std::int64_t>() == 60);
    BOOST_TEST(r.figure("daemon_fds_after").to_number<std::int64_t>() <=
               r.figure("daemon_fds_before").to_number<std::int64_t>());
  });
}

BOOST_AUTO_TEST_CASE(a_planted_process_leak_fails_the_run) {
  run([]() -> asio::awaitable<void> {
    // A task's daemonised grandchild outlives its SIGKILLed daemon.
    auto r = co_await run_stress(
        argv_of("churn", "--count", "3", "--embedded", "--plant-leak", "process"));
    BOOST_TEST_INFO(r.out);
    BOOST_TEST(r.code == 1);
    BOOST_REQUIRE(!r.report.empty());
    BOOST_TEST(!r.report.at("ok").as_bool());
    BOOST_TEST(r.leaks("leftover_processes").to_number<std::uint64_t>() == 1u);
    BOOST_TEST(r.leaks("zombies").to_number<std::uint64_t>() == 0u);
    BOOST_TEST(r.leaks("cleaned_up").as_bool());
    BOOST_TEST(r.out.find("[FAIL] leak check") != std::string::npos);
    BOOST_TEST(r.out.find("1 leftover process (pid ") != std::string::npos);
    // The churn itself went right; only the leak fails it.
    BOOST_TEST(r.figure("cycles").to_number<std::int64_t>() == 3);
    // Cleaned up: nothing of the run is left.
    BOOST_TEST(processes_of_run(std::string(r.report.at("run_id").as_string())).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_planted_socket_leak_fails_the_run) {
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(
        argv_of("churn", "--count", "2", "--embedded", "--plant-leak", "socket"));
    BOOST_TEST(r.code == 1);
    BOOST_REQUIRE(!r.report.empty());
    BOOST_TEST(r.leaks("sockets").to_number<std::uint64_t>() == 1u);
    BOOST_TEST(r.leaks("leftover_processes").to_number<std::uint64_t>() == 0u);
  });
}

BOOST_AUTO_TEST_CASE(usage_errors_exit_2_and_say_why) {
  run([]() -> asio::awaitable<void> {
    auto bad = co_await run_stress(argv_of("bogus"));
    BOOST_TEST(bad.code == 2);
    BOOST_TEST(bad.err.find("unknown scenario \"bogus\"") != std::string::npos);
    auto opt = co_await run_stress(argv_of("churn", "--nope", "1"));
    BOOST_TEST(opt.code == 2);
    BOOST_TEST(opt.err.find("churn has no option --nope") != std::string::npos);
    auto num = co_await run_stress(argv_of("churn", "--count", "many"));
    BOOST_TEST(num.code == 2);
    BOOST_TEST(num.err.find("--count needs a whole number, not \"many\"") != std::string::npos);
    auto zero = co_await run_stress(argv_of("churn", "--count", "0"));
    BOOST_TEST(zero.code == 1);
    BOOST_TEST(zero.out.find("--count needs a whole number of at least 1") != std::string::npos);
  });
}

BOOST_AUTO_TEST_SUITE_END()
