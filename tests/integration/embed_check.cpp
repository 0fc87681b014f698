// taskexec-embed-check: an embedding program under load (issue 18, items 1
// and 2). One io_context run by --threads threads; --launches tasks
// launched by --concurrency coroutines (every --shutdown-every'th one a
// `sleep 30` that is shut down, so that the shutdown sweep runs), while other
// threads of the same program run children of their own in a loop:
// std::system, popen/pclose and Boost.Process v2, plus std::system children
// that live across the shutdowns ("sleep 0.2; exit 5").
//
//   taskexec-embed-check [--threads N] [--launches L] [--concurrency C]
//                        [--foreign F] [--shutdown-every K]
//                        [--mode exact|adopt] [--timeout-s S]
//
// Prints one line of figures and exits 0 when every task's wait completed
// with its own exit code, every foreign child's exit code came back right
// (none lost to ECHILD, none signalled), and nothing was left behind;
// 1 otherwise, 2 on a usage error. Every wait is bounded (--timeout-s for
// the whole run, 60 s per task wait) and every loop counted: it never forks
// more than L tasks and 4 x F foreign children (F more per long-lived
// thread while tasks remain, at most 4 x F).
//
// Built against the library before the reaper had modes (a check of old
// code), define EMBED_CHECK_OLD_API: --mode is then ignored.
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
// Boost 1.81's v2 headers use boost::optional and boost::decay unincluded.
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
// clang-format off
#include <boost/process/v2/process.hpp>
// clang-format on
#if defined(__SANITIZE_ADDRESS__)
#define EMBED_CHECK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMBED_CHECK_ASAN 1
#endif
#endif
#if EMBED_CHECK_ASAN
#include <boost/process/v2/posix/vfork_launcher.hpp>
#endif
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "taskexec/child_reaper.hpp"
#include "taskexec/task_executor.hpp"

namespace asio = boost::asio;
namespace bp2 = boost::process::v2;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

namespace {

struct options {
  int threads = 1;
  int launches = 200;
  int concurrency = 8;
  int foreign = 100;
  int shutdown_every = 10;
  bool adopt = false;
  int timeout_s = 240;
};

struct figures {
  std::atomic<int> launched{0}, launch_failed{0}, completed{0}, task_wrong{0}, wait_timed_out{0};
  std::atomic<int> shutdowns{0}, shutdown_failed{0};
  std::atomic<int> foreign{0}, foreign_lost{0}, foreign_wrong{0}, foreign_signalled{0};
};

taskexec::exec_command sh(const std::string& script) {
  taskexec::exec_command c;
  c.cmd = "/bin/sh";
  c.args = {"-c", script};
  c.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  return c;
}

// One foreign child's raw status against the code it should have.
void judge(figures& f, int rc, int status, int expected) {
  ++f.foreign;
  if (rc < 0) {
    ++f.foreign_lost;  // ECHILD: somebody else reaped it
  } else if (WIFSIGNALED(status)) {
    ++f.foreign_signalled;
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != expected) {
    ++f.foreign_wrong;
  }
}

void run_system(figures& f, int i) {
  const int code = 1 + i % 60;
  const std::string cmd = "exit " + std::to_string(code);
  const int st = std::system(cmd.c_str());
  judge(f, st == -1 ? -1 : 0, st, code);
}

void run_long_system(figures& f) {
  const int st = std::system("sleep 0.2; exit 5");
  judge(f, st == -1 ? -1 : 0, st, 5);
}

void run_popen(figures& f, int i) {
  const int code = 61 + i % 60;
  const std::string cmd = "echo x; exit " + std::to_string(code);
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    judge(f, -1, 0, code);
    return;
  }
  char buf[64];
  while (::fgets(buf, sizeof buf, p) != nullptr) {
  }
  const int st = ::pclose(p);
  judge(f, st == -1 ? -1 : 0, st, code);
}

void run_process_v2(figures& f, int i) {
  const int code = 121 + i % 60;
  asio::io_context ctx;
  try {
    const std::string script = "exit " + std::to_string(code);
    boost::system::error_code ec;
#if EMBED_CHECK_ASAN
    // GCC 12's AddressSanitizer takes none of its locks around fork(): v2's
    // default launcher allocates in the fork child (asio's notify_fork), and
    // when another thread held ASan's stack-depot spin lock at the fork, the
    // child spins forever and so does this wait (it hung the one-thread case
    // in CI, and 1 run in 28 here). A vfork child shares our memory, so the
    // holder releases the lock. Every other build uses the default launcher,
    // the one agents use; the reaper sees the same child either way.
    const std::vector<std::string> args = {"-c", script};
    bp2::process proc = bp2::posix::vfork_launcher()(asio::any_io_executor(ctx.get_executor()), ec,
                                                     "/bin/sh", args);
    if (ec) {
      judge(f, -1, 0, code);
      return;
    }
#else
    bp2::process proc(ctx, "/bin/sh", {"-c", script});
#endif
    const int got = proc.wait(ec);
    if (ec) {
      judge(f, -1, 0, code);
      return;
    }
    // v2's wait gives the exit code, or 128+signal style codes for a
    // signal: rebuild a raw status.
    judge(f, 0, (got & 0xff) << 8, code);
  } catch (const std::exception&) {
    judge(f, -1, 0, code);
  }
}

asio::awaitable<void> task_worker(taskexec::child_reaper& reaper, const options& o, figures& f,
                                  std::atomic<int>& next) {
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    const int i = next++;
    if (i >= o.launches)
      co_return;
    const bool stop_it = o.shutdown_every > 0 && i % o.shutdown_every == o.shutdown_every - 1;
    const int code = i % 100;
    taskexec::task_executor task(reaper, {.task_id = "embed-check-" + std::to_string(i)});
    // (Named: no temporary may span a co_await with GCC 12.)
    taskexec::exec_command cmd = stop_it ? sh("exec sleep 30") : sh("exit " + std::to_string(code));
    auto started = co_await task.launch(std::move(cmd));
    if (!started) {
      ++f.launch_failed;
      std::cerr << "launch " << i << ": " << started.error().message << '\n';
      continue;
    }
    ++f.launched;
    if (stop_it) {
      auto down = co_await task.shutdown("SIGTERM", 0ms);
      ++f.shutdowns;
      if (!down) {
        ++f.shutdown_failed;
        std::cerr << "shutdown " << i << ": " << down.error().message << '\n';
      }
    }
    asio::steady_timer bound(ex, 60s);
    auto waited = task.wait();
    auto expired = bound.async_wait(asio::as_tuple(asio::use_awaitable));
    auto first = co_await (std::move(waited) || std::move(expired));
    if (first.index() == 1) {
      ++f.wait_timed_out;
      continue;
    }
    auto& r = std::get<0>(first);
    ++f.completed;
    const bool right = r && (stop_it ? r->signal != 0 : r->signal == 0 && r->exit_code == code);
    if (!right) {
      ++f.task_wrong;
      std::cerr << "task " << i << ": "
                << (r ? "code " + std::to_string(r->exit_code) + " signal " +
                            std::to_string(r->signal)
                      : r.error().message)
                << '\n';
    }
  }
}

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto num = [&](int& out) {
      if (i + 1 >= argc)
        return false;
      out = std::atoi(argv[++i]);
      return true;
    };
    bool ok = true;
    if (a == "--threads")
      ok = num(o.threads);
    else if (a == "--launches")
      ok = num(o.launches);
    else if (a == "--concurrency")
      ok = num(o.concurrency);
    else if (a == "--foreign")
      ok = num(o.foreign);
    else if (a == "--shutdown-every")
      ok = num(o.shutdown_every);
    else if (a == "--timeout-s")
      ok = num(o.timeout_s);
    else if (a == "--mode" && i + 1 < argc) {
      const std::string m = argv[++i];
      if (m != "exact" && m != "adopt")
        return false;
      o.adopt = m == "adopt";
    } else
      ok = false;
    if (!ok)
      return false;
  }
  return o.threads >= 1 && o.threads <= 64 && o.launches >= 0 && o.launches <= 5000 &&
         o.concurrency >= 1 && o.concurrency <= 256 && o.foreign >= 0 && o.foreign <= 5000 &&
         o.timeout_s > 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) {
    std::cerr << "usage: taskexec-embed-check [--threads N] [--launches L] [--concurrency C] "
                 "[--foreign F] [--shutdown-every K] [--mode exact|adopt] [--timeout-s S]\n";
    return 2;
  }
  const auto began = std::chrono::steady_clock::now();
  asio::io_context io(o.threads);
  // Before any thread: it blocks SIGCHLD, which every thread inherits.
#ifdef EMBED_CHECK_OLD_API
  taskexec::child_reaper reaper(io.get_executor());
#else
  taskexec::child_reaper reaper(io.get_executor(), o.adopt ? taskexec::reaper_mode::adopt_orphans
                                                           : taskexec::reaper_mode::exact);
#endif
  figures f;

  std::mutex mu;
  std::condition_variable cv;
  int workers_left = o.concurrency;
  std::atomic<bool> tasks_done{false};
  std::atomic<int> next{0};
  for (int w = 0; w < o.concurrency; ++w) {
    asio::co_spawn(io, task_worker(reaper, o, f, next), [&](const std::exception_ptr& e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& err) {
          std::cerr << "worker: " << err.what() << '\n';
        }
      }
      std::lock_guard lk(mu);
      if (--workers_left == 0) {
        tasks_done = true;
        cv.notify_all();
      }
    });
  }
  std::vector<std::thread> runners;
  runners.reserve(static_cast<std::size_t>(o.threads));
  for (int t = 0; t < o.threads; ++t)
    runners.emplace_back([&io] { io.run(); });

  // Foreign children: F of each kind, then (the long-lived ones) more while
  // tasks remain, up to 4 x F in all per thread.
  std::vector<std::thread> foreign;
  foreign.emplace_back([&] {
    for (int i = 0; i < o.foreign; ++i)
      run_system(f, i);
  });
  foreign.emplace_back([&] {
    for (int i = 0; i < o.foreign; ++i)
      run_popen(f, i);
  });
  foreign.emplace_back([&] {
    for (int i = 0; i < o.foreign; ++i)
      run_process_v2(f, i);
  });
  foreign.emplace_back([&] {
    for (int i = 0; i < 4 * o.foreign && (i < o.foreign / 4 || !tasks_done); ++i)
      run_long_system(f);
  });

  bool in_time = false;
  {
    std::unique_lock lk(mu);
    in_time = cv.wait_for(lk, std::chrono::seconds(o.timeout_s), [&] { return workers_left == 0; });
  }
  // Out of time: the long-lived foreign loop stops too, so that the figures
  // (how far the tasks got) are printed within a bound, not 4 x F later.
  tasks_done = true;
  for (auto& t : foreign)
    t.join();
  const std::size_t watched = reaper.watched_count();
  io.stop();
  for (auto& t : runners)
    t.join();

  const bool ok = in_time && f.launched == o.launches && f.completed == o.launches &&
                  f.task_wrong == 0 && f.wait_timed_out == 0 && f.shutdown_failed == 0 &&
                  f.foreign_lost == 0 && f.foreign_wrong == 0 && f.foreign_signalled == 0;
  std::cout << "threads " << o.threads << " launches " << o.launches << " launched " << f.launched
            << " launch_failed " << f.launch_failed << " completed " << f.completed
            << " task_wrong " << f.task_wrong << " wait_timed_out " << f.wait_timed_out
            << " shutdowns " << f.shutdowns << " shutdown_failed " << f.shutdown_failed
            << " foreign " << f.foreign << " foreign_lost " << f.foreign_lost << " foreign_wrong "
            << f.foreign_wrong << " foreign_signalled " << f.foreign_signalled << " in_time "
            << in_time << " watched_left " << watched << " seconds "
            << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                began)
                   .count()
            << " result " << (ok ? "ok" : "FAILED") << std::endl;
  if (!in_time)
    std::_Exit(1);  // tasks still pending: nothing to wait for in destructors
  return ok ? 0 : 1;
}
