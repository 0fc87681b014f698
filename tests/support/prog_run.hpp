// Runs a program of ours (the CLI, mostly) as a task of the test's executor,
// its stdout and stderr into pipes, and hands back its exit code and output.
#pragma once

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "harness.hpp"

namespace test_support {

struct prog_result {
  int code = -1;
  std::string out, err;
};

struct prog_run {
  temp_dir runtime;  // XDG_RUNTIME_DIR: where `run` makes its private directory
  pipe_reader out, err;
  taskexec::task_executor t{harness::get().reaper};

  boost::asio::awaitable<void> start(std::string program, std::vector<std::string> args) {
    taskexec::exec_command cmd;
    cmd.cmd = std::move(program);
    cmd.args = std::move(args);
    cmd.env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
    cmd.env.push_back("XDG_RUNTIME_DIR=" + runtime.path.string());
    cmd.stdout_fd = out.write_fd();
    cmd.stderr_fd = err.write_fd();
    auto r = co_await t.launch(cmd);
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    out.close_write();
    err.close_write();
  }
  boost::asio::awaitable<prog_result> finish() {
    prog_result r;
    r.out = co_await out.rest();
    r.err = co_await err.rest();
    r.code = (co_await t.wait())->exit_code;
    co_return r;
  }
};

}  // namespace test_support
