// taskexec-test-helper, in several modes:
//   taskexec-test-helper SCRIPT: a minimal embedded executor for tests that
//     must kill an executor: launches `sh -c SCRIPT` with the helper's own
//     stdout, then runs until killed.
//   taskexec-test-helper --zombie-leader: the main thread exits while another
//     thread runs on, so the process shows as a zombie yet is alive.
//   taskexec-test-helper --rpc SOCKET LINE: connect to SOCKET, send LINE and
//     '\n', print the first line received (used to call as another user).
//   taskexec-test-helper --remote-client DAEMON SOCKET: create_executor with
//     DAEMON at SOCKET, launch `sleep 1000` through it, print the reattach
//     config and the task's pid as one JSON line, then wait for the task
//     (so that a test can kill a client with a call pending).
//   taskexec-test-helper --fork-bomb: ignore SIGTERM, then every process
//     forks for ever, going on when fork fails (EAGAIN under pids.max).
//   taskexec-test-helper --remote-version SOCKET: connect with
//     remote_executor and print the version, or the error's code and message.
//   taskexec-test-helper --impostor SOCKET N: listen on SOCKET (as whoever
//     runs it), print "listening", then serve N connections one after the
//     other: each line received is answered as Version would be (with its
//     id), and once the client closes, the number of bytes it sent is
//     printed on a line of its own.
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

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "taskexec/child_reaper.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/task_executor.hpp"

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--fork-bomb") {
    ::signal(SIGTERM, SIG_IGN);
    for (;;)
      (void)::fork();
  }
  if (argc == 2 && std::string(argv[1]) == "--zombie-leader") {
    std::thread([] {
      for (;;)
        ::pause();
    }).detach();
    ::pthread_exit(nullptr);
  }
  if (argc == 4 && std::string(argv[1]) == "--remote-client") {
    boost::asio::io_context io;
    int rc = 1;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
          taskexec::create_options o;
          o.daemon_path = argv[2];
          o.socket_path = argv[3];
          auto created = co_await taskexec::create_executor(io.get_executor(), std::move(o));
          if (!created) {
            std::cerr << created.error().message << std::endl;
            co_return;
          }
          taskexec::exec_command cmd;
          cmd.cmd = "/bin/sleep";
          cmd.args = {"1000"};
          auto launched = co_await created->client.launch(cmd);
          if (!launched) {
            std::cerr << launched.error().message << std::endl;
            co_return;
          }
          auto line = boost::json::parse(taskexec::to_json(created->config)).as_object();
          line["task_pid"] = launched->pid;
          std::cout << boost::json::serialize(line) << std::endl;
          auto w = co_await created->client.wait();
          rc = w ? 0 : 3;
        },
        boost::asio::detached);
    io.run();
    return rc;
  }
  if (argc == 3 && std::string(argv[1]) == "--remote-version") {
    boost::asio::io_context io;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
          auto c = co_await taskexec::remote_executor::connect(io.get_executor(), argv[2]);
          if (c) {
            auto v = co_await c->version();
            std::cout << (v ? *v : v.error().message) << std::endl;
          } else
            std::cout << c.error().code.value() << " " << c.error().message << std::endl;
        },
        boost::asio::detached);
    io.run();
    return 0;
  }
  if (argc == 4 && std::string(argv[1]) == "--impostor") {
    ::signal(SIGPIPE, SIG_IGN);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[2]);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, 8) != 0) {
      std::perror("listen");
      return 1;
    }
    std::cout << "listening" << std::endl;
    for (int k = std::atoi(argv[3]); k > 0; --k) {
      int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        std::perror("accept");
        return 1;
      }
      std::size_t total = 0;
      std::string buf;
      char b[4096];
      for (ssize_t n; (n = ::read(c, b, sizeof b)) > 0;) {
        total += static_cast<std::size_t>(n);
        buf.append(b, static_cast<std::size_t>(n));
        for (auto nl = buf.find('\n'); nl != std::string::npos; nl = buf.find('\n')) {
          boost::json::object reply{{"jsonrpc", "2.0"}, {"result", {{"version", "2.0.0"}}}};
          boost::system::error_code ec;
          auto req = boost::json::parse(buf.substr(0, nl), ec);
          if (!ec && req.is_object() && req.as_object().contains("id"))
            reply["id"] = req.as_object().at("id");
          buf.erase(0, nl + 1);
          const auto line = boost::json::serialize(reply) + "\n";
          (void)!::write(c, line.data(), line.size());
        }
      }
      ::close(c);
      std::cout << total << std::endl;
    }
    return 0;
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
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);
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
