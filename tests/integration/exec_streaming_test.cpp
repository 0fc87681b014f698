// ExecStreaming: interactive sessions of commands inside a running task, on
// pipes and on a pty; embedded (exec_session), through taskexecd (the
// protocol and remote_exec_session), and from the CLI (`exec -i -t`).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include "daemon_client.hpp"
#include "exec_streaming_cases.hpp"
#include "harness.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/remote_executor.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

template <class T>
std::string why(const result<T>& r) {
  return r ? std::string() : r.error().message;
}

/// The kernel function `pid` sleeps in ("pipe_write", or "anon_pipe_write"
/// on newer kernels, for a writer that waits for its reader); empty once it
/// is gone.
std::string wchan(int pid) {
  return read_file("/proc/" + std::to_string(pid) + "/wchan");
}

/// Wait (polling /proc, bounded) until `pid` sleeps in `fn`.
asio::awaitable<bool> wait_blocked_in(int pid, const std::string& fn) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 1500; ++i) {
    if (wchan(pid).find(fn) != std::string::npos)
      co_return true;
    t.expires_after(20ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

/// The pid of the child of `parent` named `comm` (started by a session
/// whose answer the test does not read), waited for with a bounded poll;
/// with `arg`, one whose command line holds that number too.
asio::awaitable<int> session_child(int parent, const std::string& comm, int arg = -1) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 1500; ++i) {
    for (const auto& p : detail::scan_processes()) {
      if (p.ppid != parent || p.comm != comm)
        continue;
      const auto cmdline = read_file("/proc/" + std::to_string(p.pid) + "/cmdline");
      if (arg >= 0 && cmdline.find(std::to_string(arg)) == std::string::npos)
        continue;
      co_return p.pid;
    }
    t.expires_after(20ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  BOOST_FAIL("no child " << comm << " of " << parent);
  co_return 0;
}

std::size_t vm_rss_kib(int pid) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("VmRSS:", 0) == 0)
      return std::stoul(l.substr(6));
  }
  return 0;
}

template <class... A>
std::vector<std::string> list(A... a) {
  return {std::string(a)...};
}

create_options daemon_in(const temp_dir& dir) {
  create_options o;
  o.daemon_path = TASKEXECD;
  o.socket_path = dir / "run/d.sock";
  o.log_file = dir / "taskexecd.log";
  o.log_level = "debug";
  return o;
}

/// Our descriptors open write-only on a pipe, each with its link
/// ("pipe:[inode]").
std::map<int, std::string> writer_pipes() {
  std::map<int, std::string> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto link = std::filesystem::read_symlink(e.path(), ec).string();
    if (ec || link.rfind("pipe:", 0) != 0)
      continue;
    const int fd = std::stoi(e.path().filename().string());
    std::istringstream info(read_file("/proc/self/fdinfo/" + std::to_string(fd)));
    for (std::string l; std::getline(info, l);) {
      if (l.rfind("flags:", 0) == 0 &&
          (std::stoul(l.substr(6), nullptr, 8) & O_ACCMODE) == O_WRONLY)
        fds[fd] = link;
    }
  }
  return fds;
}

/// Wait (polling /proc, bounded) until descriptor `fd` no longer names `link`.
asio::awaitable<bool> wait_closed(int fd, const std::string& link) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 1500; ++i) {
    std::error_code ec;
    const auto now = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    if (ec || now.string() != link)
      co_return true;
    t.expires_after(20ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(exec_streaming)

BOOST_AUTO_TEST_CASE(embedded_sessions_on_pipes_and_a_tty) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    co_await run_streaming_cases(
        [&t](exec_session_options o) { return open_embedded(t, std::move(o)); });
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
    BOOST_TEST(zombie_children().empty());
  });
}

BOOST_AUTO_TEST_CASE(a_session_runs_in_the_task_context_and_only_while_it_runs) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    task_executor t(harness::get().reaper);
    auto early = co_await t.exec_streaming(session_of(list("/bin/true"), false));
    BOOST_REQUIRE(!early);
    BOOST_TEST((early.error().code == make_error_code(errc::not_launched)));
    pipe_reader out;
    auto cmd = sh("echo ready; exec sleep 1000");
    cmd.env.push_back("GREETING=from the task");
    cmd.task_dir = dir.str();
    cmd.stdout_fd = out.write_fd();
    BOOST_REQUIRE(co_await t.launch(cmd));
    out.close_write();
    BOOST_REQUIRE(co_await out.line() == "ready");

    // The task's environment and directory, a session and a terminal of its own.
    auto d = co_await open_embedded(
        t, session_of(list("/bin/sh", "-c", "echo $GREETING; pwd; ps -o sid=,tty= -p $$"), true));
    auto tr = co_await drain(*d);
    const std::string sid = std::to_string(d->pid());
    BOOST_TEST(tr.out.rfind("from the task\r\n" + dir.str() + "\r\n", 0) == 0u);
    BOOST_TEST(tr.out.find(sid + " pts/") != std::string::npos, tr.out);
    auto missing = co_await t.exec_streaming(session_of(list("/no/such/binary"), false));
    BOOST_REQUIRE(!missing);
    BOOST_TEST((missing.error().code == make_error_code(errc::binary_not_found)));
    auto empty = co_await t.exec_streaming(session_of(list(""), false));
    BOOST_REQUIRE(!empty);
    BOOST_TEST((empty.error().code == make_error_code(errc::invalid_argument)));

    // The task's end ends its sessions: killed, reaped, reported.
    auto running = co_await open_embedded(t, session_of(list("/bin/sleep", "1000"), false));
    const int pid = running->pid();
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
    auto ended = co_await drain(*running);
    BOOST_TEST(ended.exit_code == 128 + SIGKILL);
    BOOST_TEST(co_await wait_gone(pid));
    auto late = co_await t.exec_streaming(session_of(list("/bin/true"), false));
    BOOST_REQUIRE(!late);
    BOOST_TEST((late.error().code == make_error_code(errc::task_exited)));
  });
}

BOOST_AUTO_TEST_CASE(dropping_a_session_kills_its_command_and_what_it_started) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    int pid = 0, child = 0;
    {
      auto d = co_await open_embedded(
          t, session_of(list("/bin/sh", "-c", "sleep 1000 & echo $!; wait"), false));
      auto line = co_await read_until(*d, "\n");
      child = std::atoi(line.c_str());
      pid = d->pid();
      BOOST_REQUIRE(child > 0);
    }
    BOOST_TEST(co_await wait_gone(pid));
    BOOST_TEST(co_await wait_gone(child));
    BOOST_TEST(alive(t.pid()));
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(output_nobody_reads_blocks_the_command_and_nothing_is_lost) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    // 4 MB, far more than the session holds (64 KiB) plus the pipe (64 KiB).
    auto d = co_await open_embedded(
        t, session_of(list("/usr/bin/head", "-c", "4000000", "/dev/zero"), false));
    BOOST_TEST(co_await wait_blocked_in(d->pid(), "pipe_write"));
    auto tr = co_await drain(*d);
    BOOST_TEST(tr.out.size() == 4000000u);
    BOOST_TEST(tr.out.find_first_not_of('\0') == std::string::npos);
    BOOST_TEST(tr.exit_code == 0);

    // Input too: a command that reads nothing holds our write() once 1 MiB
    // waits, however large the write (what does not fit stays with us).
    auto sink = co_await open_embedded(t, session_of(list("/bin/sleep", "1000"), false));
    const std::string mib(1024 * 1024, 'x');
    BOOST_TEST((co_await sink->write(mib)).has_value());  // queued (the pipe took 64 KiB)
    asio::steady_timer bound(co_await asio::this_coro::executor, 300ms);
    using namespace asio::experimental::awaitable_operators;
    // Its first 64 KiB fill the queue to 1 MiB; the rest waits for room.
    auto first = co_await (sink->write(mib) || bound.async_wait(asio::use_awaitable));
    BOOST_TEST(first.index() == 1u);
    co_await sink->kill();
    BOOST_TEST((co_await drain(*sink)).exit_code == 128 + SIGKILL);

    // A reader slower than the command's exit loses nothing of what the
    // terminal still buffers: 72000 bytes are the session's 64 KiB plus
    // more than a pty's own read buffer (4 KiB) holds. Whether the pty takes
    // the rest before the reader comes is the kernel's to say (a throttled
    // terminal blocks the writer early): the late reader is played only when
    // the command got to exit; in either case every byte must arrive.
    auto tty = co_await open_embedded(
        t, session_of(list("/usr/bin/head", "-c", "72000", "/dev/zero"), true));
    const int writer = tty->pid();
    asio::steady_timer poll(co_await asio::this_coro::executor);
    bool exited = false;
    for (int i = 0; i < 1500; ++i) {
      exited = !alive(writer);
      if (exited || wchan(writer) == "wait_woken")  // blocked writing to the terminal
        break;
      poll.expires_after(20ms);
      co_await poll.async_wait(asio::use_awaitable);
    }
    if (exited) {
      poll.expires_after(300ms);
      co_await poll.async_wait(asio::use_awaitable);  // a reader that is late, not a sync
    }
    auto late = co_await drain(*tty);
    BOOST_TEST(late.out.size() == 72000u);
    BOOST_TEST(late.exit_code == 0);
    BOOST_TEST((co_await t.shutdown("SIGKILL", 0ms)).has_value());
  });
}

// Input to a command that closed its stdin fails with EPIPE inside the
// session and is dropped: no SIGPIPE reaches the program, whatever its
// disposition (the default, here, would end it), and one of someone
// else's already pending in a thread that blocks SIGPIPE stays pending.
BOOST_AUTO_TEST_CASE(input_after_the_command_closed_its_stdin_raises_no_sigpipe) {
  run([]() -> asio::awaitable<void> {
    task_executor t(harness::get().reaper);
    pipe_reader out;
    co_await launch_ready(t, out, "echo ready; exec sleep 1000");
    // The disposition and this thread's mask are the program's again at the
    // end, a failed check's exception included.
    struct restore {
      struct sigaction action = {};
      sigset_t mask = {};
      restore() {
        ::sigaction(SIGPIPE, nullptr, &action);
        ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
      }
      ~restore() {
        // A SIGPIPE left pending (a check failed in mode 2) is taken first:
        // unblocked under the default disposition it would end the program.
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
        const timespec zero{0, 0};
        while (sigtimedwait(&pipe_only, nullptr, &zero) == SIGPIPE) {
        }
        ::sigaction(SIGPIPE, &action, nullptr);
        ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
      }
      restore(const restore&) = delete;
      restore& operator=(const restore&) = delete;
    } const restore_at_end;
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    // 0: SIGPIPE not blocked; 1: blocked, none pending; 2: blocked, one pending.
    for (int mode = 0; mode < 3; ++mode) {
      const auto before = writer_pipes();
      auto d = co_await open_embedded(
          t, session_of(list("/bin/sh", "-c", "exec 0<&-; echo closed; exec sleep 1000"), false));
      std::map<int, std::string> fresh;
      for (const auto& [fd, link] : writer_pipes()) {
        if (!before.contains(fd) || before.at(fd) != link)
          fresh[fd] = link;
      }
      BOOST_REQUIRE_MESSAGE(fresh.size() == 1u, "mode " << mode << ": the session's stdin, once");
      const int in_fd = fresh.begin()->first;
      const std::string in_link = fresh.begin()->second;
      const std::string closed_line = "closed\n";
      const std::string said = co_await read_until(*d, closed_line);
      BOOST_TEST(said == closed_line);
      sigset_t old_mask;
      ::pthread_sigmask(mode > 0 ? SIG_BLOCK : SIG_UNBLOCK, &pipe_set, &old_mask);
      if (mode == 2)
        ::pthread_kill(::pthread_self(), SIGPIPE);
      const auto w = co_await d->write(std::string(65536, 'x'));
      BOOST_TEST(w.has_value(), "mode " << mode);
      // The session's write met EPIPE and it closed its end of the pipe.
      const bool closed = co_await wait_closed(in_fd, in_link);
      BOOST_TEST(closed, "mode " << mode);
      sigset_t pending;
      sigpending(&pending);
      BOOST_TEST(sigismember(&pending, SIGPIPE) == (mode == 2 ? 1 : 0), "mode " << mode);
      if (mode == 2) {
        const timespec zero{0, 0};
        BOOST_TEST(sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE);
      }
      ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
      co_await d->kill();
      const auto tr = co_await drain(*d);
      BOOST_TEST(tr.exit_code == 128 + SIGKILL);
    }
    const auto down = co_await t.shutdown("SIGKILL", 0ms);
    BOOST_TEST(down.has_value());
  });
}

BOOST_AUTO_TEST_CASE(remote_sessions_through_the_daemon) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    auto created = co_await create_executor(harness::get().io.get_executor(), daemon_in(dir));
    BOOST_REQUIRE_MESSAGE(created, why(created));
    daemon_guard guard(created->config.pid);
    auto& c = created->client;
    auto early = co_await c.exec_streaming(session_of(list("/bin/true"), false));
    BOOST_REQUIRE(!early);
    BOOST_TEST((early.error().code == make_error_code(errc::not_launched)));
    BOOST_REQUIRE(co_await c.launch(sh("exec sleep 1000")));
    // The same cases through the JSON path and with the descriptors passed.
    co_await run_streaming_cases([&c](exec_session_options o) {
      o.stdio = exec_stdio::pumped;
      return open_remote(c, std::move(o));
    });
    co_await run_streaming_cases([&c](exec_session_options o) {
      o.stdio = exec_stdio::passed;
      return open_remote(c, std::move(o));
    });

    // One-shot Exec from the same client.
    auto ran = co_await c.exec("/bin/sh", list("-c", "echo hi; exit 3"));
    BOOST_REQUIRE_MESSAGE(ran, why(ran));
    BOOST_TEST(ran->output == "hi\n");
    BOOST_TEST(ran->exit_code == 3);
    auto slow = co_await c.exec("/bin/sleep", list("1000"), 200ms);
    BOOST_REQUIRE(!slow);
    BOOST_TEST((slow.error().code == make_error_code(errc::timed_out)));

    // Dropping a remote session kills its command on the daemon.
    int pid = 0;
    {
      auto s = co_await c.exec_streaming(session_of(list("/bin/sleep", "1000"), false));
      BOOST_REQUIRE(s);
      pid = s->pid();
      BOOST_REQUIRE(alive(pid));
    }
    BOOST_TEST(co_await wait_gone(pid));
    BOOST_TEST((co_await c.destroy()).has_value());
    BOOST_TEST(co_await wait_gone(created->config.pid));
  });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(exec_streaming_protocol)

BOOST_AUTO_TEST_CASE(notifications_are_exact_and_errors_name_the_field) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    auto early = co_await c.call(1, "ExecStreaming.Start", json::parse(R"({"cmd":"/bin/true"})"));
    BOOST_TEST(error_code_of(early) == -32001);
    co_await launch_sleeper(c, 2);

    auto started = co_await c.call(
        3, "ExecStreaming.Start",
        json::parse(R"({"cmd":"/bin/sh","args":["-c","printf hi; printf oops >&2; exit 4"]})"));
    BOOST_REQUIRE_MESSAGE(started.contains("result"), json::serialize(started));
    BOOST_TEST(started.at("result").at("session").as_string() == "exec-1");
    BOOST_TEST(started.at("result").at("pid").as_int64() > 0);
    // Each stream's data and its end, in the daemon's exact words; the
    // streams may interleave; Exited comes last.
    std::vector<std::string> out_lines, err_lines;
    std::string exited;
    while (exited.empty()) {
      auto v = co_await c.next();
      BOOST_REQUIRE(v.is_object());
      const auto text = json::serialize(v);
      const auto& params = v.at("params").as_object();
      if (v.at("method").as_string() == "ExecStreaming.Exited")
        exited = text;
      else if (params.at("stream").as_string() == "stdout")
        out_lines.push_back(text);
      else
        err_lines.push_back(text);
    }
    BOOST_TEST(
        out_lines ==
            list(
                R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":"exec-1","stream":"stdout","data":"aGk="}})",
                R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":"exec-1","stream":"stdout","data":"","close":true}})"),
        boost::test_tools::per_element());
    BOOST_TEST(
        err_lines ==
            list(
                R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":"exec-1","stream":"stderr","data":"b29wcw=="}})",
                R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":"exec-1","stream":"stderr","data":"","close":true}})"),
        boost::test_tools::per_element());
    BOOST_TEST(
        exited ==
        R"({"jsonrpc":"2.0","method":"ExecStreaming.Exited","params":{"session":"exec-1","exit_code":4}})");
    // An ended session is unknown.
    auto gone = co_await c.call(4, "ExecStreaming.Input",
                                json::parse(R"({"session":"exec-1","data":"aGk="})"));
    BOOST_TEST(error_code_of(gone) == -32009);
    BOOST_TEST(gone.at("error").at("message").as_string() == "unknown session \"exec-1\"");

    // Output larger than a chunk comes in pieces of at most 4096 bytes.
    auto big = co_await c.call(
        5, "ExecStreaming.Start",
        json::parse(R"({"cmd":"/usr/bin/head","args":["-c","10000","/dev/zero"]})"));
    BOOST_REQUIRE(big.contains("result"));
    std::size_t total = 0;
    for (;;) {
      auto v = co_await c.next();
      if (v.at("method").as_string() == "ExecStreaming.Exited")
        break;
      auto bytes = base64_decode(v.at("params").at("data").as_string());
      BOOST_REQUIRE(bytes);
      BOOST_TEST(bytes->size() <= 4096u);
      total += bytes->size();
    }
    BOOST_TEST(total == 10000u);

    auto field_of = [](const json::object& r) {
      return std::string(r.at("error").at("data").at("field").as_string());
    };
    auto bad = [&](int id, const char* method,
                   const char* params) -> asio::awaitable<json::object> {
      co_return co_await c.call(id, method, json::parse(params));
    };
    auto r = co_await bad(10, "ExecStreaming.Start", R"({})");
    BOOST_TEST(error_code_of(r) == -32602);
    BOOST_TEST(field_of(r) == "cmd");
    r = co_await bad(11, "ExecStreaming.Start", R"({"cmd":"/bin/true","tty":"yes"})");
    BOOST_TEST(field_of(r) == "tty");
    r = co_await bad(12, "ExecStreaming.Start",
                     R"({"cmd":"/bin/true","tty_size":{"height":2,"width":2}})");
    BOOST_TEST(field_of(r) == "tty_size");
    r = co_await bad(13, "ExecStreaming.Start",
                     R"({"cmd":"/bin/true","tty":true,"tty_size":{"height":0,"width":2}})");
    BOOST_TEST(field_of(r) == "tty_size.height");
    BOOST_TEST(r.at("error").at("message").as_string() ==
               "tty_size.height must be an integer from 1 to 65535");
    r = co_await bad(14, "ExecStreaming.Start",
                     R"({"cmd":"/bin/true","tty":true,"tty_size":{"rows":2}})");
    BOOST_TEST(field_of(r) == "tty_size.rows");
    r = co_await bad(15, "ExecStreaming.Start", R"({"cmd":"/bin/true","args":[1]})");
    BOOST_TEST(field_of(r) == "args[0]");
    r = co_await bad(16, "ExecStreaming.Start", R"({"cmd":"no-such-binary-xyz"})");
    BOOST_TEST(error_code_of(r) == -32004);

    auto cat = co_await c.call(20, "ExecStreaming.Start", json::parse(R"({"cmd":"/bin/cat"})"));
    const std::string sid(cat.at("result").at("session").as_string());
    r = co_await bad(21, "ExecStreaming.Input", R"({"session":"exec-99"})");
    BOOST_TEST(error_code_of(r) == -32009);
    r = co_await c.call(22, "ExecStreaming.Input",
                        json::parse(R"({"session":")" + sid + R"(","data":"not base64!"})"));
    BOOST_TEST(field_of(r) == "data");
    r = co_await c.call(
        23, "ExecStreaming.Input",
        json::parse(R"({"session":")" + sid + R"(","tty_size":{"height":5,"width":5}})"));
    BOOST_TEST(field_of(r) == "tty_size");
    r = co_await c.call(24, "ExecStreaming.Input",
                        json::parse(R"({"session":")" + sid + R"(","stdin":"x"})"));
    BOOST_TEST(field_of(r) == "stdin");
    r = co_await bad(25, "ExecStreaming.Cancel", R"({"session":"exec-99"})");
    BOOST_TEST(error_code_of(r) == -32009);
    // Data and the end of input in one message: cat echoes, then ends.
    r = co_await c.call(26, "ExecStreaming.Input",
                        json::parse(R"({"session":")" + sid + R"(","data":"YWJj","close":true})"));
    BOOST_TEST(r.at("result").as_object().empty());
    std::string echoed;
    for (;;) {
      auto v = co_await c.next();
      if (v.at("method").as_string() == "ExecStreaming.Exited") {
        BOOST_TEST(v.at("params").at("exit_code").as_int64() == 0);
        break;
      }
      echoed += *base64_decode(v.at("params").at("data").as_string());
    }
    BOOST_TEST(echoed == "abc");
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(a_client_gone_or_the_task_shut_down_ends_the_session) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    co_await launch_sleeper(c, 1);
    // A client that vanishes: its command is killed and reaped.
    {
      client gone;
      co_await gone.connect(d.socket);
      auto s =
          co_await gone.call(1, "ExecStreaming.Start",
                             json::parse(R"({"cmd":"/bin/sleep","args":["1000"],"tty":true})"));
      const int pid = static_cast<int>(s.at("result").at("pid").as_int64());
      BOOST_REQUIRE(alive(pid));
      gone.close();
      BOOST_TEST(co_await wait_gone(pid));
    }
    // A Start in a batch whose other member is still pending, then gone.
    {
      client gone;
      co_await gone.connect(d.socket);
      co_await gone.send_raw(
          R"([{"jsonrpc":"2.0","id":1,"method":"ExecStreaming.Start","params":{"cmd":"/bin/sleep","args":["1001"]}},{"jsonrpc":"2.0","id":2,"method":"Wait"}])"
          "\n");
      const int pid = co_await session_child(d.task.pid(), "sleep", 1001);
      gone.close();
      BOOST_TEST(co_await wait_gone(pid));
    }
    // Half-closed first (its session goes on), then gone entirely.
    {
      client gone;
      co_await gone.connect(d.socket);
      auto st = co_await gone.call(
          1, "ExecStreaming.Start",
          json::parse(R"({"cmd":"/bin/sh","args":["-c","echo up; exec sleep 1000"]})"));
      const int pid = static_cast<int>(st.at("result").at("pid").as_int64());
      gone.finish_sending();
      auto up = co_await gone.next();  // still served after the half-close
      BOOST_TEST(up.at("params").at("data").as_string() == base64_encode("up\n"));
      BOOST_REQUIRE(alive(pid));
      gone.close();
      BOOST_TEST(co_await wait_gone(pid));
    }
    // The task's shutdown ends a session with its Exited.
    auto s = co_await c.call(2, "ExecStreaming.Start",
                             json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
    const int pid = static_cast<int>(s.at("result").at("pid").as_int64());
    co_await c.send(3, "Shutdown", json::parse(R"({"signal":"SIGKILL","grace_period_ms":0})"));
    bool exited = false, shut_down = false;
    while (!exited || !shut_down) {
      auto v = co_await c.next();
      BOOST_REQUIRE(v.is_object());
      if (v.as_object().contains("method")) {
        if (v.at("method").as_string() == "ExecStreaming.Exited") {
          BOOST_TEST(v.at("params").at("exit_code").as_int64() == 128 + SIGKILL);
          exited = true;
        }
      } else {
        BOOST_TEST(v.at("id").as_int64() == 3);
        shut_down = v.as_object().contains("result");
        BOOST_REQUIRE(shut_down);
      }
    }
    BOOST_TEST(co_await wait_gone(pid));
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(slow_readers_and_stdin_floods_stay_bounded) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    const int daemon = d.task.pid();
    client c;
    co_await c.connect(d.socket);
    co_await launch_sleeper(c, 1);
    // What the daemon holds with a running task; what follows may add a few
    // MiB of buffers (more under a sanitizer's allocator), never what its
    // clients push at it.
    const std::size_t base_kib = vm_rss_kib(daemon);
    constexpr std::size_t bound_kib = 24 * 1024;
    // A client that reads nothing: `yes` ends up blocked in its writes, and
    // the daemon holds a bounded amount of it.
    client slow;
    co_await slow.connect(d.socket);
    co_await slow.send(1, "ExecStreaming.Start", json::parse(R"({"cmd":"/usr/bin/yes"})"));
    // Its pid, from another view: the only yes of the daemon's children.
    const int yes = co_await session_child(daemon, "yes");
    BOOST_REQUIRE(yes > 0);
    BOOST_TEST(co_await wait_blocked_in(yes, "pipe_write"));
    BOOST_TEST(vm_rss_kib(daemon) - base_kib < bound_kib);

    // A client flooding the stdin of a command that never reads: the daemon
    // stops reading that connection, serves the others, and stays bounded.
    client flood;
    co_await flood.connect(d.socket);
    auto s = co_await flood.call(1, "ExecStreaming.Start",
                                 json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
    const std::string sid(s.at("result").at("session").as_string());
    const int sink = static_cast<int>(s.at("result").at("pid").as_int64());
    const std::string piece =
        R"({"jsonrpc":"2.0","method":"ExecStreaming.Input","params":{"session":")" + sid +
        R"(","data":")" + base64_encode(std::string(192 * 1024, 'z')) + "\"}}\n";
    std::string all;
    for (int i = 0; i < 256; ++i)  // 48 MiB of input
      all += piece;
    bool sent = false;
    send_in_background(flood, all, sent);
    BOOST_TEST((co_await c.call(2, "Version")).contains("result"));
    client other;
    co_await other.connect(d.socket);
    BOOST_TEST((co_await other.call(1, "Version")).contains("result"));
    BOOST_TEST(!sent);  // 48 MiB were not taken: the daemon applies backpressure
    BOOST_TEST(vm_rss_kib(daemon) - base_kib < bound_kib);
    slow.close();
    BOOST_TEST(co_await wait_gone(yes));
    flood.close();  // gone while the daemon does not read from it
    BOOST_TEST(co_await wait_gone(sink));
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

// ---------------------------------------------------------------- "fds"

namespace {

// A blocking client of the daemon that reads with recvmsg (the daemon's
// descriptors come with an answer); every wait bounded by SO_RCVTIMEO.
struct fd_client {
  int fd = -1;
  std::string buffered;
  std::vector<int> fds;  // received, in order
  explicit fd_client(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    const timeval tv{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  ~fd_client() {
    close_fds();
    if (fd >= 0)
      ::close(fd);
  }
  void close_fds() {
    for (int f : fds)
      ::close(f);
    fds.clear();
  }
  void send(const std::string& line) {
    BOOST_REQUIRE(::send(fd, line.data(), line.size(), MSG_NOSIGNAL) ==
                  static_cast<ssize_t>(line.size()));
  }
  json::object next() {
    auto v = next_value();
    BOOST_REQUIRE(v.is_object());
    return v.as_object();
  }
  // The next message; descriptors that came on the way are kept in `fds`.
  json::value next_value() {
    for (;;) {
      if (auto nl = buffered.find('\n'); nl != std::string::npos) {
        auto line = buffered.substr(0, nl);
        buffered.erase(0, nl + 1);
        return json::parse(line);
      }
      char buf[65536];
      iovec iov{buf, sizeof(buf)};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
      BOOST_REQUIRE_MESSAGE(n > 0, "recvmsg: " << n << " " << std::strerror(errno));
      BOOST_REQUIRE((msg.msg_flags & MSG_CTRUNC) == 0);
      for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        BOOST_REQUIRE(cm->cmsg_type == SCM_RIGHTS);
        const std::size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < k; ++i) {
          int f = -1;
          std::memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
          fds.push_back(f);
        }
      }
      buffered.append(buf, static_cast<std::size_t>(n));
    }
  }
  json::object call(int id, const std::string& method, const std::string& params) {
    send(R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":")" + method +
         R"(","params":)" + params + "}\n");
    return next();
  }
};

// Everything from `fd` until its end (EOF; EIO for a terminal nobody holds).
std::string read_to_end(int fd) {
  std::string all;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      all.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    return all;
  }
}

std::size_t open_fds(int pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    ++n;
  return n;
}

// The daemon's descriptors drop back to `want` (a session's end is handled
// on its io thread a moment after the client sees it), polled with a bound.
asio::awaitable<std::size_t> fds_settle(int pid, std::size_t want) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  std::size_t n = open_fds(pid);
  for (int i = 0; i < 500 && n != want; ++i) {
    t.expires_after(20ms);
    co_await t.async_wait(asio::use_awaitable);
    n = open_fds(pid);
  }
  co_return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(passed_descriptors_carry_the_bytes_and_exited_the_code) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    const int daemon = d.task.pid();
    fd_client c(d.socket);
    auto early = c.call(1, "ExecStreaming.Start", R"({"cmd":"/bin/cat","fds":true})");
    BOOST_TEST(early.at("error").at("code").as_int64() == -32001);
    BOOST_TEST(c.fds.empty());
    auto launched = c.call(2, "Launch", R"({"cmd":"/bin/sleep","args":["1000"]})");
    BOOST_REQUIRE(launched.contains("result"));
    const std::size_t before = open_fds(daemon);

    // Pipes: stdin reaches the command, its stdout and stderr come back
    // byte for byte (all 256 byte values), and Exited has its code.
    auto st =
        c.call(3, "ExecStreaming.Start",
               R"({"cmd":"/bin/sh","args":["-c","cat; printf oops >&2; exit 5"],"fds":true})");
    BOOST_REQUIRE_MESSAGE(st.contains("result"), json::serialize(st));
    const int pid = static_cast<int>(st.at("result").at("pid").as_int64());
    BOOST_TEST(json::serialize(st) ==
               R"({"jsonrpc":"2.0","id":3,"result":{"session":"exec-1","pid":)" +
                   std::to_string(pid) + R"(,"fds":["stdin","stdout","stderr"]}})");
    BOOST_REQUIRE(c.fds.size() == 3u);
    for (int f : c.fds)
      BOOST_TEST((::fcntl(f, F_GETFL) & O_NONBLOCK) == 0);  // blocking, as documented
    std::string bytes;
    for (int round = 0; round < 64; ++round)
      for (int b = 0; b < 256; ++b)
        bytes += static_cast<char>(b);
    const int stdin_fd = c.fds[0];  // (no init-capture in a coroutine: GCC 12)
    std::thread writer([stdin_fd, &bytes] {
      std::size_t at = 0;
      while (at < bytes.size()) {
        const ssize_t n = ::write(stdin_fd, bytes.data() + at, bytes.size() - at);
        if (n <= 0)
          break;
        at += static_cast<std::size_t>(n);
      }
      ::close(stdin_fd);
    });
    const std::string out = read_to_end(c.fds[1]);
    writer.join();
    c.fds.erase(c.fds.begin());  // stdin: closed by the writer
    BOOST_TEST(out.size() == bytes.size());
    BOOST_TEST((out == bytes));
    BOOST_TEST(read_to_end(c.fds[1]) == "oops");
    auto exited = c.next();
    BOOST_TEST(
        json::serialize(exited) ==
        R"({"jsonrpc":"2.0","method":"ExecStreaming.Exited","params":{"session":"exec-1","exit_code":5}})");
    c.close_fds();
    // No Output came on the socket, and the session is over.
    auto gone = c.call(4, "ExecStreaming.Cancel", R"({"session":"exec-1"})");
    BOOST_TEST(gone.at("error").at("code").as_int64() == -32009);
    BOOST_TEST(co_await fds_settle(daemon, before) == before);

    // A terminal: its master alone; input typed, output with the
    // terminal's line endings; exit code through Exited.
    auto tty = c.call(
        5, "ExecStreaming.Start",
        R"({"cmd":"/bin/sh","args":["-c","read x; echo got $x; exit 3"],"tty":true,"tty_size":{"height":30,"width":90},"fds":true})");
    BOOST_REQUIRE_MESSAGE(tty.contains("result"), json::serialize(tty));
    BOOST_TEST(tty.at("result").at("fds") == json::parse(R"(["pty"])"));
    BOOST_REQUIRE(c.fds.size() == 1u);
    winsize ws{};
    BOOST_TEST(::ioctl(c.fds[0], TIOCGWINSZ, &ws) == 0);
    BOOST_TEST(ws.ws_row == 30);
    BOOST_TEST(ws.ws_col == 90);
    const std::string typed = "abc\n";
    BOOST_REQUIRE(::write(c.fds[0], typed.data(), typed.size()) == 4);
    const std::string screen = read_to_end(c.fds[0]);  // EIO once the shell exited
    BOOST_TEST(screen == "abc\r\ngot abc\r\n");
    auto tty_exit = c.next();
    BOOST_TEST(tty_exit.at("params").at("exit_code").as_int64() == 3);
    c.close_fds();
    BOOST_TEST(co_await fds_settle(daemon, before) == before);

    // Cancel kills a command whose descriptors the client holds.
    auto sl =
        c.call(6, "ExecStreaming.Start", R"({"cmd":"/bin/sleep","args":["1000"],"fds":true})");
    const int sleeper = static_cast<int>(sl.at("result").at("pid").as_int64());
    BOOST_REQUIRE(c.fds.size() == 3u);
    const std::string sid(sl.at("result").at("session").as_string());
    // Input is refused: the descriptors are the client's.
    auto in = c.call(7, "ExecStreaming.Input", R"({"session":")" + sid + R"(","data":"aGk="})");
    BOOST_TEST(in.at("error").at("code").as_int64() == -32007);
    BOOST_TEST(in.at("error").at("message").as_string() ==
               "session \"" + sid +
                   "\" passed its descriptors (fds): its input, end of input and terminal size go "
                   "through them");
    auto cancel = c.call(8, "ExecStreaming.Cancel", R"({"session":")" + sid + R"("})");
    BOOST_TEST(cancel.contains("result"));
    auto killed = c.next();
    BOOST_TEST(killed.at("method").as_string() == "ExecStreaming.Exited");
    BOOST_TEST(killed.at("params").at("exit_code").as_int64() == 128 + SIGKILL);
    BOOST_TEST(co_await wait_gone(sleeper));
    c.close_fds();
    BOOST_TEST(co_await fds_settle(daemon, before) == before);

    // Refused: fds that is not a boolean, fds in a batch (nothing started,
    // no descriptor sent).
    auto bad = c.call(9, "ExecStreaming.Start", R"({"cmd":"/bin/cat","fds":"yes"})");
    BOOST_TEST(bad.at("error").at("code").as_int64() == -32602);
    BOOST_TEST(bad.at("error").at("data").at("field").as_string() == "fds");
    BOOST_TEST(bad.at("error").at("message").as_string() == "fds must be a boolean");
    c.send(
        R"([{"jsonrpc":"2.0","id":10,"method":"ExecStreaming.Start","params":{"cmd":"/bin/cat","fds":true}}])"
        "\n");
    auto batch = c.next_value();
    BOOST_TEST(
        json::serialize(batch) ==
        R"([{"jsonrpc":"2.0","id":10,"error":{"code":-32602,"message":"fds cannot be asked for in a batch: the descriptors go with one answer of their own","data":{"field":"fds"}}}])");
    BOOST_TEST(c.fds.empty());
    BOOST_TEST(co_await fds_settle(daemon, before) == before);
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_CASE(passed_descriptors_never_leak_in_the_daemon) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    const int daemon = d.task.pid();
    fd_client ctl(d.socket);  // open throughout: the count below includes it
    auto launched = ctl.call(1, "Launch", R"({"cmd":"/bin/sleep","args":["1000"]})");
    BOOST_REQUIRE(launched.contains("result"));
    const std::size_t before = open_fds(daemon);
    // Clients that take descriptors and vanish, with their sessions
    // running (pipes and ttys), and one that never reads its answer: each
    // command is killed, and the daemon holds no descriptor of any of them.
    std::vector<int> pids;
    for (int i = 0; i < 8; ++i) {
      fd_client c(d.socket);
      auto s = c.call(1, "ExecStreaming.Start",
                      i % 2 ? R"({"cmd":"/bin/sleep","args":["1000"],"fds":true})"
                            : R"({"cmd":"/bin/sleep","args":["1000"],"tty":true,"fds":true})");
      BOOST_REQUIRE_MESSAGE(s.contains("result"), json::serialize(s));
      pids.push_back(static_cast<int>(s.at("result").at("pid").as_int64()));
      BOOST_TEST(c.fds.size() == (i % 2 ? 3u : 1u));
    }
    {
      fd_client c(d.socket);
      c.send(
          R"({"jsonrpc":"2.0","id":1,"method":"ExecStreaming.Start","params":{"cmd":"/bin/sleep","args":["1002"],"fds":true}})"
          "\n");
      pids.push_back(co_await session_child(daemon, "sleep", 1002));
    }
    for (int pid : pids)
      BOOST_TEST(co_await wait_gone(pid));
    BOOST_TEST(co_await fds_settle(daemon, before) == before);
    BOOST_TEST((co_await d.task.shutdown("SIGTERM", 5s)).has_value());
  });
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// A pseudo-terminal the test owns: the CLI runs with the slave as its
// controlling terminal, the test reads and types on the master.
struct test_pty {
  int master = -1, slave = -1;
  asio::posix::stream_descriptor reader{harness::get().io};
  std::string seen;
  test_pty(unsigned short rows, unsigned short cols) {
    master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    BOOST_REQUIRE(master >= 0);
    BOOST_REQUIRE(::unlockpt(master) == 0);
    slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    BOOST_REQUIRE(slave >= 0);
    resize(rows, cols);
    reader.assign(::fcntl(master, F_DUPFD_CLOEXEC, 3));
  }
  ~test_pty() {
    if (slave >= 0)
      ::close(slave);
    ::close(master);
  }
  void resize(unsigned short rows, unsigned short cols) {
    winsize ws{};
    ws.ws_row = rows;
    ws.ws_col = cols;
    BOOST_REQUIRE(::ioctl(master, TIOCSWINSZ, &ws) == 0);
  }
  void type(const std::string& s) {
    BOOST_REQUIRE(::write(master, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  }
  termios mode() const {
    termios t{};
    ::tcgetattr(master, &t);
    return t;
  }
  /// Launch `cmd` on `t` with this terminal as its stdio and controlling
  /// terminal; only the task keeps the slave open then.
  asio::awaitable<void> launch_on(task_executor& t, exec_command cmd) {
    cmd.stdin_fd = cmd.stdout_fd = cmd.stderr_fd = slave;
    cmd.controlling_tty = true;
    auto r = co_await t.launch(std::move(cmd));
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    ::close(slave);
    slave = -1;
  }
  /// Read until what was seen ends with `want`; false at the end of output.
  asio::awaitable<bool> until(const std::string& want) {
    std::array<char, 4096> buf;
    while (seen.size() < want.size() ||
           seen.compare(seen.size() - want.size(), want.size(), want)) {
      auto [ec, n] =
          co_await reader.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec)
        co_return false;  // EIO: nobody holds the terminal any more
      seen.append(buf.data(), n);
    }
    co_return true;
  }
  asio::awaitable<void> rest() {
    for (;;) {
      const bool more = co_await until("\x01never\x02");
      if (!more)
        co_return;
    }
  }
};

// Wait (polling the terminal's mode, bounded) until the CLI put it in raw mode.
asio::awaitable<bool> wait_raw(const test_pty& pty) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 1500; ++i) {
    if ((pty.mode().c_lflag & (ICANON | ECHO)) == 0)
      co_return true;
    t.expires_after(20ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return false;
}

exec_command cli_command(const std::string& socket, std::vector<std::string> args) {
  exec_command cmd;
  cmd.cmd = TASKEXEC_CLI;
  cmd.args = {"--socket", socket, "exec"};
  cmd.args.insert(cmd.args.end(), args.begin(), args.end());
  cmd.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  return cmd;
}

}  // namespace

// A daemon of our own running `sleep 1000`, killed if the test fails.
struct daemon_with_task {
  temp_dir dir;
  std::optional<created_executor> created;
  std::unique_ptr<daemon_guard> guard;
  asio::awaitable<void> start() {
    auto c = co_await create_executor(harness::get().io.get_executor(), daemon_in(dir));
    BOOST_REQUIRE_MESSAGE(c, why(c));
    guard = std::make_unique<daemon_guard>(c->config.pid);
    created.emplace(std::move(*c));
    BOOST_REQUIRE(co_await created->client.launch(sh("exec sleep 1000")));
  }
};

BOOST_AUTO_TEST_SUITE(exec_streaming_cli)

BOOST_AUTO_TEST_CASE(exec_i_sends_stdin_and_passes_the_exit_code) {
  run([]() -> asio::awaitable<void> {
    daemon_with_task d;
    co_await d.start();
    auto& created = d.created;
    // With the daemon's descriptors (the default), and the JSON path.
    for (const bool json_path : {false, true}) {
      int in[2];
      BOOST_REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
      pipe_reader out, err;
      auto args = list("-i", "--", "/bin/sh", "-c", "cat; echo done >&2; exit 5");
      if (json_path)
        args.insert(args.begin(), "--no-fds");
      auto cmd = cli_command(created->config.socket, args);
      cmd.stdin_fd = in[0];
      cmd.stdout_fd = out.write_fd();
      cmd.stderr_fd = err.write_fd();
      task_executor cli(harness::get().reaper);
      BOOST_REQUIRE(co_await cli.launch(cmd));
      ::close(in[0]);
      out.close_write();
      err.close_write();
      const std::string text = "line one\nline two\n";
      BOOST_REQUIRE(::write(in[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
      ::close(in[1]);  // our end of input: the command's stdin ends
      BOOST_TEST(co_await out.rest() == text);
      BOOST_TEST(co_await err.rest() == "done\n");
      BOOST_TEST((co_await cli.wait())->exit_code == 5);
    }
    BOOST_TEST((co_await created->client.destroy()).has_value());
  });
}

BOOST_AUTO_TEST_CASE(exec_t_uses_raw_mode_forwards_resizes_and_restores_the_terminal) {
  run([]() -> asio::awaitable<void> {
    daemon_with_task d;
    co_await d.start();
    auto& created = d.created;
    const auto socket = created->config.socket;
    {
      // The size at the start and after a resize (SIGWINCH), then exit 7.
      // The trap is set before the first size is printed: a resize once
      // that is seen cannot come too early.
      test_pty pty(30, 90);
      auto cmd = cli_command(
          socket, list("-t", "--", "/bin/sh", "-c",
                       "trap 'stty size; exit 7' WINCH; stty size; while :; do sleep 0.05; done"));
      task_executor cli(harness::get().reaper);
      co_await pty.launch_on(cli, std::move(cmd));
      BOOST_REQUIRE(co_await pty.until("30 90\r\n"));
      BOOST_TEST(co_await wait_raw(pty));
      pty.resize(40, 100);
      BOOST_TEST(co_await pty.until("40 100\r\n"));
      BOOST_TEST((co_await cli.wait())->exit_code == 7);
      const auto restored = pty.mode();
      BOOST_TEST((restored.c_lflag & ICANON) != 0u);  // as it was before
      BOOST_TEST((restored.c_lflag & ECHO) != 0u);
    }
    {
      // Keys reach the command's terminal unechoed by ours: the input shows
      // twice (its terminal's echo, then head), never three times.
      test_pty pty(24, 80);
      auto cmd = cli_command(socket, list("-it", "--", "head", "-n1"));
      task_executor cli(harness::get().reaper);
      co_await pty.launch_on(cli, std::move(cmd));
      BOOST_REQUIRE(co_await wait_raw(pty));
      pty.type("typed\n");
      co_await pty.rest();
      BOOST_TEST(pty.seen == "typed\r\ntyped\r\n");
      BOOST_TEST((co_await cli.wait())->exit_code == 0);
    }
    BOOST_TEST((co_await created->client.destroy()).has_value());
  });
}

BOOST_AUTO_TEST_SUITE_END()
