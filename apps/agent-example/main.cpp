// taskexec-agent-example: an Asio agent that embeds taskexec through the
// completion-token API (docs/embedding.md, "Completion tokens").
//
//   taskexec-agent-example [--tasks N]
//
// One io_context runs everything: a heartbeat timer, N tasks (default 100)
// launched and then awaited with a mix of completion tokens (a plain
// callback, use_future waited on another thread, deferred, use_awaitable,
// as_tuple), and, beside them, children the agent starts on its own: a
// std::system and a Boost.Process v2 child, from another thread. Every task
// is shut down and destroyed, the io_context stopped. The agent checks its
// own results (each task's exit code, each foreign child's, the heartbeat,
// no child left) and exits 1 on any discrepancy, 0 otherwise.
//
// Foreign children: the reaper (exact mode, the default) never waits for
// them nor signals them, so their exit codes must be exact.
#include <taskexec/child_reaper.hpp>
#include <taskexec/logging.hpp>
#include <taskexec/task_executor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
// Boost 1.81's Process v2 headers use boost::optional, boost::decay and
// boost::is_convertible without including them.
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
#include <boost/type_traits/is_convertible.hpp>
// clang-format off
#include <boost/process/v2/process.hpp>
// clang-format on

#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace bp = boost::process::v2;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

struct report {
  int tasks = 0;
  std::atomic<int> waited{0};         // task waits completed
  std::atomic<int> discrepancies{0};  // anything wrong
  int by_token[5] = {};
  int heartbeats = 0;

  void fail(const std::string& what) {
    std::fprintf(stderr, "DISCREPANCY: %s\n", what.c_str());
    ++discrepancies;
  }
};

const char* const token_names[5] = {"callback", "use_future", "deferred", "use_awaitable",
                                    "as_tuple"};

int expected_code(int i) {
  return i % 50;
}

taskexec::exec_command task_command(int i) {
  taskexec::exec_command c;
  c.cmd = "/bin/sh";
  // Half of them live a little, so their waits are pending for a while.
  c.args = {"-c", (i % 2 ? "sleep 0.05; exit " : "exit ") + std::to_string(expected_code(i))};
  c.env = {"PATH=/usr/bin:/bin"};
  return c;
}

void check_exit(report& r, int i, const error_code& ec, const taskexec::process_state& st) {
  if (ec)
    r.fail("task " + std::to_string(i) + ": wait failed: " + ec.message());
  else if (st.exit_code != expected_code(i) || st.signal != 0)
    r.fail("task " + std::to_string(i) + ": exit code " + std::to_string(st.exit_code) +
           ", expected " + std::to_string(expected_code(i)));
}

// The agent's own children, from a thread of its own, while the tasks run.
struct foreign_results {
  int system_status = 0;
  int system_errno = 0;
  int process_code = -1;
  error_code process_ec;
  std::string process_error;
  error_code process_start_ec;  // Boost.Process could not open the child's pidfd
};

foreign_results run_foreign_children() {
  foreign_results f;
  errno = 0;
  f.system_status = std::system("exit 7");
  f.system_errno = errno;
  try {
    asio::io_context own;  // Boost.Process needs one; the agent's is busy
    bp::process child(own, "/bin/sh", {"-c", "exit 11"});
    f.process_code = child.wait(f.process_ec);
  } catch (const boost::system::system_error& e) {
    f.process_error = e.what();
    f.process_start_ec = e.code();
  } catch (const std::exception& e) {
    f.process_error = e.what();
  }
  return f;
}

void check_foreign(report& r, const foreign_results& f) {
  // std::system: "exit 7" must come back as exit status 7.
  if (f.system_status == -1 || !WIFEXITED(f.system_status) || WEXITSTATUS(f.system_status) != 7) {
    r.fail("std::system(\"exit 7\") returned status " + std::to_string(f.system_status) +
           " (errno " + std::to_string(f.system_errno) + ")");
  }
  // Boost.Process v2: exit code 11.
  if (!f.process_error.empty()) {
    r.fail("Boost.Process child: " + f.process_error);
  } else if (f.process_ec || f.process_code != 11) {
    r.fail("Boost.Process child: code " + std::to_string(f.process_code) + ", " +
           f.process_ec.message());
  }
}

// Children of this process still in the process table (zombies included).
std::vector<std::string> children_left() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(t.path() / "children");
    std::string pid;
    while (in >> pid)
      out.push_back(pid);
  }
  return out;
}

asio::awaitable<void> agent(asio::io_context& io, taskexec::child_reaper& reaper, report& r) {
  // The heartbeat: an agent's own work on the same io_context.
  bool stopping = false;
  asio::steady_timer heartbeat(io);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (!stopping) {
          heartbeat.expires_after(20ms);
          auto t = co_await heartbeat.async_wait(asio::as_tuple(asio::deferred));
          (void)t;
          ++r.heartbeats;
        }
      },
      asio::detached);

  // Launch every task (the default token, deferred, awaited here).
  std::vector<std::unique_ptr<taskexec::task_executor>> tasks;
  tasks.reserve(static_cast<std::size_t>(r.tasks));
  for (int i = 0; i < r.tasks; ++i) {
    tasks.push_back(std::make_unique<taskexec::task_executor>(
        reaper, taskexec::task_executor_options{.task_id = "agent-" + std::to_string(i)}));
    taskexec::diagnostics diag;
    auto launched =
        co_await tasks.back()->async_launch(task_command(i), diag, asio::as_tuple(asio::deferred));
    if (std::get<0>(launched))
      r.fail("task " + std::to_string(i) + ": launch failed: " + diag.message());
  }

  // Beside them, the agent's own children, from another thread.
  std::future<foreign_results> foreign = std::async(std::launch::async, run_foreign_children);

  // Await every task, each with one of five tokens.
  int completed = 0;  // on the io thread
  asio::steady_timer all_done(io, asio::steady_timer::time_point::max());
  auto one_done = [&] {
    if (++completed == r.tasks)
      all_done.cancel();
  };
  std::vector<std::pair<int, std::future<taskexec::process_state>>> futures;
  for (int i = 0; i < r.tasks; ++i) {
    auto& t = *tasks[static_cast<std::size_t>(i)];
    const int kind = i % 5;
    ++r.by_token[kind];
    switch (kind) {
      case 0:  // a plain callback
        t.async_wait([&, i](error_code ec, taskexec::process_state st) {
          check_exit(r, i, ec, st);
          one_done();
        });
        break;
      case 1:  // use_future, waited for on another thread (below)
        futures.emplace_back(i, t.async_wait(asio::use_future));
        break;
      case 2:  // deferred (the default token), co_awaited
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
              error_code ec;
              taskexec::process_state st;
              try {
                st = co_await t.async_wait();
              } catch (const boost::system::system_error& e) {
                ec = e.code();
              }
              check_exit(r, i, ec, st);
              one_done();
            },
            asio::detached);
        break;
      case 3:  // use_awaitable
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
              error_code ec;
              taskexec::process_state st;
              try {
                st = co_await t.async_wait(asio::use_awaitable);
              } catch (const boost::system::system_error& e) {
                ec = e.code();
              }
              check_exit(r, i, ec, st);
              one_done();
            },
            asio::detached);
        break;
      default:  // as_tuple: no exceptions
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
              auto res = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
              check_exit(r, i, std::get<0>(res), std::get<1>(res));
              one_done();
            },
            asio::detached);
        break;
    }
  }
  std::thread future_waiter([&] {
    for (auto& [i, f] : futures) {
      error_code ec;
      taskexec::process_state st;
      if (f.wait_for(60s) != std::future_status::ready) {
        ec = make_error_code(taskexec::errc::timed_out);
      } else {
        try {
          st = f.get();
        } catch (const boost::system::system_error& e) {
          ec = e.code();
        }
      }
      // Results are checked on the io thread, like the others.
      asio::post(io, [&, i = i, ec, st] {
        check_exit(r, i, ec, st);
        one_done();
      });
    }
  });
  if (completed < r.tasks) {
    auto w = co_await all_done.async_wait(asio::as_tuple(asio::deferred));
    (void)w;
  }
  future_waiter.join();
  r.waited = completed;

  // Shut every task down (its sweep) and destroy it.
  for (auto& t : tasks) {
    taskexec::diagnostics diag;
    auto down = co_await t->async_shutdown("SIGTERM", 1s, diag, asio::as_tuple(asio::deferred));
    if (std::get<0>(down))
      r.fail("shutdown of " + t->task_id() + ": " + diag.message());
    auto gone = co_await t->async_destroy(asio::as_tuple(asio::deferred));
    if (std::get<0>(gone))
      r.fail("destroy of " + t->task_id() + ": " + std::get<0>(gone).message());
  }
  tasks.clear();

  // The foreign children's results (bounded).
  asio::steady_timer poll(io);
  for (int i = 0; i < 600 && foreign.wait_for(0s) != std::future_status::ready; ++i) {
    poll.expires_after(100ms);
    co_await poll.async_wait(asio::deferred);
  }
  if (foreign.wait_for(0s) != std::future_status::ready)
    r.fail("the foreign children did not end within 60 s");
  else
    check_foreign(r, foreign.get());

  stopping = true;
  heartbeat.cancel();
}

}  // namespace

int main(int argc, char** argv) {
  report r;
  r.tasks = 100;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tasks" && i + 1 < argc) {
      r.tasks = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: taskexec-agent-example [--tasks N]\n");
      return 2;
    }
  }
  if (r.tasks < 1 || r.tasks > 1000) {
    std::fprintf(stderr, "--tasks: 1..1000\n");
    return 2;
  }
  taskexec::set_logger({.level = taskexec::log_level::warning});

  asio::io_context io;
  // Before any thread: it blocks SIGCHLD, which threads inherit.
  taskexec::child_reaper reaper(io.get_executor());

  bool finished = false;
  asio::co_spawn(io, agent(io, reaper, r), [&](const std::exception_ptr& e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        r.fail(std::string("the agent threw: ") + x.what());
      }
    }
    finished = true;
    io.stop();  // the reaper keeps a wait pending: stop the io_context
  });
  // A bound on the whole run.
  asio::steady_timer deadline(io, 120s);
  deadline.async_wait([&](error_code ec) {
    if (!ec) {
      r.fail("the agent did not finish within 120 s");
      io.stop();
    }
  });
  io.run();
  if (!finished)
    return 1;

  if (r.waited != r.tasks)
    r.fail(std::to_string(r.waited) + " of " + std::to_string(r.tasks) + " waits completed");
  if (r.heartbeats < 1)
    r.fail("no heartbeat");
  if (auto left = children_left(); !left.empty())
    r.fail(std::to_string(left.size()) + " children left, first pid " + left.front());

  std::printf("tasks %d, waited %d (", r.tasks, r.waited.load());
  for (int k = 0; k < 5; ++k)
    std::printf("%s%s %d", k ? ", " : "", token_names[k], r.by_token[k]);
  std::printf("), heartbeats %d, foreign children exact, discrepancies %d\n", r.heartbeats,
              r.discrepancies.load());
  return r.discrepancies == 0 ? 0 : 1;
}
