// taskexec-stress as root: tasks in cgroups of their own leave none behind,
// and a cgroup planted on purpose is caught by the leak check and removed.
#include <boost/test/unit_test.hpp>

#include <filesystem>

#include "harness.hpp"
#include "privileged.hpp"
#include "stress_run.hpp"

using namespace test_support;

BOOST_AUTO_TEST_SUITE(stress_privileged, *boost::unit_test::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(churn_in_cgroups_leaves_no_cgroup) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    auto embedded =
        co_await run_stress(argv_of("churn", "--count", "20", "--cgroup", "--embedded"));
    auto daemons = co_await run_stress(argv_of("churn", "--count", "20", "--cgroup"));
    for (auto* r : {&embedded, &daemons}) {
      BOOST_TEST_INFO(r->out << r->err);
      BOOST_TEST(r->code == 0);
      BOOST_REQUIRE(!r->report.empty());
      BOOST_TEST(r->report.at("ok").as_bool(), r->failed_checks());
      BOOST_TEST(r->figure("cycles").to_number<std::int64_t>() == 20);
      BOOST_TEST(r->leaks("cgroups").to_number<std::uint64_t>() == 0u);
    }
  });
}

BOOST_AUTO_TEST_CASE(a_planted_cgroup_leak_fails_the_run_and_is_removed) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    auto r = co_await run_stress(
        argv_of("churn", "--count", "2", "--embedded", "--plant-leak", "cgroup"));
    BOOST_TEST_INFO(r.out << r.err);
    BOOST_TEST(r.code == 1);
    BOOST_REQUIRE(!r.report.empty());
    BOOST_TEST(r.leaks("cgroups").to_number<std::uint64_t>() == 1u);
    BOOST_TEST(r.leaks("cleaned_up").as_bool());
    const std::string detail(r.leaks("detail").as_string());
    auto at = detail.find("(/sys/fs/cgroup/");
    BOOST_REQUIRE_MESSAGE(at != std::string::npos, detail);
    auto path = detail.substr(at + 1, detail.find(')', at) - at - 1);
    BOOST_TEST(path.find("taskexec-stress-planted-") != std::string::npos);
    BOOST_TEST(!std::filesystem::exists(path));
  });
}

BOOST_AUTO_TEST_SUITE_END()
