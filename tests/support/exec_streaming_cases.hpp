// The ExecStreaming cases of issue 6, run alike against an embedded
// exec_session, a remote_exec_session through taskexecd, and a container
// task: the same commands, the same exact bytes.
#pragma once

#include <boost/test/unit_test.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"
#include "taskexec/exec_session.hpp"
#include "taskexec/remote_executor.hpp"

namespace test_support {

/// One session, whatever serves it.
struct stream_driver {
  virtual ~stream_driver() = default;
  virtual asio::awaitable<taskexec::result<taskexec::exec_event>> read() = 0;
  virtual asio::awaitable<taskexec::result<void>> write(std::string data) = 0;
  virtual asio::awaitable<taskexec::result<void>> close_stdin() = 0;
  virtual asio::awaitable<taskexec::result<void>> resize(taskexec::tty_size size) = 0;
  virtual asio::awaitable<void> kill() = 0;
  virtual int pid() const = 0;
};

struct embedded_driver final : stream_driver {
  explicit embedded_driver(taskexec::exec_session s) : session(std::move(s)) {}
  taskexec::exec_session session;
  asio::awaitable<taskexec::result<taskexec::exec_event>> read() override {
    co_return co_await session.read();
  }
  asio::awaitable<taskexec::result<void>> write(std::string data) override {
    co_return co_await session.write(std::move(data));
  }
  asio::awaitable<taskexec::result<void>> close_stdin() override {
    co_return session.close_stdin();
  }
  asio::awaitable<taskexec::result<void>> resize(taskexec::tty_size size) override {
    co_return session.resize(size);
  }
  asio::awaitable<void> kill() override {
    session.kill();
    co_return;
  }
  int pid() const override { return session.pid(); }
};

struct remote_driver final : stream_driver {
  explicit remote_driver(taskexec::remote_exec_session s) : session(std::move(s)) {}
  taskexec::remote_exec_session session;
  asio::awaitable<taskexec::result<taskexec::exec_event>> read() override {
    co_return co_await session.read();
  }
  asio::awaitable<taskexec::result<void>> write(std::string data) override {
    co_return co_await session.write(std::move(data));
  }
  asio::awaitable<taskexec::result<void>> close_stdin() override {
    co_return co_await session.close_stdin();
  }
  asio::awaitable<taskexec::result<void>> resize(taskexec::tty_size size) override {
    co_return co_await session.resize(size);
  }
  asio::awaitable<void> kill() override {
    auto r = co_await session.kill();
    BOOST_TEST(r.has_value(), (r ? "" : r.error().message));
  }
  int pid() const override { return session.pid(); }
};

inline asio::awaitable<std::unique_ptr<stream_driver>> open_embedded(
    taskexec::task_executor& t, taskexec::exec_session_options o) {
  auto s = co_await t.exec_streaming(std::move(o));
  BOOST_REQUIRE_MESSAGE(s, "exec_streaming: " << (s ? "" : s.error().message));
  co_return std::make_unique<embedded_driver>(std::move(*s));
}

inline asio::awaitable<std::unique_ptr<stream_driver>> open_remote(
    taskexec::remote_executor& r, taskexec::exec_session_options o) {
  auto s = co_await r.exec_streaming(std::move(o));
  BOOST_REQUIRE_MESSAGE(s, "exec_streaming: " << (s ? "" : s.error().message));
  co_return std::make_unique<remote_driver>(std::move(*s));
}

/// A daemon made with create_executor outlives its client by design; a test
/// that fails half-way must not leave it behind. SIGKILLs it (through a
/// pidfd taken while it surely runs) at scope exit unless it is gone.
struct daemon_guard {
  int pidfd = -1;
  explicit daemon_guard(int pid) : pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {}
  ~daemon_guard() {
    if (pidfd < 0)
      return;
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    ::close(pidfd);
  }
  daemon_guard(const daemon_guard&) = delete;
  daemon_guard& operator=(const daemon_guard&) = delete;
};

/// Starts a session of the task under test (or fails the test).
using session_opener =
    std::function<asio::awaitable<std::unique_ptr<stream_driver>>(taskexec::exec_session_options)>;

/// What a session produced, and whether its events came in the order the
/// contract gives: data, one closing chunk per stream, `exited` last.
struct transcript {
  std::string out, err;
  std::vector<std::string> out_chunks;
  int exit_code = -1;
  int out_closes = 0, err_closes = 0;
  bool in_order = true;
};

inline asio::awaitable<transcript> drain(stream_driver& d) {
  transcript t;
  for (;;) {
    auto ev = co_await d.read();
    BOOST_REQUIRE_MESSAGE(ev, "read: " << (ev ? "" : ev.error().message));
    if (ev->kind == taskexec::exec_event::type::exited) {
      t.exit_code = ev->exit_code;
      break;
    }
    const bool is_out = ev->stream == taskexec::exec_stream::stdout_stream;
    int& closes = is_out ? t.out_closes : t.err_closes;
    if (closes > 0 || ev->data.size() > taskexec::exec_event::max_data)
      t.in_order = false;  // data after the stream's end, or an oversized piece
    if (ev->closed) {
      ++closes;
      if (!ev->data.empty())
        t.in_order = false;
      continue;
    }
    if (ev->data.empty())
      t.in_order = false;
    (is_out ? t.out : t.err) += ev->data;
    if (is_out)
      t.out_chunks.push_back(ev->data);
  }
  // `exited` again once the session is over.
  auto again = co_await d.read();
  BOOST_TEST((again && again->kind == taskexec::exec_event::type::exited &&
              again->exit_code == t.exit_code));
  co_return t;
}

inline taskexec::exec_session_options session_of(std::vector<std::string> argv, bool tty) {
  taskexec::exec_session_options o;
  o.cmd = argv.front();
  o.args.assign(argv.begin() + 1, argv.end());
  o.tty = tty;
  return o;
}

/// Read until the stdout text so far ends with `want` (the stream of a
/// session still running); returns it all.
inline asio::awaitable<std::string> read_until(stream_driver& d, const std::string& want) {
  std::string got;
  while (got.size() < want.size() || got.compare(got.size() - want.size(), want.size(), want)) {
    auto ev = co_await d.read();
    BOOST_REQUIRE_MESSAGE(ev, "read: " << (ev ? "" : ev.error().message));
    BOOST_REQUIRE_MESSAGE(ev->kind == taskexec::exec_event::type::output && !ev->closed,
                          "the session ended before \"" << want << "\"; got \"" << got << "\"");
    got += ev->data;
  }
  co_return got;
}

/// The cases. `host_pids`: pids the command prints are ours (not
/// those of a private PID namespace).
inline asio::awaitable<void> run_streaming_cases(session_opener open, bool host_pids = true) {
  using taskexec::tty_size;
  const std::string both = "echo hello stdout; echo hello stderr >&2; exit 43";
  {
    // Without a tty: each stream exactly, each closed once, then the code.
    auto d = co_await open(session_of(argv_of("/bin/sh", "-c", both), false));
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "hello stdout\n");
    BOOST_TEST(t.err == "hello stderr\n");
    BOOST_TEST(t.out_closes == 1);
    BOOST_TEST(t.err_closes == 1);
    BOOST_TEST(t.in_order);
    BOOST_TEST(t.exit_code == 43);
  }
  {
    auto d = co_await open(session_of(
        argv_of("/bin/sh", "-c", "echo 1; sleep 0.2; echo 2; sleep 0.2; echo 3"), false));
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "1\n2\n3\n");
    BOOST_TEST(t.exit_code == 0);
  }
  {
    auto d = co_await open(session_of(argv_of("stty", "size"), false));
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "");
    BOOST_TEST(t.err == "stty: 'standard input': Inappropriate ioctl for device\n");
    BOOST_TEST(t.exit_code == 1);
  }
  {
    auto d =
        co_await open(session_of(argv_of("/bin/sh", "-c", "echo from command; head -n1"), false));
    BOOST_TEST((co_await d->write("hello from stdin\n")).has_value());
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "from command\nhello from stdin\n");
    BOOST_TEST(t.exit_code == 0);
  }
  {
    // stdin's end reaches the command: cat ends with what it was given.
    auto d = co_await open(session_of(argv_of("cat"), false));
    BOOST_TEST((co_await d->write("one\n")).has_value());
    BOOST_TEST((co_await d->write("two\n")).has_value());
    BOOST_TEST((co_await d->close_stdin()).has_value());
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "one\ntwo\n");
    BOOST_TEST(t.exit_code == 0);
    auto late = co_await d->write("three\n");  // stdin is closed now
    BOOST_TEST(!late.has_value());
  }
  {
    // A resize without a tty is refused.
    auto d = co_await open(session_of(argv_of("cat"), false));
    auto r = co_await d->resize(tty_size{10, 10});
    BOOST_REQUIRE(!r);
    BOOST_TEST((r.error().code == make_error_code(taskexec::errc::invalid_argument)));
    co_await d->kill();
    auto t = co_await drain(*d);
    BOOST_TEST(t.exit_code == 128 + SIGKILL);
  }

  // With a tty: one stream, the terminal's line endings.
  {
    auto d = co_await open(session_of(argv_of("/bin/sh", "-c", both), true));
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "hello stdout\r\nhello stderr\r\n");
    BOOST_TEST(t.err == "");
    BOOST_TEST(t.err_closes == 0);
    BOOST_TEST(t.out_closes == 1);
    BOOST_TEST(t.in_order);
    BOOST_TEST(t.exit_code == 43);
  }
  {
    auto d = co_await open(session_of(argv_of("/bin/sh", "-c", "sleep 1; stty size"), true));
    BOOST_TEST((co_await d->resize(tty_size{50, 40})).has_value());
    BOOST_TEST((co_await d->resize(tty_size{100, 100})).has_value());  // the latest wins
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "100 100\r\n");
    BOOST_TEST(t.exit_code == 0);
  }
  {
    // The size given at the start.
    auto o = session_of(argv_of("stty", "size"), true);
    o.size = tty_size{33, 77};
    auto d = co_await open(o);
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "33 77\r\n");
  }
  {
    // The terminal echoes the input, then head prints it.
    auto d = co_await open(session_of(argv_of("head", "-n1"), true));
    BOOST_TEST((co_await d->write("hello from stdin\n")).has_value());
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "hello from stdin\r\nhello from stdin\r\n");
    BOOST_TEST(t.exit_code == 0);
  }
  {
    // The session ends with its command, though a background child keeps
    // the terminal open: what the child writes two seconds later is not
    // part of it.
    auto d = co_await open(
        session_of(argv_of("/bin/sh", "-c",
                           "( ( sleep 3; echo from background ) & ); echo from main; exec sleep 1"),
                   true));
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "from main\r\n");
    BOOST_TEST(t.exit_code == 0);
  }
  {
    // ^D at the start of a line ends cat's input.
    auto d = co_await open(session_of(argv_of("cat"), true));
    BOOST_TEST((co_await d->write("typed\n")).has_value());
    BOOST_TEST((co_await d->close_stdin()).has_value());
    auto t = co_await drain(*d);
    BOOST_TEST(t.out == "typed\r\ntyped\r\n");
    BOOST_TEST(t.exit_code == 0);
  }
  {
    // kill(): the command and what it started are gone, the code is 137.
    auto d =
        co_await open(session_of(argv_of("/bin/sh", "-c", "sleep 1000 & echo $!; wait"), true));
    auto line = co_await read_until(*d, "\r\n");
    const int child = std::atoi(line.c_str());
    BOOST_REQUIRE(child > 0);
    const int pid = d->pid();
    co_await d->kill();
    auto t = co_await drain(*d);
    BOOST_TEST(t.exit_code == 128 + SIGKILL);
    BOOST_TEST(co_await wait_gone(pid));
    if (host_pids)
      BOOST_TEST(co_await wait_gone(child));
  }
}

}  // namespace test_support
