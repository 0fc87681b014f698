// Paths the executor (root) opens or chmods on a task's behalf, against a
// task that plants symlinks, hard links and device nodes in its task dir:
// stdout/stderr files, and the binary lookup's chmod. The reviewer's attack
// ("Trust" item 1) runs through the CLI as they ran it, with a victim path
// of our own instead of /etc/cron.d.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>

#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/isolation/host.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace fs = std::filesystem;

namespace {

constexpr uid_t k_nobody = 65534;

struct cli_result {
  int code = -1;
  std::string out, err;
};

// Run the CLI as a task of ours (stdout and stderr into pipes) to its end.
asio::awaitable<cli_result> run_cli(std::vector<std::string> args) {
  temp_dir runtime;  // XDG_RUNTIME_DIR: where `run` makes its private directory
  pipe_reader out, err;
  exec_command cmd;
  cmd.cmd = TASKEXEC_CLI;
  cmd.args = std::move(args);
  cmd.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "XDG_RUNTIME_DIR=" + runtime.str()};
  cmd.stdout_fd = out.write_fd();
  cmd.stderr_fd = err.write_fd();
  task_executor t(harness::get().reaper);
  auto r = co_await t.launch(cmd);
  BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  out.close_write();
  err.close_write();
  cli_result res;
  res.out = co_await out.rest();
  res.err = co_await err.rest();
  res.code = (co_await t.wait())->exit_code;
  co_return res;
}

// A task dir that the task's user (nobody) owns, as the reviewer set it up.
struct nobodys_dir : temp_dir {
  nobodys_dir() {
    BOOST_REQUIRE(::chown(path.c_str(), k_nobody, k_nobody) == 0);
    BOOST_REQUIRE(::chmod(path.c_str(), 0755) == 0);
  }
};

struct stat lstat_of(const std::string& p) {
  struct stat st {};
  BOOST_REQUIRE_MESSAGE(::lstat(p.c_str(), &st) == 0, p);
  return st;
}

// Launch `cmd`; its launch result (the task run to its end when it starts).
asio::awaitable<result<process_state>> launch_to_end(exec_command cmd) {
  task_executor t(harness::get().reaper);
  auto st = co_await t.launch(cmd);
  if (!st)
    co_return st.error();
  co_return *(co_await t.wait());
}

// An OS error (-32004 with data.errno over the protocol) with this message.
void check_os_error(const error& got, int e, const std::string& message) {
  BOOST_TEST(got.code.category().name() == std::string("system"));
  BOOST_TEST(got.code.value() == e);
  BOOST_TEST(got.message == message);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(task_paths, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(the_reviewers_attack_through_the_cli_is_refused) {
  // A first run as nobody replaces T/out.log by a symlink to a path the
  // task may not write; a second run with the same --stdout would have root
  // create that file with the task's text. It fails instead, saying why,
  // and the victim is untouched: failing is what a user expects (writing
  // elsewhere, or silently discarding, would hide the attack).
  TASKEXEC_REQUIRE_ROOT();
  nobodys_dir t;
  temp_dir victims;  // root's, 0700: nobody can write there
  const std::string fresh = victims / "cron-x";
  const std::string existing = victims / "existing";
  write_file(existing, "root's own\n", 0600);
  run([&]() -> asio::awaitable<void> {
    for (const auto& victim : {fresh, existing}) {
      fs::remove(t.path / "out.log");  // the last round's symlink
      auto plant = co_await run_cli(argv_of(
          "run", "--user", "nobody", "--task-dir", t.str(), "--stdout", "out.log", "--", "/bin/sh",
          "-c", "rm -f " + t / "out.log" + "; ln -s " + victim + " " + t / "out.log"));
      BOOST_TEST(plant.code == 0, plant.err);
      BOOST_REQUIRE(fs::is_symlink(t.path / "out.log"));

      auto attack = co_await run_cli(argv_of("run", "--user", "nobody", "--task-dir", t.str(),
                                             "--stdout", "out.log", "--", "/bin/sh", "-c",
                                             "echo '* * * * * root /tmp/evil'"));
      BOOST_TEST(attack.code == 126);
      BOOST_TEST(attack.out == "");
      BOOST_TEST(attack.err == "taskexec: open stdout_path \"out.log\": symlink refused: \"" +
                                   t / "out.log" + "\" is a symlink\n");
    }
  });
  BOOST_TEST(!fs::exists(fs::symlink_status(fresh)));
  BOOST_TEST(read_file(existing) == "root's own\n");
  BOOST_TEST(lstat_of(existing).st_uid == 0u);
}

BOOST_AUTO_TEST_CASE(an_output_file_created_in_the_task_dir_is_the_tasks) {
  // Created for the task (through the descriptor: fchown), so that the task
  // can truncate or rotate its own log; a file that was there keeps its owner.
  TASKEXEC_REQUIRE_ROOT();
  temp_dir t;  // root's, 0755
  BOOST_REQUIRE(::chmod(t.path.c_str(), 0755) == 0);
  fs::create_directories(t.path / "logs");
  write_file(t / "logs/err.log", "before\n", 0666);
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("echo to out; echo to err >&2");
    cmd.user = "nobody";
    cmd.task_dir = t.str();
    cmd.stdout_path = "out.log";
    cmd.stderr_path = t / "logs/err.log";  // absolute, inside the task dir
    auto done = co_await launch_to_end(cmd);
    BOOST_REQUIRE_MESSAGE(done, (done ? "" : done.error().message));
    BOOST_TEST(done->exit_code == 0);
    const auto out = lstat_of(t / "out.log");
    BOOST_TEST(out.st_uid == k_nobody);
    BOOST_TEST(out.st_gid == k_nobody);
    BOOST_TEST((out.st_mode & 07777) == 0644u);
    BOOST_TEST(lstat_of(t / "logs/err.log").st_uid == 0u);
    BOOST_TEST(read_file(t / "logs/err.log") == "before\nto err\n");

    // The task truncates its own log (copytruncate rotation); the next run appends.
    auto rotate = sh(": > " + t / "out.log" + "; echo again");
    rotate.user = "nobody";
    rotate.task_dir = t.str();
    rotate.stdout_path = "out.log";
    auto again = co_await launch_to_end(rotate);
    BOOST_REQUIRE_MESSAGE(again, (again ? "" : again.error().message));
    BOOST_TEST(again->exit_code == 0);
  });
  BOOST_TEST(read_file(t / "out.log") == "again\n");
}

BOOST_AUTO_TEST_CASE(a_symlinked_directory_in_the_task_dir_is_refused) {
  TASKEXEC_REQUIRE_ROOT();
  nobodys_dir t;
  temp_dir elsewhere;
  fs::create_directory_symlink(elsewhere.path, t.path / "logs");
  run([&]() -> asio::awaitable<void> {
    // Relative, and absolute below the task dir: the same refusal.
    for (const auto& path : {std::string("logs/out.log"), t / "logs/out.log"}) {
      auto cmd = sh("echo leaked");
      cmd.user = "nobody";
      cmd.task_dir = t.str();
      cmd.stdout_path = path;
      auto r = co_await launch_to_end(cmd);
      BOOST_REQUIRE(!r);
      check_os_error(r.error(), ELOOP,
                     "open stdout_path \"" + path + "\": symlink refused: \"" + t / "logs" +
                         "\" is a symlink");
    }
  });
  BOOST_TEST(fs::is_empty(elsewhere.path));
}

BOOST_AUTO_TEST_CASE(a_hard_link_or_a_device_in_the_task_dir_is_not_written) {
  // Where fs.protected_hardlinks is 0, a task can hard-link a file it
  // cannot write into its task dir; with CAP_MKNOD it can make a device
  // node. Root must write neither.
  TASKEXEC_REQUIRE_ROOT();
  nobodys_dir t;
  temp_dir host;
  write_file(host / "passwd", "root:x:0:0\n", 0644);
  fs::create_hard_link(host / "passwd", t.path / "out.log");
  BOOST_REQUIRE(::mknod((t / "dev.log").c_str(), S_IFCHR | 0666, makedev(1, 7)) == 0);  // full
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("echo written");
    cmd.user = "nobody";
    cmd.task_dir = t.str();
    cmd.stdout_path = "out.log";
    auto linked = co_await launch_to_end(cmd);
    BOOST_REQUIRE(!linked);
    check_os_error(linked.error(), EPERM,
                   "open stdout_path \"out.log\": \"" + t / "out.log" +
                       "\" has 2 links and belongs to uid 0, not the task's user (uid "
                       "65534): a hard link to a file elsewhere is refused");
    cmd.stdout_path = "dev.log";
    auto device = co_await launch_to_end(cmd);
    BOOST_REQUIRE(!device);
    check_os_error(device.error(), EPERM,
                   "open stdout_path \"dev.log\": \"" + t / "dev.log" +
                       "\" is not a regular file or a FIFO: refused in the task dir");
  });
  BOOST_TEST(read_file(host / "passwd") == "root:x:0:0\n");
}

BOOST_AUTO_TEST_CASE(outside_the_task_dir_a_final_symlink_is_not_followed) {
  // The caller chose the directory; a symlink as the last component is
  // still refused (someone who can write that directory may have put it
  // there). A descriptor link in /proc is not such a symlink.
  TASKEXEC_REQUIRE_ROOT();
  temp_dir logs, t;
  write_file(logs / "victim", "kept\n");
  fs::create_symlink(logs / "victim", logs.path / "out.log");
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("echo written");
    cmd.task_dir = t.str();
    cmd.stdout_path = logs / "out.log";
    auto r = co_await launch_to_end(cmd);
    BOOST_REQUIRE(!r);
    check_os_error(r.error(), ELOOP,
                   "open stdout_path \"" + logs / "out.log" + "\": symlink refused: \"" +
                       logs / "out.log" + "\" is a symlink");
    // /proc/<pid>/fd/<n>, as `taskexec run` passes its own stdout.
    pipe_reader out;
    auto via_proc = sh("echo through proc");
    via_proc.task_dir = t.str();
    via_proc.stdout_path =
        "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(out.write_fd());
    auto ok = co_await launch_to_end(via_proc);
    BOOST_REQUIRE_MESSAGE(ok, (ok ? "" : ok.error().message));
    out.close_write();
    BOOST_TEST(co_await out.rest() == "through proc\n");
  });
  BOOST_TEST(read_file(logs / "victim") == "kept\n");
}

BOOST_AUTO_TEST_CASE(a_0700_script_in_the_task_dir_runs_as_nobody) {
  // Nomad's rule: a file of the task lacking any of 0555 gets them. Before,
  // a 0700 script (executable for its owner, root) was left so, and the
  // task's user got "Permission denied".
  TASKEXEC_REQUIRE_ROOT();
  temp_dir t;
  BOOST_REQUIRE(::chmod(t.path.c_str(), 0755) == 0);
  write_file(t / "script.sh", "#!/bin/sh\nid -u\n", 0700);
  run([&]() -> asio::awaitable<void> {
    exec_command cmd;
    cmd.cmd = "script.sh";
    cmd.user = "nobody";
    cmd.task_dir = t.str();
    cmd.env = {"PATH=/usr/bin:/bin"};
    BOOST_TEST(co_await output_of(cmd) == "65534\n");
  });
  BOOST_TEST((lstat_of(t / "script.sh").st_mode & 07777) == 0755u);
}

BOOST_AUTO_TEST_SUITE_END()
