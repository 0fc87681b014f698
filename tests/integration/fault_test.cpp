// Faults around a daemon (docs/security.md, "How it is tested"): the daemon
// stopped and continued, a full disk and a FIFO without a reader for the
// task's output, the descriptor limit reached while accepting and while
// launching, a task that ignores SIGTERM. Each ends with the right answer,
// the daemon still serving, and nothing left behind. (Clients killed at each
// point of a call and a stream: taskexec-stress faults, stress_test.cpp;
// pids.max, fork bombs, a cgroup removed: tests/privileged/fault_test.cpp.)
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "taskexec/detail/proc.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

int daemon_pid(const daemon_process& d) {
  return static_cast<int>(d.hello.at("pid").as_int64());
}

// The descriptor number the process's next open() would get.
rlim_t lowest_free_fd(int pid) {
  std::set<rlim_t> used;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    used.insert(std::stoull(e.path().filename().string()));
  rlim_t n = 0;
  while (used.contains(n))
    ++n;
  return n;
}

// Until `pid`'s state is `state` (a state has no event to wait on: a
// bounded poll, 10 s at most).
asio::awaitable<bool> reach_state(int pid, char state) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 1000; ++i) {
    auto st = detail::read_proc_stat(pid);
    if (st && st->state == state)
      co_return true;
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

// Until `file` contains `text` (a log line has no event either).
asio::awaitable<bool> file_gets(const std::string& file, const std::string& text) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 1000; ++i) {
    if (read_file(file).find(text) != std::string::npos)
      co_return true;
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

std::vector<std::string> exec_methods() {
  return {"Exec", "ExecStreaming.Start"};
}

// How many lines of `file` contain `text`.
std::size_t count_lines(const std::string& file, const std::string& text) {
  std::size_t n = 0;
  std::istringstream in(read_file(file));
  for (std::string l; std::getline(in, l);)
    n += l.find(text) != std::string::npos ? 1 : 0;
  return n;
}

json::value launch_params(const std::string& script, const std::string& out,
                          const std::string& err) {
  json::object p{{"cmd", "/bin/sh"}, {"args", json::array{"-c", script}}};
  if (!out.empty())
    p["stdout_path"] = out;
  if (!err.empty())
    p["stderr_path"] = err;
  return p;
}

// A FIFO whose read end we hold (non-blocking, so opening it does not wait).
struct fifo_reader {
  std::string path;
  asio::posix::stream_descriptor sd{harness::get().io};
  asio::streambuf buf;
  explicit fifo_reader(std::string p) : path(std::move(p)) {
    BOOST_REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  }
  void open() {
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    BOOST_REQUIRE(fd >= 0);
    sd.assign(fd);
  }
  asio::awaitable<std::string> line() {
    auto [ec, n] =
        co_await asio::async_read_until(sd, buf, '\n', asio::as_tuple(asio::use_awaitable));
    if (ec)
      co_return std::string();
    std::string l(asio::buffers_begin(buf.data()),
                  asio::buffers_begin(buf.data()) + static_cast<long>(n) - 1);
    buf.consume(n);
    co_return l;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_faults)

BOOST_AUTO_TEST_CASE(a_daemon_stopped_and_continued_loses_nothing) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    auto launched =
        co_await c.call(1, "Launch", json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
    BOOST_REQUIRE(launched.contains("result"));
    const int task_pid = static_cast<int>(launched.at("result").at("pid").as_int64());
    co_await c.send(2, "Wait");
    BOOST_REQUIRE((co_await c.call(3, "Version")).contains("result"));  // the Wait is pending

    const int pid = daemon_pid(d);
    BOOST_REQUIRE(::kill(pid, SIGSTOP) == 0);
    BOOST_REQUIRE(co_await reach_state(pid, 'T'));
    // While it is stopped: the task dies, a client connects and asks.
    BOOST_REQUIRE(::kill(task_pid, SIGTERM) == 0);
    BOOST_REQUIRE(co_await reach_state(task_pid, 'Z'));  // its parent cannot reap it yet
    client late;
    co_await late.connect(d.socket);  // the listen backlog holds it
    co_await late.send(1, "Version");
    BOOST_REQUIRE(::kill(pid, SIGCONT) == 0);

    BOOST_TEST((co_await late.response(1)).contains("result"));
    auto waited = co_await c.response(2);
    BOOST_REQUIRE_MESSAGE(waited.contains("result"), json::serialize(waited));
    BOOST_TEST(waited.at("result").at("signal").as_int64() == SIGTERM);
    BOOST_TEST(waited.at("result").at("exit_code").as_int64() == 143);
    auto events = co_await c.call(4, "Events");
    BOOST_TEST(json::serialize(events).find(R"("type":"exited")") != std::string::npos);
    BOOST_TEST(!alive(task_pid));
    BOOST_TEST((co_await c.call(5, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_full_disk_for_stdout_fails_the_tasks_writes_not_the_daemon) {
  // /dev/full: every write is ENOSPC, as on a full filesystem.
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    const std::string err = d.dir / "err";
    auto r = co_await c.call(1, "Launch",
                             launch_params("echo hello; echo \"rc=$?\" >&2", "/dev/full", err));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    auto waited = co_await c.call(2, "Wait");
    BOOST_TEST(waited.at("result").at("exit_code").as_int64() == 0);
    BOOST_TEST(read_file(err) == "/bin/sh: 1: echo: echo: I/O error\nrc=1\n");
    BOOST_TEST((co_await c.call(3, "Version")).contains("result"));
    BOOST_TEST((co_await c.call(4, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_fifo_without_a_reader_is_refused_at_launch_and_one_with_a_reader_works) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    fifo_reader fifo(d.dir / "out.fifo");
    auto r = co_await c.call(1, "Launch", launch_params("echo hello", fifo.path, ""));
    BOOST_REQUIRE(r.contains("error"));
    // An OS condition, not a malformed field: -32004 with the errno (ENXIO,
    // what open(2) answers for a FIFO without a reader).
    BOOST_TEST(error_code_of(r) == -32004);
    BOOST_TEST(r.at("error").at("message").as_string() ==
               "stdout_path \"" + fifo.path + "\" is a FIFO with no reader");
    BOOST_REQUIRE_MESSAGE(r.at("error").as_object().contains("data"), json::serialize(r));
    BOOST_TEST(r.at("error").at("data").at("errno").as_int64() == ENXIO);
    BOOST_TEST((co_await c.call(2, "Version")).contains("result"));
    // With a reader the same launch works, and the output arrives.
    fifo.open();
    auto ok = co_await c.call(3, "Launch", launch_params("echo hello", fifo.path, ""));
    BOOST_REQUIRE_MESSAGE(ok.contains("result"), json::serialize(ok));
    BOOST_TEST(co_await fifo.line() == "hello");
    BOOST_TEST((co_await c.call(4, "Wait")).at("result").at("exit_code").as_int64() == 0);
    BOOST_TEST((co_await c.call(5, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(the_descriptor_limit_reached_while_accepting_and_launching) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    const std::string log = d.dir / "daemon.log";
    co_await d.start(argv_of("--log-file", log));
    client a;
    co_await a.connect(d.socket);
    BOOST_REQUIRE((co_await a.call(1, "Version")).contains("result"));
    const int pid = daemon_pid(d);
    rlimit old{};
    BOOST_REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &old) == 0);
    // Lower only the soft limit (raising it back needs no privilege) to the
    // next free descriptor: not one more can be opened.
    rlimit full{lowest_free_fd(pid), old.rlim_max};
    BOOST_REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &full, nullptr) == 0);

    client b;
    co_await b.connect(d.socket);  // in the backlog: accept fails with EMFILE
    co_await b.send(1, "Version");
    BOOST_TEST(co_await file_gets(log, "accept: Too many open files"));
    // The daemon retries every 50 ms; the line is not repeated each time.
    // (Not a wait for anything: 300 ms in which an unthrottled daemon would
    // have logged six more lines.)
    asio::steady_timer window(co_await asio::this_coro::executor, 300ms);
    co_await window.async_wait(asio::use_awaitable);
    BOOST_TEST(count_lines(log, "accept: Too many open files") == 1u, read_file(log));
    // A launch needs descriptors too: the right error, with its errno.
    auto refused =
        co_await a.call(2, "Launch", json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
    BOOST_REQUIRE_MESSAGE(refused.contains("error"), json::serialize(refused));
    BOOST_TEST(error_code_of(refused) == -32004);
    BOOST_TEST(refused.at("error").at("data").at("errno").as_int64() == EMFILE);
    BOOST_TEST((co_await a.call(3, "Version")).contains("result"));  // still serving

    // Descriptors again: the waiting client is accepted and answered, and
    // the launch works.
    BOOST_REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &old, nullptr) == 0);
    BOOST_TEST((co_await b.response(1)).contains("result"));
    // The end of the episode is logged, with how many accepts failed.
    BOOST_TEST(co_await file_gets(log, "accept: accepting again after "));
    std::smatch m;
    const auto text = read_file(log);
    BOOST_REQUIRE(
        std::regex_search(text, m, std::regex("accepting again after ([0-9]+) failures")));
    BOOST_TEST(std::stoi(m[1]) >= 2);
    co_await launch_sleeper(a, 4);
    BOOST_TEST((co_await a.call(5, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(exec_out_of_descriptors_is_a_launch_failure_with_errno_24) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client a;
    co_await a.connect(d.socket);
    co_await launch_sleeper(a, 1);
    const int pid = daemon_pid(d);
    rlimit old{};
    BOOST_REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &old) == 0);
    rlimit full{lowest_free_fd(pid), old.rlim_max};
    BOOST_REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &full, nullptr) == 0);
    // The command cannot be started (no descriptor for its output): as a
    // Launch would, -32004 with the errno.
    for (const auto& method : exec_methods()) {
      auto r = co_await a.call(2, method, json::parse(R"({"cmd":"/bin/true"})"));
      BOOST_REQUIRE_MESSAGE(r.contains("error"), json::serialize(r));
      BOOST_TEST(error_code_of(r) == -32004, method << ": " << json::serialize(r));
      BOOST_TEST(r.at("error").at("data").at("errno").as_int64() == EMFILE, method);
    }
    BOOST_REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &old, nullptr) == 0);
    auto ok = co_await a.call(3, "Exec", json::parse(R"({"cmd":"/bin/echo","args":["back"]})"));
    BOOST_TEST(ok.at("result").at("output").as_string() == "back\n");
    BOOST_TEST((co_await a.call(4, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_task_that_ignores_sigterm_is_killed_after_the_grace) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    fifo_reader fifo(d.dir / "out.fifo");
    fifo.open();
    auto r = co_await c.call(
        1, "Launch", launch_params("trap '' TERM; echo ready; exec sleep 1000", fifo.path, ""));
    BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
    const int task_pid = static_cast<int>(r.at("result").at("pid").as_int64());
    BOOST_REQUIRE(co_await fifo.line() == "ready");  // SIGTERM is ignored from here on
    auto down = co_await c.call(2, "Shutdown",
                                json::parse(R"({"signal":"SIGTERM","grace_period_ms":300})"));
    BOOST_TEST(down.contains("result"), json::serialize(down));
    auto waited = co_await c.call(3, "Wait");
    BOOST_TEST(waited.at("result").at("signal").as_int64() == SIGKILL);
    BOOST_TEST(!alive(task_pid));
    auto events = json::serialize(co_await c.call(4, "Events"));
    BOOST_TEST(events.find(R"("type":"shutdown")") != std::string::npos, events);
    BOOST_TEST((co_await c.call(5, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

// A Shutdown with a signal the task survives and the longest grace the
// protocol takes is running; SIGTERM to the daemon, or Destroy, must still
// end the task within --kill-grace-ms (not join the long grace).
namespace {
asio::awaitable<int> start_long_shutdown(daemon_process& d, client& c, fifo_reader& fifo) {
  const std::vector<std::string> args{"--kill-grace-ms", "300"};
  co_await d.start(args);
  co_await c.connect(d.socket);
  fifo.open();
  // Strings first: GCC 12 cannot keep a literal's array in a coroutine frame.
  const std::string script =
      "trap 'echo winch' WINCH; trap '' TERM INT; echo ready; while :; do sleep 0.05; done";
  const std::string shutdown = R"({"signal":"SIGWINCH","grace_period_ms":1000000000000})";
  auto r = co_await c.call(1, "Launch", launch_params(script, fifo.path, ""));
  BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
  BOOST_REQUIRE(co_await fifo.line() == "ready");
  co_await c.send(2, "Shutdown", json::parse(shutdown));
  BOOST_REQUIRE(co_await fifo.line() == "winch");  // the long grace has begun
  co_return static_cast<int>(r.at("result").at("pid").as_int64());
}
}  // namespace

BOOST_AUTO_TEST_CASE(sigterm_to_the_daemon_cuts_a_long_grace_short) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    client c;
    fifo_reader fifo(d.dir / "out.fifo");
    const int task_pid = co_await start_long_shutdown(d, c, fifo);
    const auto start = std::chrono::steady_clock::now();
    BOOST_REQUIRE(::kill(d.task.pid(), SIGTERM) == 0);
    auto down = co_await c.response(2);  // answered before the daemon exits
    BOOST_TEST(down.contains("result"), json::serialize(down));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
    BOOST_TEST((std::chrono::steady_clock::now() - start < 30s));  // not 10^12 ms
    BOOST_TEST(co_await wait_gone(task_pid));
  });
}

BOOST_AUTO_TEST_CASE(destroy_cuts_a_long_grace_short) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    client c;
    fifo_reader fifo(d.dir / "out.fifo");
    const int task_pid = co_await start_long_shutdown(d, c, fifo);
    client other;
    co_await other.connect(d.socket);
    const auto start = std::chrono::steady_clock::now();
    auto destroyed = co_await other.call(1, "Destroy");
    BOOST_TEST(destroyed.contains("result"), json::serialize(destroyed));
    BOOST_TEST((std::chrono::steady_clock::now() - start < 30s));
    auto down = co_await c.response(2);
    BOOST_TEST(down.contains("result"), json::serialize(down));
    BOOST_TEST(co_await wait_gone(task_pid));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
