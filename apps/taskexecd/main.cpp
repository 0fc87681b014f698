// taskexecd: owns one task and serves it as JSON-RPC 2.0 over a Unix socket.
//
//   taskexecd --socket PATH [--log-file F] [--log-level L] [--log-format text|json|journald]
//             [--journal-socket PATH]
//             [--kill-grace-ms N | --kill-grace DURATION] [--max-message-bytes N]
//             [--allow-uid N]... [--hostname NAME] [--max-connections N]
//   taskexecd --help | --version
//             [--task-id ID] [--exit-dir DIR] [--cgroup-parent PATH|self]
//
// Under systemd (docs/operations.md): socket activation (LISTEN_PID,
// LISTEN_FDS: one listening AF_UNIX socket, then --socket is not needed),
// READY=1 and STOPPING=1 to NOTIFY_SOCKET, task cgroups below the daemon's
// own delegated cgroup (--cgroup-parent self).
//
// Once listening it prints one line on stdout and never writes stdout again:
//   {"protocol":"taskexec-jsonrpc","version":"2.0.0","socket":"PATH","pid":N}
// SIGTERM or SIGINT: the task is shut down (SIGTERM, then SIGKILL after the
// kill grace), pending calls are answered, the socket is removed, exit 0.
// SIGHUP: the log file is reopened (logrotate's convention: it was renamed,
// the daemon writes on into a new file of the same name); the daemon and
// its task go on. SIGPIPE is ignored.
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include "cli_common.hpp"
#include "daemon_logging.hpp"
#include "systemd.hpp"
#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/rpc/exit_file.hpp"
#include "taskexec/rpc/server.hpp"
#include "taskexec/task_executor.hpp"
#include "taskexec/version.hpp"

namespace asio = boost::asio;

namespace {

const char* const description =
    "taskexecd: owns one task and serves it as JSON-RPC 2.0 over a Unix socket\n"
    "(docs/protocol.md). Once listening it prints one line on stdout:\n"
    "  {\"protocol\":\"taskexec-jsonrpc\",\"version\":\"2.0.0\",\"socket\":\"PATH\",\"pid\":N}\n"
    "SIGTERM, SIGINT: shut the task down and exit 0. SIGHUP: reopen the log file.";

// The daemon's command line. An option is added here (CLI11; the helpers
// of cli_common.hpp check values in the project's words) and its value
// lands in `daemon_args`.
struct daemon_args {
  taskexec::rpc::server_options opts;
  taskexec::log_options log;
  std::string log_file;
  std::string hostname;
  std::string task_id, exit_dir, cgroup_parent;  // docs/operations.md
};

void build(CLI::App& app, daemon_args& d) {
  using taskexec::cli::usage_error;
  app.description(description);
  app.footer(
      "\nExit status: 0 after a shutdown, 1 when the daemon could not serve, 2 on a "
      "usage error.");
  app.add_option("--socket", d.opts.socket_path, "the socket to serve (required)")
      ->type_name("PATH");
  app.add_option("--log-file", d.log_file, "log here (appended; default stderr)")
      ->type_name("FILE");
  app.add_option_function<std::string>(
         "--log-level",
         [&d](const std::string& v) {
           if (!taskexec::parse_log_level(v, d.log.level))
             throw usage_error{"--log-level must be trace, debug, info, warn, error or off"};
         },
         "default info")
      ->type_name("trace|debug|info|warn|error|off");
  app.add_option_function<std::string>(
         "--log-format",
         [&d](const std::string& v) {
           if (!taskexec::parse_log_format(v, d.log.format))
             throw usage_error{"--log-format must be text, json or journald"};
         },
         "default text")
      ->type_name("text|json|journald");
  app.add_option("--journal-socket", d.log.journal_socket,
                 "journald format: the journal's socket (default /run/systemd/journal/socket)")
      ->type_name("PATH");
  // The grace of a shutdown is capped at an hour (max_shutdown_grace).
  auto set_grace = [&d](long long ms) { d.opts.kill_grace = std::chrono::milliseconds(ms); };
  auto* grace_ms = taskexec::cli::add_duration(
      app, "--kill-grace-ms", set_grace, 1, 0, 3'600'000,
      "between SIGTERM and SIGKILL when the task is shut down (default 5000)");
  auto* grace = taskexec::cli::add_duration(app, "--kill-grace", set_grace, 0, 0, 3'600'000,
                                            "the same as a duration (5s)");
  grace_ms->excludes(grace);
  app.add_option_function<std::string>(
         "--hostname",
         [&d](const std::string& v) {
           if (v.empty() || v.size() > 64)
             throw usage_error{"--hostname needs a name of 1 to 64 bytes"};
           d.hostname = v;
         },
         "a container task's hostname (default: the socket's path)")
      ->type_name("NAME");
  taskexec::cli::add_integer(
      app, "--max-message-bytes",
      [&d](long long n) { d.opts.max_message_bytes = static_cast<std::size_t>(n); }, 64, INT64_MAX,
      "the largest message a client may send");
  taskexec::cli::add_integer(
      app, "--max-connections",
      [&d](long long n) { d.opts.max_connections = static_cast<std::size_t>(n); }, 1, 65536,
      "connections open at once");
  app.add_option_function<std::vector<std::string>>(
         "--allow-uid",
         [&d](const std::vector<std::string>& uids) {
           for (const auto& v : uids) {
             unsigned uid = 0;
             auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), uid);
             if (ec != std::errc{} || p != v.data() + v.size())
               throw usage_error{"--allow-uid needs a numeric uid, not \"" + v + "\""};
             d.opts.allowed_uids.push_back(uid);
           }
         },
         "a uid served besides root and the daemon's own (repeatable)")
      ->type_name("UID")
      ->allow_extra_args(false);
  app.add_option_function<std::string>(
         "--task-id",
         [&d](const std::string& v) {
           if (v.empty() || v.size() > 256)
             throw usage_error{"--task-id needs an id of 1 to 256 bytes"};
           d.task_id = v;
         },
         "the task's id: names its exit file (default: the socket's path)")
      ->type_name("ID");
  app.add_option_function<std::string>(
         "--exit-dir",
         [&d](const std::string& v) {
           if (v.empty() || v.front() != '/')
             throw usage_error{"--exit-dir needs an absolute path"};
           d.exit_dir = v;
         },
         "write the task's exit state to DIR/<task id>.json when it is reaped (needs --task-id)")
      ->type_name("DIR");
  app.add_option_function<std::string>(
         "--cgroup-parent",
         [&d](const std::string& v) {
           if (v.empty())
             throw usage_error{"--cgroup-parent needs a path below the cgroup root, or self"};
           d.cgroup_parent = v;
         },
         "task cgroups below this cgroup, or below the daemon's own (self: the daemon moves "
         "to <own>/daemon)")
      ->type_name("PATH|self");
}

int usage(const std::string& why) {
  std::cerr << "taskexecd: " << why << "\n(see taskexecd --help)\n";
  return taskexec::cli::exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
  daemon_args args;
  args.log.level = taskexec::log_level::info;
  {
    CLI::App app;
    taskexec::cli::configure(app, "taskexecd");
    bool completion = false;
    app.add_flag("--bash-completion", completion, "print a bash completion script")->group("");
    build(app, args);
    auto outcome = taskexec::cli::parse(app, argc, argv, "taskexecd");
    if (outcome.exit_code)
      return *outcome.exit_code;
    if (!outcome.usage_error.empty())
      return usage(outcome.usage_error);
    if (completion) {
      std::vector<std::pair<std::string, std::string>> choices{
          {"--log-level", "trace debug info warn error off"},
          {"--log-format", "text json journald"}};
      std::cout << taskexec::cli::bash_completion(app, "taskexecd", choices);
      return 0;
    }
  }
  auto& opts = args.opts;
  auto& log = args.log;
  auto& log_file = args.log_file;
  auto& hostname = args.hostname;
  auto& task_id = args.task_id;
  auto& exit_dir = args.exit_dir;
  auto& cgroup_parent = args.cgroup_parent;
  // Socket activation: the listening socket systemd passed, if any.
  auto activated = taskexec::systemd::listen_fd(std::getenv("LISTEN_PID"),
                                                std::getenv("LISTEN_FDS"), ::getpid());
  for (const char* v : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"})
    ::unsetenv(v);  // not for the task
  if (!activated)
    return usage(activated.error().message);
  if (*activated) {
    auto path = taskexec::systemd::check_listener(**activated);
    if (!path)
      return usage(path.error().message);
    ::fcntl(**activated, F_SETFD, FD_CLOEXEC);
    opts.socket_path = *path;
  }
  const std::string notify_socket =
      std::getenv("NOTIFY_SOCKET") ? std::getenv("NOTIFY_SOCKET") : "";
  ::unsetenv("NOTIFY_SOCKET");
  if (opts.socket_path.empty())
    return usage("--socket is required (or socket activation)");
  if (!exit_dir.empty() && !taskexec::rpc::valid_exit_file_id(task_id))
    return usage(
        "--exit-dir needs a --task-id that can name a file ([A-Za-z0-9._@:-], 1 to 128 "
        "bytes, not starting with '.')");
  std::optional<taskexec::rpc::exit_dir> exits;
  if (!exit_dir.empty()) {
    auto d = taskexec::rpc::exit_dir::open(exit_dir);
    if (!d)
      return usage(d.error().message);
    exits.emplace(std::move(*d));
  }
  std::string cgroup_rel;
  if (cgroup_parent == "self") {
    std::ifstream in("/proc/self/cgroup");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto rel = taskexec::systemd::enter_own_leaf(taskexec::cgroup::detect(), text);
    if (!rel)
      return usage(rel.error().message);
    cgroup_rel = *rel;
  } else if (!cgroup_parent.empty()) {
    auto rel = taskexec::systemd::cgroup_parent_path(cgroup_parent);
    if (!rel)
      return usage(rel.error().message);
    cgroup_rel = *rel;
  }

  auto log_stream = std::make_unique<std::ofstream>();
  if (!log_file.empty()) {
    log_stream->open(log_file, std::ios::app);
    if (!*log_stream)
      return usage("cannot open log file \"" + log_file + "\"");
    log.stream = log_stream.get();
  }
  taskexec::configure_logging(log);
#ifdef __GLIBC__
  // Memory freed while calls and streams run stays in malloc's heap until
  // the connections go quiet; the server then gives it back (malloc_trim,
  // a second later). With glibc's own thresholds (128 KiB, moved as large
  // blocks come and go) the heap gave pages back and faulted them in again
  // while an ExecStreaming session ran: 3 000 to 17 000 page faults per
  // 300 MiB of `bench_exec_stream`, depending on which blocks a run freed
  // first, against about 440 with these; a fault costs some 11 us on the
  // development VM.
  ::mallopt(M_TRIM_THRESHOLD, 8 << 20);
  ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
  ::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not a death
  // Until the io_context waits for it, SIGHUP must not end the daemon.
  ::signal(SIGHUP, SIG_IGN);

  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);
  opts.reaper = &reaper;
  taskexec::task_executor_options task_opts;
  // The task's name in logs and its cgroup: the socket's absolute path, the
  // one thing no other live daemon shares.
  // --task-id names it instead (systemd units: the instance name).
  if (!task_id.empty()) {
    task_opts.task_id = task_id;
  } else {
    std::error_code ec;
    auto absolute = std::filesystem::absolute(opts.socket_path, ec);
    task_opts.task_id = ec ? opts.socket_path : absolute.lexically_normal().string();
  }
  if (!cgroup_rel.empty())
    task_opts.cgroups.parent = cgroup_rel;
  // --exit-dir: the exit state, durable the moment the task is reaped
  // (before the `exited` event is recorded), named by our pid and start
  // time so that a reader holding our reattach config knows it is ours.
  if (exits) {
    const auto me = taskexec::detail::read_proc_stat(::getpid());
    const std::uint64_t start_ticks = me ? me->start_ticks : 0;
    opts.on_exited = [&exits, id = task_opts.task_id,
                      start_ticks](const taskexec::process_state& st) {
      taskexec::rpc::exit_record r{id, ::getpid(), start_ticks, st};
      if (auto w = exits->write(r); !w)
        taskexec::detail::log(taskexec::log_level::error, "daemon", id, "",
                              "exit file not written: " + w.error().message);
      else
        taskexec::detail::log(taskexec::log_level::info, "daemon", id, "",
                              "exit file written: " + exits->file_for(id));
    };
  }
  task_opts.hostname = hostname;
  // The task's whole tree dies with the daemon, even by SIGKILL.
  task_opts.watchdog = true;
  taskexec::task_executor task(reaper, task_opts);
  // Destroy, SIGTERM and SIGINT end the same way: stop accepting, answer
  // what is pending, and exit once every connection has drained.
  std::shared_ptr<taskexec::rpc::server> server;
  auto stop_and_exit = [&] {
    (void)taskexec::systemd::notify(notify_socket.c_str(), "STOPPING=1");
    server->stop();
    server->on_drained([&] { io.stop(); });
  };
  opts.on_destroyed = stop_and_exit;
  server = std::make_shared<taskexec::rpc::server>(io.get_executor(), task, opts);
  if (auto r = *activated ? server->adopt(**activated) : server->listen(); !r) {
    std::cerr << "taskexecd: " << r.error().message << "\n";
    return 1;
  }

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (ec)
      return;
    // A second signal: exit at once (the task dies with us, PDEATHSIG).
    signals.async_wait([&](boost::system::error_code ec2, int) {
      if (!ec2)
        io.stop();
    });
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          if (task.state() == taskexec::task_state::running ||
              task.state() == taskexec::task_state::exited) {
            auto r = co_await task.shutdown("SIGTERM", server->options().kill_grace);
            if (!r)
              taskexec::detail::log(taskexec::log_level::warning, "daemon", "", "",
                                    r.error().message);
          }
          stop_and_exit();
        },
        [](const std::exception_ptr& e) {
          if (e)
            std::rethrow_exception(e);
        });
  });

  // SIGHUP: reopen the log file. One thread: no record is being written
  // while the sink is swapped, so none is lost; the old file is closed.
  asio::signal_set hangup(io, SIGHUP);
  std::function<void()> await_hangup = [&] {
    hangup.async_wait([&](boost::system::error_code ec, int) {
      if (ec)
        return;
      if (log_file.empty()) {
        taskexec::detail::log(taskexec::log_level::info, "daemon", "", "",
                              "SIGHUP: no log file to reopen");
      } else {
        auto fresh = std::make_unique<std::ofstream>(log_file, std::ios::app);
        if (!*fresh) {
          taskexec::detail::log(
              taskexec::log_level::error, "daemon", "", "",
              "SIGHUP: cannot reopen log file \"" + log_file + "\"; logging on to the old one");
        } else {
          log.stream = fresh.get();
          taskexec::configure_logging(log);
          log_stream = std::move(fresh);  // the old file is closed here
          taskexec::detail::log(taskexec::log_level::info, "daemon", "", "",
                                "SIGHUP: log file reopened");
        }
      }
      await_hangup();
    });
  };
  await_hangup();

  server->start();
  boost::json::object hello{{"protocol", "taskexec-jsonrpc"},
                            {"version", std::string(taskexec::executor_version)},
                            {"socket", opts.socket_path},
                            {"pid", ::getpid()}};
  if (exits)
    hello["exit_file"] = exits->file_for(task_opts.task_id);
  std::cout << boost::json::serialize(hello) << std::endl;
  // Ready: listening, and the handshake is out.
  if (auto n = taskexec::systemd::notify(notify_socket.c_str(), "READY=1"); !n)
    taskexec::detail::log(taskexec::log_level::warning, "daemon", "", "", n.error().message);
  // Never write stdout again: whoever read the handshake may be gone.
  int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, 1);
    ::close(devnull);
  }
  io.run();
  return 0;
}
