// bench_peers: what supervising one process costs taskexecd, beside the
// peers Debian packages, each measured in the same run supervising the same
// `sleep`:
//  - conmon (with runc; the container's monitor, as podman runs it);
//  - s6-supervise (one per service);
//  - supervisord (one Python process, here for one program);
// PSS and Private_Dirty of the supervising process from smaps_rollup, and a
// call's round trip on a new connection each time: taskexecd's Version
// beside supervisord's XML-RPC supervisor.getState.
//
// A peer that is not installed is skipped (scripts/bench.sh installs them;
// the build and tests never need them); conmon needs root.
//
//   bench_peers [--calls N]
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "leak_check.hpp"
#include "rootfs.hpp"
#include "runc_bundle.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/task_executor.hpp"

namespace asio = boost::asio;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

struct figures {
  std::string name;
  long pss = -1, dirty = -1;
  std::vector<double> call_us;  // round trips on a new connection each
  std::string skipped;          // why it was not measured
};

// Variadic, for coroutines: GCC 12 rejects braced lists of string literals
// in them ("array used as initializer").
template <class... A>
std::vector<std::string> argv_of(A&&... a) {
  std::vector<std::string> v;
  (v.emplace_back(std::forward<A>(a)), ...);
  return v;
}

bool on_path(const std::string& name) {
  return !test_support::capture("command -v " + name + " 2>/dev/null").empty();
}

asio::awaitable<void> pause_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
}

// The pid of `sleep TAG` once it runs (bounded: 20 s), else 0.
asio::awaitable<int> find_sleeper(const std::string& tag) {
  for (int i = 0; i < 2000; ++i) {
    for (auto& e : fs::directory_iterator("/proc")) {
      auto name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos)
        continue;
      std::ifstream f(e.path() / "cmdline");
      std::string arg0, arg1;
      std::getline(f, arg0, '\0');
      std::getline(f, arg1, '\0');
      if (arg1 == tag && arg0.size() >= 5 && arg0.substr(arg0.size() - 5) == "sleep")
        co_return std::stoi(name);
    }
    co_await pause_ms(10);  // polling another program's progress; not a figure
  }
  co_return 0;
}

void measure_parent_of(int sleeper, figures& f) {
  auto st = stress::read_stat("/proc", sleeper);
  if (!st) {
    f.skipped = "its sleep vanished";
    return;
  }
  auto m = stress::read_memory("/proc", st->ppid);
  f.pss = m.pss_kib;
  f.dirty = m.private_dirty_kib;
}

asio::awaitable<int> run(taskexec::child_reaper& reaper, std::vector<std::string> argv) {
  taskexec::task_executor t(reaper);
  taskexec::exec_command cmd;
  cmd.cmd = argv.at(0);
  cmd.args.assign(argv.begin() + 1, argv.end());
  cmd.env = argv_of("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  auto l = co_await t.launch(cmd);
  if (!l)
    co_return -1;
  auto s = co_await t.wait();
  co_return s ? s->exit_code : -1;
}

// Connect, send `request`, read until `done(reply)`, close: microseconds.
template <class Done>
double call_once(const std::string& path, const std::string& request, Done done) {
  auto t0 = clock_type::now();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return -1;
  }
  std::string reply;
  char buf[4096];
  while (!done(reply)) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0)
      break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (!done(reply))
    return -1;
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

asio::awaitable<void> measure_taskexecd(asio::io_context& io, const fs::path& dir, int calls,
                                        figures& f) {
  taskexec::create_options o;
  o.socket_path = (dir / "d.sock").string();
  o.log_level = "off";
  auto d = co_await taskexec::create_executor(io.get_executor(), o);
  if (!d) {
    f.skipped = d.error().message;
    co_return;
  }
  taskexec::exec_command sleeper;
  sleeper.cmd = "/bin/sleep";
  sleeper.args = argv_of("987601");
  if (auto l = co_await d->client.launch(sleeper); !l) {
    f.skipped = l.error().message;
    co_return;
  }
  int pid = co_await find_sleeper("987601");
  if (pid)
    measure_parent_of(pid, f);
  const std::string version = R"({"jsonrpc":"2.0","id":1,"method":"Version"})"
                              "\n";
  for (int i = 0; i < calls; ++i)
    f.call_us.push_back(call_once(o.socket_path, version, [](const std::string& r) {
      return r.find('\n') != std::string::npos;
    }));
  co_await d->client.destroy();
}

asio::awaitable<void> measure_s6(taskexec::child_reaper& reaper, const fs::path& dir, figures& f) {
  if (!on_path("s6-supervise")) {
    f.skipped = "s6 not installed";
    co_return;
  }
  auto svc = dir / "s6-sleep";
  fs::create_directories(svc);
  std::ofstream(svc / "run") << "#!/bin/sh\nexec /bin/sleep 987602\n";
  fs::permissions(svc / "run", fs::perms(0755));
  taskexec::task_executor t(reaper);
  taskexec::exec_command cmd;
  cmd.cmd = "s6-supervise";
  cmd.args = argv_of(svc.string());
  cmd.env = argv_of("PATH=/usr/bin:/bin");
  if (auto l = co_await t.launch(cmd); !l) {
    f.skipped = l.error().message;
    co_return;
  }
  if (int pid = co_await find_sleeper("987602"))
    measure_parent_of(pid, f);
  else
    f.skipped = "its service did not start";
  co_await t.shutdown("SIGKILL", std::chrono::milliseconds(0));
}

asio::awaitable<void> measure_supervisord(taskexec::child_reaper& reaper, const fs::path& dir,
                                          int calls, figures& f) {
  if (!on_path("supervisord")) {
    f.skipped = "supervisor not installed";
    co_return;
  }
  const auto sock = (dir / "supervisor.sock").string();
  std::ofstream(dir / "supervisord.conf")
      << "[unix_http_server]\nfile=" << sock << "\n"
      << "[supervisord]\nnodaemon=true\nlogfile=" << (dir / "supervisord.log").string()
      << "\npidfile=" << (dir / "supervisord.pid").string() << "\nchildlogdir=" << dir.string()
      << "\n[rpcinterface:supervisor]\n"
         "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
         "[program:sleep]\ncommand=/bin/sleep 987603\nautostart=true\n";
  taskexec::task_executor t(reaper);
  taskexec::exec_command cmd;
  cmd.cmd = "supervisord";
  cmd.args = argv_of("-n", "-c", (dir / "supervisord.conf").string());
  cmd.env = argv_of("PATH=/usr/bin:/bin");
  if (auto l = co_await t.launch(cmd); !l) {
    f.skipped = l.error().message;
    co_return;
  }
  int pid = co_await find_sleeper("987603");
  if (!pid) {
    f.skipped = "its program did not start";
  } else {
    measure_parent_of(pid, f);
    const std::string body =
        "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getState</methodName>"
        "<params></params></methodCall>";
    const std::string request =
        "POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    for (int i = 0; i < calls; ++i)
      f.call_us.push_back(call_once(sock, request, [](const std::string& r) {
        return r.find("</methodResponse>") != std::string::npos;
      }));
  }
  co_await t.shutdown("SIGTERM", std::chrono::milliseconds(5000));
}

asio::awaitable<void> measure_conmon(taskexec::child_reaper& reaper, const fs::path& dir,
                                     bool bundle_ok, figures& f) {
  if (::geteuid() != 0) {
    f.skipped = "needs root";
    co_return;
  }
  if (!on_path("conmon") || !bundle_ok) {
    f.skipped = "conmon or runc not installed";
    co_return;
  }
  const std::string id = "taskexec-bench-conmon-" + std::to_string(::getpid());
  fs::create_directories(dir / "exits");
  fs::create_directories(dir / "socks");
  const auto runc = test_support::capture("command -v runc");
  int rc = co_await run(
      reaper,
      argv_of("conmon", "--api-version", "1", "-c", id, "-u", id, "-r",
              runc.substr(0, runc.find('\n')), "-b", (dir / "bundle").string(), "-p",
              (dir / "ctr.pid").string(), "-P", (dir / "conmon.pid").string(), "-n", id,
              "--exit-dir", (dir / "exits").string(), "--socket-dir-path", (dir / "socks").string(),
              "-l", "k8s-file:" + (dir / "ctr.log").string(), "--log-level", "error"));
  if (rc != 0) {
    f.skipped = "conmon exited " + std::to_string(rc);
    co_return;
  }
  // conmon's first process returns before the container is created.
  for (int i = 0; i < 2000 && !fs::exists(dir / "ctr.pid"); ++i)
    co_await pause_ms(10);  // polling another program's progress; not a figure
  if (co_await run(reaper, argv_of("runc", "start", id)) != 0) {
    f.skipped = "runc start failed";
  } else if (int pid = co_await find_sleeper("987604")) {
    measure_parent_of(pid, f);
  } else {
    f.skipped = "its container did not start";
  }
  co_await run(reaper, argv_of("runc", "kill", id, "KILL"));
  co_await run(reaper, argv_of("runc", "delete", "-f", id));
  int conmon_pid = 0;
  std::ifstream(dir / "conmon.pid") >> conmon_pid;
  if (conmon_pid > 0)
    ::kill(conmon_pid, SIGKILL);  // its container is gone; it would exit by itself soon
}

double p50(std::vector<double> v) {
  v.erase(std::remove(v.begin(), v.end(), -1.0), v.end());
  if (v.empty())
    return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 200;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--calls" && i + 1 < argc) {
      calls = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_peers [--calls N]\n");
      return 2;
    }
  }
  taskexec::set_logger({.level = taskexec::log_level::warning});
  char tmpl[] = "/tmp/taskexec-bench-XXXXXX";
  if (!::mkdtemp(tmpl))
    return 1;
  const fs::path dir = tmpl;
  fs::permissions(dir, fs::perms(0755));
  // The container's root for conmon (before the reaper: the bundle's
  // `runc spec` is waited for directly).
  bool bundle_ok = false;
  if (::geteuid() == 0 && on_path("runc")) {
    test_support::install_binary(dir / "bundle/rootfs", "/usr/bin/sleep");
    fs::create_directory_symlink("usr/bin", dir / "bundle/rootfs/bin");
    bundle_ok =
        bench::make_runc_bundle(dir / "bundle", dir / "bundle/rootfs", {"/bin/sleep", "987604"});
  }

  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);
  figures ours, conmon, s6, sup;
  ours.name = "taskexecd";
  conmon.name = "conmon";
  s6.name = "s6-supervise";
  sup.name = "supervisord";
  bench::run_to_end(io, [&]() -> asio::awaitable<void> {
    co_await measure_taskexecd(io, dir, calls, ours);
    co_await measure_conmon(reaper, dir, bundle_ok, conmon);
    co_await measure_s6(reaper, dir, s6);
    co_await measure_supervisord(reaper, dir, calls, sup);
  });
  std::error_code ec;
  fs::remove_all(dir, ec);

  std::printf("supervising one sleeping process, each alone on the machine (KiB)\n");
  std::printf("%-16s %10s %14s\n", "", "PSS", "Private_Dirty");
  for (auto* f : {&ours, &conmon, &s6, &sup}) {
    if (!f->skipped.empty() || f->pss < 0)
      std::printf("%-16s skipped: %s\n", f->name.c_str(),
                  f->skipped.empty() ? "not measured" : f->skipped.c_str());
    else
      std::printf("%-16s %10ld %14ld\n", f->name.c_str(), f->pss, f->dirty);
  }
  for (auto* f : {&conmon, &s6, &sup}) {
    if (f->pss <= 0 || ours.pss <= 0)
      continue;
    std::printf("taskexecd / %s: PSS %.2fx, Private_Dirty %.2fx\n", f->name.c_str(),
                static_cast<double>(ours.pss) / static_cast<double>(f->pss),
                static_cast<double>(ours.dirty) / static_cast<double>(f->dirty));
    bench::table_row("taskexecd PSS, one supervised process", static_cast<double>(ours.pss), "KiB",
                     f->name + " PSS", static_cast<double>(f->pss), "< peer");
    bench::table_row("taskexecd Private_Dirty, one supervised process",
                     static_cast<double>(ours.dirty), "KiB", f->name + " Private_Dirty",
                     static_cast<double>(f->dirty), "< peer");
  }
  if (conmon.pss > 0)
    std::printf("conmon PSS: %ld KiB\n", conmon.pss);  // scripts/bench.sh reads this line
  const double ours_call = p50(ours.call_us), sup_call = p50(sup.call_us);
  std::printf("a call on a new connection, %d each (microseconds, p50)\n", calls);
  std::printf("%-34s %9.1f\n", "taskexecd Version", ours_call);
  if (sup_call > 0) {
    std::printf("%-34s %9.1f\n", "supervisord supervisor.getState", sup_call);
    std::printf("ratio: %.2fx\n", ours_call / sup_call);
    bench::table_row("taskexecd Version, new connection (p50)", ours_call, "us",
                     "supervisord getState (p50)", sup_call, "< peer");
  }
  return 0;
}
