// remote_executor, create_executor and reattach_to_executor against a real
// taskexecd.
#include <signal.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "taskexec/detail/proc.hpp"
#include "taskexec/remote_executor.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

create_options options_in(const temp_dir& dir) {
  create_options o;
  o.daemon_path = TASKEXECD;
  o.socket_path = dir / "run/d.sock";
  o.log_file = dir / "taskexecd.log";
  o.log_level = "debug";
  o.kill_grace = std::chrono::milliseconds(2000);
  return o;
}

template <class T>
std::string why(const result<T>& r) {
  return r ? std::string() : r.error().message;
}

bool has_code(const error& e, errc c) {
  return e.code == make_error_code(c);
}

// A script that writes bytes that are not UTF-8, and a NUL.
std::vector<std::string> raw_bytes_script() {
  return {"-c", "printf 'a\\377b\\000c\\n'; exit 5"};
}

std::vector<std::string> types_of(const event_page& page) {
  std::vector<std::string> out;
  for (const auto& e : page.events)
    out.emplace_back(e.at("type").as_string());
  return out;
}

// Destroy through `c`, then require the daemon gone and its socket removed.
asio::awaitable<void> destroy_and_check(remote_executor& c, const reattach_config& cfg) {
  auto d = co_await c.destroy();
  BOOST_TEST(d.has_value(), why(d));
  BOOST_TEST(co_await wait_gone(cfg.pid));
  BOOST_TEST(!std::filesystem::exists(cfg.socket));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(remote)

BOOST_AUTO_TEST_CASE(create_launch_reattach_and_destroy) {
  run([]() -> asio::awaitable<void> {
    auto& io = harness::get().io;
    temp_dir dir;
    auto created = co_await create_executor(io.get_executor(), options_in(dir));
    BOOST_REQUIRE_MESSAGE(created, why(created));
    auto& a = created->client;
    const auto cfg = created->config;
    BOOST_TEST(cfg.socket == dir / "run/d.sock");
    BOOST_TEST(a.daemon_pid() == cfg.pid);
    BOOST_TEST(detail::read_proc_stat(cfg.pid)->start_ticks == cfg.pid_start_time);
    // A daemon in a session of its own (not its leader: it can never get a
    // controlling terminal), so no signal to our group or session reaches it.
    BOOST_TEST(detail::read_proc_stat(cfg.pid)->session != ::getsid(0));
    BOOST_TEST(detail::read_proc_stat(cfg.pid)->session != cfg.pid);
    BOOST_TEST(harness::get().reaper.watching(cfg.pid));
    auto round = parse_reattach_config(to_json(cfg));
    BOOST_REQUIRE(round);
    BOOST_TEST((*round == cfg));

    BOOST_TEST(*co_await a.version() == "2.0.0");
    auto launched = co_await a.launch(sh("exec sleep 1000"));
    BOOST_REQUIRE_MESSAGE(launched, why(launched));
    BOOST_TEST(launched->exit_code == -1);
    BOOST_TEST(alive(launched->pid));
    auto again = co_await a.launch(sh("true"));
    BOOST_TEST(has_code(again.error(), errc::already_launched));
    // Exec's output exactly as the command wrote it (output_base64).
    auto ex = co_await a.exec("/bin/sh", raw_bytes_script(), std::chrono::milliseconds(10000));
    BOOST_REQUIRE_MESSAGE(ex, why(ex));
    BOOST_TEST(ex->output == std::string("a\xff"
                                         "b\0c\n",
                                         6));
    BOOST_TEST(ex->exit_code == 5);
    auto timed = co_await a.wait_for(std::chrono::milliseconds(20));
    BOOST_TEST(has_code(timed.error(), errc::timed_out));

    // A pending wait on one client; a second client attaches and stops the task.
    std::optional<result<process_state>> waited;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { waited = co_await a.wait(); }, asio::detached);
    auto b = co_await reattach_to_executor(io.get_executor(), cfg);
    BOOST_REQUIRE_MESSAGE(b, why(b));
    BOOST_TEST(b->daemon_pid() == cfg.pid);
    BOOST_TEST((co_await b->signal("SIGUSR1")).has_value());  // sleep dies of it
    auto st = co_await b->wait();
    BOOST_REQUIRE_MESSAGE(st, why(st));
    BOOST_TEST(st->signal == SIGUSR1);
    BOOST_TEST(st->exit_code == 128 + SIGUSR1);
    BOOST_TEST(st->pid == launched->pid);
    BOOST_TEST((co_await a.version()).has_value());  // lets the spawned wait finish
    BOOST_REQUIRE(waited.has_value());
    BOOST_TEST((waited->value() == *st));
    auto not_running = co_await b->signal(SIGTERM);
    BOOST_TEST(has_code(not_running.error(), errc::task_exited));

    auto ev = co_await b->events(0);
    BOOST_REQUIRE_MESSAGE(ev, why(ev));
    BOOST_TEST((types_of(*ev) == std::vector<std::string>{"launched", "signalled", "exited"}));
    BOOST_TEST(!ev->more);
    auto later = co_await b->events(ev->next);
    BOOST_TEST(later->events.empty());
    // Pages: one event at a time, `more` until the last.
    auto one = co_await b->events(0, 1);
    BOOST_REQUIRE_MESSAGE(one, why(one));
    BOOST_TEST(types_of(*one).size() == 1u);
    BOOST_TEST(one->more);
    BOOST_TEST(one->next == 2u);

    // An unknown method through the raw call: the daemon's own words.
    auto raw = co_await b->call("NoSuchMethod");
    BOOST_TEST(has_code(raw.error(), errc::unsupported));
    auto stats = co_await b->stats();
    BOOST_TEST(has_code(stats.error(), errc::task_exited));

    co_await destroy_and_check(*b, cfg);
    // The other client learns the connection is gone.
    auto lost = co_await a.version();
    BOOST_TEST(has_code(lost.error(), errc::connection_failed));
    BOOST_TEST(!a.connected());
  });
}

BOOST_AUTO_TEST_CASE(stats_arrive_as_a_stream) {
  run([]() -> asio::awaitable<void> {
    auto ex = harness::get().io.get_executor();
    temp_dir dir;
    auto created = co_await create_executor(ex, options_in(dir));
    BOOST_REQUIRE_MESSAGE(created, why(created));
    auto& c = created->client;
    // A busy loop: its CPU percent must show, and never above 100 x cores.
    auto launched = co_await c.launch(sh("while :; do :; done"));
    BOOST_REQUIRE(launched);
    auto stream = co_await c.stats(std::chrono::milliseconds(200));
    BOOST_REQUIRE_MESSAGE(stream, why(stream));
    auto first = co_await stream->next();
    BOOST_REQUIRE_MESSAGE(first, why(first));
    BOOST_TEST(first->at("pids").as_object().contains(std::to_string(launched->pid)));
    // What the loop got from the kernel over the same samples (its
    // utime + stime), beside what the stream says: on a loaded machine the
    // loop gets less than a core, and the percent must say so.
    const auto ticks_of = [pid = launched->pid] {
      std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
      std::string text((std::istreambuf_iterator<char>(in)), {});
      std::istringstream rest(text.substr(text.rfind(')') + 2));
      std::string field;
      long utime = 0, stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14)
          utime = std::stol(field);
        if (i == 15)
          stime = std::stol(field);
      }
      return utime + stime;
    };
    const long ticks0 = ticks_of();
    const auto wall0 = std::chrono::steady_clock::now();
    double percent = 0, sum = 0;
    for (int i = 0; i < 3; ++i) {
      auto next = co_await stream->next();
      BOOST_REQUIRE_MESSAGE(next, why(next));
      percent = next->at("resource_usage").at("cpu_stats").at("percent").as_double();
      sum += percent;
      BOOST_TEST(percent <= 100.0 * std::thread::hardware_concurrency() + 1);
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    const double got = 100.0 * static_cast<double>(ticks_of() - ticks0) /
                       static_cast<double>(::sysconf(_SC_CLK_TCK)) / wall;
    BOOST_TEST_INFO("reported " << sum / 3 << "% on average; the kernel's account: " << got << "%");
    BOOST_TEST(got > 1.0);  // the loop ran
    // The same figure within a factor of two (the windows differ by up to
    // one interval and the kernel counts in ticks).
    BOOST_TEST(sum / 3 > got / 2);
    BOOST_TEST(sum / 3 < got * 2 + 10);
    BOOST_TEST((co_await stream->cancel()).has_value());
    auto after = co_await stream->next();
    BOOST_TEST(has_code(after.error(), errc::operation_canceled));
    // A stream replaced by assignment ends its subscription on the daemon.
    auto s1 = co_await c.stats(std::chrono::milliseconds(10000));
    auto s2 = co_await c.stats(std::chrono::milliseconds(10000));
    BOOST_REQUIRE(s1 && s2);
    const std::string replaced = s1->subscription();
    *s1 = std::move(*s2);
    boost::json::object params;
    params["subscription"] = replaced;
    auto gone = co_await c.call("Stats.Cancel", params);
    BOOST_TEST(has_code(gone.error(), errc::unknown_subscription));
    // The task exits: the stream ends with task_exited (Stats.End), not silence.
    auto s3 = co_await c.stats(std::chrono::milliseconds(100000));
    BOOST_REQUIRE(s3);
    BOOST_REQUIRE((co_await s3->next()).has_value());  // the first sample
    BOOST_TEST((co_await c.signal(SIGKILL)).has_value());
    auto end = co_await s3->next();
    BOOST_REQUIRE(!end);
    BOOST_TEST(has_code(end.error(), errc::task_exited), end.error().message);
    co_await destroy_and_check(c, created->config);
  });
}

BOOST_AUTO_TEST_CASE(reattach_is_refused_unless_the_daemon_is_proven) {
  run([]() -> asio::awaitable<void> {
    auto ex = harness::get().io.get_executor();
    temp_dir dir;
    auto created = co_await create_executor(ex, options_in(dir));
    BOOST_REQUIRE_MESSAGE(created, why(created));
    const auto cfg = created->config;

    auto moved = cfg;  // the same pid number, another start time: a reused pid
    moved.pid_start_time += 1;
    auto r1 = co_await reattach_to_executor(ex, moved);
    BOOST_REQUIRE(!r1);
    BOOST_TEST(has_code(r1.error(), errc::reattach_refused));
    BOOST_TEST(r1.error().message.find("another process") != std::string::npos, r1.error().message);
    BOOST_TEST(alive(cfg.pid));  // nothing was signalled

    // A live process with the right start time that does not serve the socket.
    auto me = cfg;
    me.pid = ::getpid();
    me.pid_start_time = detail::read_proc_stat(me.pid)->start_ticks;
    auto r2 = co_await reattach_to_executor(ex, me);
    BOOST_REQUIRE(!r2);
    BOOST_TEST(has_code(r2.error(), errc::reattach_refused));
    BOOST_TEST(
        r2.error().message.find("is served by pid " + std::to_string(cfg.pid)) != std::string::npos,
        r2.error().message);

    auto nothing = cfg;
    nothing.socket = dir / "nobody-listens.sock";
    auto r3 = co_await reattach_to_executor(ex, nothing);
    BOOST_TEST(has_code(r3.error(), errc::reattach_refused));

    BOOST_TEST(has_code(parse_reattach_config(R"({"socket":"s","pid":1})").error(),
                        errc::invalid_argument));
    BOOST_TEST(parse_reattach_config(R"({"socket":"s","pid":1,"pid_start_time":2,"x":1})")
                   .error()
                   .message == "reattach config: unknown field \"x\"");

    co_await destroy_and_check(created->client, cfg);
    auto gone = co_await reattach_to_executor(ex, cfg);
    BOOST_TEST(has_code(gone.error(), errc::reattach_refused));
    BOOST_TEST(gone.error().message.find("is gone") != std::string::npos, gone.error().message);
  });
}

BOOST_AUTO_TEST_CASE(startup_failures_are_reported) {
  run([]() -> asio::awaitable<void> {
    auto ex = harness::get().io.get_executor();
    temp_dir dir;
    auto first = co_await create_executor(ex, options_in(dir));
    BOOST_REQUIRE_MESSAGE(first, why(first));

    // The socket is served: the second daemon says so and exits.
    auto second = co_await create_executor(ex, options_in(dir));
    BOOST_REQUIRE(!second);
    BOOST_TEST(has_code(second.error(), errc::launch_failed));
    BOOST_TEST(
        second.error().message.find("taskexecd exited before its handshake: taskexecd: ") == 0,
        second.error().message);

    auto o = options_in(dir);
    o.daemon_path = dir / "no-such-daemon";
    BOOST_TEST(has_code((co_await create_executor(ex, o)).error(), errc::binary_not_found));

    // A daemon that never greets: killed after the timeout.
    write_file(dir / "mute.sh",
               "#!/bin/sh\necho $$ > " + (dir / "mute.pid") + "\nexec sleep 1000\n", 0755);
    o.daemon_path = dir / "mute.sh";
    o.socket_path = dir / "mute.sock";
    o.handshake_timeout = std::chrono::milliseconds(300);
    auto mute = co_await create_executor(ex, o);
    BOOST_REQUIRE(!mute);
    BOOST_TEST(has_code(mute.error(), errc::timed_out), mute.error().message);
    BOOST_TEST(co_await wait_gone(std::stoi(read_file(dir / "mute.pid"))));

    write_file(dir / "plain", "not a program\n", 0644);  // no execute bit
    o.daemon_path = dir / "plain";
    BOOST_TEST(has_code((co_await create_executor(ex, o)).error(), errc::binary_not_found));
    // Executable but no program: exec's own errno.
    write_file(dir / "garbage",
               std::string("\x7f"
                           "ELF garbage\n"),
               0755);
    o.daemon_path = dir / "garbage";
    auto garbage = co_await create_executor(ex, o);
    BOOST_REQUIRE(!garbage);
    BOOST_TEST((garbage.error().code ==
                boost::system::error_code(ENOEXEC, boost::system::system_category())));
    BOOST_TEST(garbage.error().message ==
               "cannot run " + (dir / "garbage") + ": Exec format error");
    create_options empty;  // a named value: GCC 12 mishandles temporaries in co_await
    BOOST_TEST(has_code((co_await create_executor(ex, empty)).error(), errc::invalid_argument));

    co_await destroy_and_check(first->client, first->config);
  });
}

// The agent dies (SIGKILL) with a Wait pending; the task exits while no
// client is connected; a new client reattaches and learns everything.
BOOST_AUTO_TEST_CASE(a_killed_client_loses_nothing) {
  run([]() -> asio::awaitable<void> {
    auto ex = harness::get().io.get_executor();
    temp_dir dir;
    pipe_reader out;
    task_executor client_process(harness::get().reaper);
    exec_command cmd;
    cmd.cmd = TASKEXEC_TEST_HELPER;
    cmd.args = {"--remote-client", TASKEXECD, dir / "agent.sock"};
    cmd.stdout_fd = out.write_fd();
    BOOST_REQUIRE(co_await client_process.launch(cmd));
    out.close_write();
    auto line = co_await out.line();
    BOOST_REQUIRE_MESSAGE(!line.empty(), "the client printed no reattach config");
    auto saved = json::parse(line).as_object();
    const int task_pid = static_cast<int>(saved.at("task_pid").as_int64());
    saved.erase("task_pid");
    auto cfg = parse_reattach_config(json::serialize(saved));
    BOOST_REQUIRE_MESSAGE(cfg, why(cfg));
    // The client has no child_reaper: it reaped its intermediate child through
    // a pidfd, and the daemon, a grandchild in its own session, is not its child.
    for (const auto& p : detail::scan_processes())
      BOOST_TEST(p.ppid != client_process.pid(), "left child " << p.pid << " " << p.comm);
    BOOST_TEST(detail::read_proc_stat(cfg->pid)->ppid == ::getpid());  // we are the subreaper

    BOOST_TEST((co_await client_process.signal(SIGKILL)).has_value());
    BOOST_TEST((co_await client_process.wait())->signal == SIGKILL);
    BOOST_TEST(alive(cfg->pid));  // the daemon outlives its client
    BOOST_TEST(alive(task_pid));

    BOOST_TEST(::kill(task_pid, SIGTERM) == 0);  // the task ends with nobody listening
    BOOST_TEST(co_await wait_gone(task_pid));

    auto back = co_await reattach_to_executor(ex, *cfg);
    BOOST_REQUIRE_MESSAGE(back, why(back));
    auto st = co_await back->wait();
    BOOST_REQUIRE_MESSAGE(st, why(st));
    BOOST_TEST(st->pid == task_pid);
    BOOST_TEST(st->signal == SIGTERM);
    auto ev = co_await back->events();
    BOOST_REQUIRE(ev);
    BOOST_TEST((types_of(*ev) == std::vector<std::string>{"launched", "exited"}));
    BOOST_TEST(ev->events.back().at("state").at("signal").as_int64() == SIGTERM);
    co_await destroy_and_check(*back, *cfg);
  });
}

BOOST_AUTO_TEST_CASE(connecting_to_nothing_is_a_clear_error) {
  run([]() -> asio::awaitable<void> {
    temp_dir dir;
    exec_command cmd;
    cmd.cmd = TASKEXEC_TEST_HELPER;
    cmd.args = {"--remote-version", dir / "none.sock"};
    int code = -1;
    auto text = co_await output_of(cmd, &code);
    BOOST_TEST(code == 0);
    BOOST_TEST(text.find(std::to_string(static_cast<int>(errc::connection_failed)) +
                         " cannot connect to taskexecd at " + (dir / "none.sock")) == 0,
               text);
  });
}

BOOST_AUTO_TEST_SUITE_END()
