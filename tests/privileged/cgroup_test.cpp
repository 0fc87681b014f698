// The cgroup strategy live on this machine (hybrid here: v1 controllers plus
// a unified tree): limits written, the task placed before exec, a kill that
// reaches everything in the cgroup, cleanup, UpdateResources, OOM, stats.
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <thread>

#include "harness.hpp"
#include "privileged.hpp"
#include "taskexec/cgroups.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;

namespace {

// A task id unique to this run, so runs never share a cgroup.
std::string unique_id(const std::string& what) {
  return "test-" + what + "-" + std::to_string(::getpid());
}

// The v1 memory directory of a task (or its v2 directory on a v2 host).
std::string memory_dir(const std::string& id) {
  auto l = cgroup::detect();
  if (l.kind == cgroup::mode::v2)
    return l.unified + "/taskexec/" + cgroup_name_for(id);
  return l.v1.at("memory") + "/taskexec/" + cgroup_name_for(id);
}

exec_command limited(const std::string& script) {
  auto cmd = sh(script);
  cmd.resource_limits = true;
  cmd.resources.memory_mb = 256;
  return cmd;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cgroups, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(limits_are_written_and_the_task_runs_inside) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("limits");
    task_executor t(harness::get().reaper, {.task_id = id});
    pipe_reader out;
    auto cmd = limited("cat /proc/self/cgroup; echo ready; exec sleep 1000");
    cmd.resources.pids_max = 64;
    cmd.resources.cpu_shares = 512;
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    std::string cgroups;
    for (auto line = co_await out.line(); line != "ready" && !line.empty();
         line = co_await out.line())
      cgroups += line + "\n";
    const auto dir = memory_dir(id);
    if (cgroup::detect().kind != cgroup::mode::v2) {
      BOOST_TEST((cgroup::read_file(dir + "/memory.limit_in_bytes") == "268435456\n"));
      const auto name = cgroup_name_for(id);
      BOOST_TEST(cgroups.find(":memory:/taskexec/" + name + "\n") != std::string::npos, cgroups);
      BOOST_TEST(cgroups.find(":pids:/taskexec/" + name + "\n") != std::string::npos, cgroups);
      BOOST_TEST((cgroup::read_file(cgroup::detect().v1.at("pids") + "/taskexec/" + name +
                                    "/pids.max") == "64\n"));
      BOOST_TEST((cgroup::read_file(cgroup::detect().v1.at("cpu") + "/taskexec/" + name +
                                    "/cpu.shares") == "512\n"));
      // Every mounted v1 hierarchy (blkio, name=systemd here), not only
      // those with limits: "<id>:<controllers>:/taskexec/<name>".
      BOOST_TEST(cgroup::detect().hierarchies.size() >= 7u);
      for (const auto& h : cgroup::detect().hierarchies) {
        std::string list;
        for (const auto& c : h.controllers)
          list += (list.empty() ? "" : ",") + c;
        BOOST_TEST(cgroups.find(":" + list + ":/taskexec/" + name + "\n") != std::string::npos,
                   list << " in " << cgroups);
      }
    } else {
      BOOST_TEST((cgroup::read_file(dir + "/memory.max") == "268435456\n"));
    }
    // The executor itself is not in the task's cgroup.
    auto mine = cgroup::read_file("/proc/self/cgroup").value_or("");
    BOOST_TEST(mine.find("/taskexec/" + cgroup_name_for(id)) == std::string::npos);
    auto procs = cgroup::procs(dir);
    BOOST_TEST((procs == std::vector<int>{st->pid}));

    // Live: a new limit.
    task_resources more;
    more.memory_mb = 512;
    auto u = t.update_resources(more);
    BOOST_TEST(u.has_value(), (u ? "" : u.error().message));
    if (cgroup::detect().kind != cgroup::mode::v2)
      BOOST_TEST((cgroup::read_file(dir + "/memory.limit_in_bytes") == "536870912\n"));

    // A value the kernel refuses: a clear error naming the file, not a no-op.
    if (cgroup::detect().kind != cgroup::mode::v2) {
      task_resources bad;
      bad.cpuset_cpus = "99";
      auto refused = t.update_resources(bad);
      BOOST_REQUIRE(!refused);
      BOOST_TEST((refused.error().code == make_error_code(errc::resource_config_failed)));
      BOOST_TEST(refused.error().message ==
                 "write " + cgroup::detect().v1.at("cpuset") + "/taskexec/" + cgroup_name_for(id) +
                     "/cpuset.cpus \"99\": Numerical result out of range");
    }

    BOOST_TEST((co_await t.shutdown("SIGTERM", 5s)).has_value());
    BOOST_TEST(!std::filesystem::exists(dir));  // removed after the shutdown
  });
}

BOOST_AUTO_TEST_CASE(shutdown_kills_what_left_the_session_and_what_was_planted) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("kill");
    const auto dir = memory_dir(id);
    // A process planted in the task's cgroup before the launch.
    std::filesystem::create_directories(dir);
    task_executor planter(harness::get().reaper);
    auto planted = co_await planter.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE(planted);
    BOOST_REQUIRE(cgroup::write_file(dir + "/cgroup.procs", std::to_string(planted->pid)));

    task_executor t(harness::get().reaper, {.task_id = id});
    pipe_reader out;
    // A process that leaves the task's tree (its parent exits: it is
    // re-parented to us) and its session: only the cgroup still holds it.
    auto cmd =
        sh("sh -c 'setsid sh -c \"echo \\$\\$; echo ready; exec sleep 1000\" &'; exec sleep 1000");
    cmd.basic_process_cgroup = true;
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    BOOST_TEST(co_await wait_gone(planted->pid));  // killed before the task started
    const int escaped = std::stoi(co_await out.line());
    BOOST_REQUIRE_EQUAL(co_await out.line(), "ready");
    BOOST_TEST(alive(escaped));
    BOOST_TEST(detail::read_proc_stat(escaped)->session != st->pid);
    BOOST_TEST((co_await t.shutdown("SIGTERM", 5s)).has_value());
    BOOST_TEST(!alive(escaped));
    BOOST_TEST(!std::filesystem::exists(dir));
  });
}

// The sweep walks our own tree (we are the subreaper: every process of the
// task descends from us); a process put into the task's cgroup from outside
// that tree is killed all the same, and the shutdown waits for it.
BOOST_AUTO_TEST_CASE(a_process_put_into_the_cgroup_from_outside_our_tree_is_killed) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("outsider");
    task_executor t(harness::get().reaper, {.task_id = id});
    pipe_reader out;
    auto cmd = sh("echo ready; exec sleep 1000");
    cmd.basic_process_cgroup = true;
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    BOOST_REQUIRE_EQUAL(co_await out.line(), "ready");

    // A sibling of ours (CLONE_PARENT: our parent's child, so not below us;
    // our parent reaps it, or keeps its zombie until it exits itself).
    static char sleep_path[] = "/bin/sleep";
    static char sleep_arg[] = "1000";
    static char* const sleep_argv[] = {sleep_path, sleep_arg, nullptr};
    const long outsider = ::syscall(SYS_clone, CLONE_PARENT, 0, nullptr, nullptr, 0);
    if (outsider == 0) {
      ::execv(sleep_path, sleep_argv);
      ::_exit(127);
    }
    BOOST_REQUIRE(outsider > 0);
    const int op = static_cast<int>(outsider);
    BOOST_TEST(detail::read_proc_stat(op)->ppid == ::getppid());
    // Into every cgroup directory of the task (the unified one holds what
    // the sweep's kill lists on this host and on a pure v2 one).
    auto layout = cgroup::detect();
    std::vector<std::string> dirs;
    if (!layout.unified.empty())
      dirs.push_back(layout.unified + "/taskexec/" + cgroup_name_for(id));
    for (const auto& [controller, root] : layout.v1) {
      auto dir = root + "/taskexec/" + cgroup_name_for(id);
      if (std::filesystem::exists(dir))
        dirs.push_back(dir);
    }
    BOOST_REQUIRE(!dirs.empty());
    for (const auto& dir : dirs)
      BOOST_REQUIRE_MESSAGE(cgroup::write_file(dir + "/cgroup.procs", std::to_string(op)), dir);
    BOOST_TEST(alive(op));

    BOOST_TEST((co_await t.shutdown("SIGTERM", 5s)).has_value());
    BOOST_TEST(co_await wait_gone(op, 10s));
    BOOST_TEST(!alive(op));
    for (const auto& dir : dirs)
      BOOST_TEST(!std::filesystem::exists(dir), dir);
  });
}

BOOST_AUTO_TEST_CASE(a_cgroup_that_cannot_be_configured_fails_the_launch) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("refused");
    task_executor t(harness::get().reaper, {.task_id = id});
    auto cmd = limited("true");
    cmd.resources.cpuset_cpus = "99";
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE(!r);
    BOOST_TEST((r.error().code == make_error_code(errc::resource_config_failed)));
    BOOST_TEST(r.error().message.find("cpuset.cpus \"99\"") != std::string::npos,
               r.error().message);
    BOOST_TEST(!std::filesystem::exists(memory_dir(id)));  // nothing left behind
  });
}

BOOST_AUTO_TEST_CASE(our_own_sigkill_is_not_an_oom) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper, {.task_id = unique_id("nooom")});
    BOOST_REQUIRE(co_await t.launch(limited("exec sleep 1000")));
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
    auto done = co_await t.wait();
    BOOST_TEST(done->signal == SIGKILL);
    BOOST_TEST(!done->oom_killed);
  });
}

BOOST_AUTO_TEST_CASE(an_oom_kill_is_reported) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("oom");
    task_executor t(harness::get().reaper, {.task_id = id});
    auto cmd = limited("exec tail /dev/zero");
    cmd.resources.memory_mb = 32;
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    auto done = co_await t.wait();
    BOOST_REQUIRE(done);
    BOOST_TEST(done->oom_killed);
    BOOST_TEST(done->exit_code > 0);
    BOOST_TEST(done->signal == SIGKILL);
    BOOST_TEST((co_await t.shutdown("SIGTERM", 1s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(stats_in_cgroup_mode) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("stats");
    task_executor t(harness::get().reaper, {.task_id = id});
    auto st = co_await t.launch(limited("exec sleep 1000"));
    BOOST_REQUIRE(st);
    auto sampler = t.sampler();
    BOOST_REQUIRE(sampler);
    auto s = sampler->sample();
    const auto kind = cgroup::detect().kind;
    if (kind == cgroup::mode::v2) {
      BOOST_TEST(
          (s.total.memory.measured == std::vector<std::string>{"RSS", "Cache", "Swap", "Usage"}));
    } else {
      BOOST_TEST((s.total.memory.measured ==
                  std::vector<std::string>{"RSS", "Cache", "Swap", "Usage", "Max Usage",
                                           "Kernel Usage", "Kernel Max Usage"}));
      BOOST_TEST(s.total.memory.usage > 0u);
    }
    BOOST_TEST((s.total.cpu.measured == std::vector<std::string>{"System Mode", "User Mode",
                                                                 "Throttled Periods",
                                                                 "Throttled Time", "Percent"}));
    BOOST_TEST(s.pids.size() == 1u);
    BOOST_TEST(s.pids.contains(st->pid));
    BOOST_TEST((co_await t.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(v2_kill_and_cpu_stat_on_the_live_unified_tree) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    auto l = cgroup::detect();
    BOOST_REQUIRE_MESSAGE(!l.unified.empty(), "this host has no unified cgroup tree");
    const auto dir = l.unified + "/" + unique_id("v2kill");
    BOOST_REQUIRE(std::filesystem::create_directory(dir));
    task_executor t(harness::get().reaper);
    auto st = co_await t.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE(st);
    BOOST_REQUIRE(cgroup::write_file(dir + "/cgroup.procs", std::to_string(st->pid)));
    BOOST_TEST((cgroup::populated(dir) == std::optional<bool>(true)));
    BOOST_TEST(cgroup::keyed_value(cgroup::read_file(dir + "/cpu.stat").value_or(""), "usage_usec")
                   .has_value());
    BOOST_TEST(cgroup::kill_members({{dir}, dir, {}, {}}) == 1u);
    auto done = co_await t.wait();
    BOOST_TEST(done->signal == SIGKILL);
    BOOST_TEST((cgroup::populated(dir) == std::optional<bool>(false)));
    BOOST_TEST(cgroup::remove_once(dir).has_value());
    BOOST_TEST(!std::filesystem::exists(dir));
    BOOST_TEST(cgroup::remove_once(dir).has_value());  // idempotent
  });
}

// The cgroups' removal waits on timers, not on the io thread: a cgroup that
// stays busy (here a process frozen in a child cgroup of the task's freezer
// cgroup: SIGKILL waits for the thaw) holds the shutdown's answer, not the
// thread; other timers keep their time, and the removal completes once the
// process can exit.
BOOST_AUTO_TEST_CASE(a_busy_cgroup_is_removed_without_blocking_the_io_thread) {
  TASKEXEC_REQUIRE_ROOT();
  const auto layout = cgroup::detect();
  if (!layout.has_v1("freezer")) {
    BOOST_TEST_MESSAGE("skipped: no v1 freezer on this host (the busy cgroup is made with it)");
    BOOST_TEST(!in_ci(), "a privileged test skipped in CI");
    return;
  }
  run([]() -> asio::awaitable<void> {
    const auto id = unique_id("busy");
    const auto task_dir = cgroup::detect().v1.at("freezer") + "/taskexec/" + cgroup_name_for(id);
    const auto sub = task_dir + "/held";
    task_executor t(harness::get().reaper, {.task_id = id});
    auto cmd = sh("exec sleep 1000");
    cmd.basic_process_cgroup = true;
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    // A process of ours, frozen in a child cgroup of the task's.
    task_executor holder(harness::get().reaper);
    auto held = co_await holder.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE(held);
    BOOST_REQUIRE(std::filesystem::create_directory(sub));
    BOOST_REQUIRE(cgroup::write_file(sub + "/cgroup.procs", std::to_string(held->pid)));
    BOOST_REQUIRE(cgroup::write_file(sub + "/freezer.state", "FROZEN"));

    // A 20 ms ticker measures the io thread's longest gap; after ten ticks
    // (the shutdown is waiting on the busy cgroup by then) it thaws.
    auto ex = co_await asio::this_coro::executor;
    auto longest = std::make_shared<std::chrono::steady_clock::duration>();
    auto ticks = std::make_shared<int>(0);
    auto thawed = std::make_shared<bool>(false);
    asio::co_spawn(
        ex,
        [longest, ticks, thawed, sub]() -> asio::awaitable<void> {
          asio::steady_timer timer(co_await asio::this_coro::executor);
          auto last = std::chrono::steady_clock::now();
          while (!*thawed) {
            timer.expires_after(20ms);
            co_await timer.async_wait(asio::use_awaitable);
            const auto now = std::chrono::steady_clock::now();
            *longest = std::max(*longest, now - last);
            last = now;
            if (++*ticks == 10) {
              (void)cgroup::write_file(sub + "/freezer.state", "THAWED");
              *thawed = true;
            }
          }
        },
        asio::detached);
    auto down = co_await t.shutdown("SIGKILL", 0ms);
    BOOST_TEST(down.has_value(), (down ? "" : down.error().message));
    BOOST_TEST(*thawed);  // the shutdown answered after the thaw: it waited for the removal
    BOOST_TEST(*ticks >= 10);
    const auto gap_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*longest).count();
    BOOST_TEST_MESSAGE("longest io-thread gap during the teardown: " << gap_ms << " ms");
    BOOST_TEST(gap_ms < 1000);  // old: the whole wait (2 s) in one sleep loop
    BOOST_TEST(!std::filesystem::exists(task_dir));
    auto h = co_await holder.wait();  // killed by the teardown, dead once thawed
    BOOST_REQUIRE(h);
    BOOST_TEST(h->signal == SIGKILL);
  });
}

BOOST_AUTO_TEST_SUITE_END()
