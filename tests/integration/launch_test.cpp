// Launch: lookup, output, environment, working directory, descriptors,
// signal state, oom_score_adj, and every way a launch can fail.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include "harness.hpp"
#include "taskexec/isolation/host.hpp"

using namespace test_support;
using namespace taskexec;
namespace fs = std::filesystem;

namespace {
// Launch, wait, return the state (failing the test on a launch error).
asio::awaitable<process_state> run_to_exit(exec_command cmd) {
  task_executor t(harness::get().reaper);
  auto started = co_await t.launch(std::move(cmd));
  BOOST_REQUIRE_MESSAGE(started, "launch failed: " << (started ? "" : started.error().message));
  auto st = co_await t.wait();
  BOOST_REQUIRE(st);
  co_return *st;
}

// An embedder's own strategy: the host strategy, wrapped, recording each
// hook the executor calls on it (parent side only: the child may write
// nothing), and an environment variable it adds to every task.
class recording_strategy final : public isolation_strategy {
 public:
  explicit recording_strategy(std::shared_ptr<std::vector<std::string>> log)
      : log_(std::move(log)) {}
  std::string_view name() const noexcept override { return "recording"; }
  isolation_features features() const noexcept override { return host_.features(); }
  result<void> validate(const exec_command& cmd) const override {
    log_->push_back("validate " + cmd.cmd);
    return host_.validate(cmd);
  }
  result<void> before_fork(const exec_command& cmd, launch_plan& plan) override {
    log_->push_back("before_fork");
    exec_command mine = cmd;
    mine.env.push_back("ISOLATED_BY=recording");
    return host_.before_fork(mine, plan);
  }
  bool in_child(const launch_plan& plan, child_failure& f) const noexcept override {
    return host_.in_child(plan, f);
  }
  void after_start(const launch_plan& plan, int pid) override {
    log_->push_back("after_start " + std::to_string(pid));
    host_.after_start(plan, pid);
  }
  void launch_failed(const launch_plan& plan) noexcept override {
    log_->push_back("launch_failed");
    host_.launch_failed(plan);
  }
  result<void> teardown() override {
    log_->push_back("teardown");
    return host_.teardown();
  }

 private:
  std::shared_ptr<std::vector<std::string>> log_;
  host_strategy host_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(launch)

// The stack comes from the embedder's factory, not from a name: its own
// strategy object runs the task, each hook in order, teardown last.
BOOST_AUTO_TEST_CASE(an_injected_strategy_runs_the_task) {
  run([]() -> asio::awaitable<void> {
    auto log = std::make_shared<std::vector<std::string>>();
    auto seen = std::make_shared<std::string>();
    task_executor_options o;
    o.task_id = "injected";
    o.isolation = [log, seen](const exec_command& cmd,
                              const isolation_context& ctx) -> result<isolation_stack> {
      *seen = ctx.task_id + " " + cmd.isolation;
      isolation_stack s;
      s.push_back(std::make_unique<recording_strategy>(log));
      return s;
    };
    task_executor t(harness::get().reaper, o);
    pipe_reader out;
    auto cmd = sh("echo $ISOLATED_BY; exit 3");
    cmd.isolation = "anything-the-factory-reads";
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    BOOST_TEST(co_await out.line() == "recording");
    auto done = co_await t.wait();
    BOOST_REQUIRE(done);
    BOOST_TEST(done->exit_code == 3);
    BOOST_TEST((co_await t.shutdown("SIGTERM", 1s)).has_value());
    BOOST_TEST(*seen == "injected anything-the-factory-reads");
    // (No braced list in a coroutine: GCC 12.)
    std::vector<std::string> want;
    want.push_back("validate /bin/sh");
    want.push_back("before_fork");
    want.push_back("after_start " + std::to_string(st->pid));
    want.push_back("teardown");
    BOOST_TEST(*log == want, boost::test_tools::per_element());
  });
}

// A factory's error fails the launch with it; an empty stack is refused.
BOOST_AUTO_TEST_CASE(an_injected_factory_that_fails_fails_the_launch) {
  run([]() -> asio::awaitable<void> {
    task_executor_options o;
    o.isolation = [](const exec_command&, const isolation_context&) -> result<isolation_stack> {
      return make_error(errc::unsupported, "no such sandbox here");
    };
    task_executor t(harness::get().reaper, o);
    auto st = co_await t.launch(sh("exit 0"));
    BOOST_REQUIRE(!st);
    BOOST_TEST(st.error().message == "no such sandbox here");
    task_executor_options empty;
    empty.isolation = [](const exec_command&, const isolation_context&) -> result<isolation_stack> {
      return isolation_stack{};
    };
    task_executor e(harness::get().reaper, empty);
    auto none = co_await e.launch(sh("exit 0"));
    BOOST_REQUIRE(!none);
    BOOST_TEST((none.error().code == make_error_code(errc::invalid_argument)));
  });
}

BOOST_AUTO_TEST_CASE(missing_binary_fails_cleanly) {
  run([]() -> asio::awaitable<void> {
    auto before = harness::get().reaper.total_reaped();
    task_executor t(harness::get().reaper);
    auto cmd = sh("");
    cmd.cmd = "definitely-not-a-binary";
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().code == make_error_code(errc::binary_not_found));
    BOOST_TEST(r.error().message == "binary \"definitely-not-a-binary\" could not be found");
    BOOST_TEST((t.state() == task_state::not_launched));
    BOOST_TEST(t.pid() == 0);
    BOOST_TEST(harness::get().reaper.total_reaped() == before);  // nothing was forked
    // The executor stays usable: a corrected launch works.
    auto ok = co_await t.launch(sh("exit 0"));
    BOOST_TEST(ok.has_value());
    BOOST_TEST((co_await t.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(exit_codes_propagate) {
  run([]() -> asio::awaitable<void> {
    for (int code : {0, 1, 7, 255}) {
      auto st = co_await run_to_exit(sh("exit " + std::to_string(code)));
      BOOST_TEST(st.exit_code == code);
      BOOST_TEST(st.signal == 0);
      BOOST_TEST(st.pid > 0);
    }
  });
}

BOOST_AUTO_TEST_CASE(output_reaches_the_stdout_file) {
  temp_dir td;
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("echo hello world; echo oops >&2");
    cmd.task_dir = td.str();
    cmd.stdout_path = td / "out.log";
    cmd.stderr_path = "err.log";              // relative: inside the task dir
    write_file(td / "out.log", "earlier\n");  // files are appended to
    auto st = co_await run_to_exit(cmd);
    BOOST_TEST(st.exit_code == 0);
  });
  BOOST_TEST(read_file(td / "out.log") == "earlier\nhello world\n");
  BOOST_TEST(read_file(td / "err.log") == "oops\n");
}

BOOST_AUTO_TEST_CASE(output_to_a_fifo_and_fifo_without_reader) {
  temp_dir td;
  const std::string fifo = td / "out.fifo";
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("echo through the fifo");
    cmd.stdout_path = fifo;
    {
      task_executor t(harness::get().reaper);
      auto r = co_await t.launch(cmd);
      BOOST_REQUIRE(!r);
      BOOST_TEST(r.error().code ==
                 boost::system::error_code(ENXIO, boost::system::system_category()));
      BOOST_TEST(r.error().message == "stdout_path \"" + fifo + "\" is a FIFO with no reader");
    }
    int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    BOOST_REQUIRE(rd >= 0);
    asio::posix::stream_descriptor reader(harness::get().io, rd);
    auto st = co_await run_to_exit(cmd);
    BOOST_TEST(st.exit_code == 0);
    std::string got;
    auto [ec, n] = co_await asio::async_read(reader, asio::dynamic_buffer(got),
                                             asio::as_tuple(asio::use_awaitable));
    (void)n;
    BOOST_TEST(ec == asio::error::eof);
    BOOST_TEST(got == "through the fifo\n");
  });
}

BOOST_AUTO_TEST_CASE(empty_and_dev_null_discard) {
  run([]() -> asio::awaitable<void> {
    auto cmd =
        sh("echo discarded; echo also >&2; ls -l /proc/self/fd/1 /proc/self/fd/2 >/dev/null");
    cmd.stdout_path = "";
    cmd.stderr_path = "/dev/null";
    auto st = co_await run_to_exit(cmd);
    BOOST_TEST(st.exit_code == 0);
    // What the task's stdout is, seen from inside.
    auto probe = sh("x=$(readlink /proc/$$/fd/1); echo $x >&2");  // the shell's own stdout
    pipe_reader err;
    probe.stderr_fd = err.write_fd();
    task_executor t(harness::get().reaper);
    BOOST_REQUIRE(co_await t.launch(probe));
    err.close_write();
    BOOST_TEST(co_await err.rest() == "/dev/null\n");
    co_await t.wait();
  });
}

BOOST_AUTO_TEST_CASE(script_without_exec_bits_is_made_executable_and_runs) {
  temp_dir td;
  write_file(td / "script.sh", "#!/bin/sh\necho script ran\n", 0600);
  run([&]() -> asio::awaitable<void> {
    exec_command cmd;
    cmd.cmd = "script.sh";
    cmd.task_dir = td.str();
    BOOST_TEST(co_await output_of(cmd) == "script ran\n");
  });
  struct stat st {};
  BOOST_REQUIRE(::stat((td / "script.sh").c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0555) == 0555u);
}

BOOST_AUTO_TEST_CASE(lookup_order_task_local_then_task_dir_then_absolute_then_path) {
  temp_dir td;
  fs::create_directories(td.path / "local");
  write_file(td / "local/which", "#!/bin/sh\necho local\n", 0755);
  write_file(td / "which", "#!/bin/sh\necho taskdir\n", 0755);
  run([&]() -> asio::awaitable<void> {
    exec_command cmd;
    cmd.cmd = "which";
    cmd.args = {"sh"};
    cmd.task_dir = td.str();
    cmd.env = {"PATH=/usr/bin:/bin"};
    BOOST_TEST(co_await output_of(cmd) == "local\n");
    fs::remove(td.path / "local/which");
    BOOST_TEST(co_await output_of(cmd) == "taskdir\n");
    fs::remove(td.path / "which");
    // Now the host's `which` from PATH, which prints where sh is.
    auto host = co_await output_of(cmd);
    BOOST_TEST((host == "/usr/bin/sh\n" || host == "/bin/sh\n"), host);
    // An absolute host path.
    cmd.cmd = "/bin/echo";
    cmd.args = {"absolute"};
    BOOST_TEST(co_await output_of(cmd) == "absolute\n");
  });
}

BOOST_AUTO_TEST_CASE(work_dir_then_task_dir) {
  temp_dir td;
  fs::create_directories(td.path / "work");
  run([&]() -> asio::awaitable<void> {
    auto cmd = sh("pwd");
    cmd.task_dir = td.str();
    BOOST_TEST(co_await output_of(cmd) == td.str() + "\n");
    cmd.work_dir = td / "work";
    BOOST_TEST(co_await output_of(cmd) == td.str() + "/work\n");
    cmd.work_dir = td / "missing";
    task_executor t(harness::get().reaper);
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().message ==
               "work_dir \"" + td.str() + "/missing\": No such file or directory");
  });
}

BOOST_AUTO_TEST_CASE(environment_is_exactly_as_given) {
  run([]() -> asio::awaitable<void> {
    exec_command cmd;
    cmd.cmd = "/usr/bin/env";
    cmd.env = {"A=1", "B=two words", "EMPTY="};
    BOOST_TEST(co_await output_of(cmd) == "A=1\nB=two words\nEMPTY=\n");
    cmd.env.clear();
    BOOST_TEST(co_await output_of(cmd) == "");
  });
}

BOOST_AUTO_TEST_CASE(only_stdio_descriptors_are_inherited) {
  // A descriptor the executor holds without CLOEXEC must not leak to the task.
  int leaky = ::open("/dev/null", O_RDONLY);
  BOOST_REQUIRE(leaky > 2);
  run([]() -> asio::awaitable<void> {
    exec_command cmd;
    cmd.cmd = "/bin/ls";
    cmd.args = {"/proc/self/fd"};
    // ls's own directory handle is 3; nothing else may be open.
    BOOST_TEST(co_await output_of(cmd) == "0\n1\n2\n3\n");
  });
  ::close(leaky);
}

BOOST_AUTO_TEST_CASE(signals_start_unblocked_and_default) {
  // The executor blocks SIGCHLD (the reaper) and a daemon ignores SIGPIPE;
  // neither may reach the task.
  struct sigaction ign {
  }, old{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, &old);
  run([]() -> asio::awaitable<void> {
    auto out = co_await output_of(sh("grep -E '^Sig(Blk|Ign)' /proc/self/status"));
    BOOST_TEST(out == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  });
  ::sigaction(SIGPIPE, &old, nullptr);
}

BOOST_AUTO_TEST_CASE(task_leads_its_own_session) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    auto cmd = sh("cut -d' ' -f5,6 /proc/$$/stat");  // pgrp session of the shell
    cmd.stdout_fd = out.write_fd();
    task_executor t(harness::get().reaper);
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE(st);
    out.close_write();
    const auto pid = std::to_string(st->pid);
    BOOST_TEST(co_await out.rest() == pid + " " + pid + "\n");
    co_await t.wait();
  });
}

BOOST_AUTO_TEST_CASE(oom_score_adj_is_the_tasks_not_the_executors) {
  // Raise our own value (allowed without CAP_SYS_RESOURCE); the task must
  // still get its own (default 0). Restored afterwards (0 is not below our
  // oom_score_adj_min, so lowering back is allowed too).
  auto set_own = [](const char* v) {
    std::ofstream f("/proc/self/oom_score_adj");
    f << v;
    f.flush();
    return f.good();
  };
  BOOST_REQUIRE(set_own("300"));
  BOOST_REQUIRE(read_file("/proc/self/oom_score_adj") == "300\n");
  run([]() -> asio::awaitable<void> {
    exec_command cmd;
    cmd.cmd = "/bin/cat";
    cmd.args = {"/proc/self/oom_score_adj"};
    BOOST_TEST(co_await output_of(cmd) == "0\n");
    cmd.oom_score_adj = 500;
    BOOST_TEST(co_await output_of(cmd) == "500\n");
  });
  BOOST_TEST(set_own("0"));
}

BOOST_AUTO_TEST_CASE(exec_failure_reports_errno) {
  temp_dir td;
  write_file(td / "garbage",
             std::string("\x7f"
                         "ELF-not-really",
                         15),
             0755);
  run([&]() -> asio::awaitable<void> {
    auto before = harness::get().reaper.orphans_reaped();
    auto reaped = harness::get().reaper.total_reaped();
    exec_command cmd;
    cmd.cmd = "garbage";
    cmd.task_dir = td.str();
    task_executor t(harness::get().reaper);
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().code == make_error_code(errc::launch_failed));
    BOOST_TEST(r.error().message == "exec \"" + (td / "garbage") + "\": Exec format error");
    BOOST_TEST((t.state() == task_state::not_launched));
    // The failed child is reaped, and claimed (not counted as an orphan).
    BOOST_TEST(co_await wait_total_reaped(reaped + 1));
    BOOST_TEST(zombie_children().empty());
    BOOST_TEST(harness::get().reaper.orphans_reaped() == before);
  });
}

BOOST_AUTO_TEST_CASE(launch_leaves_the_callers_errno_alone) {
  // The child shares our memory until exec; its errno must not leak into ours.
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    errno = 4242;
    auto r = co_await t.launch(sh("exit 0"));
    BOOST_TEST(errno == 4242);
    BOOST_REQUIRE(r);
    co_await t.wait();
  });
}

BOOST_AUTO_TEST_CASE(unknown_user_and_invalid_commands) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    auto cmd = sh("true");
    cmd.user = "no-such-user-xyz";
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().code == make_error_code(errc::user_not_found));
    BOOST_TEST(r.error().message == "user \"no-such-user-xyz\" not found");

    cmd = sh("true");
    cmd.mounts.emplace_back();
    cmd.mounts.back().task_path = "/data";
    cmd.mounts.back().host_path = "/srv/data";
    r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().message == "mounts is not supported by isolation \"host\"");

    cmd = sh("true");
    cmd.basic_process_cgroup = true;
    cmd.resources.memory_mb = 64;
    r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST((r.error().code == make_error_code(errc::invalid_argument)));
    BOOST_TEST(r.error().message ==
               "resources are enforced only with resource_limits (basic_process_cgroup accounts "
               "and kills, it does not limit)");

    cmd = sh("true");
    cmd.isolation = "vm";
    r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().code == make_error_code(errc::unsupported));
    BOOST_TEST(r.error().message ==
               "isolation \"vm\" is not supported (available: \"host\", \"container\")");

    cmd = sh("true");
    cmd.task_dir = "relative/dir";
    r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().message == "task_dir \"relative/dir\" is not an absolute path");
    BOOST_TEST((t.state() == task_state::not_launched));
  });
}

BOOST_AUTO_TEST_SUITE_END()
