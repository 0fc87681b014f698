// Bounds on what clients make the daemon do and hold (docs/protocol.md,
// Limits): the total work of Stats sampling whatever the subscriptions, and
// the memory ExecStreaming.Input may hold per connection.
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/detail/proc.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

// CPU time (user + system) of `pid` in clock ticks.
std::uint64_t cpu_ticks(int pid) {
  auto st = detail::read_proc_stat(pid);
  BOOST_REQUIRE(st);
  return st->utime_ticks + st->stime_ticks;
}

// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
std::uint64_t status_kib(int pid, const std::string& field) {
  auto v = detail::parse_status_kib(read_file("/proc/" + std::to_string(pid) + "/status"), field);
  BOOST_REQUIRE(v);
  return *v;
}

asio::awaitable<void> pause_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// The text between `key` and the next `end` in `line` (empty when absent).
std::string_view field_after(std::string_view line, std::string_view key, char end) {
  auto at = line.find(key);
  if (at == std::string_view::npos)
    return {};
  line.remove_prefix(at + key.size());
  return line.substr(0, line.find(end));
}

// A connection that holds Stats subscriptions and reads every sample as it
// comes, without parsing whole samples (the test must outpace the daemon):
// per subscription the number of samples, and the samples' timestamps.
struct stats_reader {
  local::socket sock{harness::get().io};
  std::map<std::string, std::uint64_t> samples;  // by subscription
  std::set<std::string> timestamps;              // of every sample since cleared
  std::uint64_t answers = 0;
  std::uint64_t bytes = 0;
  bool closed = false;

  asio::awaitable<void> read_all() {
    std::string buf;
    std::array<char, 256 * 1024> chunk;
    for (;;) {
      auto [ec, n] =
          co_await sock.async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
      if (ec)
        break;
      buf.append(chunk.data(), n);
      bytes += n;
      std::size_t start = 0;
      for (auto nl = buf.find('\n'); nl != std::string::npos; nl = buf.find('\n', start)) {
        std::string_view line(buf.data() + start, nl - start);
        start = nl + 1;
        // The envelope comes first; the usage (tens of KiB) is not looked at.
        const auto head = line.substr(0, 200);
        if (head.find(R"("method":"Stats.Sample")") != std::string_view::npos) {
          ++samples[std::string(field_after(head, R"("subscription":")", '"'))];
          timestamps.insert(std::string(field_after(head, R"("timestamp_unix_nano":)", ',')));
        } else if (head.find(R"("result":{"subscription")") != std::string_view::npos) {
          ++answers;
        }
      }
      buf.erase(0, start);
    }
    closed = true;
  }
};

void spawn_reader(stats_reader& r) {
  asio::co_spawn(harness::get().io, r.read_all(), [](std::exception_ptr e) {
    if (e)
      std::rethrow_exception(e);
  });
}

// Stats requests with these intervals, ids from `first_id`, in one write.
std::string stats_requests(const std::vector<int>& intervals, int first_id) {
  std::string text;
  int id = first_id;
  for (int ms : intervals)
    text += R"({"jsonrpc":"2.0","id":)" + std::to_string(id++) +
            R"(,"method":"Stats","params":{"interval_ms":)" + std::to_string(ms) + "}}\n";
  return text;
}

// Launch a task of 51 processes (a shell and 50 sleeps) through `c`; its pid
// once all 51 exist.
asio::awaitable<int> launch_fifty_one(client& c) {
  auto l = co_await c.call(1, "Launch", json::parse(R"({"cmd":"/bin/sh","args":["-c",
      "for i in $(seq 50); do sleep 1000 & done; wait"]})"));
  BOOST_REQUIRE_MESSAGE(l.contains("result"), json::serialize(l));
  const int pid = static_cast<int>(l.at("result").at("pid").as_int64());
  for (int i = 0; i < 1000; ++i) {
    auto kids = detail::scan_descendants(pid);
    BOOST_REQUIRE(kids);
    if (std::count_if(kids->begin(), kids->end(),
                      [](const auto& p) { return p.comm == "sleep"; }) == 50)
      co_return pid;
    co_await pause_for(10ms);
  }
  BOOST_FAIL("the task did not reach 51 processes within 10 s");
  co_return pid;
}

// A call on `c` whose answer may come after notifications (skipped).
asio::awaitable<json::object> call_skipping_notes(client& c, int id, std::string method,
                                                  json::value params = nullptr) {
  co_await c.send(id, std::move(method), std::move(params));
  for (;;) {
    auto v = co_await c.next();
    BOOST_REQUIRE_MESSAGE(!v.is_null(), "connection closed waiting for id " << id);
    auto& o = v.as_object();
    if (o.contains("id") && o.at("id").is_int64() && o.at("id").as_int64() == id)
      co_return o;
  }
}

// {"subscription": id}, built outside the coroutines (GCC 12).
json::value subscription_param(const std::string& id) {
  json::object o;
  o["subscription"] = id;
  return o;
}

// Until every reader has `n` answers and each of its subscriptions a
// sample (polled, with a generous bound).
asio::awaitable<void> until_all_sampled(std::vector<std::unique_ptr<stats_reader>>& readers,
                                        std::uint64_t n) {
  for (int i = 0; i < 3000; ++i) {
    bool all = true;
    for (auto& r : readers)
      all = all && r->answers == n && r->samples.size() == n;
    if (all)
      co_return;
    co_await pause_for(10ms);
  }
  BOOST_FAIL("not every subscription was answered and sampled within 30 s");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stats_sampling_bound)

// The issue's flood: 10 connections with 16 subscriptions each at 10 ms on a
// task of 51 processes. Subscriptions of one interval share one sample per
// tick, so the daemon reads the task at most once per 10 ms: it stays far
// from a full core, Version stays quick, and every subscription still gets
// its samples (before: 160 samplers took 100% of a core and Version 193 ms).
BOOST_AUTO_TEST_CASE(a_flood_of_subscriptions_shares_one_sample_per_tick) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    const int daemon_pid = static_cast<int>(d.hello.at("pid").as_int64());
    client c;
    co_await c.connect(d.socket);
    co_await launch_fifty_one(c);

    std::vector<std::unique_ptr<stats_reader>> readers;
    for (int i = 0; i < 10; ++i) {
      readers.push_back(std::make_unique<stats_reader>());
      co_await readers.back()->sock.async_connect(local::endpoint(d.socket), asio::use_awaitable);
      co_await asio::async_write(readers.back()->sock,
                                 asio::buffer(stats_requests(std::vector<int>(16, 10), 1)),
                                 asio::use_awaitable);
      spawn_reader(*readers.back());
    }
    co_await until_all_sampled(readers, 16);

    // The window: a Version round trip every 20 ms on another connection
    // meanwhile (paced: back to back, they would be the load themselves).
    std::map<std::string, std::uint64_t> before;
    std::uint64_t bytes_before = 0;
    for (auto& r : readers) {
      bytes_before += r->bytes;
      r->timestamps.clear();
      for (auto& [id, n] : r->samples)
        before[id] = n;
    }
    const auto window = 2s;
    const auto t0 = std::chrono::steady_clock::now();
    const auto cpu0 = cpu_ticks(daemon_pid);
    std::vector<double> rtt_ms;
    for (int id = 100; std::chrono::steady_clock::now() - t0 < window; ++id) {
      const auto s = std::chrono::steady_clock::now();
      auto v = co_await c.call(id, "Version");
      BOOST_REQUIRE(v.contains("result"));
      rtt_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
      co_await pause_for(20ms);
    }
    const auto cpu1 = cpu_ticks(daemon_pid);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu_share =
        static_cast<double>(cpu1 - cpu0) / static_cast<double>(::sysconf(_SC_CLK_TCK)) / elapsed;
    std::sort(rtt_ms.begin(), rtt_ms.end());
    const double p50 = rtt_ms[rtt_ms.size() / 2];
    std::set<std::string> readings;
    std::uint64_t delivered = 0, bytes = 0;
    bool every_one_sampled = true;
    for (auto& r : readers) {
      bytes += r->bytes;
      readings.insert(r->timestamps.begin(), r->timestamps.end());
      for (auto& [id, n] : r->samples) {
        delivered += n - before[id];
        every_one_sampled = every_one_sampled && n > before[id];
      }
    }
    BOOST_TEST_MESSAGE("stats flood: daemon CPU "
                       << cpu_share * 100 << "% of a core, Version p50 " << p50 << " ms ("
                       << rtt_ms.size() << " calls), " << readings.size() << " readings and "
                       << delivered << " samples delivered ("
                       << (bytes - bytes_before) / 1024 / 1024 << " MiB) in " << elapsed << " s");
    BOOST_TEST(every_one_sampled);  // each of the 160 got samples in the window
    // One reading of the task per 10 ms tick at most (a tick may be taken
    // late, never twice): before, each subscription took its own.
    BOOST_TEST(static_cast<double>(readings.size()) <= elapsed * 100 * 1.1 + 5);
    // The daemon's CPU: sending 160 subscribers ~16 KiB a tick costs some,
    // but it stays well away from a full core (before: all of one, or all
    // the scheduler gave it), and per sample delivered it is the sending,
    // not a reading of 51 processes (before: ~2 ms each).
    const double cpu_seconds =
        static_cast<double>(cpu1 - cpu0) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    BOOST_TEST(delivered > 0u);
#ifndef TASKEXEC_SANITIZED
    BOOST_TEST(cpu_share < 0.75);
    BOOST_TEST(cpu_seconds * 1000 / static_cast<double>(std::max<std::uint64_t>(delivered, 1)) <
               0.25);  // ms per sample
    BOOST_TEST(p50 < 50.0);
#else
    // A sanitizer multiplies the cost of sending by 5 to 15: the readings
    // bound above is what proves the sharing there; CPU and latency are
    // checked in the plain build.
    BOOST_TEST_MESSAGE("sanitizer build: CPU "
                       << cpu_share * 100 << "%, "
                       << cpu_seconds * 1000 /
                              static_cast<double>(std::max<std::uint64_t>(delivered, 1))
                       << " ms per sample, Version p50 " << p50
                       << " ms are checked in the plain build only");
#endif
    for (auto& r : readers)
      r->sock.close();
    BOOST_TEST((co_await c.call(2, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

// Subscriptions of different intervals have schedules of their own, but
// share the readings of the task: at most one per 10 ms in all. At most 16
// distinct intervals are in use at once.
BOOST_AUTO_TEST_CASE(distinct_intervals_share_readings_and_at_most_16_are_in_use) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    co_await launch_sleeper(c, 1);
    std::vector<int> intervals;
    for (int ms = 10; ms < 26; ++ms)
      intervals.push_back(ms);
    std::vector<std::unique_ptr<stats_reader>> readers;
    readers.push_back(std::make_unique<stats_reader>());
    auto& r = *readers.back();
    co_await r.sock.async_connect(local::endpoint(d.socket), asio::use_awaitable);
    co_await asio::async_write(r.sock, asio::buffer(stats_requests(intervals, 1)),
                               asio::use_awaitable);
    spawn_reader(r);
    co_await until_all_sampled(readers, 16);
    r.timestamps.clear();
    const auto t0 = std::chrono::steady_clock::now();
    co_await pause_for(1s);  // a measuring window, not a wait for an event
    const std::size_t readings = r.timestamps.size();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST_MESSAGE(readings << " readings in " << elapsed << " s for 16 intervals");
    // Alone, these schedules would read the task ~990 times a second.
    BOOST_TEST(static_cast<double>(readings) <= elapsed * 100 * 1.1 + 5);

    // A 17th interval is refused; one in use is not.
    auto over = co_await c.call(2, "Stats", json::parse(R"({"interval_ms":26})"));
    BOOST_REQUIRE_MESSAGE(over.contains("error"), json::serialize(over));
    BOOST_TEST(over.at("error").at("code").as_int64() == -32010);
    BOOST_TEST(over.at("error").at("message").as_string() ==
               "too many distinct Stats intervals in use (limit 16)");
    BOOST_TEST(over.at("error").at("data").at("limit").as_int64() == 16);
    co_await c.send(3, "Stats", json::parse(R"({"interval_ms":10})"));
    json::value answer;
    do  // its first sample may follow at once
      answer = co_await c.next();
    while (!answer.as_object().contains("id"));
    BOOST_TEST(answer.at("result").at("subscription").is_string());
    const auto cancel =
        subscription_param(std::string(answer.at("result").at("subscription").as_string()));
    BOOST_TEST((co_await call_skipping_notes(c, 4, "Stats.Cancel", cancel)).contains("result"));
    // The subscriptions' connection gone, their intervals are free again
    // (the daemon notices the close on its own time: asked until then).
    r.sock.close();
    bool accepted = false;
    for (int id = 10; id < 1000 && !accepted; ++id) {
      auto again =
          co_await call_skipping_notes(c, id, "Stats", json::parse(R"({"interval_ms":26})"));
      accepted = again.contains("result");
      if (!accepted) {
        BOOST_REQUIRE_EQUAL(again.at("error").at("code").as_int64(), -32010);
        co_await pause_for(10ms);
      }
    }
    BOOST_TEST(accepted);
    BOOST_TEST((co_await call_skipping_notes(c, 1000, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

// A sample's walk skips the executor's watchdog (a helper that starts
// nothing) by its pid: neither it nor anything under it is read or listed,
// while every other child of ours and what it started still is.
BOOST_AUTO_TEST_CASE(a_sample_walk_skips_the_named_helper_and_only_it) {
  run([]() -> asio::awaitable<void> {
    task_executor helper(harness::get().reaper), other(harness::get().reaper);
    exec_command helper_cmd, other_cmd;
    helper_cmd.cmd = "/bin/sh";
    helper_cmd.args = {"-c", "sleep 1000 & wait"};
    other_cmd.cmd = "/bin/sleep";
    other_cmd.args = {"1000"};
    auto h = co_await helper.launch(helper_cmd);
    BOOST_REQUIRE(h);
    auto o = co_await other.launch(other_cmd);
    BOOST_REQUIRE(o);
    const int me = ::getpid(), helper_pid = h->pid, other_pid = o->pid;
    auto has = [](const std::vector<detail::proc_stat>& v, auto pred) {
      return std::any_of(v.begin(), v.end(), pred);
    };
    auto is = [](int pid) { return [pid](const detail::proc_stat& p) { return p.pid == pid; }; };
    auto under = [](int pid) {
      return [pid](const detail::proc_stat& p) { return p.ppid == pid && p.comm == "sleep"; };
    };
    std::optional<std::vector<detail::proc_stat>> all;
    for (int i = 0; i < 1000; ++i) {
      all = detail::scan_descendants(me);
      BOOST_REQUIRE(all);
      if (has(*all, under(helper_pid)))
        break;
      co_await pause_for(10ms);
    }
    BOOST_REQUIRE_MESSAGE(has(*all, under(helper_pid)), "the helper's sleep did not start in 10 s");
    BOOST_TEST(has(*all, is(helper_pid)));
    BOOST_TEST(has(*all, is(other_pid)));

    auto skipped = detail::scan_descendants(me, nullptr, helper_pid);
    BOOST_REQUIRE(skipped);
    BOOST_TEST(!has(*skipped, is(helper_pid)));
    BOOST_TEST(!has(*skipped, under(helper_pid)));
    BOOST_TEST(has(*skipped, is(other_pid)));

    // Named results, not co_await inside the macro (GCC 12).
    const std::string kill = "SIGKILL";
    auto hs = co_await helper.shutdown(kill, 0ms);
    BOOST_TEST(hs.has_value());
    auto os = co_await other.shutdown(kill, 0ms);
    BOOST_TEST(os.has_value());
  });
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// Bytes the process has read through read(2) and the like (/proc/<pid>/io).
std::uint64_t bytes_read_by(int pid) {
  const auto text = read_file("/proc/" + std::to_string(pid) + "/io");
  const auto v = field_after(text, "rchar: ", '\n');
  BOOST_REQUIRE(!v.empty());
  return std::stoull(std::string(v));
}

// ExecStreaming.Input of `data` for `session`, with id `id`.
std::string input_message(int id, const std::string& session, const std::string& data) {
  return R"({"jsonrpc":"2.0","id":)" + std::to_string(id) +
         R"(,"method":"ExecStreaming.Input","params":{"session":")" + session + R"(","data":")" +
         base64_encode(data) + "\"}}\n";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(exec_input_bound)

// A client sends 3 MiB Inputs, round-robin, to 16 sessions whose commands
// never read stdin. The daemon holds at most 256 KiB of input per session
// (4 MiB per connection) plus the one message it is handling, then stops
// reading the connection: its memory stays bounded (before: each session
// took a whole message past its 1 MiB, ~77 MB in all), and another
// connection is served meanwhile.
BOOST_AUTO_TEST_CASE(inputs_to_sessions_that_never_read_hold_bounded_memory) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    const int daemon_pid = static_cast<int>(d.hello.at("pid").as_int64());
    client c, flood;
    co_await c.connect(d.socket);
    co_await launch_sleeper(c, 1);
    co_await flood.connect(d.socket);
    std::vector<std::string> sessions;
    for (int i = 0; i < 16; ++i) {
      auto r = co_await flood.call(10 + i, "ExecStreaming.Start",
                                   json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
      BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
      sessions.emplace_back(r.at("result").at("session").as_string());
    }
    const auto rss_before = status_kib(daemon_pid, "VmRSS");

    // A round of 256 KiB to each session (what each may hold), then two of
    // 3 MiB (within the 4 MiB message limit once in base64), sent in the
    // background: the daemon stops reading.
    const std::string small(256 * 1024, 's'), large(3 * 1024 * 1024 - 3072, 'x');
    std::string text;
    for (int round = 0; round < 3; ++round)
      for (int i = 0; i < 16; ++i)
        text += input_message(100 + round * 16 + i, sessions[i], round == 0 ? small : large);
    bool sent = false;
    send_in_background(flood, std::move(text), sent);
    // Until the daemon has stopped taking bytes (nothing read for 500 ms),
    // or has taken them all.
    auto last = bytes_read_by(daemon_pid);
    auto still_since = std::chrono::steady_clock::now();
    while (!sent && std::chrono::steady_clock::now() - still_since < 500ms) {
      co_await pause_for(20ms);
      if (auto now = bytes_read_by(daemon_pid); now != last) {
        last = now;
        still_since = std::chrono::steady_clock::now();
      }
    }
    const auto peak = status_kib(daemon_pid, "VmHWM");
    BOOST_TEST_MESSAGE("input flood: daemon RSS " << rss_before << " KiB before, peak " << peak
                                                  << " KiB; sender done: " << sent);
    BOOST_TEST(!sent);  // backpressure: the daemon stopped reading
                        // 4 MiB of input held, one message of 4 MiB being handled (its text, the
                        // parsed request and the decoded data exist at once for a moment), and
                        // slack for the allocator: well under what one round of 3 MiB to each
                        // session took before (48 MiB).
#ifndef TASKEXEC_SANITIZED
    BOOST_TEST(peak < rss_before + 32 * 1024);
#else
    BOOST_TEST_MESSAGE(
        "sanitizer build: the peak bound is checked in the plain build only "
        "(freed memory sits in the allocator's quarantine)");
#endif
    // Another connection is served meanwhile.
    client other;
    co_await other.connect(d.socket);
    BOOST_TEST((co_await other.call(1, "Version")).contains("result"));
    flood.close();
    BOOST_TEST((co_await other.call(2, "Destroy")).contains("result"));
    BOOST_TEST((co_await d.task.wait())->exit_code == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
