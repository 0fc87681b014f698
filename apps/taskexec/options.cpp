#include "options.hpp"

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <iostream>

#include "cli_common.hpp"

namespace taskexec_cli {

namespace {

using taskexec::cli::add_duration;
using taskexec::cli::add_integer;
using taskexec::cli::usage_error;

constexpr long long max_ms = 1'000'000'000'000;

const char* const footer = R"(
A command for a running daemon names it with --socket PATH, $TASKEXEC_SOCKET,
or --reattach CONFIG (a config as printed by `start`, or a file holding one).
Options go after the command's name; the global ones above go anywhere.
Durations: 500ms, 5s, 2m, 1m30s (a bare number in an -ms flag: milliseconds).

Exit status:
  0    success
  1    the call failed (the daemon answered with an error)
  2    usage error
  3    the daemon cannot be reached (no socket, refused, gone, connection lost)
  124  a --timeout expired (run: the task was shut down)
  125  run: the daemon could not be started or failed
  126  run, launch, exec: the command could not be launched
  127  run, launch, exec: the command's binary was not found
  run and exec otherwise exit with the command's code (128+N when killed by
  signal N: 130 for SIGINT, 137 for SIGKILL)
)";

const char* const signal_words =
    "SIGHUP SIGINT SIGQUIT SIGKILL SIGUSR1 SIGUSR2 SIGTERM SIGCONT SIGSTOP SIGWINCH HUP INT QUIT "
    "KILL USR1 USR2 TERM CONT STOP WINCH";

CLI::App* command(CLI::App& app, options& o, const std::string& name, const std::string& what) {
  auto* sub = app.add_subcommand(name, what);
  sub->fallthrough();  // the global options work after the command's name too
  sub->callback([&o, name] { o.command = name; });
  return sub;
}

// CMD [ARG...]: the first word that is not an option starts the command; so
// does what follows `--`. Everything after it is the command's own.
void add_command_words(CLI::App& sub, options& o) {
  sub.add_option_function<std::vector<std::string>>(
         "CMD", [&o](const std::vector<std::string>& words) { o.cmd.args = words; },
         "the command and its arguments (after -- when one starts with -)")
      ->type_name("");
  sub.positionals_at_end();
}

void add_resource_options(CLI::App& sub, options& o) {
  auto& r = o.cmd.resources;
  auto set = [&o](std::int64_t& field) {
    return [&o, &field](long long n) {
      field = n;
      o.have_resources = true;
    };
  };
  add_integer(sub, "--memory-mb", set(r.memory_mb), 0, 1'000'000'000, "memory limit (soft), MiB");
  add_integer(sub, "--memory-max-mb", set(r.memory_max_mb), -1, 1'000'000'000,
              "memory limit (hard), MiB; -1: none");
  add_integer(sub, "--cpu-shares", set(r.cpu_shares), 0, 262144, "CPU weight");
  add_integer(sub, "--cpu-quota-us", set(r.cpu_quota_us), 0, 1'000'000'000'000,
              "CPU quota per period, microseconds");
  add_integer(sub, "--cpu-period-us", set(r.cpu_period_us), 0, 1'000'000,
              "CPU period, microseconds");
  sub.add_option_function<std::string>(
         "--cpuset-cpus",
         [&o](const std::string& v) {
           o.cmd.resources.cpuset_cpus = v;
           o.have_resources = true;
         },
         "CPUs the task may use (0-3,5)")
      ->type_name("LIST");
  add_integer(sub, "--pids-max", set(r.pids_max), 0, 1'000'000'000, "processes at most");
}

void add_launch_options(CLI::App& sub, options& o) {
  auto& c = o.cmd;
  sub.add_option_function<std::vector<std::string>>(
         "-e,--env",
         [&c](const std::vector<std::string>& kvs) {
           for (const auto& kv : kvs) {
             if (kv.find('=') == std::string::npos || kv.front() == '=')
               throw usage_error{"--env needs K=V, not \"" + kv + "\""};
             c.env.push_back(kv);
           }
         },
         "an environment variable of the task (repeatable)")
      ->type_name("K=V")
      ->allow_extra_args(false);
  sub.add_option("-u,--user", c.user, "the task's user (a name or uid)")->type_name("USER");
  sub.add_option("--task-dir", c.task_dir, "the task's directory (container: its root)")
      ->type_name("DIR");
  sub.add_option("-w,--workdir,--work-dir", c.work_dir, "the task's working directory")
      ->type_name("DIR");
  sub.add_option("--stdout", c.stdout_path, "the task's stdout: a file (appended) or FIFO")
      ->type_name("FILE");
  sub.add_option("--stderr", c.stderr_path, "the task's stderr: a file (appended) or FIFO")
      ->type_name("FILE");
  sub.add_option("--isolation", c.isolation, "host (default) or container (as root)")
      ->type_name("host|container");
  sub.add_flag("--limits", c.resource_limits, "enforce the resource options (a cgroup; root)");
  add_resource_options(sub, o);
  sub.add_option_function<std::vector<std::string>>(
         "--mount",
         [&c](const std::vector<std::string>& vs) {
           for (const auto& v : vs) {
             auto colon = v.find(':');
             if (colon == std::string::npos || colon == 0 || colon + 1 == v.size())
               throw usage_error{"--mount needs HOST:TASK[:ro], not \"" + v + "\""};
             taskexec::mount_config m;
             m.host_path = v.substr(0, colon);
             m.task_path = v.substr(colon + 1);
             if (m.task_path.ends_with(":ro")) {
               m.readonly = true;
               m.task_path.resize(m.task_path.size() - 3);
             }
             c.mounts.push_back(m);
           }
         },
         "container: a bind mount (repeatable)")
      ->type_name("HOST:TASK[:ro]")
      ->allow_extra_args(false);
  sub.add_option_function<std::vector<std::string>>(
         "--device",
         [&c](const std::vector<std::string>& vs) {
           for (const auto& v : vs) {
             taskexec::device_config d;
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
             c.devices.push_back(d);
           }
         },
         "container: a device node, PERMS of rwm (repeatable)")
      ->type_name("HOST[:TASK[:PERMS]]")
      ->allow_extra_args(false);
  sub.add_option("--cap", c.capabilities,
                 "container: a capability for a task that is not root (repeatable; default: "
                 "the standard set)")
      ->type_name("NAME")
      ->allow_extra_args(false);
  sub.add_option("--pid-mode", c.default_pid_mode, "container: private or host")
      ->type_name("private|host");
  sub.add_option("--ipc-mode", c.default_ipc_mode, "container: private or host")
      ->type_name("private|host");
  sub.add_option_function<std::string>(
         "--netns",
         [&c](const std::string& v) {
           c.network_isolation = taskexec::network_isolation_spec{"group", v};
         },
         "container: join this network namespace")
      ->type_name("PATH");
  sub.add_flag("--no-pivot-root", c.no_pivot_root, "container: chroot instead of pivot_root");
  sub.add_option("--spec", o.spec_file,
                 "an ExecCommand as JSON (docs/protocol.md); the options and CMD override it")
      ->type_name("FILE");
}

// The daemon that run and start make.
void add_daemon_options(CLI::App& sub, options& o) {
  sub.add_option("--log-file", o.log_file, "the daemon's log file")->type_name("FILE");
  sub.add_option("--log-level", o.log_level, "the daemon's log level (default info)")
      ->type_name("trace|debug|info|warn|error|off");
  auto* g1 = add_duration(
      sub, "--kill-grace-ms", [&o](long long ms) { o.kill_grace_ms = ms; }, 1, 0, 3'600'000,
      "between SIGTERM and SIGKILL when the daemon shuts the task down (default 5s)");
  auto* g2 = add_duration(
      sub, "--kill-grace", [&o](long long ms) { o.kill_grace_ms = ms; }, 0, 0, 3'600'000,
      "the same as a duration");
  g1->excludes(g2);
  sub.add_option_function<std::vector<std::string>>(
         "--allow-uid",
         [&o](const std::vector<std::string>& uids) {
           for (const auto& v : uids) {
             unsigned long long n = 0;
             auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
             if (ec != std::errc{} || p != v.data() + v.size() || n > 0xfffffffe)
               throw usage_error{"--allow-uid needs a number from 0 to 4294967294, not \"" + v +
                                 "\""};
             o.allowed_uids.push_back(static_cast<unsigned>(n));
           }
         },
         "a uid the daemon also serves (repeatable)")
      ->type_name("UID")
      ->allow_extra_args(false);
  sub.add_option("--hostname", o.hostname,
                 "a container task's hostname (default: the daemon's socket path)")
      ->type_name("NAME");
}

void add_timeout(CLI::App& sub, options& o, const std::string& what) {
  auto* ms = add_duration(
      sub, "--timeout-ms", [&o](long long v) { o.timeout_ms = v; }, 1, 0, max_ms, what);
  auto* d = add_duration(
      sub, "--timeout", [&o](long long v) { o.timeout_ms = v; }, 0, 0, max_ms,
      "the same as a duration (300ms, 5s, 2m)");
  ms->excludes(d);
}

void add_labels(CLI::App& sub, options& o) {
  sub.add_option_function<std::vector<std::string>>(
         "--label",
         [&o](const std::vector<std::string>& kvs) {
           for (const auto& kv : kvs) {
             if (kv.find('=') == std::string::npos || kv.front() == '=')
               throw usage_error{"--label needs NAME=VALUE, not \"" + kv + "\""};
             o.labels.push_back(kv);
           }
         },
         "openmetrics: a label on every sample (repeatable), such as task=web-1")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false);
}

void build(CLI::App& app, options& o) {
  app.description(
      "taskexec: run a task under taskexecd, or talk to a running daemon.\n"
      "  taskexec run [OPTIONS] [--] CMD [ARG...]\n"
      "  taskexec COMMAND [OPTIONS]   (taskexec COMMAND --help for each)");
  app.footer(footer);
  app.add_flag("--json", o.json_out, "print results and errors as JSON (one object per line)");
  app.add_option("--socket", o.socket, "the daemon's socket")->type_name("PATH");
  app.add_option("--reattach", o.reattach, "a daemon's reattach config (JSON, or a file)")
      ->type_name("CONFIG");
  app.add_option("--daemon", o.daemon,
                 "run, start: the taskexecd to start (default: beside taskexec, or $PATH)")
      ->type_name("PATH");
  add_integer(
      app, "--expect-uid", [&o](long long uid) { o.trust.expect_uid = static_cast<unsigned>(uid); },
      0, 0xfffffffe,
      "a daemon may run as this uid (besides root and us): checked before anything is sent");

  auto* run = command(app, o, "run",
                      "start a daemon of our own, launch CMD (its output on ours), wait, destroy "
                      "it; exit with CMD's code. Ctrl-C sends SIGINT to the task, a second one "
                      "shuts it down (SIGTERM, then SIGKILL), a third kills it");
  add_launch_options(*run, o);
  add_daemon_options(*run, o);
  add_timeout(*run, o,
              "shut the task down (SIGTERM, then SIGKILL after the kill grace) if it runs longer; "
              "exit 124");
  add_command_words(*run, o);

  auto* start = command(app, o, "start", "start a daemon and print its reattach config (JSON)");
  add_daemon_options(*start, o);
  start->add_option("--task-id", o.task_id, "the task's id (taskexecd --task-id)")->type_name("ID");
  start
      ->add_option("--exit-dir", o.exit_dir,
                   "the daemon writes the task's exit state to DIR/<task id>.json "
                   "(taskexecd --exit-dir; needs --task-id)")
      ->type_name("DIR");

  auto* launch = command(app, o, "launch", "launch CMD as the daemon's task");
  add_launch_options(*launch, o);
  add_command_words(*launch, o);

  auto* wait = command(app, o, "wait", "wait for the task to exit; print how it ended");
  add_timeout(*wait, o, "give up after this long (exit 124)");

  auto* signal = command(app, o, "signal", "send a signal to the task");
  signal->add_option("SIGNAL", o.signal_arg, "a name (SIGUSR1, USR1) or a number (9, -9)")
      ->type_name("");

  auto* shutdown = command(
      app, o, "shutdown", "stop the task: a signal, then SIGKILL after the grace (as docker stop)");
  shutdown->add_option("-s,--signal", o.shutdown_signal, "the first signal (default SIGINT)")
      ->type_name("SIGNAL");
  auto* gms = add_duration(
      *shutdown, "--grace-ms", [&o](long long v) { o.grace_ms = v; }, 1, 0, max_ms,
      "before SIGKILL (default 5000)");
  auto* gd = add_duration(
      *shutdown, "-t,--grace", [&o](long long v) { o.grace_ms = v; }, 0, 0, max_ms,
      "the same as a duration (5s)");
  gms->excludes(gd);

  auto* stats = command(app, o, "stats", "the task's resource usage, sample after sample");
  auto* ims = add_duration(
      *stats, "--interval-ms", [&o](long long v) { o.interval_ms = v; }, 1, 1, max_ms,
      "between samples (default 1000)");
  auto* id = add_duration(
      *stats, "--interval", [&o](long long v) { o.interval_ms = v; }, 0, 1, max_ms,
      "the same as a duration (1s)");
  ims->excludes(id);
  auto* count = add_integer(
      *stats, "--count", [&o](long long v) { o.count = v; }, 1, 1'000'000'000,
      "stop after N samples (default: until interrupted)");
  stats
      ->add_flag_callback(
          "--no-stream", [&o] { o.count = 1; }, "one sample, then exit (as docker stats)")
      ->excludes(count);
  stats
      ->add_option("--format", o.format,
                   "table (default on a terminal or not), json (as --json) or openmetrics "
                   "(OpenMetrics text, for node_exporter's textfile collector)")
      ->type_name("table|json|openmetrics")
      ->check(CLI::IsMember({"table", "json", "openmetrics"}));
  add_labels(*stats, o);

  auto* update = command(app, o, "update", "new limits for a task launched with --limits");
  add_resource_options(*update, o);

  auto* exec = command(app, o, "exec",
                       "run CMD beside the task; print its output (the last 4096 bytes) once it "
                       "exits, or with -i/-t as it comes (as docker exec); exit with CMD's code");
  exec->add_flag("-i,--interactive", o.interactive, "send our stdin to CMD");
  exec->add_flag("-t,--tty", o.tty,
                 "give CMD a terminal (ours in raw mode, its size sent at the start and on every "
                 "resize)");
  exec->add_flag("--no-fds", o.no_fds,
                 "with -i/-t: stream through ExecStreaming.Output and .Input (base64 in JSON) "
                 "instead of taking CMD's descriptors from the daemon (\"fds\")");
  add_timeout(*exec, o, "kill CMD if it runs longer (exit 124)");
  add_command_words(*exec, o);

  auto* events = command(app, o, "events", "the daemon's journal: launched, signalled, exited...");
  add_integer(
      *events, "--since", [&o](long long v) { o.since = static_cast<unsigned long long>(v); }, 0,
      INT64_MAX, "events from this sequence number on");
  events->add_flag("--follow", o.follow,
                   "then each new event as it is recorded, until interrupted or the daemon "
                   "stops (a follower the daemon ends for reading too slowly exits 1)");

  command(app, o, "version", "the daemon's protocol version");
  command(app, o, "destroy", "shut the task down and stop the daemon");
  auto* metrics = command(app, o, "metrics",
                          "the daemon's counters as OpenMetrics text (for node_exporter's "
                          "textfile collector); with --json as the daemon sends them");
  metrics->add_option("--format", o.format, "openmetrics (default) or json (as --json)")
      ->type_name("openmetrics|json")
      ->check(CLI::IsMember({"openmetrics", "json"}));
  add_labels(*metrics, o);
}

void validate(options& c) {
  const auto& cmd = c.command;
  if (cmd.empty())
    throw usage_error{"no command given"};
  const bool takes_cmd = cmd == "run" || cmd == "launch" || cmd == "exec";
  if (takes_cmd && c.cmd.args.empty())
    throw usage_error{cmd + " needs a command: taskexec " + cmd + " [OPTIONS] [--] CMD [ARG...]"};
  const bool makes_daemon = cmd == "run" || cmd == "start";
  if (!c.daemon.empty() && !makes_daemon)
    throw usage_error{"\"--daemon\" is an option of run and start, not of " + cmd};
  if (!c.reattach.empty() && makes_daemon)
    throw usage_error{"\"--reattach\" names a running daemon: " + cmd + " starts one"};
  if (c.trust.expect_uid && makes_daemon)
    throw usage_error{"\"--expect-uid\" is for a running daemon: " + cmd + " starts one"};
  if ((c.interactive || c.tty) && (c.timeout_ms || c.json_out))
    throw usage_error{"exec -i/-t streams a session: it takes neither --timeout nor --json"};
  if (cmd == "update" && !c.have_resources)
    throw usage_error{"update needs at least one resource option (--memory-mb N, ...)"};
  if (cmd == "signal" && c.signal_arg.empty())
    throw usage_error{"signal needs a SIGNAL"};
  if (c.format == "json") {
    c.json_out = true;
    c.format.clear();
  }
  if (c.format == "openmetrics" && c.json_out)
    throw usage_error{"--format openmetrics and --json are two different outputs: choose one"};
  // $TASKEXEC_SOCKET names a running daemon: never the one run or start makes.
  if (!makes_daemon && c.socket.empty()) {
    if (const char* s = std::getenv("TASKEXEC_SOCKET"))
      c.socket = s;
  }
  if (cmd == "start" && c.socket.empty())
    throw usage_error{"start needs --socket PATH"};
  if (!makes_daemon && c.socket.empty() && c.reattach.empty())
    throw usage_error{cmd + " needs --socket PATH, $TASKEXEC_SOCKET or --reattach CONFIG"};
  if (takes_cmd) {
    c.cmd.cmd = c.cmd.args.front();
    c.cmd.args.erase(c.cmd.args.begin());
  }
}

}  // namespace

parsed parse_command_line(int argc, char** argv) {
  parsed p;
  CLI::App app;
  taskexec::cli::configure(app, "taskexec");
  bool completion = false;
  app.add_flag("--bash-completion", completion, "print a bash completion script")->group("");
  build(app, p.opts);
  auto outcome = taskexec::cli::parse(app, argc, argv, "taskexec");
  if (outcome.exit_code) {
    p.exit_code = outcome.exit_code;
    return p;
  }
  if (completion && outcome.usage_error.empty()) {
    std::vector<std::pair<std::string, std::string>> choices{
        {"--isolation", "host container"},
        {"--pid-mode", "private host"},
        {"--ipc-mode", "private host"},
        {"--log-level", "trace debug info warn error off"},
        {"--format", "table json openmetrics"},
        {"--signal", signal_words},
        {"-s", signal_words},
        {"signal", signal_words}};
    std::cout << taskexec::cli::bash_completion(app, "taskexec", choices);
    p.exit_code = 0;
    return p;
  }
  try {
    if (!outcome.usage_error.empty())
      throw usage_error{outcome.usage_error};
    validate(p.opts);
  } catch (const usage_error& e) {
    p.usage_error = e.what;
    p.exit_code = taskexec::cli::exit_usage;
    p.help = "taskexec " + (outcome.command.empty() ? "" : outcome.command + " ") + "--help";
  }
  return p;
}

}  // namespace taskexec_cli
