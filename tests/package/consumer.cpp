// A program built against the installed taskexec package by
// tests/package/check_package.sh, three ways: (a) CMake with Boost.Log
// (shared) found first and a deprecated Asio call, (b) CMake, every library
// static but glibc, (c) plain g++ with pkg-config. It launches /bin/true
// through a task_executor and exits 0 when the task exited with code 0.
#include <taskexec/child_reaper.hpp>
#include <taskexec/logging.hpp>
#include <taskexec/task_executor.hpp>
#include <taskexec/version.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#ifdef CONSUMER_BOOST_LOG
#include <boost/log/trivial.hpp>
#endif

#include <exception>
#include <iostream>

namespace asio = boost::asio;

asio::awaitable<void> run_true(taskexec::child_reaper& reaper, int& code) {
  taskexec::task_executor task(reaper, {.task_id = "consumer"});
  taskexec::exec_command cmd;
  cmd.cmd = "/bin/true";
  cmd.env = {"PATH=/usr/bin:/bin"};
  auto started = co_await task.launch(cmd);
  if (!started) {
    std::cerr << "launch: " << started.error().message << '\n';
    co_return;
  }
  auto state = co_await task.wait();
  if (!state) {
    std::cerr << "wait: " << state.error().message << '\n';
    co_return;
  }
  code = state->exit_code;
}

int main() {
#ifdef CONSUMER_BOOST_LOG
  // The program's own Boost.Log, and the library's records forwarded to it.
  taskexec::set_logger(
      {.level = taskexec::log_level::warning, .sink = [](const taskexec::log_record& r) {
         BOOST_LOG_TRIVIAL(warning) << r.component << ": " << r.message;
       }});
  BOOST_LOG_TRIVIAL(info) << "consumer with Boost.Log";
#endif
  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor());
  int code = -1;
  bool posted = false;
#ifdef CONSUMER_DEPRECATED_ASIO
  io.post([&] { posted = true; });  // deprecated: needs BOOST_ASIO_NO_DEPRECATED unset
#else
  posted = true;
#endif
  asio::co_spawn(io, run_true(reaper, code), [&](const std::exception_ptr& e) {
    if (e)
      std::rethrow_exception(e);
    io.stop();  // the reaper keeps run() busy
  });
  io.run();
  std::cout << "taskexec " << taskexec::library_version << " (protocol "
            << taskexec::executor_version << "): /bin/true exited " << code << '\n';
  return code == 0 && posted ? 0 : 1;
}
