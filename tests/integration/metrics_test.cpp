// The daemon's Metrics after a scripted sequence: every counter equals what
// the sequence must have made it, and `taskexec metrics` prints the same
// counters as OpenMetrics text.
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <string>

#include "daemon_client.hpp"
#include "harness.hpp"
#include "taskexec/openmetrics.hpp"

using namespace test_support;
using namespace taskexec;
namespace json = boost::json;

namespace {

json::object counts(std::uint64_t calls, std::uint64_t errors) {
  json::object o;
  o["calls"] = calls;
  o["errors"] = errors;
  return o;
}

std::string pending_waits(int first_id, int n) {
  std::string batch = "[";
  for (int i = 0; i < n; ++i) {
    if (i)
      batch += ',';
    batch += R"({"jsonrpc":"2.0","id":)" + std::to_string(first_id + i) + R"(,"method":"Wait"})";
  }
  return batch + "]\n";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(taskexecd_metrics)

BOOST_AUTO_TEST_CASE(counters_after_a_scripted_sequence_are_exact) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    std::vector<std::string> extra;
    extra.push_back("--max-connections");
    extra.push_back("1");
    co_await d.start(extra);
    client c;
    co_await c.connect(d.socket);

    // Calls that work, an unknown method, a duplicate key (not a request).
    auto version = co_await c.call(1, "Version");
    BOOST_TEST(version.contains("result"));
    auto unknown = co_await c.call(2, "Nope");
    BOOST_TEST(error_code_of(unknown) == -32601);
    co_await c.send_raw(R"({"jsonrpc":"2.0","id":3,"method":"Version","method":"Version"})"
                        "\n");
    auto duplicate = co_await c.response(3);
    BOOST_TEST(error_code_of(duplicate) == -32600);
    co_await launch_sleeper(c, 4);

    // One Stats sample (its first, at once), then the subscription ends
    // long before its next tick (an hour away).
    json::object hourly;
    hourly["interval_ms"] = 3600000;
    auto sub = co_await c.call(5, "Stats", hourly);
    BOOST_REQUIRE(sub.contains("result"));
    const std::string sub_id(sub.at("result").at("subscription").as_string());
    for (;;) {
      auto n = co_await c.next();
      BOOST_REQUIRE(!n.is_null());
      if (n.as_object().contains("method") && n.at("method").as_string() == "Stats.Sample")
        break;
    }
    json::object cancel;
    cancel["subscription"] = sub_id;
    auto cancelled = co_await c.call(6, "Stats.Cancel", cancel);
    BOOST_TEST(cancelled.contains("result"));

    // A second connection while one is open: over --max-connections 1.
    client other;
    co_await other.connect(d.socket);
    auto refused = co_await other.next();
    BOOST_REQUIRE(refused.is_object());
    BOOST_TEST(error_code_of(refused.as_object()) == -32010);
    auto eof = co_await other.next();
    BOOST_TEST(eof.is_null());  // closed by the daemon

    // 256 Waits pending, then one more: refused by the pending limit.
    co_await c.send_raw(pending_waits(1000, 256));
    auto over = co_await c.call(2000, "Wait");
    BOOST_TEST(error_code_of(over) == -32010);

    // The task killed: the batch of Waits is answered; a second Signal finds
    // it gone.
    json::object kill;
    kill["signal"] = "SIGKILL";
    auto killed = co_await c.call(7, "Signal", kill);
    BOOST_TEST(killed.contains("result"));
    auto batch = co_await c.next();
    BOOST_REQUIRE(batch.is_array());
    BOOST_TEST(batch.as_array().size() == 256u);
    for (const auto& r : batch.as_array())
      BOOST_TEST(r.at("result").at("exit_code").as_int64() == 137);
    auto again = co_await c.call(8, "Signal", kill);
    BOOST_TEST(again.contains("error"));

    auto m = co_await c.call(9, "Metrics");
    BOOST_REQUIRE_MESSAGE(m.contains("result"), json::serialize(m));
    const auto& r = m.at("result").as_object();
    BOOST_TEST_MESSAGE("Metrics: " << json::serialize(r));

    json::object conns;
    conns["open"] = 1;
    conns["total"] = 2;
    conns["refused"] = 1;
    BOOST_TEST(r.at("connections") == json::value(conns));

    json::object requests;
    requests["(invalid)"] = counts(1, 1);
    requests["(unknown)"] = counts(1, 1);
    requests["Launch"] = counts(1, 0);
    requests["Metrics"] = counts(1, 0);  // this call
    requests["Signal"] = counts(2, 1);
    requests["Stats"] = counts(1, 0);
    requests["Stats.Cancel"] = counts(1, 0);
    requests["Version"] = counts(1, 0);
    requests["Wait"] = counts(257, 1);  // the 257th refused
    BOOST_TEST(r.at("requests") == json::value(requests));

    json::object limits;
    limits["connections"] = 1;
    limits["pending"] = 1;
    BOOST_TEST(r.at("limits_hit") == json::value(limits));

    // launched, signalled, exited.
    const auto& journal = r.at("journal").as_object();
    BOOST_TEST(journal.at("events").as_int64() == 3);
    BOOST_TEST(journal.at("dropped").as_int64() == 0);
    BOOST_TEST(journal.at("next_seq").as_int64() == 4);
    BOOST_TEST(journal.at("bytes").as_int64() > 0);
    BOOST_TEST(journal.at("followers").as_int64() == 0);

    // No Shutdown ran: no sweep.
    json::object sweep;
    sweep["sweeps"] = 0;
    sweep["passes"] = 0;
    sweep["killed"] = 0;
    BOOST_TEST(r.at("sweep") == json::value(sweep));

    json::object stats;
    stats["subscriptions"] = 0;
    stats["intervals"] = 0;
    stats["samples_sent"] = 1;
    stats["samples_dropped"] = 0;
    stats["ticks_late"] = 0;
    stats["ticks_deferred"] = 0;
    BOOST_TEST(r.at("stats") == json::value(stats));

    // The daemon reaped its task and nothing it did not launch; what it
    // still watches is the task's watchdog (it lives as long as the daemon).
    const auto& reaper = r.at("reaper").as_object();
    BOOST_TEST(reaper.at("reaped").as_int64() == 1);
    BOOST_TEST(reaper.at("orphans").as_int64() == 0);
    BOOST_TEST(reaper.at("watched").as_int64() == 1);
    BOOST_TEST(r.at("uptime_ms").as_int64() >= 0);

    // The same counters as OpenMetrics text (what `taskexec metrics` prints).
    std::vector<openmetrics::label> labels;
    labels.push_back({"daemon", "t"});
    auto text = openmetrics::from_daemon_metrics(r, labels);
    BOOST_REQUIRE(text.has_value());
    BOOST_TEST(text->find("taskexecd_requests_total{daemon=\"t\",method=\"Wait\"} 257\n") !=
               std::string::npos);
    BOOST_TEST(text->find("taskexecd_request_errors_total{daemon=\"t\",method=\"Wait\"} 1\n") !=
               std::string::npos);
    BOOST_TEST(text->find("taskexecd_limits_hit_total{daemon=\"t\",limit=\"pending\"} 1\n") !=
               std::string::npos);
    BOOST_TEST(text->find("taskexecd_connections_refused_total{daemon=\"t\"} 1\n") !=
               std::string::npos);

    auto destroyed = co_await c.call(10, "Destroy");
    BOOST_TEST(destroyed.contains("result"));
    auto daemon_exit = co_await d.task.wait();
    BOOST_TEST(daemon_exit->exit_code == 0);
  });
}

// A Shutdown whose task left two children behind: one sweep, which kills
// both (orphans re-parented to the daemon), scanning at least twice (it
// found processes, so it starts over); a follower on another connection is
// counted while it is open.
BOOST_AUTO_TEST_CASE(sweep_and_follower_counters_are_exact) {
  run([]() -> asio::awaitable<void> {
    daemon_process d;
    co_await d.start();
    client c;
    co_await c.connect(d.socket);
    pipe_reader out;
    json::object launch;
    launch["cmd"] = "/bin/sh";
    json::array args;
    args.emplace_back("-c");
    args.emplace_back("sleep 300 & sleep 300 & echo ready; wait");
    launch["args"] = std::move(args);
    launch["stdout_path"] =
        "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(out.write_fd());
    auto launched = co_await c.call(1, "Launch", launch);
    BOOST_REQUIRE_MESSAGE(launched.contains("result"), json::serialize(launched));
    out.close_write();
    // Both children exist once the task says so.
    const std::string ready = co_await out.line();
    BOOST_REQUIRE(ready == "ready");

    client follower;
    co_await follower.connect(d.socket);
    json::object follow;
    follow["follow"] = true;
    auto followed = co_await follower.call(1, "Events", follow);
    BOOST_REQUIRE_MESSAGE(followed.contains("result"), json::serialize(followed));

    json::object stop;
    stop["signal"] = "SIGTERM";
    stop["grace_period_ms"] = 10000;
    auto stopped = co_await c.call(2, "Shutdown", stop);
    BOOST_REQUIRE_MESSAGE(stopped.contains("result"), json::serialize(stopped));

    auto m = co_await c.call(3, "Metrics");
    BOOST_REQUIRE_MESSAGE(m.contains("result"), json::serialize(m));
    const auto& r = m.at("result").as_object();
    BOOST_TEST_MESSAGE("Metrics: " << json::serialize(r));
    const auto& sweep = r.at("sweep").as_object();
    BOOST_TEST(sweep.at("sweeps").as_int64() == 1);
    BOOST_TEST(sweep.at("killed").as_int64() == 2);
    BOOST_TEST(sweep.at("passes").as_int64() >= 2);
    BOOST_TEST(r.at("journal").at("followers").as_int64() == 1);
    // At least the shell and its two orphans were reaped (one run under a
    // loaded machine counted one reap more than these three; the sweep's
    // own counters above are the exact ones).
    const auto& reaper = r.at("reaper").as_object();
    BOOST_TEST(reaper.at("orphans").as_int64() >= 2);
    BOOST_TEST(reaper.at("reaped").as_int64() >= 3);

    std::vector<openmetrics::label> labels;
    auto text = openmetrics::from_daemon_metrics(r, labels);
    BOOST_REQUIRE(text.has_value());
    BOOST_TEST(text->find("taskexecd_sweeps_total 1\n") != std::string::npos);
    BOOST_TEST(text->find("taskexecd_sweep_killed_total 2\n") != std::string::npos);
    BOOST_TEST(text->find("taskexecd_journal_followers 1\n") != std::string::npos);

    auto destroyed = co_await c.call(4, "Destroy");
    BOOST_TEST(destroyed.contains("result"));
    auto daemon_exit = co_await d.task.wait();
    BOOST_TEST(daemon_exit->exit_code == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
