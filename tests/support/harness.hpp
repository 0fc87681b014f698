// Shared by the integration and privileged tiers: one io_context and the one
// child_reaper of the test process, a runner that drives a coroutine to
// completion with a generous upper bound, and probes of the process table.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "taskexec/child_reaper.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/task_executor.hpp"
#include "test_paths.hpp"

namespace test_support {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct harness {
  asio::io_context io;
  taskexec::child_reaper reaper{io.get_executor(), taskexec::reaper_mode::adopt_orphans};

  static harness& get() {
    static harness h;
    return h;
  }
};

/// Global fixture: creates the reaper before anything forks.
struct global_setup {
  global_setup() {
    taskexec::log_level lvl = taskexec::log_level::warning;
    if (const char* l = std::getenv("TASKEXEC_LOG_LEVEL"))
      taskexec::parse_log_level(l, lvl);
    taskexec::set_logger({.level = lvl});
    harness::get();
  }
};

/// Run `make()`'s coroutine on the harness io_context until it completes, or
/// fail the test after `bound` (an upper bound for a hang, not a timing check).
template <class MakeAwaitable>
void run(MakeAwaitable make, std::chrono::seconds bound = 120s) {
  auto& io = harness::get().io;
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(io, make(), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done) {
    if (std::chrono::steady_clock::now() > deadline) {
      BOOST_FAIL("the test coroutine did not complete within " << bound.count() << " s");
    }
    io.run_one_for(100ms);
  }
  if (error)
    std::rethrow_exception(error);
}

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char t[] = "/tmp/taskexec-test-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& content, mode_t mode = 0644) {
  std::ofstream(path) << content;
  ::chmod(path.c_str(), mode);
}

/// A pipe whose write end a task gets as stdout (exec_command.stdout_fd) and
/// whose read end the test reads asynchronously: the way tests learn that a
/// task reached a point (no sleeps).
class pipe_reader {
 public:
  pipe_reader() : sd_(harness::get().io) {
    int p[2];
    BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    sd_.assign(p[0]);
    write_fd_ = p[1];
  }
  ~pipe_reader() { close_write(); }
  int write_fd() const { return write_fd_; }
  /// Call after launch: the task holds its own copy.
  void close_write() {
    if (write_fd_ >= 0)
      ::close(write_fd_);
    write_fd_ = -1;
  }
  asio::awaitable<std::string> line() {
    auto [ec, n] =
        co_await asio::async_read_until(sd_, buf_, '\n', asio::as_tuple(asio::use_awaitable));
    if (ec)
      co_return std::string();
    std::string l(asio::buffers_begin(buf_.data()),
                  asio::buffers_begin(buf_.data()) + static_cast<long>(n) - 1);
    buf_.consume(n);
    co_return l;
  }
  /// Everything until EOF (every writer closed).
  asio::awaitable<std::string> rest() {
    auto [ec, n] = co_await asio::async_read(sd_, buf_, asio::as_tuple(asio::use_awaitable));
    (void)n;
    std::string all(asio::buffers_begin(buf_.data()), asio::buffers_end(buf_.data()));
    buf_.consume(buf_.size());
    co_return all;
  }

 private:
  asio::posix::stream_descriptor sd_;
  asio::streambuf buf_;
  int write_fd_ = -1;
};

/// Wait until `pid` has exited (pidfd readable), up to `bound`. True if it did.
inline asio::awaitable<bool> wait_gone(int pid, std::chrono::milliseconds bound = 30000ms) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0)
    co_return true;  // already reaped
  asio::posix::stream_descriptor sd(co_await asio::this_coro::executor, fd);
  asio::steady_timer timer(co_await asio::this_coro::executor, bound);
  bool gone = false;
  timer.async_wait([&](boost::system::error_code ec) {
    if (!ec)
      sd.cancel();
  });
  auto [ec] = co_await sd.async_wait(asio::posix::stream_descriptor::wait_read,
                                     asio::as_tuple(asio::use_awaitable));
  gone = !ec;
  timer.cancel();
  co_return gone;
}

/// Wait until the reaper has reaped at least `target` children in total.
inline asio::awaitable<bool> wait_total_reaped(std::uint64_t target,
                                               std::chrono::milliseconds bound = 30000ms) {
  auto& reaper = harness::get().reaper;
  if (reaper.total_reaped() >= target)
    co_return true;
  asio::steady_timer timer(co_await asio::this_coro::executor, bound);
  auto sub = reaper.subscribe([&](int, int, bool) {
    if (reaper.total_reaped() >= target)
      timer.cancel();
  });
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  sub.reset();
  co_return reaper.total_reaped() >= target;
}

/// Wait until `pid`, a child of ours (re-parented to us or not), has been
/// reaped by the harness's reaper, up to `bound`. True if it was. wait_gone
/// says a process exited (its pidfd is readable as soon as it is a zombie);
/// this waits for the reap that follows.
inline asio::awaitable<bool> wait_reaped(int pid, std::chrono::milliseconds bound = 30000ms) {
  auto& reaper = harness::get().reaper;
  auto reaped = [pid] {
    auto st = taskexec::detail::read_proc_stat(pid);
    return !st || st->ppid != ::getpid();
  };
  if (reaped())
    co_return true;
  asio::steady_timer timer(co_await asio::this_coro::executor, bound);
  auto sub = reaper.subscribe([&](int p, int, bool) {
    if (p == pid)
      timer.cancel();
  });
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  sub.reset();
  co_return reaped();
}

/// Zombie children of this process (should be none after any test).
inline std::vector<int> zombie_children() {
  std::vector<int> out;
  const int me = ::getpid();
  for (const auto& p : taskexec::detail::scan_processes()) {
    if (p.ppid == me && p.state == 'Z')
      out.push_back(p.pid);
  }
  return out;
}

/// Live (non-zombie) children of this process.
inline std::vector<int> live_children() {
  std::vector<int> out;
  const int me = ::getpid();
  for (const auto& p : taskexec::detail::scan_processes()) {
    if (p.ppid == me && p.state != 'Z')
      out.push_back(p.pid);
  }
  return out;
}

inline bool alive(int pid) {
  auto st = taskexec::detail::read_proc_stat(pid);
  return st && st->state != 'Z';
}

/// Arguments built outside the coroutines (GCC 12 miscompiles braced lists
/// of strings in a coroutine frame).
template <class... A>
std::vector<std::string> argv_of(A... a) {
  return {std::string(a)...};
}

inline taskexec::exec_command sh(const std::string& script) {
  taskexec::exec_command c;
  c.cmd = "/bin/sh";
  c.args = {"-c", script};
  c.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  return c;
}

/// Launch `cmd` with stdout into a pipe; return everything the task wrote
/// (and its exit code through `exit_code`).
inline asio::awaitable<std::string> output_of(taskexec::exec_command cmd,
                                              int* exit_code = nullptr) {
  pipe_reader out;
  cmd.stdout_fd = out.write_fd();
  taskexec::task_executor t(harness::get().reaper);
  auto started = co_await t.launch(std::move(cmd));
  BOOST_REQUIRE_MESSAGE(started, "launch failed: " << (started ? "" : started.error().message));
  out.close_write();
  auto text = co_await out.rest();
  auto st = co_await t.wait();
  BOOST_REQUIRE(st);
  if (exit_code)
    *exit_code = st->exit_code;
  co_return text;
}

/// Launch `sh -c script` on `t` with stdout into `out`; read `extra` lines
/// into `lines`, then require the line "ready". Returns the pid.
inline asio::awaitable<int> launch_ready(taskexec::task_executor& t, pipe_reader& out,
                                         const std::string& script,
                                         std::vector<std::string>* lines = nullptr, int extra = 0) {
  auto cmd = sh(script);
  cmd.stdout_fd = out.write_fd();
  auto st = co_await t.launch(cmd);
  BOOST_REQUIRE_MESSAGE(st, "launch: " << (st ? "" : st.error().message));
  out.close_write();
  for (int i = 0; i < extra; ++i)
    lines->push_back(co_await out.line());
  BOOST_REQUIRE_EQUAL(co_await out.line(), "ready");
  co_return st->pid;
}

/// Run the test helper (an embedded executor of its own) as our task, its
/// task running as `user` (empty: unchanged); SIGKILL the helper and require
/// that its task dies too (PR_SET_PDEATHSIG) and nothing is left.
inline asio::awaitable<void> check_task_dies_with_its_executor(const std::string& user) {
  taskexec::task_executor helper(harness::get().reaper);
  pipe_reader out;
  taskexec::exec_command cmd;
  cmd.cmd = TASKEXEC_TEST_HELPER;
  cmd.args = {"id -un; echo $$; exec sleep 1000"};
  cmd.env = {"PATH=/usr/bin:/bin"};
  if (!user.empty())
    cmd.env.push_back("TASKEXEC_HELPER_USER=" + user);
  cmd.stdout_fd = out.write_fd();
  BOOST_REQUIRE(co_await helper.launch(cmd));
  out.close_write();
  const auto who = co_await out.line();
  if (!user.empty())
    BOOST_TEST(who == user);
  const int grandchild = std::stoi(co_await out.line());
  BOOST_REQUIRE(alive(grandchild));
  BOOST_TEST((co_await helper.signal(SIGKILL)).has_value());
  BOOST_TEST((co_await helper.wait())->signal == SIGKILL);
  BOOST_TEST(co_await wait_gone(grandchild));
  BOOST_TEST((co_await helper.shutdown("SIGKILL", 0ms)).has_value());
  BOOST_TEST(zombie_children().empty());
}

}  // namespace test_support
