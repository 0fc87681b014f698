// The container strategy live: namespaces, the task dir as root, /dev, /proc
// and /sys, bind mounts, devices, capabilities, a network namespace, the
// init of a private PID namespace, and nothing left on the host afterwards.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "harness.hpp"
#include "privileged.hpp"
#include "rootfs.hpp"
#include "taskexec/cgroups.hpp"
#include "taskexec/detail/spawn.hpp"
#include "taskexec/isolation/cgroup.hpp"
#include "taskexec/isolation/container.hpp"
#include "taskexec/isolation/host.hpp"
#include "test_root.hpp"

using namespace test_support;
using namespace taskexec;
namespace utf = boost::unit_test;
namespace fs = std::filesystem;

namespace {

template <class... A>
std::vector<std::string> list(A... a) {
  return {std::string(a)...};
}

std::string unique_id(const std::string& what) {
  return "ct-" + what + "-" + std::to_string(::getpid());
}

// Run a container task to its end; its stdout, and its state.
asio::awaitable<std::pair<std::string, process_state>> run_task(exec_command cmd,
                                                                const std::string& id) {
  task_executor t(harness::get().reaper, {.task_id = id});
  pipe_reader out;
  cmd.stdout_fd = out.write_fd();
  auto st = co_await t.launch(cmd);
  BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
  out.close_write();
  auto text = co_await out.rest();
  auto done = co_await t.wait();
  BOOST_REQUIRE(done);
  co_await t.shutdown("SIGKILL", 0s);
  co_return std::pair{text, *done};
}

// Check `done()` every 5 ms until it holds, up to `bound` (for states that
// have no event to wait on, such as another process's stop).
template <class F>
asio::awaitable<bool> poll_until(F done, std::chrono::milliseconds bound = 10000ms) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (auto waited = 0ms; !done(); waited += 5ms) {
    if (waited >= bound)
      co_return false;
    timer.expires_after(5ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return true;
}

std::string ns_of(const std::string& pid, const char* kind) {
  return fs::read_symlink("/proc/" + pid + "/ns/" + kind).string();
}

std::string status_field(const std::string& status, const std::string& key) {
  auto at = status.find(key + ":\t");
  if (at == std::string::npos)
    return {};
  auto start = at + key.size() + 2;
  return status.substr(start, status.find('\n', start) - start);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);)
    out.push_back(l);
  return out;
}

// Mount points of the host (our mount namespace) at or below `path`.
std::vector<std::string> host_mounts_under(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& l : lines(read_file("/proc/self/mountinfo"))) {
    std::stringstream ss(l);
    std::string id, parent, devno, root, point;
    ss >> id >> parent >> devno >> root >> point;
    if (point == path || point.rfind(path + "/", 0) == 0)
      out.push_back(point);
  }
  return out;
}

// Processes whose cgroup names the task's.
std::vector<int> processes_in_cgroup_of(const std::string& id) {
  std::vector<int> out;
  const auto name = cgroup_name_for(id);
  for (const auto& p : detail::scan_processes()) {
    if (read_file("/proc/" + std::to_string(p.pid) + "/cgroup").find(name) != std::string::npos)
      out.push_back(p.pid);
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(container, *utf::precondition(needs_root()))

BOOST_AUTO_TEST_CASE(the_task_dir_is_the_root_with_namespaces_of_its_own) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    const auto id = unique_id("root");
    auto [out, st] = co_await run_task(
        in_container(root,
                     "ls -F /; echo --; ls /etc; echo --; hostname; echo $$; cat /proc/1/comm; "
                     "for n in pid ipc mnt uts net; do readlink /proc/self/ns/$n; done; "
                     "grep NoNewPrivs /proc/self/status; exit 7"),
        id);
    BOOST_TEST(st.exit_code == 7);
    BOOST_TEST(st.signal == 0);
    auto l = lines(out);
    BOOST_REQUIRE_EQUAL(l.size(), 20u);
    // Exactly the task dir's entries, plus dev/, proc/ and sys/.
    const std::vector<std::string> listing(l.begin(), l.begin() + 8);
    BOOST_TEST((listing == std::vector<std::string>{"bin@", "dev/", "etc/", "lib/", "lib64/",
                                                    "proc/", "sys/", "usr/"}),
               out);
    BOOST_TEST(l[8] == "--");
    BOOST_TEST(l[9] == "motd");
    BOOST_TEST(l[10] == "--");
    BOOST_TEST(l[11] == id);  // the hostname
    // PID 1 is taskexec-init, which started the task as PID 2.
    BOOST_TEST(l[12] == "2");
    BOOST_TEST(l[13] == "taskexec-init");
    const std::string me = std::to_string(::getpid());
    BOOST_TEST(l[14] != ns_of(me, "pid"));
    BOOST_TEST(l[15] != ns_of(me, "ipc"));
    BOOST_TEST(l[16] != ns_of(me, "mnt"));
    BOOST_TEST(l[17] != ns_of(me, "uts"));
    BOOST_TEST(l[18] == ns_of(me, "net"));  // no network_isolation: the host's
    BOOST_TEST(l[19] == "NoNewPrivs:\t1");
  });
}

BOOST_AUTO_TEST_CASE(proc_dev_and_sys_inside) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    auto [out, st] = co_await run_task(
        in_container(root,
                     "ls /dev; echo --; "
                     "grep -E '^[^ ]+ /(proc|dev|dev/pts|dev/shm|sys) ' /proc/self/mounts | "
                     "while read dev at type opts rest; do echo $at $type $opts; done; echo --; "
                     "[ -s /proc/kcore ] && echo kcore-visible || echo kcore-masked; "
                     "ls -A /sys/firmware | grep -q . && echo firmware-visible || echo "
                     "firmware-masked; "
                     "(echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo sys-writable || "
                     "echo sys-read-only; "
                     "(echo x > /sys/kernel/uevent_helper) 2>/dev/null && echo sysfs-writable || "
                     "echo sysfs-read-only"),
        unique_id("procdev"));
    auto l = lines(out);
    const auto dash = std::find(l.begin(), l.end(), "--");
    BOOST_REQUIRE(dash != l.end());
    BOOST_TEST((std::vector<std::string>(l.begin(), dash) ==
                std::vector<std::string>{"fd", "full", "null", "ptmx", "pts", "random", "shm",
                                         "stderr", "stdin", "stdout", "tty", "urandom", "zero"}),
               out);
    const auto dash2 = std::find(dash + 1, l.end(), "--");
    BOOST_REQUIRE(dash2 != l.end());
    std::map<std::string, std::string> mounts;
    for (auto it = dash + 1; it != dash2; ++it) {
      auto sp = it->find(' ');
      mounts[it->substr(0, sp)] = it->substr(sp + 1);
    }
    auto has = [&](const std::string& at, const std::string& type,
                   std::initializer_list<const char*> opts) {
      const auto& m = mounts[at];
      bool ok = m.rfind(type + " ", 0) == 0;
      for (const char* o : opts)
        ok = ok && ("," + m.substr(m.find(' ') + 1) + ",").find(std::string(",") + o + ",") !=
                       std::string::npos;
      return ok;
    };
    BOOST_TEST(has("/proc", "proc", {"rw", "nosuid", "nodev", "noexec"}), mounts["/proc"]);
    BOOST_TEST(has("/dev", "tmpfs", {"nosuid"}), mounts["/dev"]);
    BOOST_TEST(has("/dev/pts", "devpts", {"nosuid", "noexec"}), mounts["/dev/pts"]);
    BOOST_TEST(has("/dev/shm", "tmpfs", {"nosuid", "nodev", "noexec"}), mounts["/dev/shm"]);
    BOOST_TEST(has("/sys", "sysfs", {"ro", "nosuid", "nodev", "noexec"}), mounts["/sys"]);
    BOOST_TEST((std::vector<std::string>(dash2 + 1, l.end()) ==
                std::vector<std::string>{"kcore-masked", "firmware-masked", "sys-read-only",
                                         "sysfs-read-only"}),
               out);
  });
}

BOOST_AUTO_TEST_CASE(host_pid_and_ipc_modes_share_the_hosts_namespaces) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    auto cmd =
        in_container(root, "echo $$; for n in pid ipc mnt uts; do readlink /proc/self/ns/$n; done");
    cmd.default_pid_mode = "host";
    cmd.default_ipc_mode = "host";
    task_executor t(harness::get().reaper, {.task_id = unique_id("hostns")});
    pipe_reader out;
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    auto l = lines(co_await out.rest());
    BOOST_REQUIRE_EQUAL(l.size(), 5u);
    BOOST_TEST(l[0] == std::to_string(st->pid));  // the task itself, no init
    const std::string me = std::to_string(::getpid());
    BOOST_TEST(l[1] == ns_of(me, "pid"));
    BOOST_TEST(l[2] == ns_of(me, "ipc"));
    BOOST_TEST(l[3] != ns_of(me, "mnt"));
    BOOST_TEST(l[4] != ns_of(me, "uts"));
    auto done = co_await t.wait();
    BOOST_REQUIRE(done);
    BOOST_TEST(done->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(an_orphan_inside_is_reaped_and_signals_reach_the_task) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    const auto id = unique_id("init");
    task_executor t(harness::get().reaper, {.task_id = id});
    pipe_reader out;
    // The subshell's child is orphaned (reparented to PID 1) and exits: it
    // must not stay a zombie. The loop is bounded at 10 s.
    auto cmd = in_container(root,
                            "(sleep 0 & echo $! > /tmp.o); o=$(cat /tmp.o); i=0; "
                            "while [ -e /proc/$o ] && [ $i -lt 1000 ]; do i=$((i+1)); sleep 0.01; "
                            "done; "
                            "if [ -e /proc/$o ]; then echo leaked; else echo reaped; fi; "
                            "echo ready; exec sleep 1000");
    cmd.stdout_fd = out.write_fd();
    auto st = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
    out.close_write();
    BOOST_TEST(co_await out.line() == "reaped");
    BOOST_REQUIRE(co_await out.line() == "ready");
    // SIGSTOP cannot pass through init: it goes to the task (init's child).
    const auto children = read_file("/proc/" + std::to_string(st->pid) + "/task/" +
                                    std::to_string(st->pid) + "/children");
    const int task = std::atoi(children.c_str());
    BOOST_REQUIRE(task > 0);
    auto state_of = [](int pid) {
      auto s = detail::read_proc_stat(pid);
      return s ? s->state : '?';
    };
    BOOST_TEST((co_await t.signal(SIGSTOP)).has_value());
    BOOST_TEST(co_await poll_until([&] { return state_of(task) == 'T'; }));
    BOOST_TEST(state_of(st->pid) != 'T');                  // init itself runs on
    BOOST_TEST((co_await t.signal(SIGCONT)).has_value());  // passed on by init
    BOOST_TEST(co_await poll_until([&] { return state_of(task) != 'T'; }));
    // SIGTERM goes to init, which passes it on: the task dies of SIGTERM
    // (as PID 1 without a handler it would have ignored it), and the state
    // is the task's, not init's.
    auto r = co_await t.shutdown("SIGTERM", 30s);
    BOOST_TEST(r.has_value());
    auto done = co_await t.wait();
    BOOST_REQUIRE(done);
    BOOST_TEST(done->signal == SIGTERM);
    BOOST_TEST(done->exit_code == 128 + SIGTERM);
    BOOST_TEST(processes_in_cgroup_of(id).empty());
  });
}

BOOST_AUTO_TEST_CASE(binaries_only_the_host_has_are_not_found) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    BOOST_REQUIRE(fs::exists("/bin/kill"));
    for (const char* name : {"/bin/kill", "kill"}) {
      auto cmd = in_container(root, "");
      cmd.cmd = name;
      cmd.args = {"-l"};
      task_executor t(harness::get().reaper, {.task_id = unique_id("kill")});
      auto st = co_await t.launch(cmd);
      BOOST_REQUIRE(!st);
      BOOST_TEST((st.error().code == make_error_code(errc::binary_not_found)));
      BOOST_TEST(st.error().message ==
                 "file " + std::string(name) + " not found under path " + root.str());
    }
  });
}

BOOST_AUTO_TEST_CASE(an_exec_failure_inside_is_a_launch_failure) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    write_file(root.dir / "broken", "#!/no/such/interpreter\n", 0755);

    for (const char* pid_mode : {"private", "host"}) {
      auto cmd = in_container(root, "");
      cmd.cmd = "/broken";
      cmd.args.clear();
      cmd.default_pid_mode = pid_mode;
      const auto id = unique_id(std::string("broken-") + pid_mode);
      const auto reaped = harness::get().reaper.total_reaped();
      task_executor t(harness::get().reaper, {.task_id = id});
      auto st = co_await t.launch(cmd);
      BOOST_REQUIRE(!st);
      BOOST_TEST((st.error().code == make_error_code(errc::launch_failed)));
      BOOST_TEST(st.error().message == "exec \"/broken\": No such file or directory", pid_mode);
      // The one process that came back to us (init, or the task) is reaped,
      // and nothing of the launch is left: no process, no cgroup.
      BOOST_TEST(co_await wait_total_reaped(reaped + 1));
      BOOST_TEST(processes_in_cgroup_of(id).empty());
      for (const auto& [controller, mount] : cgroup::detect().v1)
        BOOST_TEST(!fs::exists(mount + "/taskexec/" + cgroup_name_for(id)), controller);
    }
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(bind_mounts_read_only_refuses_writes) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    temp_dir data;
    write_file(data / "in.txt", "shared\n");
    fs::create_directories(data.path / "sub");
    // Propagation needs a shared mount on the host side (this host's / is
    // private): make the data directory one.
    BOOST_REQUIRE(::mount(data.str().c_str(), data.str().c_str(), nullptr, MS_BIND, nullptr) == 0);
    BOOST_REQUIRE(::mount(nullptr, data.str().c_str(), nullptr, MS_SHARED, nullptr) == 0);
    struct unmount {
      std::string at;
      ~unmount() { ::umount2(at.c_str(), MNT_DETACH); }
    } undo{data.str()};
    auto cmd = in_container(root,
                            "cat /ro/in.txt; echo x > /ro/new 2>/dev/null || echo refused; "
                            "echo y > /rw/new && echo written; read go; "
                            "[ -e /rw/sub/marker ] && echo propagated || echo not-propagated; "
                            "[ -e /ro/sub/marker ] && echo leaked || echo private");
    cmd.mounts = {{"/ro", data.str(), true, ""}, {"/rw", data.str(), false, "host-to-task"}};
    // The task waits on stdin for the host's mount: a FIFO we write once it is made.
    const auto fifo = data / "go";
    BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // Held open read-write, so the task's open for reading does not block.
    const int go = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
    BOOST_REQUIRE(go >= 0);
    task_executor t(harness::get().reaper, {.task_id = unique_id("mounts")});
    pipe_reader out;
    cmd.stdout_fd = out.write_fd();
    cmd.args[1] = "exec < /go_in; " + cmd.args[1];
    cmd.mounts.push_back({"/go_in", fifo, false, ""});
    auto started = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(started, (started ? "" : started.error().message));
    out.close_write();
    BOOST_TEST(co_await out.line() == "shared");
    BOOST_TEST(co_await out.line() == "refused");
    BOOST_TEST(co_await out.line() == "written");
    // A mount made on the host now reaches "host-to-task", not "private".
    const auto sub = data / "sub";
    BOOST_REQUIRE(::mount("tmpfs", sub.c_str(), "tmpfs", 0, "size=64k") == 0);
    write_file(data / "sub/marker", "m\n");
    BOOST_REQUIRE(::write(go, "go\n", 3) == 3);
    BOOST_TEST(co_await out.line() == "propagated");
    BOOST_TEST(co_await out.line() == "private");
    ::close(go);
    auto st = co_await t.wait();
    BOOST_REQUIRE(st);
    co_await t.shutdown("SIGKILL", 0s);
    BOOST_TEST(::umount2(sub.c_str(), MNT_DETACH) == 0);
    BOOST_TEST(read_file(data / "new") == "y\n");
    BOOST_TEST(st->exit_code == 0);
    BOOST_TEST(host_mounts_under(root.str()).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_listed_device_works_and_others_do_not) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    if (cgroup::detect().has_v1("devices") == false) {
      BOOST_TEST_MESSAGE("no v1 devices controller: device rules are refused on this host");
      rootfs root;
      auto cmd = in_container(root, "true");
      cmd.devices = {{"/dev/net/tun", "/dev/net/tun", "rw"}};
      task_executor t(harness::get().reaper, {.task_id = unique_id("dev")});
      auto st = co_await t.launch(cmd);
      BOOST_REQUIRE(!st);
      BOOST_TEST((st.error().code == make_error_code(errc::unsupported)));
      co_return;
    }
    rootfs root;
    BOOST_REQUIRE(fs::exists("/dev/net/tun"));
    auto cmd = in_container(
        root,
        "exec 3<>/dev/net/tun && echo tun-ok; exec 3>&-; "
        "mknod /dev/fuse2 c 10 229 && echo made; (exec 4<>/dev/fuse2) 2>/dev/null || echo denied; "
        "(exec 5<>/dev/null) && echo null-ok");
    cmd.devices = {{"", "/dev/net/tun", "rw"}};
    auto [out, st] = co_await run_task(cmd, unique_id("dev"));
    BOOST_TEST(out.rfind("tun-ok\nmade\ndenied\nnull-ok\n", 0) == 0, out);
  });
}

BOOST_AUTO_TEST_CASE(capabilities_by_user) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    const std::string script =
        "for k in CapInh CapPrm CapEff CapBnd CapAmb; do "
        "grep \"^$k:\" /proc/self/status; done";
    auto caps = [&](const std::string& text) {
      std::vector<std::string> v;
      for (const auto& l : lines(text))
        v.push_back(l.substr(l.find('\t') + 1));
      return v;
    };
    {
      auto cmd = in_container(root, script);
      cmd.user = "nobody";
      auto [out, st] = co_await run_task(cmd, unique_id("caps1"));
      BOOST_TEST((caps(out) == std::vector<std::string>(5, "00000000a80405fb")), out);
    }
    {
      auto cmd = in_container(root, script);
      cmd.user = "nobody";
      cmd.capabilities = {"NET_BIND_SERVICE"};
      auto [out, st] = co_await run_task(cmd, unique_id("caps2"));
      BOOST_TEST((caps(out) == std::vector<std::string>(5, "0000000000000400")), out);
    }
    {
      // Root keeps the full set the executor has.
      auto cmd = in_container(root, script);
      auto [out, st] = co_await run_task(cmd, unique_id("caps3"));
      const auto mine = read_file("/proc/self/status");
      auto c = caps(out);
      BOOST_REQUIRE_EQUAL(c.size(), 5u);
      BOOST_TEST(c[1] == status_field(mine, "CapPrm"));
      BOOST_TEST(c[2] == status_field(mine, "CapEff"));
      BOOST_TEST(c[3] == status_field(mine, "CapBnd"));
    }
    {
      // A capability the executor does not hold cannot be given.
      auto cmd = in_container(root, script);
      cmd.user = "nobody";
      cmd.capabilities = {"FLY"};
      task_executor t(harness::get().reaper, {.task_id = unique_id("caps4")});
      auto st = co_await t.launch(cmd);
      BOOST_REQUIRE(!st);
      BOOST_TEST((st.error().code == make_error_code(errc::invalid_argument)));
    }
  });
}

BOOST_AUTO_TEST_CASE(a_network_namespace_by_path) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    const std::string ns = "taskexec-test-" + std::to_string(::getpid());
    BOOST_REQUIRE(std::system(("ip netns add " + ns).c_str()) == 0);
    struct cleanup {
      std::string ns;
      ~cleanup() { (void)std::system(("ip netns del " + ns).c_str()); }
    } del{ns};
    rootfs root;
    // The interfaces the task sees (sh only: cut and tr are not in the root).
    auto cmd = in_container(
        root, "while read l; do case $l in *:*) echo ${l%%:*};; esac; done < /proc/net/dev");
    cmd.network_isolation = network_isolation_spec{"group", "/var/run/netns/" + ns};
    auto [out, st] = co_await run_task(cmd, unique_id("net"));
    BOOST_TEST(out == "lo\n");
    // The host has more than lo, so the test tells the two apart.
    BOOST_REQUIRE(lines(read_file("/proc/net/dev")).size() > 3);

    // exec_script in that namespace too.
    script_options so;
    so.name = "/bin/sh";
    so.args =
        list("-c", "while read l; do case $l in *:*) echo ${l%%:*};; esac; done < /proc/net/dev");
    so.netns_path = "/var/run/netns/" + ns;
    so.timeout = 30s;
    auto script = co_await exec_script(harness::get().reaper, so);
    BOOST_REQUIRE_MESSAGE(script, (script ? "" : script.error().message));
    BOOST_TEST(script->output == "lo\n");

    // A file that is not a network namespace is refused.
    cmd.network_isolation = network_isolation_spec{"group", "/proc/self/ns/uts"};
    task_executor t(harness::get().reaper, {.task_id = unique_id("net2")});
    auto bad = co_await t.launch(cmd);
    BOOST_REQUIRE(!bad);
    BOOST_TEST(bad.error().message ==
               "network_isolation.path \"/proc/self/ns/uts\" is not a network namespace");
  });
}

BOOST_AUTO_TEST_CASE(no_pivot_root_and_a_planted_symlink) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    {
      rootfs root;
      auto cmd = in_container(root, "ls /; cat /etc/motd");
      cmd.no_pivot_root = true;
      auto [out, st] = co_await run_task(cmd, unique_id("chroot"));
      BOOST_TEST(out == "bin\ndev\netc\nlib\nlib64\nproc\nsys\nusr\nhello\n");
    }
    {
      // A mount point that is a symlink could put a mount outside the root.
      rootfs root;
      fs::create_directory_symlink("/etc", root.dir.path / "proc");
      task_executor t(harness::get().reaper, {.task_id = unique_id("planted")});
      auto st = co_await t.launch(in_container(root, "true"));
      BOOST_REQUIRE(!st);
      BOOST_TEST(st.error().message ==
                 "mount point \"" + root.str() + "/proc\" is a symlink: refused");
      BOOST_TEST(host_mounts_under("/etc").empty());
    }
  });
}

BOOST_AUTO_TEST_CASE(after_shutdown_nothing_of_the_task_remains) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    temp_dir data;
    const auto id = unique_id("teardown");
    std::vector<std::string> dirs;
    int pid = 0;
    {
      task_executor t(harness::get().reaper, {.task_id = id});
      pipe_reader out;
      auto cmd = in_container(root, "sleep 1000 & sleep 1000 & echo ready; wait");
      cmd.mounts = {{"/data", data.str(), false, ""}};
      cmd.stdout_fd = out.write_fd();
      auto st = co_await t.launch(cmd);
      BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
      pid = st->pid;
      out.close_write();
      BOOST_REQUIRE(co_await out.line() == "ready");
      BOOST_TEST(processes_in_cgroup_of(id).size() == 4u);  // init, sh, two sleeps
      for (const auto& d : cgroup::detect().v1)
        dirs.push_back(d.second + "/taskexec/" + cgroup_name_for(id));
      for (const auto& d : dirs)
        BOOST_TEST(fs::exists(d), d);
      BOOST_TEST((co_await t.shutdown("SIGTERM", 5s)).has_value());
    }
    BOOST_TEST(!alive(pid));
    BOOST_TEST(processes_in_cgroup_of(id).empty());
    for (const auto& d : dirs)
      BOOST_TEST(!fs::exists(d), d);
    BOOST_TEST(host_mounts_under(root.str()).empty());
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(what_the_task_dir_holds_cannot_become_a_device_or_a_mount_elsewhere) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    // A device node planted in the task dir (the root is nodev).
    BOOST_REQUIRE(::mknod((root.dir / "planted").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    auto [out, st] = co_await run_task(
        in_container(root, "(exec 3</planted) 2>/dev/null && echo opened || echo refused"),
        unique_id("nodev"));
    BOOST_TEST(out == "refused\n");

    // Refused before anything is made: mounts where the container mounts its
    // own, nested mounts, and a device that takes a name /dev has.
    temp_dir data;
    struct refusal {
      std::vector<mount_config> mounts;
      std::vector<device_config> devices;
      std::string message;
    };
    const std::vector<refusal> cases = {
        {{{"/dev/log", data.str(), false, ""}},
         {},
         "mounts[0].task_path \"/dev/log\" is in /dev, which the container mounts itself"},
        {{{"/a", data.str(), false, ""}, {"/a/b/../b", data.str(), false, ""}},
         {},
         "mounts[1].task_path \"/a/b/../b\" overlaps mounts[0] (nested mounts are not supported)"},
        {{{"/x/../..", data.str(), false, ""}},
         {},
         "mounts[0].task_path \"/x/../..\" must name a path below the root"},
        {{},
         {{"/dev/null", "/dev/net/tun", "rw"}},
         "devices[0]: /dev/null is already in the task's /dev"},
        {{},
         {{"/etc/tun", "/dev/net/tun", "rw"}},
         "devices[0]: the task path \"/etc/tun\" must be a path under /dev"},
    };
    for (const auto& c : cases) {
      auto cmd = in_container(root, "true");
      cmd.mounts = c.mounts;
      cmd.devices = c.devices;
      task_executor t(harness::get().reaper, {.task_id = unique_id("refused")});
      auto r = co_await t.launch(cmd);
      BOOST_REQUIRE(!r);
      BOOST_TEST((r.error().code == make_error_code(errc::invalid_argument)));
      BOOST_TEST(r.error().message == c.message);
    }
    BOOST_TEST(!fs::exists(root.dir.path / "a"));
  });
}

BOOST_AUTO_TEST_CASE(the_cli_runs_a_container_task) {
  TASKEXEC_REQUIRE_ROOT();
  rootfs root;
  temp_dir data;
  write_file(data / "shared.txt", "from the host\n");
  fs::permissions(data.path, fs::perms(0755));  // the task runs as nobody
  const std::string command = std::string(TASKEXEC_CLI) + " run --isolation container --task-dir " +
                              root.str() + " --hostname web-1 --mount " + data.str() +
                              ":/data:ro --user nobody --cap NET_BIND_SERVICE -- /bin/sh -c "
                              "'hostname; cat /data/shared.txt; grep CapEff /proc/self/status; "
                              "exit 3'";
  FILE* f = ::popen(command.c_str(), "r");
  BOOST_REQUIRE(f);
  std::string out;
  char buf[256];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
    out.append(buf, n);
  const int status = ::pclose(f);
  BOOST_TEST(out == "web-1\nfrom the host\nCapEff:\t0000000000000400\n");
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 3);
}

// A child spawned by spawn_with. If the test stops early (a failed
// REQUIRE unwinds the coroutine), it is killed and unwatched, so the exit
// handler, which refers to the test's locals, never runs after them.
struct spawned {
  int pid = -1;
  explicit spawned(int p) : pid(p) {}
  spawned(spawned&& o) noexcept : pid(std::exchange(o.pid, -1)) {}
  spawned& operator=(spawned&&) = delete;
  ~spawned() {
    if (pid > 0 && harness::get().reaper.watching(pid)) {
      harness::get().reaper.unwatch(pid);
      ::kill(pid, SIGKILL);
    }
  }
};

// Launch through a stack of strategies as task_executor does; the status
// (as the stack passes it on) lands in `status` and completes `done`.
asio::awaitable<spawned> spawn_with(std::vector<std::unique_ptr<isolation_strategy>>& stack,
                                    const exec_command& cmd, int& status,
                                    asio::steady_timer& done) {
  for (const auto& s : stack)
    BOOST_REQUIRE(s->validate(cmd));
  launch_plan plan;
  for (auto& s : stack) {
    auto r = s->before_fork(cmd, plan);
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  }
  plan.seal();
  auto child = co_await detail::spawn(harness::get().reaper, plan, stack);
  BOOST_REQUIRE_MESSAGE(child, (child ? "" : child.error().message));
  const int pid = child->pid;
  detail::watch_spawned(harness::get().reaper, *child, [&stack, &status, &done](int, int st) {
    for (auto& s : stack)
      st = s->exit_status(st);
    status = st;
    // Not cancel(): the exit may be reaped before the test awaits `done`
    // (with the output's EOF in the same wake-up), and a cancel with no wait
    // pending is lost. An expiry in the past also completes later waits.
    done.expires_at(asio::steady_timer::time_point::min());
  });
  spawned running(pid);
  for (auto& s : stack)
    s->after_start(plan, pid);
  co_return running;
}

BOOST_AUTO_TEST_CASE(a_process_started_later_enters_the_running_task) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    rootfs root;
    const auto id = unique_id("enter");
    auto ex = co_await asio::this_coro::executor;
    auto cmd = in_container(root, "echo ready; exec sleep 1000");
    cmd.user = "nobody";
    pipe_reader out;
    cmd.stdout_fd = out.write_fd();
    auto stack = make_isolation(cmd, {id, {}, id});
    BOOST_REQUIRE(stack);
    int task_status = -1;
    asio::steady_timer task_done(ex, 60s);
    const auto task_child = co_await spawn_with(*stack, cmd, task_status, task_done);
    const int task = task_child.pid;
    out.close_write();
    BOOST_REQUIRE(co_await out.line() == "ready");
    auto* container = dynamic_cast<container_strategy*>(stack->back().get());
    BOOST_REQUIRE(container);

    std::vector<std::unique_ptr<isolation_strategy>> enter;
    enter.push_back(container->enter());
    auto probe =
        sh("hostname; echo $$; for n in pid ipc mnt uts; do readlink /proc/self/ns/$n; "
           "done; ls /; grep -E '^(Uid|CapEff|NoNewPrivs):' /proc/self/status; exit 5");
    pipe_reader probe_out;
    probe.stdout_fd = probe_out.write_fd();
    int probe_status = -1;
    asio::steady_timer probe_done(ex, 60s);
    const auto probe_child = co_await spawn_with(enter, probe, probe_status, probe_done);
    probe_out.close_write();
    auto l = lines(co_await probe_out.rest());
    co_await probe_done.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(WIFEXITED(probe_status));
    BOOST_TEST(WEXITSTATUS(probe_status) == 5);  // the command's own status, through init

    BOOST_REQUIRE_EQUAL(l.size(), 17u);
    BOOST_TEST(l[0] == id);
    BOOST_TEST(std::stoi(l[1]) > 2);  // inside the task's PID namespace, beside PID 1 and 2
    const std::string t = std::to_string(task);
    BOOST_TEST(l[2] == ns_of(t, "pid"));
    BOOST_TEST(l[3] == ns_of(t, "ipc"));
    BOOST_TEST(l[4] == ns_of(t, "mnt"));
    BOOST_TEST(l[5] == ns_of(t, "uts"));
    const std::vector<std::string> listing(l.begin() + 6, l.begin() + 14);
    BOOST_TEST((listing == std::vector<std::string>{"bin", "dev", "etc", "lib", "lib64", "proc",
                                                    "sys", "usr"}));
    BOOST_TEST(l[14].rfind("Uid:\t65534\t", 0) == 0, l[14]);
    BOOST_TEST(l[15] == "CapEff:\t00000000a80405fb");
    BOOST_TEST(l[16] == "NoNewPrivs:\t1");
    // It joined the task's cgroup too.
    BOOST_TEST(processes_in_cgroup_of(id).size() == 2u);  // init and sleep, the probe gone

    // Once the task is gone there is nothing to enter.
    ::kill(task, SIGKILL);
    co_await task_done.async_wait(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(WIFSIGNALED(task_status));
    for (auto& s : *stack)
      (void)s->teardown();
    BOOST_TEST(
        (container->enter()->validate(probe).error().code == make_error_code(errc::not_launched)));
    BOOST_TEST(processes_in_cgroup_of(id).empty());
  });
}

BOOST_AUTO_TEST_CASE(exec_runs_as_the_task_user_in_its_cgroup_and_container) {
  TASKEXEC_REQUIRE_ROOT();
  run([]() -> asio::awaitable<void> {
    {
      // Host isolation: the task's user and cgroup.
      const auto id = unique_id("exec-host");
      task_executor t(harness::get().reaper, {.task_id = id});
      pipe_reader out;
      auto cmd = sh("echo ready; exec sleep 1000");
      cmd.user = "nobody";
      cmd.basic_process_cgroup = true;
      cmd.stdout_fd = out.write_fd();
      BOOST_REQUIRE(co_await t.launch(cmd));
      out.close_write();
      BOOST_REQUIRE(co_await out.line() == "ready");
      auto r = co_await t.exec("/bin/sh", list("-c", "id -u; id -g; cat /proc/self/cgroup"), 30s);
      BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
      auto l = lines(r->output);
      BOOST_REQUIRE(l.size() > 2u);
      BOOST_TEST(l[0] == "65534");
      BOOST_TEST(l[1] == "65534");
      BOOST_TEST(r->output.find("/taskexec/" + cgroup_name_for(id)) != std::string::npos,
                 r->output);
      BOOST_TEST((co_await t.shutdown("SIGKILL", 0s)).has_value());
    }
    {
      // Container isolation: inside the task's namespaces and root.
      rootfs root;
      const auto id = unique_id("exec-ct");
      task_executor t(harness::get().reaper, {.task_id = id});
      pipe_reader out;
      auto cmd = in_container(root, "echo ready; exec sleep 1000");
      cmd.user = "nobody";
      cmd.stdout_fd = out.write_fd();
      auto st = co_await t.launch(cmd);
      BOOST_REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
      out.close_write();
      BOOST_REQUIRE(co_await out.line() == "ready");
      auto r = co_await t.exec("hostname", list(), 30s);  // looked up inside the root
      BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
      BOOST_TEST(r->output == id + "\n");
      auto ns = co_await t.exec(
          "/bin/sh", list("-c", "readlink /proc/self/ns/mnt; cat /proc/1/comm; ls /; exit 3"), 30s);
      BOOST_REQUIRE_MESSAGE(ns, (ns ? "" : ns.error().message));
      BOOST_TEST(ns->exit_code == 3);
      BOOST_TEST(ns->output == ns_of(std::to_string(st->pid), "mnt") +
                                   "\ntaskexec-init\nbin\ndev\netc\nlib\nlib64\nproc\nsys\nusr\n");
      auto host_only = co_await t.exec("/bin/kill", list("-l"), 30s);
      BOOST_REQUIRE(!host_only);
      BOOST_TEST(host_only.error().message == "file /bin/kill not found under path " + root.str());
      BOOST_TEST((co_await t.shutdown("SIGKILL", 0s)).has_value());
      BOOST_TEST(processes_in_cgroup_of(id).empty());
    }
  });
}

BOOST_AUTO_TEST_SUITE_END()
