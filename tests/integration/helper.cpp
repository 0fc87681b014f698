// taskexec-test-helper, two modes:
//   taskexec-test-helper SCRIPT: a minimal embedded executor for tests that
//     must kill an executor: launches `sh -c SCRIPT` with the helper's own
//     stdout, then runs until killed.
//   taskexec-test-helper --zombie-leader: the main thread exits while another
//     thread runs on, so the process shows as a zombie yet is alive.
//   taskexec-test-helper --rpc SOCKET LINE: connect to SOCKET, send LINE and
//     '\n', print the first line received (used to call as another user).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "taskexec/child_reaper.hpp"
#include "taskexec/task_executor.hpp"

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--zombie-leader") {
    std::thread([] {
      for (;;)
        ::pause();
    }).detach();
    ::pthread_exit(nullptr);
  }
  if (argc == 4 && std::string(argv[1]) == "--rpc") {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[2]);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::perror("connect");
      return 1;
    }
    // The daemon may answer (a refusal) and close before reading: a failed
    // write is no reason not to read what it said.
    ::signal(SIGPIPE, SIG_IGN);
    std::string line = std::string(argv[3]) + "\n";
    (void)!::write(fd, line.data(), line.size());
    std::string got;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n')
      got.push_back(c);
    std::cout << got << std::endl;
    return 0;
  }
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
