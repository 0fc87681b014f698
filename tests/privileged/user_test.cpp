// The task's user: uid, gid, supplementary groups, USER/LOGNAME/HOME, and a
// parent-death signal that survives the credential change.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/isolation/host.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;

BOOST_AUTO_TEST_SUITE(task_user, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(nobody_gets_uid_gid_groups_and_env) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    auto cmd =
        sh("id -u; id -g; id -G; grep '^Groups:' /proc/self/status; echo \"$USER $LOGNAME $HOME\"");
    cmd.user = "nobody";
    BOOST_TEST(co_await output_of(cmd) ==
               "65534\n65534\n65534\nGroups:\t65534 \nnobody nobody /nonexistent\n");
    // By number, and with HOME given by the caller (kept, not overwritten).
    cmd.user = "65534";
    cmd.env.push_back("HOME=/tmp");
    BOOST_TEST(co_await output_of(cmd) ==
               "65534\n65534\n65534\nGroups:\t65534 \nnobody nobody /tmp\n");
  });
}

BOOST_AUTO_TEST_CASE(root_task_has_no_stray_groups) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    auto cmd = sh("id -G");
    cmd.user = "root";
    // Exactly root's groups from the group database.
    auto want = lookup_user("root");
    BOOST_REQUIRE(want);
    std::string expected;
    for (auto g : want->groups)
      expected += (expected.empty() ? "" : " ") + std::to_string(g);
    BOOST_TEST(co_await output_of(cmd) == expected + "\n");
  });
}

BOOST_AUTO_TEST_CASE(work_dir_the_user_cannot_enter_fails_with_errno) {
  TASKEXEC_REQUIRE_ROOT();
  temp_dir td;
  BOOST_REQUIRE(::chmod(td.path.c_str(), 0700) == 0);  // root only
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("pwd");
    cmd.user = "nobody";
    cmd.work_dir = td.str();
    task_executor t(harness::get().reaper);
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().code == make_error_code(errc::launch_failed));
    BOOST_TEST(r.error().message == "chdir \"" + td.str() + "\": Permission denied");
    BOOST_TEST((t.state() == task_state::not_launched));
  });
}

BOOST_AUTO_TEST_CASE(output_files_are_opened_by_the_executor) {
  // A task running as nobody still writes to a root-owned log it could not open.
  TASKEXEC_REQUIRE_ROOT();
  temp_dir td;
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("echo as nobody");
    cmd.user = "nobody";
    cmd.stdout_path = td / "out.log";
    task_executor t(harness::get().reaper);
    BOOST_REQUIRE(co_await t.launch(cmd));
    BOOST_TEST((co_await t.wait())->exit_code == 0);
  });
  BOOST_TEST(read_file(td / "out.log") == "as nobody\n");
}

BOOST_AUTO_TEST_CASE(parent_death_signal_survives_the_user_change) {
  // The credential change clears PR_SET_PDEATHSIG, so the executor must set it
  // afterwards: a task running as nobody must still die with its executor.
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> { co_await check_task_dies_with_its_executor("nobody"); });
}

BOOST_AUTO_TEST_SUITE_END()
