// taskexec-test-helper: a minimal embedded executor for tests that must kill
// an executor: launches `sh -c SCRIPT` with the helper's own stdout, then
// runs until killed.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <iostream>

#include "taskexec/child_reaper.hpp"
#include "taskexec/task_executor.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: taskexec-test-helper SCRIPT\n";
    return 2;
  }
  boost::asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor());
  taskexec::task_executor task(reaper);
  taskexec::exec_command cmd;
  cmd.cmd = "/bin/sh";
  cmd.args = {"-c", argv[1]};
  cmd.stdout_fd = 1;
  if (const char* user = std::getenv("TASKEXEC_HELPER_USER"))
    cmd.user = user;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        auto r = co_await task.launch(cmd);
        if (!r) {
          std::cerr << r.error().message << '\n';
          std::exit(1);
        }
        co_await task.wait();
        std::exit(0);
      },
      boost::asio::detached);
  io.run();
}
