// A container task's root is the task's: what it holds must not steer a
// mount, a device node or a chmod of the executor's (root's) out of it.
// Symlinks planted where a mount point or /dev goes are refused, in the
// parent's checks and, when swapped in after them, in the child; a mount
// point is made without opening it; the binary lookup makes a file of the
// root executable, as Nomad does.
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <sstream>

#include "harness.hpp"
#include "privileged.hpp"
#include "rootfs.hpp"
#include "taskexec/detail/spawn.hpp"
#include "taskexec/isolation/host.hpp"
#include "test_root.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace fs = std::filesystem;

namespace {

std::string unique_id(const std::string& what) {
  return "ctp-" + what + "-" + std::to_string(::getpid());
}

// Mount points of the host (our mount namespace) at or below `path`.
std::vector<std::string> host_mounts_under(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream all(read_file("/proc/self/mountinfo"));
  for (std::string l; std::getline(all, l);) {
    std::stringstream ss(l);
    std::string id, parent, devno, root, point;
    ss >> id >> parent >> devno >> root >> point;
    if (point == path || point.rfind(path + "/", 0) == 0)
      out.push_back(point);
  }
  return out;
}

// The launch's error; the test fails if it launched.
asio::awaitable<error> launch_error(exec_command cmd, const std::string& id) {
  task_executor t(harness::get().reaper, {.task_id = id});
  auto st = co_await t.launch(cmd);
  if (st) {
    co_await t.shutdown("SIGKILL", 0s);
    BOOST_FAIL("launched");
  }
  co_return st.error();
}

// Prepare a launch through the container stack as task_executor does, let
// `between` change the root, then start the child: its error. Nothing is
// left (the failed child is reaped, the strategies torn down).
template <class F>
asio::awaitable<error> child_error_after(const exec_command& cmd, const std::string& id,
                                         F between) {
  auto stack = make_isolation(cmd, {id, {}, id});
  BOOST_REQUIRE(stack);
  for (const auto& s : *stack)
    BOOST_REQUIRE(s->validate(cmd));
  launch_plan plan;
  for (auto& s : *stack) {
    auto r = s->before_fork(cmd, plan);
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  }
  between();
  plan.seal();
  int failed = -1;
  const auto reaped = harness::get().reaper.total_reaped();
  auto child = co_await detail::spawn(harness::get().reaper, plan, *stack,
                                      detail::default_report_timeout, nullptr, &failed);
  for (auto& s : *stack)
    s->launch_failed(plan);
  for (auto& s : *stack)
    (void)s->teardown();
  if (child) {
    detail::kill_spawned(*child);
    co_await wait_total_reaped(reaped + 1);
    BOOST_FAIL("the child started");
  }
  if (failed > 0)  // claimed by the launch: reaped as nobody's
    BOOST_TEST(co_await wait_total_reaped(reaped + 1));
  co_return child.error();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(container_paths, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(a_symlink_where_dev_goes_is_refused) {
  // /dev's tmpfs and every node in it would land in the symlink's target.
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    temp_dir outside;
    fs::create_directory_symlink(outside.path, root.dir.path / "dev");
    auto e = co_await launch_error(in_container(root, "true"), unique_id("dev"));
    BOOST_TEST((e.code == make_error_code(errc::invalid_argument)));
    BOOST_TEST(e.message == "mount point \"" + root.str() + "/dev\" is a symlink: refused");
    BOOST_TEST(fs::is_empty(outside.path));
    BOOST_TEST(host_mounts_under(outside.str()).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_mount_target_through_a_symlink_is_refused) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    temp_dir outside, source;
    write_file(source / "file", "source\n");
    write_file(outside / "target", "outside\n");
    fs::create_directory_symlink(outside.path, root.dir.path / "data");
    fs::create_symlink(outside / "target", root.dir.path / "etc" / "conf");
    struct refusal {
      std::string task_path, host_path, refused;
    };
    const std::vector<refusal> cases = {
        {"/data/sub", source.str(), "/data"},         // a directory on the way
        {"/data", source.str(), "/data"},             // the mount point itself
        {"/etc/conf", source / "file", "/etc/conf"},  // a file mount's target
        {"/data/file", source / "file", "/data"},
    };
    for (const auto& c : cases) {
      auto cmd = in_container(root, "true");
      cmd.mounts = {{c.task_path, c.host_path, false, ""}};
      auto e = co_await launch_error(cmd, unique_id("mnt"));
      BOOST_TEST((e.code == make_error_code(errc::invalid_argument)), c.task_path);
      BOOST_TEST(e.message ==
                 "mount point \"" + root.str() + c.refused + "\" is a symlink: refused");
    }
    BOOST_TEST(!fs::exists(outside.path / "sub"));
    BOOST_TEST(!fs::exists(outside.path / "file"));
    BOOST_TEST(read_file(outside / "target") == "outside\n");
    BOOST_TEST(host_mounts_under(outside.str()).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_file_mount_target_is_made_without_opening_it) {
  // Before, an existing target was opened for writing (O_CREAT): a FIFO
  // planted there blocked the executor for good, a device node was opened.
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    temp_dir source;
    write_file(source / "file", "from the host\n");
    BOOST_REQUIRE(::mkfifo((root.dir / "fifo").c_str(), 0644) == 0);
    auto cmd = in_container(root, "true");
    cmd.mounts = {{"/fifo", source / "file", true, ""}};
    auto e = co_await launch_error(cmd, unique_id("fifo"));
    BOOST_TEST((e.code == make_error_code(errc::invalid_argument)));
    BOOST_TEST(e.message == "mount point \"" + root.str() +
                                "/fifo\" is not a regular file (the mount's source is a file): "
                                "refused");
    // A target that is missing is made (empty, 0644) and mounted on.
    cmd = in_container(root, "cat /etc/made");
    cmd.mounts = {{"/etc/made", source / "file", true, ""}};
    task_executor t(harness::get().reaper, {.task_id = unique_id("made")});
    pipe_reader out;
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    BOOST_TEST(co_await out.rest() == "from the host\n");
    BOOST_TEST((co_await t.wait())->exit_code == 0);
    co_await t.shutdown("SIGKILL", 0s);
    struct stat made {};
    BOOST_REQUIRE(::lstat((root.dir / "etc/made").c_str(), &made) == 0);
    BOOST_TEST(S_ISREG(made.st_mode));
    BOOST_TEST(made.st_size == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_symlink_swapped_in_after_the_checks_is_refused_in_the_child) {
  // The parent checks mount points before the launch; the child resolves
  // them again, below the root and through no symlink, when it mounts.
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    temp_dir outside, source;
    auto swap = [&](const char* name) {
      return [&root, &outside, name] {
        fs::remove(root.dir.path / name);
        fs::create_directory_symlink(outside.path, root.dir.path / name);
      };
    };
    for (const char* own : {"proc", "dev", "sys"}) {
      auto e = co_await child_error_after(in_container(root, "true"), unique_id(own), swap(own));
      BOOST_TEST((e.code == make_error_code(errc::launch_failed)), own);
      BOOST_TEST(e.message == "mount /" + std::string(own) + ": Too many levels of symbolic links");
      fs::remove(root.dir.path / own);
    }
    auto cmd = in_container(root, "true");
    cmd.mounts = {{"/data", source.str(), false, ""}};
    auto e = co_await child_error_after(cmd, unique_id("bind"), swap("data"));
    BOOST_TEST(e.message == "mount point /data: Too many levels of symbolic links");
    BOOST_TEST(fs::is_empty(outside.path));
  });
}

BOOST_AUTO_TEST_CASE(a_file_of_the_root_without_execute_bits_runs) {
  // Nomad's lookup: a regular file inside the root is found and made
  // executable (0644 -> 0755). Before: "file app.sh not found under path".
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    write_file(root.dir / "app.sh",
               "#!/bin/sh\nwhile read -r k v rest; do [ \"$k\" = Uid: ] && echo \"ran as $v\"; "
               "done < /proc/self/status\nexit 0\n",
               0644);
    write_file(root.dir / "usr/bin/tool", "#!/bin/sh\necho tool\n", 0700);
    exec_command cmd;
    cmd.cmd = "app.sh";
    cmd.isolation = "container";
    cmd.task_dir = root.str();
    cmd.user = "nobody";
    cmd.env = {"PATH=/usr/bin:/bin"};
    task_executor t(harness::get().reaper, {.task_id = unique_id("chmod")});
    pipe_reader out;
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    BOOST_TEST(co_await out.rest() == "ran as 65534\n");
    BOOST_TEST((co_await t.wait())->exit_code == 0);
    co_await t.shutdown("SIGKILL", 0s);
    struct stat app {};
    BOOST_REQUIRE(::stat((root.dir / "app.sh").c_str(), &app) == 0);
    BOOST_TEST((app.st_mode & 07777) == 0755u);
    // Through /bin -> usr/bin, as the task resolves it: 0700 -> 0755.
    cmd.cmd = "/bin/tool";
    task_executor t2(harness::get().reaper, {.task_id = unique_id("chmod2")});
    pipe_reader out2;
    cmd.stdout_fd = out2.write_fd();
    auto st2 = co_await t2.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st2, (st2 ? "" : st2.error().message));
    out2.close_write();
    BOOST_TEST(co_await out2.rest() == "tool\n");
    BOOST_TEST((co_await t2.wait())->exit_code == 0);
    co_await t2.shutdown("SIGKILL", 0s);
  });
}

BOOST_AUTO_TEST_SUITE_END()
