// taskexec-embed-example: supervise one task from an Asio program.
//
//   taskexec-embed-example [--grace-ms N] [--timeout-ms N] [-- CMD ARGS...]
//
// Launches CMD (default: a short demo script) with its output in a fresh task
// directory, waits for it (or, past --timeout-ms, shuts it down with SIGTERM
// and --grace-ms of grace), and prints the exit state and the task's output.
// Exits with the task's exit code.
#include <taskexec/child_reaper.hpp>
#include <taskexec/logging.hpp>
#include <taskexec/task_executor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

asio::awaitable<int> supervise(taskexec::child_reaper& reaper, taskexec::exec_command cmd,
                               std::chrono::milliseconds timeout, std::chrono::milliseconds grace) {
  taskexec::task_executor task(reaper, {.task_id = "demo"});

  // Completion tokens (docs/embedding.md): as_tuple gives the error code
  // without a throw; diagnostics hold the error's message.
  taskexec::diagnostics diag;
  auto started = co_await task.async_launch(cmd, diag, asio::as_tuple(asio::deferred));
  if (std::get<0>(started)) {
    std::cerr << "launch failed: " << diag.message() << '\n';
    co_return 127;
  }
  std::cout << "launched " << cmd.cmd << " as pid " << std::get<1>(started).pid << '\n';

  // Wait for the exit, or for the timeout: whichever comes first cancels the other.
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto first = co_await (task.async_wait(asio::as_tuple(asio::use_awaitable)) ||
                         timer.async_wait(asio::use_awaitable));
  if (first.index() == 1) {
    std::cout << "still running after " << timeout.count() << " ms: shutting down\n";
    auto down =
        co_await task.async_shutdown("SIGTERM", grace, diag, asio::as_tuple(asio::deferred));
    if (std::get<0>(down))
      std::cerr << "shutdown: " << diag.message() << '\n';
  }

  auto waited = co_await task.async_wait(diag, asio::as_tuple(asio::deferred));
  if (std::get<0>(waited)) {
    std::cerr << "wait failed: " << diag.message() << '\n';
    co_return 1;
  }
  const taskexec::process_state state = std::get<1>(waited);
  std::cout << "exited: code " << state.exit_code << ", signal " << state.signal << '\n';
  // Also kill whatever the task left behind (its group, daemonised children).
  auto cleanup =
      co_await task.async_shutdown("SIGTERM", grace, diag, asio::as_tuple(asio::deferred));
  if (std::get<0>(cleanup))
    std::cerr << "cleanup: " << diag.message() << '\n';
  co_return state.exit_code;
}

int main(int argc, char** argv) {
  std::chrono::milliseconds grace = 2000ms, timeout = 10000ms;
  taskexec::exec_command cmd;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--grace-ms" && i + 1 < argc) {
      grace = std::chrono::milliseconds(std::atoll(argv[++i]));
    } else if (a == "--timeout-ms" && i + 1 < argc) {
      timeout = std::chrono::milliseconds(std::atoll(argv[++i]));
    } else if (a == "--") {
      if (++i < argc)
        cmd.cmd = argv[i];
      for (++i; i < argc; ++i)
        cmd.args.push_back(argv[i]);
    } else {
      std::cerr
          << "usage: taskexec-embed-example [--grace-ms N] [--timeout-ms N] [-- CMD ARGS...]\n";
      return 2;
    }
  }
  if (cmd.cmd.empty()) {
    cmd.cmd = "/bin/sh";
    cmd.args = {"-c",
                "echo hello from $NAME in $(pwd); for i in 1 2 3; do echo tick $i; sleep 0.1; "
                "done; exit 3"};
  }

  // A fresh task directory with the task's output in it.
  char dir_template[] = "/tmp/taskexec-demo-XXXXXX";
  if (!::mkdtemp(dir_template)) {
    std::perror("mkdtemp");
    return 1;
  }
  cmd.task_dir = dir_template;
  cmd.stdout_path = cmd.task_dir + "/stdout.log";
  cmd.stderr_path = cmd.task_dir + "/stderr.log";
  cmd.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "NAME=taskexec"};

  taskexec::log_level lvl = taskexec::log_level::info;
  if (const char* l = std::getenv("TASKEXEC_LOG_LEVEL"))
    taskexec::parse_log_level(l, lvl);
  taskexec::set_logger({.level = lvl});  // the library logs to stderr; see logging.hpp
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor());  // before any thread starts

  int code = 1;
  asio::co_spawn(io, supervise(reaper, cmd, timeout, grace),
                 [&](const std::exception_ptr& e, int c) {
                   if (e)
                     std::rethrow_exception(e);
                   code = c;
                   io.stop();  // the reaper waits on its signalfd for as long as it lives
                 });
  io.run();

  std::ifstream out(cmd.stdout_path);
  std::cout << "--- " << cmd.stdout_path << '\n' << out.rdbuf();
  std::filesystem::remove_all(cmd.task_dir);
  return code;
}
