// taskexec: the command line of taskexecd. See `taskexec --help`; the
// options of each command are in options.cpp.
//
// Exit status (docs/client.md has the table): 0 on success; 1 when the call
// failed; 2 on a usage error; 3 when no daemon can be reached; 124 when a
// --timeout expired; for run 125 when the daemon failed; for run, launch and
// exec 126 when the command could not be launched, 127 when its binary was
// not found; run and exec otherwise exit with the command's code (128+N when
// killed by signal N). Under --json an error is a JSON object on stderr.
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

#include "cli_common.hpp"
#include "options.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/openmetrics.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/message.hpp"
#include "taskexec/signals.hpp"

namespace asio = boost::asio;
namespace json = boost::json;
using namespace taskexec;
using std::chrono::milliseconds;

namespace {

using cli_args = taskexec_cli::options;

// ------------------------------------------------------------------ output

// The exit code of an error (the table above): the daemon unreachable, a
// timeout, or a failed call.
int exit_code_of(const error& e) {
  if (e.code == make_error_code(errc::connection_failed) ||
      e.code == make_error_code(errc::reattach_refused))
    return cli::exit_unreachable;
  if (e.code == make_error_code(errc::timed_out))
    return cli::exit_timeout;
  return cli::exit_failed;
}

struct failure {
  failure(error err) : e(std::move(err)), exit_code(exit_code_of(e)) {}  // NOLINT: implicit
  failure(error err, int code) : e(std::move(err)), exit_code(code) {}
  error e;
  int exit_code;
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

// A launch (of the task, or of an Exec command) that failed: 127 when its
// binary was not found, else `otherwise`. The daemon says -32004 for every
// launch failure; its message tells a missing binary apart.
int launch_exit_code(const error& e, int otherwise) {
  if (e.code != make_error_code(errc::launch_failed))
    return otherwise;
  const auto& m = e.message;
  const bool not_found = (m.starts_with("binary \"") && m.ends_with("\" could not be found")) ||
                         (m.starts_with("file ") && m.find(" not found under path ") != m.npos);
  return not_found ? cli::exit_not_found : cli::exit_cannot_launch;
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

exec_command launch_spec(const cli_args& c) {
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

asio::awaitable<remote_executor> connect(const cli_args& c) {
  auto ex = co_await asio::this_coro::executor;
  if (!c.reattach.empty()) {
    std::string text = c.reattach;
    if (text.find('{') == std::string::npos)
      text = read_text(text);
    co_return check(co_await reattach_to_executor(ex, check(parse_reattach_config(text)), c.trust));
  }
  co_return check(co_await remote_executor::connect(ex, c.socket, c.trust));
}

create_options daemon_options(const cli_args& c, const std::string& socket) {
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

asio::awaitable<int> cmd_start(const cli_args& c) {
  auto created = check(
      co_await create_executor(co_await asio::this_coro::executor, daemon_options(c, c.socket)));
  std::cout << to_json(created.config) << std::endl;
  co_return 0;
}

// run: a daemon of our own in a private directory, the task's output on ours.
asio::awaitable<int> cmd_run(const cli_args& c, asio::signal_set& signals) {
  auto ex = co_await asio::this_coro::executor;
  std::string dir;
  std::string socket = c.socket;
  if (socket.empty()) {
    const char* base = std::getenv("XDG_RUNTIME_DIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/taskexec-run.XXXXXX";
    if (!::mkdtemp(tmpl.data()))
      throw failure{make_system_error(errno, "mkdtemp " + tmpl), cli::exit_daemon_failed};
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
    throw failure{created.error(), cli::exit_daemon_failed};
  auto& exe = created->client;
  const std::string me = "/proc/" + std::to_string(::getpid()) + "/fd/";
  if (cmd.stdout_path.empty())
    cmd.stdout_path = me + "1";
  if (cmd.stderr_path.empty())
    cmd.stderr_path = me + "2";
  auto launched = co_await exe.launch(cmd);
  if (!launched) {
    (void)co_await exe.destroy();
    const int code = exit_code_of(launched.error()) == cli::exit_unreachable
                         ? cli::exit_daemon_failed
                         : cli::exit_cannot_launch;
    throw failure{launched.error(), launch_exit_code(launched.error(), code)};
  }
  // Calls made on the side (signals, the timeout's shutdown): each is
  // answered before we leave, as they use `exe`.
  struct side_calls {
    explicit side_calls(const asio::any_io_executor& e) : idle(e) {}
    int in_flight = 0;
    asio::steady_timer idle;
  } side(ex);
  auto on_side = [&](std::function<asio::awaitable<void>()> call) {
    ++side.in_flight;
    asio::co_spawn(
        ex,
        [&side, call = std::move(call)]() -> asio::awaitable<void> {
          co_await call();
          if (--side.in_flight == 0)
            side.idle.cancel();
        },
        asio::detached);
  };
  const auto grace = milliseconds(c.kill_grace_ms);
  // Signals, as docker's signal proxy: each goes to the task as it is. A
  // second SIGINT or SIGTERM (Ctrl-C again) shuts the task down (SIGTERM,
  // then SIGKILL after the kill grace); a third kills it.
  int stops = 0;
  std::function<void(boost::system::error_code, int)> on_signal;
  on_signal = [&](boost::system::error_code ec, int signo) {
    if (ec)
      return;
    const int level = (signo == SIGINT || signo == SIGTERM) ? stops++ : 0;
    on_side([&exe, signo, level, grace]() -> asio::awaitable<void> {
      if (level == 0)
        (void)co_await exe.signal(signo);
      else if (level == 1)
        (void)co_await exe.shutdown("SIGTERM", grace);
      else
        (void)co_await exe.signal(SIGKILL);
    });
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  // --timeout: shut the task down when it runs past it (as timeout(1)).
  bool timed_out = false;
  asio::steady_timer deadline(ex);
  if (c.timeout_ms) {
    deadline.expires_after(milliseconds(*c.timeout_ms));
    deadline.async_wait([&](boost::system::error_code ec) {
      if (ec)
        return;
      timed_out = true;
      on_side([&exe, grace]() -> asio::awaitable<void> {
        (void)co_await exe.shutdown("SIGTERM", grace);
      });
    });
  }
  auto st = co_await exe.wait();
  signals.cancel();
  deadline.cancel();
  while (side.in_flight > 0) {
    side.idle.expires_at(asio::steady_timer::time_point::max());
    co_await side.idle.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (!st) {
    (void)co_await exe.destroy();
    throw failure{st.error(), cli::exit_daemon_failed};
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
    throw failure{d.error(), cli::exit_daemon_failed};
  if (timed_out)
    throw failure{
        make_error(errc::timed_out, "the task ran past its timeout of " +
                                        std::to_string(*c.timeout_ms) + " ms and was shut down"),
        cli::exit_timeout};
  co_return st->exit_code;
}

// A Stats sample as the daemon sends it (codec.hpp writes it) back into a
// task_resource_usage, for openmetrics::from_usage. A member missing or of
// another type reads as not measured (0).
std::uint64_t u64_at(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  if (v && v->is_uint64())
    return v->get_uint64();
  if (v && v->is_int64() && v->get_int64() >= 0)
    return static_cast<std::uint64_t>(v->get_int64());
  return 0;
}
double double_at(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_number() ? v->to_number<double>() : 0.0;
}
std::vector<std::string> names_at(const json::object& o, std::string_view k) {
  std::vector<std::string> out;
  const auto* v = o.if_contains(k);
  if (v && v->is_array()) {
    for (const auto& n : v->get_array()) {
      if (n.is_string())
        out.emplace_back(n.get_string());
    }
  }
  return out;
}
const json::object& object_at(const json::object& o, std::string_view k) {
  static const json::object empty;
  const auto* v = o.if_contains(k);
  return v && v->is_object() ? v->get_object() : empty;
}

resource_usage usage_from_json(const json::object& ru) {
  resource_usage u;
  const auto& m = object_at(ru, "memory_stats");
  u.memory.rss = u64_at(m, "rss");
  u.memory.cache = u64_at(m, "cache");
  u.memory.swap = u64_at(m, "swap");
  u.memory.usage = u64_at(m, "usage");
  u.memory.max_usage = u64_at(m, "max_usage");
  u.memory.kernel_usage = u64_at(m, "kernel_usage");
  u.memory.kernel_max_usage = u64_at(m, "kernel_max_usage");
  u.memory.measured = names_at(m, "measured");
  const auto& pressure = object_at(m, "pressure");
  if (pressure.contains("some_avg10"))
    u.memory.pressure_some_avg10 = double_at(pressure, "some_avg10");
  if (pressure.contains("full_avg10"))
    u.memory.pressure_full_avg10 = double_at(pressure, "full_avg10");
  const auto& events = object_at(m, "events");
  if (events.contains("high"))
    u.memory.events_high = u64_at(events, "high");
  if (events.contains("max"))
    u.memory.events_max = u64_at(events, "max");
  if (events.contains("oom_kill"))
    u.memory.events_oom_kill = u64_at(events, "oom_kill");
  const auto& cpu = object_at(ru, "cpu_stats");
  u.cpu.system_mode = double_at(cpu, "system_mode");
  u.cpu.user_mode = double_at(cpu, "user_mode");
  u.cpu.total_ticks = double_at(cpu, "total_ticks");
  u.cpu.percent = double_at(cpu, "percent");
  u.cpu.throttled_periods = u64_at(cpu, "throttled_periods");
  u.cpu.throttled_time = u64_at(cpu, "throttled_time");
  u.cpu.measured = names_at(cpu, "measured");
  return u;
}

task_resource_usage sample_from_json(const json::object& sample) {
  task_resource_usage u;
  u.total = usage_from_json(object_at(sample, "resource_usage"));
  for (const auto& [pid, ru] : object_at(sample, "pids")) {
    int n = 0;
    auto [p, ec] = std::from_chars(pid.data(), pid.data() + pid.size(), n);
    if (ec == std::errc{} && p == pid.data() + pid.size() && ru.is_object())
      u.pids[n] = usage_from_json(ru.get_object());
  }
  u.timestamp = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(
          static_cast<std::int64_t>(u64_at(sample, "timestamp_unix_nano")))));
  return u;
}

std::vector<openmetrics::label> metrics_labels(const cli_args& c) {
  std::vector<openmetrics::label> out;
  out.reserve(c.labels.size());
  for (const auto& kv : c.labels) {
    auto eq = kv.find('=');
    out.push_back({kv.substr(0, eq), kv.substr(eq + 1)});
  }
  return out;
}

asio::awaitable<int> cmd_stats(const cli_args& c, remote_executor& exe) {
  auto stream = check(co_await exe.stats(milliseconds(c.interval_ms)));
  const bool as_openmetrics = c.format == "openmetrics";
  const bool refresh = !c.json_out && !as_openmetrics && ::isatty(1);
  // OpenMetrics: one sample unless --count says more (a textfile collector
  // reads one document).
  const long long count = as_openmetrics && c.count == 0 ? 1 : c.count;
  for (long long n = 0; count == 0 || n < count; ++n) {
    auto next = co_await stream.next();
    if (!next && next.error().code == make_error_code(errc::task_exited)) {
      if (!c.json_out)
        std::cout << "(the task has exited)" << std::endl;
      co_return 0;  // the stream is over, as the task is
    }
    auto usage = check(std::move(next));
    if (as_openmetrics)
      std::cout << check(openmetrics::from_usage(sample_from_json(usage), metrics_labels(c)))
                << std::flush;
    else
      print_stats(usage, c.json_out, refresh, stream.dropped());
  }
  (void)co_await stream.cancel();
  co_return 0;
}

asio::awaitable<int> cmd_exec(const cli_args& c, remote_executor& exe) {
  json::object params;
  params["cmd"] = c.cmd.cmd;
  json::array args;
  for (const auto& a : c.cmd.args)
    args.emplace_back(a);
  params["args"] = std::move(args);
  if (c.timeout_ms)
    params["timeout_ms"] = *c.timeout_ms;
  auto called = co_await exe.call("Exec", std::move(params));
  if (!called)
    throw failure{called.error(), launch_exit_code(called.error(), exit_code_of(called.error()))};
  auto r = std::move(*called);
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
asio::awaitable<int> cmd_exec_session(const cli_args& c, remote_executor& exe, bool& stdin_thread) {
  auto ex = co_await asio::this_coro::executor;
  exec_session_options o;
  o.cmd = c.cmd.cmd;
  o.args = c.cmd.args;
  o.tty = c.tty;
  // The daemon's descriptors (a Unix socket is always on this host), or
  // the JSON path with --no-fds.
  o.stdio = c.no_fds ? exec_stdio::pumped : exec_stdio::automatic;
  // SIGWINCH is caught before the size is read: no resize can slip between.
  auto ctx = std::make_shared<session_ctx>(ex);
  if (c.tty) {
    ctx->winch.add(SIGWINCH);
    if (auto size = terminal_size())
      o.size = *size;
  }
  auto started = co_await exe.exec_streaming(std::move(o));
  if (!started)
    throw failure{started.error(),
                  launch_exit_code(started.error(), exit_code_of(started.error()))};
  ctx->session.emplace(std::move(*started));
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

asio::awaitable<int> dispatch(const cli_args& c, asio::signal_set& signals, bool& stdin_thread) {
  if (c.command == "start")
    co_return co_await cmd_start(c);
  if (c.command == "run")
    co_return co_await cmd_run(c, signals);
  auto exe = co_await connect(c);
  const auto& cmd = c.command;
  if (cmd == "launch") {
    auto launched = co_await exe.launch(launch_spec(c));
    if (!launched)
      throw failure{launched.error(),
                    launch_exit_code(launched.error(), exit_code_of(launched.error()))};
    auto st = *launched;
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
    // 9, -9 (as kill), KILL, SIGKILL.
    std::string_view arg = c.signal_arg;
    if (arg.size() > 1 && arg.front() == '-')
      arg.remove_prefix(1);
    int signo = 0;
    auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), signo);
    const bool numeric = ec == std::errc{} && p == arg.data() + arg.size();
    result<void> r;
    if (numeric)
      r = co_await exe.signal(signo);
    else
      r = co_await exe.signal(std::string(arg));
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
  } else if (cmd == "metrics") {
    auto m = check(co_await exe.metrics());
    if (c.json_out)
      print_json(m);
    else
      std::cout << check(openmetrics::from_daemon_metrics(m, metrics_labels(c))) << std::flush;
  } else if (cmd == "destroy") {
    check(co_await exe.destroy());
    if (c.json_out)
      print_json(json::object{});
    else
      std::cout << "daemon destroyed" << std::endl;
  }
  co_return 0;
}

// An error as --json prints it: {"error": {"code", "message"}, "exit_code"}.
// `code` is the protocol's (docs/protocol.md, Errors) for what the daemon
// refused; null for what never reached it (no daemon, a usage error).
json::object error_object(const error& e, int exit_code) {
  json::value code = nullptr;
  if (e.code.category() == taskexec::category()) {
    switch (static_cast<errc>(e.code.value())) {
      case errc::connection_failed:
      case errc::reattach_refused:
      case errc::protocol_error:
      case errc::operation_canceled:
      case errc::success:
        break;
      default:
        code = static_cast<int>(rpc::to_rpc_error(e, task_operation::launch).error_code);
    }
  }
  json::object err;
  err["code"] = code;
  err["message"] = e.message;
  json::object o;
  o["error"] = std::move(err);
  o["exit_code"] = exit_code;
  return o;
}

void print_error(bool as_json, const error& e, int exit_code) {
  std::cout.flush();
  if (as_json)
    std::cerr << json::serialize(error_object(e, exit_code)) << std::endl;
  else
    std::cerr << "taskexec: " << e.message << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = taskexec_cli::parse_command_line(argc, argv);
  if (parsed.exit_code) {
    if (!parsed.usage_error.empty()) {
      bool as_json = false;
      for (int i = 1; i < argc; ++i)
        as_json = as_json || std::string_view(argv[i]) == "--json";
      if (as_json)
        print_error(true, make_error(errc::invalid_argument, parsed.usage_error),
                    *parsed.exit_code);
      else
        std::cerr << "taskexec: " << parsed.usage_error << "\n(see " << parsed.help << ")\n";
    }
    return *parsed.exit_code;
  }
  const cli_args& c = parsed.opts;
  ::signal(SIGPIPE, SIG_IGN);
  asio::io_context io;
  asio::signal_set signals(io);
  if (c.command == "run") {
    // Passed on to the task (cmd_run); SIGINT and SIGTERM escalate.
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2})
      signals.add(s);
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
      print_error(c.json_out, f.e, f.exit_code);
      code = f.exit_code;
    } catch (const std::exception& x) {
      print_error(c.json_out, make_error(errc::internal, x.what()), cli::exit_failed);
      code = cli::exit_failed;
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
