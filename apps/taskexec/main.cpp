// taskexec: the command line of taskexecd. See `taskexec --help`.
//
// Exit status: 0 on success; 1 when the daemon or the call failed; 2 on a
// usage error. `run` exits with the task's own exit code (128+N when killed
// by signal N), or 125 when the daemon failed, 126 when the task could not be
// launched, 127 when its binary was not found. `exec` exits with the
// command's exit code.
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "taskexec/base64.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/signals.hpp"

namespace asio = boost::asio;
namespace json = boost::json;
using namespace taskexec;
using std::chrono::milliseconds;

namespace {

constexpr const char* usage_text = R"(usage: taskexec [--json] COMMAND [OPTIONS]

Commands that start a daemon:
  run    [--socket PATH] [LAUNCH OPTIONS] -- CMD [ARG...]
         start taskexecd, launch CMD (its output on ours), wait, destroy;
         exit with CMD's exit code. Ctrl-C shuts the task down.
  start  --socket PATH [--log-file F] [--log-level L] [--kill-grace-ms N]
         [--allow-uid N]... [--hostname NAME] [--task-id ID --exit-dir DIR]
         start taskexecd and print its reattach config (JSON)

Commands for a running daemon (name it with --socket PATH, $TASKEXEC_SOCKET,
or --reattach CONFIG, a config as printed by `start` or a file holding one):
  launch [LAUNCH OPTIONS] -- CMD [ARG...]
  wait     [--timeout-ms N]
  signal   SIGNAL                      (a name such as SIGUSR1, or a number)
  shutdown [--signal S] [--grace-ms N] (default SIGINT, 5000 ms)
  stats    [--interval-ms N] [--count N]
  update   [--memory-mb N] [--memory-max-mb N] [--cpu-shares N] [--cpu-quota-us N]
           [--cpu-period-us N] [--cpuset-cpus LIST] [--pids-max N]
                                       (new limits for a task launched with limits)
  exec     [--timeout-ms N] -- CMD [ARG...]
                                       (its output once it exits: the last 4096 bytes)
  exec     -i|-t|-it -- CMD [ARG...]   an interactive session, as docker exec:
                                       -i sends our stdin to CMD; -t gives CMD a
                                       terminal (ours in raw mode, its size sent at
                                       the start and on every resize); output as it
                                       comes; exit with CMD's code
  events   [--since N] [--follow]    (--follow: then each new event as it comes,
                                       until interrupted or the daemon stops)
  version
  destroy

Launch options:
  --env K=V (repeatable)  --user U  --task-dir D  --work-dir D
  --stdout F  --stderr F  --isolation host|container
  --limits                enforce the resource options below (a cgroup, as root)
  --memory-mb N  --memory-max-mb N  --cpu-shares N  --cpu-quota-us N
  --cpu-period-us N  --cpuset-cpus LIST  --pids-max N
  Container isolation (as root; the task dir becomes the root):
  --mount HOST:TASK[:ro]  a bind mount (repeatable)
  --device HOST[:TASK[:PERMS]]  a device node, PERMS of rwm (repeatable)
  --cap NAME              a capability for a task that is not root (repeatable;
                          default: the standard set)
  --pid-mode private|host  --ipc-mode private|host  --netns PATH
  --no-pivot-root         chroot instead of pivot_root (ramdisk roots)
  --hostname NAME         (run, start) the task's hostname; default: the
                          daemon's socket path
  --spec FILE             an ExecCommand as JSON (docs/protocol.md); the
                          options above and CMD override its fields

Global options:
  --json                  print results as JSON (one object per line)
  --daemon PATH           taskexecd to start (default: beside taskexec, or $PATH)
  --expect-uid N          a daemon may run as uid N (besides root and us): the
                          socket's server is checked before anything is sent
  -h, --help
)";

struct usage_error {
  std::string what;
};

struct cli {
  bool json_out = false;
  std::string command;
  std::string socket;
  std::string reattach;
  std::string daemon;
  connect_options trust;  // --expect-uid
  // launch
  exec_command cmd;
  std::string spec_file;
  bool have_cmd = false;
  bool have_resources = false;
  // start
  std::string log_file, log_level = "info";
  long long kill_grace_ms = 5000;
  std::string hostname;  // a container task's (taskexecd --hostname)
  std::vector<unsigned> allowed_uids;
  // other commands
  std::optional<long long> timeout_ms;
  bool interactive = false;  // exec -i
  bool tty = false;          // exec -t
  std::string signal_arg = "";
  std::string shutdown_signal = "SIGINT";
  long long grace_ms = 5000;
  long long interval_ms = 1000;
  long long count = 0;  // 0: until interrupted
  unsigned long long since = 0;
  bool follow = false;            // events --follow
  std::string task_id, exit_dir;  // start: taskexecd --task-id, --exit-dir
};

long long number(const std::string& flag, const std::string& v, long long min, long long max) {
  long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < min || n > max)
    throw usage_error{flag + " needs a number from " + std::to_string(min) + " to " +
                      std::to_string(max) + ", not \"" + v + "\""};
  return n;
}

cli parse(int argc, char** argv) {
  cli c;
  std::vector<std::string> rest;
  int i = 1;
  auto value = [&](const std::string& flag) -> std::string {
    if (i + 1 >= argc)
      throw usage_error{flag + " needs a value"};
    return argv[++i];
  };
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i)
        c.cmd.args.push_back(argv[i]);
      c.have_cmd = true;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::cout << usage_text;
      std::exit(0);
    } else if (a == "--json") {
      c.json_out = true;
    } else if (a == "--socket") {
      c.socket = value(a);
    } else if (a == "--reattach") {
      c.reattach = value(a);
    } else if (a == "--daemon") {
      c.daemon = value(a);
    } else if (a == "--expect-uid") {
      c.trust.expect_uid = static_cast<unsigned>(number(a, value(a), 0, 0xfffffffe));
    } else if (a == "--env") {
      auto kv = value(a);
      if (kv.find('=') == std::string::npos || kv.front() == '=')
        throw usage_error{"--env needs K=V, not \"" + kv + "\""};
      c.cmd.env.push_back(kv);
    } else if (a == "--user") {
      c.cmd.user = value(a);
    } else if (a == "--task-dir") {
      c.cmd.task_dir = value(a);
    } else if (a == "--work-dir") {
      c.cmd.work_dir = value(a);
    } else if (a == "--stdout") {
      c.cmd.stdout_path = value(a);
    } else if (a == "--stderr") {
      c.cmd.stderr_path = value(a);
    } else if (a == "--isolation") {
      c.cmd.isolation = value(a);
    } else if (a == "--limits") {
      c.cmd.resource_limits = true;
    } else if (a == "--mount") {
      // HOST:TASK[:ro]
      auto v = value(a);
      auto colon = v.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == v.size())
        throw usage_error{"--mount needs HOST:TASK[:ro], not \"" + v + "\""};
      mount_config m;
      m.host_path = v.substr(0, colon);
      m.task_path = v.substr(colon + 1);
      if (m.task_path.ends_with(":ro")) {
        m.readonly = true;
        m.task_path.resize(m.task_path.size() - 3);
      }
      c.cmd.mounts.push_back(m);
    } else if (a == "--device") {
      // HOST[:TASK[:PERMS]]
      auto v = value(a);
      device_config d;
      auto colon = v.find(':');
      d.host_path = v.substr(0, colon);
      if (colon != std::string::npos) {
        auto spec = v.substr(colon + 1);
        auto second = spec.find(':');
        d.task_path = spec.substr(0, second);
        if (second != std::string::npos)
          d.cgroup_permissions = spec.substr(second + 1);
      }
      if (d.host_path.empty())
        throw usage_error{"--device needs HOST[:TASK[:PERMS]], not \"" + v + "\""};
      c.cmd.devices.push_back(d);
    } else if (a == "--cap") {
      c.cmd.capabilities.push_back(value(a));
    } else if (a == "--pid-mode") {
      c.cmd.default_pid_mode = value(a);
    } else if (a == "--ipc-mode") {
      c.cmd.default_ipc_mode = value(a);
    } else if (a == "--netns") {
      c.cmd.network_isolation = network_isolation_spec{"group", value(a)};
    } else if (a == "--no-pivot-root") {
      c.cmd.no_pivot_root = true;
    } else if (a == "--memory-mb") {
      c.cmd.resources.memory_mb = number(a, value(a), 0, 1'000'000'000);
      c.have_resources = true;
    } else if (a == "--memory-max-mb") {
      c.cmd.resources.memory_max_mb = number(a, value(a), -1, 1'000'000'000);
      c.have_resources = true;
    } else if (a == "--cpu-shares") {
      c.cmd.resources.cpu_shares = number(a, value(a), 0, 262144);
      c.have_resources = true;
    } else if (a == "--cpu-quota-us") {
      c.cmd.resources.cpu_quota_us = number(a, value(a), 0, 1'000'000'000'000);
      c.have_resources = true;
    } else if (a == "--cpu-period-us") {
      c.cmd.resources.cpu_period_us = number(a, value(a), 0, 1'000'000);
      c.have_resources = true;
    } else if (a == "--cpuset-cpus") {
      c.cmd.resources.cpuset_cpus = value(a);
      c.have_resources = true;
    } else if (a == "--pids-max") {
      c.cmd.resources.pids_max = number(a, value(a), 0, 1'000'000'000);
      c.have_resources = true;
    } else if (a == "--spec") {
      c.spec_file = value(a);
    } else if (a == "--log-file") {
      c.log_file = value(a);
    } else if (a == "--log-level") {
      c.log_level = value(a);
    } else if (a == "--kill-grace-ms") {
      c.kill_grace_ms = number(a, value(a), 0, 3'600'000);
    } else if (a == "--hostname") {
      c.hostname = value(a);
    } else if (a == "--allow-uid") {
      c.allowed_uids.push_back(static_cast<unsigned>(number(a, value(a), 0, 0xfffffffe)));
    } else if (a == "-i" || a == "--interactive") {
      c.interactive = true;
    } else if (a == "-t" || a == "--tty") {
      c.tty = true;
    } else if (a == "-it" || a == "-ti") {
      c.interactive = c.tty = true;
    } else if (a == "--timeout-ms") {
      c.timeout_ms = number(a, value(a), 0, 1'000'000'000'000);
    } else if (a == "--signal") {
      c.shutdown_signal = value(a);
    } else if (a == "--grace-ms") {
      c.grace_ms = number(a, value(a), 0, 1'000'000'000'000);
    } else if (a == "--interval-ms") {
      c.interval_ms = number(a, value(a), 1, 1'000'000'000'000);
    } else if (a == "--count") {
      c.count = number(a, value(a), 1, 1'000'000'000);
    } else if (a == "--since") {
      c.since = static_cast<unsigned long long>(number(a, value(a), 0, INT64_MAX));
    } else if (a == "--follow") {
      c.follow = true;
    } else if (a == "--task-id") {
      c.task_id = value(a);
    } else if (a == "--exit-dir") {
      c.exit_dir = value(a);
    } else if (a.size() > 1 && a[0] == '-' && !(c.command == "signal" && c.signal_arg.empty())) {
      throw usage_error{"unknown option \"" + a + "\""};
    } else {
      rest.push_back(a);
    }
    if (c.command.empty() && !rest.empty()) {
      c.command = rest.front();
      rest.erase(rest.begin());
    } else if (c.command == "signal" && !rest.empty() && c.signal_arg.empty()) {
      c.signal_arg = rest.front();
      rest.erase(rest.begin());
    }
  }
  if (c.command.empty())
    throw usage_error{"no command given"};
  static const std::vector<std::string> known{"run",    "start",    "launch",  "wait",
                                              "signal", "shutdown", "stats",   "exec",
                                              "events", "version",  "destroy", "update"};
  if (std::find(known.begin(), known.end(), c.command) == known.end())
    throw usage_error{"unknown command \"" + c.command + "\""};
  if (!rest.empty())
    throw usage_error{"unexpected argument \"" + rest.front() + "\" (a command goes after --)"};
  const bool takes_cmd = c.command == "run" || c.command == "launch" || c.command == "exec";
  if (takes_cmd && c.cmd.args.empty())
    throw usage_error{c.command + " needs a command after --"};
  if (!takes_cmd && c.have_cmd)
    throw usage_error{c.command + " takes no command after --"};
  if ((c.interactive || c.tty) && c.command != "exec")
    throw usage_error{"-i and -t are options of exec"};
  if ((c.interactive || c.tty) && (c.timeout_ms || c.json_out))
    throw usage_error{"exec -i/-t streams a session: it takes neither --timeout-ms nor --json"};
  if (c.command == "update" && !c.have_resources)
    throw usage_error{"update needs at least one resource option (--memory-mb N, ...)"};
  if (c.command == "signal" && c.signal_arg.empty())
    throw usage_error{"signal needs a SIGNAL"};
  // $TASKEXEC_SOCKET names a running daemon: never the one run or start makes.
  if (c.command != "run" && c.command != "start" && c.socket.empty()) {
    if (const char* s = std::getenv("TASKEXEC_SOCKET"))
      c.socket = s;
  }
  if (c.command == "start" && c.socket.empty())
    throw usage_error{"start needs --socket PATH"};
  if (c.command != "run" && c.command != "start" && c.socket.empty() && c.reattach.empty())
    throw usage_error{c.command + " needs --socket PATH, $TASKEXEC_SOCKET or --reattach CONFIG"};
  if (takes_cmd) {
    c.cmd.cmd = c.cmd.args.front();
    c.cmd.args.erase(c.cmd.args.begin());
  }
  return c;
}

// ------------------------------------------------------------------ output

struct failure {
  error e;
  int exit_code = 1;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw failure{make_error(errc::invalid_argument, "cannot read " + path)};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string clock_time(std::int64_t unix_nano) {
  std::time_t secs = static_cast<std::time_t>(unix_nano / 1'000'000'000);
  std::tm tm{};
  ::localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03d", static_cast<int>(unix_nano / 1'000'000 % 1000));
  return std::string(buf) + ms;
}

std::string describe(const process_state& s) {
  if (s.exit_code == -1)
    return "pid " + std::to_string(s.pid) + " is running";
  std::string out = "pid " + std::to_string(s.pid);
  if (s.signal != 0)
    out += " was killed by " + signal_name(s.signal) + " (exit code " +
           std::to_string(s.exit_code) + ")";
  else
    out += " exited with code " + std::to_string(s.exit_code);
  if (s.oom_killed)
    out += ", out of memory";
  return out;
}

void print_json(const json::value& v) {
  std::cout << json::serialize(v) << std::endl;
}

void print_events_header();
void print_event_line(const json::object& e);

void print_events(const event_page& page, bool as_json) {
  if (as_json) {
    json::array events;
    for (const auto& e : page.events)
      events.push_back(e);
    print_json(json::object{{"events", events}, {"next", page.next}, {"dropped", page.dropped}});
    return;
  }
  if (page.dropped > 0)
    std::cout << "(" << page.dropped << " older events are no longer kept)\n";
  print_events_header();
  for (const auto& e : page.events)
    print_event_line(e);
}

void print_events_header() {
  std::cout << std::left << std::setw(6) << "SEQ" << std::setw(14) << "TIME" << std::setw(11)
            << "TYPE"
            << "DETAILS\n";
}

void print_event_line(const json::object& e) {
  json::object details = e;
  details.erase("seq");
  details.erase("time_unix_nano");
  details.erase("type");
  std::string text;
  if (const auto* st = details.if_contains("state")) {
    try {
      text = describe(json::value_to<process_state>(*st));
    } catch (const std::exception&) {
      text = json::serialize(*st);
    }
  } else {
    for (const auto& [k, v] : details)
      text += std::string(text.empty() ? "" : " ") + std::string(k) + "=" + json::serialize(v);
  }
  std::cout << std::setw(6) << e.at("seq").to_number<std::uint64_t>() << std::setw(14)
            << clock_time(e.at("time_unix_nano").to_number<std::int64_t>()) << std::setw(11)
            << std::string(e.at("type").as_string()) << text << "\n";
  std::cout << std::flush;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

double num_at(const json::object& o, std::initializer_list<std::string_view> path) {
  const json::value* v = nullptr;
  const json::object* cur = &o;
  for (auto k : path) {
    v = cur ? cur->if_contains(k) : nullptr;
    if (!v)
      return 0;
    cur = v->if_object();
  }
  return v->is_number() ? v->to_number<double>() : 0;
}

void print_stats(const json::object& usage, bool as_json, bool refresh, std::uint64_t dropped) {
  if (as_json) {
    print_json(usage);
    return;
  }
  if (refresh)
    std::cout << "\x1b[H\x1b[2J";
  std::cout << std::left << std::setw(10) << "PID" << std::setw(9) << "CPU %" << std::setw(9)
            << "USER %" << std::setw(9) << "SYS %" << std::setw(13) << "MEMORY" << std::setw(13)
            << "RSS" << std::setw(13) << "SWAP"
            << "MEM MAX\n";
  // MEMORY: the cgroup's usage where it is measured, else the RSS.
  auto measures = [](const json::object& ru, std::string_view name) {
    const auto* m = ru.if_contains("memory_stats");
    const auto* list = m && m->is_object() ? m->as_object().if_contains("measured") : nullptr;
    if (list && list->is_array()) {
      for (const auto& v : list->as_array()) {
        if (v.is_string() && v.as_string() == name)
          return true;
      }
    }
    return false;
  };
  auto row = [&](const std::string& who, const json::object& ru) {
    const double memory = measures(ru, "Usage") ? num_at(ru, {"memory_stats", "usage"})
                                                : num_at(ru, {"memory_stats", "rss"});
    std::cout << std::setw(10) << who << std::fixed << std::setprecision(2) << std::setw(9)
              << num_at(ru, {"cpu_stats", "percent"}) << std::setw(9)
              << num_at(ru, {"cpu_stats", "user_mode"}) << std::setw(9)
              << num_at(ru, {"cpu_stats", "system_mode"}) << std::setw(13) << human_bytes(memory)
              << std::setw(13) << human_bytes(num_at(ru, {"memory_stats", "rss"})) << std::setw(13)
              << human_bytes(num_at(ru, {"memory_stats", "swap"}))
              << (measures(ru, "Max Usage") ? human_bytes(num_at(ru, {"memory_stats", "max_usage"}))
                                            : std::string("-"))
              << "\n";
  };
  if (const auto* ru = usage.if_contains("resource_usage"); ru && ru->is_object())
    row("task", ru->as_object());
  if (const auto* pids = usage.if_contains("pids"); pids && pids->is_object()) {
    for (const auto& [pid, ru] : pids->as_object()) {
      if (ru.is_object())
        row(std::string(pid), ru.as_object());
    }
  }
  if (dropped > 0)
    std::cout << "(" << dropped << " samples dropped: the terminal is slow)\n";
  std::cout << std::flush;
}

// ------------------------------------------------------------------ commands

json::object version_object(const std::string& v) {  // not in a coroutine: GCC 12
  json::object o;
  o["version"] = v;
  return o;
}

template <class T>
T check(result<T> r) {
  if (!r)
    throw failure{r.error()};
  return std::move(*r);
}
void check(const result<void>& r) {
  if (!r)
    throw failure{r.error()};
}

exec_command launch_spec(const cli& c) {
  exec_command cmd;
  if (!c.spec_file.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(read_text(c.spec_file), ec);
    if (ec)
      throw failure{make_error(errc::invalid_argument, c.spec_file + ": " + ec.message())};
    auto d = decode_exec_command(v);
    if (!d)
      throw failure{make_error(errc::invalid_argument, c.spec_file + ": " + d.error().message)};
    cmd = std::move(*d);
  }
  const auto& o = c.cmd;
  cmd.cmd = o.cmd;
  cmd.args = o.args;
  cmd.env.insert(cmd.env.end(), o.env.begin(), o.env.end());
  if (o.resource_limits)
    cmd.resource_limits = true;
  if (c.have_resources)
    cmd.resources = o.resources;
  cmd.mounts.insert(cmd.mounts.end(), o.mounts.begin(), o.mounts.end());
  cmd.devices.insert(cmd.devices.end(), o.devices.begin(), o.devices.end());
  if (!o.capabilities.empty())
    cmd.capabilities = o.capabilities;
  if (o.network_isolation)
    cmd.network_isolation = o.network_isolation;
  if (o.no_pivot_root)
    cmd.no_pivot_root = true;
  using field = std::pair<std::string*, const std::string*>;
  for (auto [dst, src] :
       {field{&cmd.user, &o.user}, field{&cmd.task_dir, &o.task_dir},
        field{&cmd.work_dir, &o.work_dir}, field{&cmd.stdout_path, &o.stdout_path},
        field{&cmd.stderr_path, &o.stderr_path}, field{&cmd.isolation, &o.isolation},
        field{&cmd.default_pid_mode, &o.default_pid_mode},
        field{&cmd.default_ipc_mode, &o.default_ipc_mode}}) {
    if (!src->empty())
      *dst = *src;
  }
  return cmd;
}

asio::awaitable<remote_executor> connect(const cli& c) {
  auto ex = co_await asio::this_coro::executor;
  if (!c.reattach.empty()) {
    std::string text = c.reattach;
    if (text.find('{') == std::string::npos)
      text = read_text(text);
    co_return check(co_await reattach_to_executor(ex, check(parse_reattach_config(text)), c.trust));
  }
  co_return check(co_await remote_executor::connect(ex, c.socket, c.trust));
}

create_options daemon_options(const cli& c, const std::string& socket) {
  create_options o;
  o.socket_path = socket;
  o.daemon_path = c.daemon;
  o.log_file = c.log_file;
  o.log_level = c.log_level;
  o.kill_grace = milliseconds(c.kill_grace_ms);
  o.hostname = c.hostname;
  o.allowed_uids = c.allowed_uids;
  o.task_id = c.task_id;
  o.exit_dir = c.exit_dir;
  return o;
}

asio::awaitable<int> cmd_start(const cli& c) {
  auto created = check(
      co_await create_executor(co_await asio::this_coro::executor, daemon_options(c, c.socket)));
  std::cout << to_json(created.config) << std::endl;
  co_return 0;
}

// run: a daemon of our own in a private directory, the task's output on ours.
asio::awaitable<int> cmd_run(const cli& c, asio::signal_set& signals) {
  auto ex = co_await asio::this_coro::executor;
  std::string dir;
  std::string socket = c.socket;
  if (socket.empty()) {
    const char* base = std::getenv("XDG_RUNTIME_DIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/taskexec-run.XXXXXX";
    if (!::mkdtemp(tmpl.data()))
      throw failure{make_system_error(errno, "mkdtemp " + tmpl), 125};
    dir = tmpl;
    socket = dir + "/taskexecd.sock";
  }
  struct remove_dir {
    std::string path;
    ~remove_dir() {
      if (!path.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
      }
    }
  } cleanup{dir};

  auto cmd = launch_spec(c);  // a bad spec fails before any daemon exists
  auto created = co_await create_executor(ex, daemon_options(c, socket));
  if (!created)
    throw failure{created.error(), 125};
  auto& exe = created->client;
  const std::string me = "/proc/" + std::to_string(::getpid()) + "/fd/";
  if (cmd.stdout_path.empty())
    cmd.stdout_path = me + "1";
  if (cmd.stderr_path.empty())
    cmd.stderr_path = me + "2";
  auto launched = co_await exe.launch(cmd);
  if (!launched) {
    (void)co_await exe.destroy();
    // The daemon says -32004 for every launch failure; its message tells a
    // missing binary apart.
    const auto& m = launched.error().message;
    const bool not_found = (m.starts_with("binary \"") && m.ends_with("\" could not be found")) ||
                           (m.starts_with("file ") && m.find(" not found under path ") != m.npos);
    throw failure{launched.error(), not_found ? 127 : 126};
  }
  // Ctrl-C or SIGTERM: stop the task in order; a second one: SIGKILL it.
  bool stopping = false;
  std::function<void(boost::system::error_code, int)> on_signal;
  on_signal = [&](boost::system::error_code ec, int) {
    if (ec)
      return;
    asio::co_spawn(
        ex,
        [&exe, &stopping, &c]() -> asio::awaitable<void> {
          if (!stopping) {
            stopping = true;
            (void)co_await exe.shutdown("SIGTERM", milliseconds(c.kill_grace_ms));
          } else {
            (void)co_await exe.signal(SIGKILL);
          }
        },
        asio::detached);
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  auto st = co_await exe.wait();
  signals.cancel();
  if (!st) {
    (void)co_await exe.destroy();
    throw failure{st.error(), 125};
  }
  auto d = co_await exe.destroy();
  // The task appended to the files behind our stdout and stderr through
  // descriptions of its own: move our (shared with whoever started us)
  // offsets past its writes, so what is written next does not overwrite them.
  std::cout.flush();
  for (int fd : {1, 2}) {
    struct stat info {};
    if (::fstat(fd, &info) == 0 && S_ISREG(info.st_mode))
      ::lseek(fd, 0, SEEK_END);
  }
  if (c.json_out)
    print_json(json::value_from(*st));
  if (!d)
    throw failure{d.error(), 125};
  co_return st->exit_code;
}

asio::awaitable<int> cmd_stats(const cli& c, remote_executor& exe) {
  auto stream = check(co_await exe.stats(milliseconds(c.interval_ms)));
  const bool refresh = !c.json_out && ::isatty(1);
  for (long long n = 0; c.count == 0 || n < c.count; ++n) {
    auto next = co_await stream.next();
    if (!next && next.error().code == make_error_code(errc::task_exited)) {
      if (!c.json_out)
        std::cout << "(the task has exited)" << std::endl;
      co_return 0;  // the stream is over, as the task is
    }
    auto usage = check(std::move(next));
    print_stats(usage, c.json_out, refresh, stream.dropped());
  }
  (void)co_await stream.cancel();
  co_return 0;
}

asio::awaitable<int> cmd_exec(const cli& c, remote_executor& exe) {
  json::object params;
  params["cmd"] = c.cmd.cmd;
  json::array args;
  for (const auto& a : c.cmd.args)
    args.emplace_back(a);
  params["args"] = std::move(args);
  if (c.timeout_ms)
    params["timeout_ms"] = *c.timeout_ms;
  auto r = check(co_await exe.call("Exec", std::move(params)));
  if (c.json_out) {
    print_json(r);
    co_return 0;
  }
  const auto* o = r.if_object();
  const auto* out = o ? o->if_contains("output") : nullptr;
  const auto* code = o ? o->if_contains("exit_code") : nullptr;
  if (!out || !out->is_string() || !code || !code->is_int64())
    throw failure{make_error(errc::protocol_error, "Exec result lacks output or exit_code")};
  // The exact bytes the command wrote (`output` is only text, with U+FFFD
  // for bytes that are not UTF-8; a daemon older than output_base64 has
  // only that).
  std::string bytes(out->as_string());
  if (const auto* b64 = o->if_contains("output_base64")) {
    auto decoded = b64->is_string() ? base64_decode(b64->get_string()) : std::nullopt;
    if (!decoded)
      throw failure{make_error(errc::protocol_error, "Exec result: output_base64 is not base64")};
    bytes = std::move(*decoded);
  }
  std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  std::cout.flush();
  co_return static_cast<int>(code->as_int64());
}

// Our terminal in raw mode for a -t session (keys go to the command's
// terminal as they are typed, ^C included); restored however we leave.
struct raw_terminal {
  int fd = -1;
  termios saved{};
  void enter(int f) {
    if (::tcgetattr(f, &saved) != 0)
      return;
    termios raw = saved;
    ::cfmakeraw(&raw);
    if (::tcsetattr(f, TCSADRAIN, &raw) == 0)
      fd = f;
  }
  ~raw_terminal() {
    if (fd >= 0)
      ::tcsetattr(fd, TCSADRAIN, &saved);
  }
};

std::optional<tty_size> terminal_size() {
  for (int fd : {0, 1, 2}) {
    winsize ws{};
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
      return tty_size{ws.ws_row, ws.ws_col};
  }
  return std::nullopt;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;  // our output is gone (EPIPE): nothing more to show
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The session's output on ours, until it ends; its exit code.
asio::awaitable<int> pump_session_output(remote_exec_session& s) {
  for (;;) {
    auto ev = check(co_await s.read());
    if (ev.kind == exec_event::type::exited)
      co_return ev.exit_code;
    write_all(ev.stream == exec_stream::stdout_stream ? 1 : 2, ev.data);
  }
}

// Our stdin, read by a thread of its own (a file, a pipe or a terminal alike,
// without touching the descriptor's flags, which the shell shares), one
// chunk at a time: the next read waits until the chunk was sent.
struct stdin_reader {
  explicit stdin_reader(const asio::any_io_executor& ex) : ready(ex) {
    ready.expires_at(asio::steady_timer::time_point::max());
  }
  asio::steady_timer ready;
  std::deque<std::string> chunks;  // at most one; empty string: EOF
  std::mutex m;
  std::condition_variable sent_cv;
  bool sent = true;
  void start(std::shared_ptr<stdin_reader> self) {
    std::thread([self] {
      std::vector<char> buf(64 * 1024);
      for (;;) {
        ssize_t n = ::read(0, buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
          continue;
        std::string chunk = n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : "";
        {
          std::unique_lock lock(self->m);
          self->sent = false;
        }
        asio::post(self->ready.get_executor(), [self, chunk = std::move(chunk)]() mutable {
          self->chunks.push_back(std::move(chunk));
          self->ready.cancel();
        });
        if (n <= 0)
          return;
        std::unique_lock lock(self->m);
        self->sent_cv.wait(lock, [&] { return self->sent; });
      }
    }).detach();
  }
  void done_with_chunk() {
    std::unique_lock lock(m);
    sent = true;
    sent_cv.notify_one();
  }
};

// What the session's helper coroutines share; they may outlive the call.
struct session_ctx {
  explicit session_ctx(const asio::any_io_executor& ex) : winch(ex) {}
  std::optional<remote_exec_session> session;
  asio::signal_set winch;
  std::shared_ptr<stdin_reader> in;
  int inputs_in_flight = 0;
  bool input_failed = false;
  bool finished = false;
  void finish() {
    finished = true;
    boost::system::error_code ignored;
    winch.cancel(ignored);
    if (in)
      in->ready.cancel();
  }
};

// Up to this many Inputs in flight: the daemon queues them in order, and
// our next read of stdin overlaps their round trips.
constexpr int max_inputs_in_flight = 4;

asio::awaitable<void> forward_stdin(std::shared_ptr<session_ctx> ctx) {
  auto ex = co_await asio::this_coro::executor;
  auto& in = *ctx->in;
  auto wait_ready = [&]() -> asio::awaitable<void> {
    in.ready.expires_at(asio::steady_timer::time_point::max());
    co_await in.ready.async_wait(asio::as_tuple(asio::use_awaitable));
  };
  for (;;) {
    while ((in.chunks.empty() || ctx->inputs_in_flight >= max_inputs_in_flight) && !ctx->finished &&
           !ctx->input_failed)
      co_await wait_ready();
    if (ctx->finished || ctx->input_failed)
      co_return;
    std::string chunk = std::move(in.chunks.front());
    in.chunks.pop_front();
    if (chunk.empty()) {
      // Our stdin ended: so does the command's, after what is in flight
      // (the daemon keeps the order).
      (void)co_await ctx->session->close_stdin();
      co_return;
    }
    ++ctx->inputs_in_flight;
    // Sent as it starts (in order); its answer is awaited on the side.
    asio::co_spawn(
        ex,
        [](std::shared_ptr<session_ctx> c, std::string data) -> asio::awaitable<void> {
          auto w = co_await c->session->write(std::move(data));
          --c->inputs_in_flight;
          c->input_failed = c->input_failed || !w;  // the session is over
          c->in->ready.cancel();
        }(ctx, std::move(chunk)),
        asio::detached);
    in.done_with_chunk();
  }
}

asio::awaitable<void> forward_resizes(std::shared_ptr<session_ctx> ctx) {
  while (!ctx->finished) {
    auto [ec, signo] = co_await ctx->winch.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)signo;
    if (ec || ctx->finished)
      co_return;
    if (auto size = terminal_size())
      (void)co_await ctx->session->resize(*size);  // the session may end meanwhile
  }
}

// exec -i / -t: an ExecStreaming session, as `docker exec` does it.
asio::awaitable<int> cmd_exec_session(const cli& c, remote_executor& exe, bool& stdin_thread) {
  auto ex = co_await asio::this_coro::executor;
  exec_session_options o;
  o.cmd = c.cmd.cmd;
  o.args = c.cmd.args;
  o.tty = c.tty;
  // SIGWINCH is caught before the size is read: no resize can slip between.
  auto ctx = std::make_shared<session_ctx>(ex);
  if (c.tty) {
    ctx->winch.add(SIGWINCH);
    if (auto size = terminal_size())
      o.size = *size;
  }
  ctx->session.emplace(check(co_await exe.exec_streaming(std::move(o))));
  raw_terminal raw;
  if (c.tty && ::isatty(0))
    raw.enter(0);
  if (c.tty)
    asio::co_spawn(ex, forward_resizes(ctx), asio::detached);
  if (c.interactive) {
    ctx->in = std::make_shared<stdin_reader>(ex);
    ctx->in->start(ctx->in);
    stdin_thread = true;
    asio::co_spawn(ex, forward_stdin(ctx), asio::detached);
  } else if (!c.tty) {
    // Without -i the command's stdin ends at once; a terminal just gets no
    // input (as with docker exec -t).
    (void)co_await ctx->session->close_stdin();
  }
  // However this ends (a lost connection throws), the helpers stop.
  struct finisher {
    std::shared_ptr<session_ctx> ctx;
    ~finisher() { ctx->finish(); }
  } at_end{ctx};
  co_return co_await pump_session_output(*ctx->session);
}

asio::awaitable<int> dispatch(const cli& c, asio::signal_set& signals, bool& stdin_thread) {
  if (c.command == "start")
    co_return co_await cmd_start(c);
  if (c.command == "run")
    co_return co_await cmd_run(c, signals);
  auto exe = co_await connect(c);
  const auto& cmd = c.command;
  if (cmd == "launch") {
    auto st = check(co_await exe.launch(launch_spec(c)));
    if (c.json_out)
      print_json(json::value_from(st));
    else
      std::cout << "launched pid " << st.pid << std::endl;
  } else if (cmd == "wait") {
    // No co_await inside ?: (GCC 12 miscompiles it).
    result<process_state> r;
    if (c.timeout_ms)
      r = co_await exe.wait_for(milliseconds(*c.timeout_ms));
    else
      r = co_await exe.wait();
    auto st = check(std::move(r));
    if (c.json_out)
      print_json(json::value_from(st));
    else
      std::cout << describe(st) << std::endl;
  } else if (cmd == "signal") {
    int signo = 0;
    auto [p, ec] =
        std::from_chars(c.signal_arg.data(), c.signal_arg.data() + c.signal_arg.size(), signo);
    const bool numeric = ec == std::errc{} && p == c.signal_arg.data() + c.signal_arg.size();
    result<void> r;
    if (numeric)
      r = co_await exe.signal(signo);
    else
      r = co_await exe.signal(c.signal_arg);
    check(r);
    if (c.json_out)
      print_json(json::object{});
  } else if (cmd == "shutdown") {
    check(co_await exe.shutdown(c.shutdown_signal, milliseconds(c.grace_ms)));
    if (c.json_out)
      print_json(json::object{});
    else
      std::cout << "task shut down" << std::endl;
  } else if (cmd == "stats") {
    co_return co_await cmd_stats(c, exe);
  } else if (cmd == "exec" && (c.interactive || c.tty)) {
    co_return co_await cmd_exec_session(c, exe, stdin_thread);
  } else if (cmd == "exec") {
    co_return co_await cmd_exec(c, exe);
  } else if (cmd == "events" && c.follow) {
    // Each event as it comes (one JSON object per line with --json), until
    // interrupted or the daemon stops (exit 0); a follower that fell
    // behind is ended by the daemon (exit 1, saying where to resume).
    auto stream = check(co_await exe.follow_events(c.since));
    if (!c.json_out)
      print_events_header();
    for (;;) {
      auto e = co_await stream.next();
      if (!e) {
        if (e.error().code == make_error_code(errc::task_destroyed))
          break;
        auto err = e.error();
        err.message += "; resume with --since " + std::to_string(stream.next_seq());
        throw failure{err};
      }
      if (c.json_out)
        print_json(*e);
      else
        print_event_line(*e);
      std::cout.flush();
    }
  } else if (cmd == "events") {
    // Every page: the journal is bounded (at most 1024 events), so is this.
    auto page = check(co_await exe.events(c.since));
    while (page.more) {
      auto next = check(co_await exe.events(page.next));
      page.events.insert(page.events.end(), std::make_move_iterator(next.events.begin()),
                         std::make_move_iterator(next.events.end()));
      page.dropped += next.dropped;
      page.next = next.next;
      page.more = next.more;
    }
    print_events(page, c.json_out);
  } else if (cmd == "version") {
    auto v = check(co_await exe.version());
    if (c.json_out)
      print_json(version_object(v));
    else
      std::cout << v << std::endl;
  } else if (cmd == "update") {
    check(co_await exe.update_resources(c.cmd.resources));
    if (c.json_out)
      print_json(json::object{});
    else
      std::cout << "resources updated" << std::endl;
  } else if (cmd == "destroy") {
    check(co_await exe.destroy());
    if (c.json_out)
      print_json(json::object{});
    else
      std::cout << "daemon destroyed" << std::endl;
  }
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli c;
  try {
    c = parse(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "taskexec: " << e.what << "\n(see taskexec --help)\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  asio::io_context io;
  asio::signal_set signals(io);
  if (c.command == "run") {
    signals.add(SIGINT);
    signals.add(SIGTERM);
  }
  int code = 1;
  bool stdin_thread = false;
  asio::co_spawn(io, dispatch(c, signals, stdin_thread), [&](const std::exception_ptr& e, int rc) {
    signals.cancel();
    if (!e) {
      code = rc;
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const failure& f) {
      std::cerr << "taskexec: " << f.e.message << "\n";
      code = f.exit_code;
    } catch (const std::exception& x) {
      std::cerr << "taskexec: " << x.what() << "\n";
      code = 1;
    }
  });
  io.run();
  if (stdin_thread) {
    // A thread may still be blocked reading our stdin: leave without
    // running destructors it could race with.
    std::cout.flush();
    std::cerr.flush();
    std::_Exit(code);
  }
  return code;
}
