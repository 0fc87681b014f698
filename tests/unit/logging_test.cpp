#include <boost/core/null_deleter.hpp>
#include <boost/json/parse.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/logger.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <mutex>
#include <optional>
#include <sstream>
#include <vector>

#include "daemon_logging.hpp"
#include "taskexec/logging.hpp"

using namespace taskexec;

namespace {
std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}
struct restore_logging {
  ~restore_logging() { configure_logging({.level = log_level::off}); }
};
}  // namespace

BOOST_AUTO_TEST_SUITE(logging)

BOOST_AUTO_TEST_CASE(levels_parse) {
  log_level l{};
  BOOST_TEST(parse_log_level("warn", l));
  BOOST_TEST((l == log_level::warning));
  BOOST_TEST(parse_log_level("debug", l));
  BOOST_TEST((l == log_level::debug));
  BOOST_TEST(!parse_log_level("loud", l));
  log_format f{};
  BOOST_TEST(parse_log_format("json", f));
  BOOST_TEST((f == log_format::json));
  BOOST_TEST(!parse_log_format("xml", f));
}

BOOST_AUTO_TEST_CASE(json_lines_carry_attributes_and_escape) {
  restore_logging guard;
  std::ostringstream out;
  configure_logging({.level = log_level::info, .format = log_format::json, .stream = &out});
  detail::log(log_level::debug, "executor", "t1", "", "filtered out");
  detail::log(log_level::info, "executor", "t1", "7", "launched \"x\"\n");
  detail::log(log_level::warning, "reaper", "", "", "plain");
  auto ls = lines(out.str());
  BOOST_REQUIRE_EQUAL(ls.size(), 2u);
  auto first = boost::json::parse(ls[0]).as_object();
  BOOST_TEST(first.at("level").as_string() == "info");
  BOOST_TEST(first.at("component").as_string() == "executor");
  BOOST_TEST(first.at("task_id").as_string() == "t1");
  BOOST_TEST(first.at("request_id").as_string() == "7");
  BOOST_TEST(first.at("msg").as_string() == "launched \"x\"\n");
  BOOST_TEST(first.at("ts").as_string().size() == 24u);  // 2026-11-27T20:45:47.123Z
  auto second = boost::json::parse(ls[1]).as_object();
  BOOST_TEST(second.at("level").as_string() == "warn");
  BOOST_TEST(!second.contains("task_id"));
  BOOST_TEST(!second.contains("request_id"));
}

BOOST_AUTO_TEST_CASE(text_lines) {
  restore_logging guard;
  std::ostringstream out;
  configure_logging({.level = log_level::debug, .format = log_format::text, .stream = &out});
  detail::log(log_level::debug, "executor", "t9", "", "hello");
  auto ls = lines(out.str());
  BOOST_REQUIRE_EQUAL(ls.size(), 1u);
  BOOST_TEST(ls[0].substr(24) == " debug [executor] task=t9 hello");
}

// A client's string in a text line cannot end the line, forge another or
// drive the terminal of whoever reads the log.
BOOST_AUTO_TEST_CASE(text_lines_escape_control_characters) {
  BOOST_TEST(escape_log_text("plain text, UTF-8 \xc3\xa9 too") == "plain text, UTF-8 \xc3\xa9 too");
  BOOST_TEST(escape_log_text("a\nb\rc\td") == "a\\nb\\rc\\td");
  BOOST_TEST(escape_log_text("back\\slash") == "back\\\\slash");  // so \n stays unambiguous
  BOOST_TEST(escape_log_text(std::string("nul\0esc\x1b[2Jdel\x7f", 15)) ==
             "nul\\x00esc\\x1b[2Jdel\\x7f");
  BOOST_TEST(escape_log_text("bad \xff\xc3 utf8") == "bad \\xff\\xc3 utf8");
  BOOST_TEST(escape_log_text("c1 \xc2\x9b csi") == "c1 \\u009b csi");
  BOOST_TEST(escape_log_text("\xc2\xa0nbsp") == "\xc2\xa0nbsp");  // U+00A0 is printable

  restore_logging guard;
  std::ostringstream out;
  configure_logging({.level = log_level::info, .format = log_format::text, .stream = &out});
  detail::log(log_level::info, "executor", "/run/t\n1", "7\r",
              "launch failed: binary \"x\n2026-01-01T00:00:00.000Z error [rpc] forged\" could "
              "not be found");
  auto ls = lines(out.str());
  BOOST_REQUIRE_EQUAL(ls.size(), 1u);
  BOOST_TEST(ls[0].substr(24) ==
             " info  [executor] task=/run/t\\n1 req=7\\r launch failed: binary "
             "\"x\\n2026-01-01T00:00:00.000Z error [rpc] forged\" could not be found");
}

BOOST_AUTO_TEST_CASE(a_throttle_lets_one_line_a_period_through_per_key_and_counts) {
  using namespace std::chrono_literals;
  log_throttle t(60s, 2);
  // -1: suppressed; else how many were suppressed before this line.
  auto said = [](std::optional<std::uint64_t> n) { return n ? static_cast<long>(*n) : -1L; };
  const auto t0 = log_throttle::clock::time_point{} + 1000s;
  BOOST_TEST(said(t.admit(7, t0)) == 0);
  BOOST_TEST(said(t.admit(7, t0 + 1s)) == -1);
  BOOST_TEST(said(t.admit(7, t0 + 59s)) == -1);
  BOOST_TEST(said(t.admit(8, t0 + 2s)) == 0);   // another key: its own
  BOOST_TEST(said(t.admit(7, t0 + 60s)) == 2);  // and says how many
  BOOST_TEST(said(t.admit(7, t0 + 61s)) == -1);
  // The table is full (2 keys): a third key passes untracked...
  BOOST_TEST(said(t.admit(9, t0 + 30s)) == 0);
  BOOST_TEST(said(t.admit(9, t0 + 31s)) == 0);
  // ...until a key's period has passed and it can be forgotten.
  BOOST_TEST(said(t.admit(9, t0 + 62s)) == 0);  // 8 is forgotten
  BOOST_TEST(said(t.admit(9, t0 + 63s)) == -1);
}

BOOST_AUTO_TEST_CASE(off_disables) {
  restore_logging guard;
  std::ostringstream out;
  configure_logging({.level = log_level::off, .stream = &out});
  BOOST_TEST(!detail::log_enabled(log_level::error));
  detail::log(log_level::error, "x", "", "", "nothing");
  BOOST_TEST(out.str().empty());
}

// What a sink of the program's keeps of a record (the views die with the call).
struct kept_record {
  log_level level;
  std::string component, task_id, request_id, message;
  std::chrono::system_clock::time_point time;
};

// An embedding program has its own Boost.Log sink on the global core before
// it uses the library. Setting up the library's logging does not take it
// away, and the library's records do not land in it: the library never
// touches the global core.
BOOST_AUTO_TEST_CASE(an_embedders_boost_log_sink_keeps_its_records) {
  restore_logging guard;
  namespace bl = boost::log;
  auto core = bl::core::get();
  core->set_logging_enabled(true);  // as in a program that never disabled it
  auto agent_out = boost::make_shared<std::ostringstream>();
  using backend_t = bl::sinks::text_ostream_backend;
  auto backend = boost::make_shared<backend_t>();
  backend->add_stream(agent_out);
  auto agent_sink = boost::make_shared<bl::sinks::synchronous_sink<backend_t>>(backend);
  agent_sink->set_formatter([](const bl::record_view& rec, bl::formatting_ostream& strm) {
    strm << bl::extract_or_default<std::string>("Message", rec, std::string("?"));
  });
  core->add_sink(agent_sink);

  // The library's logging, set up the way an embedder does, then used.
  std::ostringstream library_out;
  set_logger({.level = log_level::info, .sink = stream_sink(library_out)});
  detail::log(log_level::warning, "executor", "t1", "", "from the library");
  bl::sources::logger agent_logger;
  BOOST_LOG(agent_logger) << "from the agent";

  core->remove_sink(agent_sink);
  BOOST_TEST(agent_out->str() == "from the agent\n");
  const auto ls = lines(library_out.str());
  BOOST_REQUIRE_EQUAL(ls.size(), 1u);
  BOOST_TEST(ls[0].substr(24) == " warn  [executor] task=t1 from the library");
}

// An injected sink gets every record at or above its level, with its fields.
BOOST_AUTO_TEST_CASE(an_injected_sink_receives_the_librarys_records) {
  restore_logging guard;
  std::mutex m;
  std::vector<kept_record> got;
  set_logger({.level = log_level::info, .sink = [&](const log_record& r) {
                std::lock_guard lock(m);
                got.push_back({r.level, std::string(r.component), std::string(r.task_id),
                               std::string(r.request_id), std::string(r.message), r.time});
              }});
  const auto before = std::chrono::system_clock::now();
  BOOST_TEST(!detail::log_enabled(log_level::debug));
  BOOST_TEST(detail::log_enabled(log_level::info));
  detail::log(log_level::debug, "reaper", "", "", "below the level");
  detail::log(log_level::info, "executor", "t7", "", "launched pid=42");
  detail::log(log_level::error, "rpc", "", "9", "bad request");
  const auto after = std::chrono::system_clock::now();
  BOOST_REQUIRE_EQUAL(got.size(), 2u);
  BOOST_TEST((got[0].level == log_level::info));
  BOOST_TEST(got[0].component == "executor");
  BOOST_TEST(got[0].task_id == "t7");
  BOOST_TEST(got[0].request_id == "");
  BOOST_TEST(got[0].message == "launched pid=42");
  BOOST_TEST((got[0].time >= before && got[0].time <= after));
  BOOST_TEST((got[1].level == log_level::error));
  BOOST_TEST(got[1].component == "rpc");
  BOOST_TEST(got[1].task_id == "");
  BOOST_TEST(got[1].request_id == "9");
  BOOST_TEST(got[1].message == "bad request");

  // A logger installed later replaces it; `off` silences the library.
  set_logger({.level = log_level::off});
  BOOST_TEST(!detail::log_enabled(log_level::error));
  detail::log(log_level::error, "rpc", "", "", "nobody hears this");
  BOOST_TEST(got.size() == 2u);
}

// The line formats, without any sink: the library's default (stderr) and
// the daemon's Boost.Log sink both write these.
BOOST_AUTO_TEST_CASE(format_log_line_text_and_json) {
  const log_record r{.level = log_level::error,
                     .time = std::chrono::system_clock::time_point{} + std::chrono::hours(24 * 365),
                     .component = "rpc",
                     .task_id = "",
                     .request_id = "3\n",
                     .message = "a\x1b",
                     .fields = {}};
  BOOST_TEST(format_log_line(r, log_format::text) ==
             "1971-01-01T00:00:00.000Z error [rpc] req=3\\n a\\x1b");
  BOOST_TEST(format_log_line(r, log_format::json) ==
             "{\"ts\":\"1971-01-01T00:00:00.000Z\",\"level\":\"error\",\"component\":\"rpc\","
             "\"request_id\":\"3\\n\",\"msg\":\"a\\u001b\"}");
}

// Fields: separate keys in JSON (numbers unquoted), key=value in text
// (quoted when the value has a space, a quote or '='), `<N>` lines for
// journald, and the native journal datagram.
BOOST_AUTO_TEST_CASE(fields_are_keys_of_their_own) {
  const log_field fields[] = {{"pid", "42", true},
                              {"exe", "/bin/my prog", false},
                              {"signal", "SIGKILL", false},
                              {"note", "a\"b\nc", false}};
  const log_record r{.level = log_level::info,
                     .time = std::chrono::system_clock::time_point{} + std::chrono::hours(24 * 365),
                     .component = "executor",
                     .task_id = "t1",
                     .request_id = "",
                     .message = "exited",
                     .fields = fields};
  BOOST_TEST(format_log_line(r, log_format::text) ==
             "1971-01-01T00:00:00.000Z info  [executor] task=t1 exited pid=42 "
             "exe=\"/bin/my prog\" signal=SIGKILL note=\"a\\\"b\\nc\"");
  BOOST_TEST(format_log_line(r, log_format::json) ==
             "{\"ts\":\"1971-01-01T00:00:00.000Z\",\"level\":\"info\",\"component\":\"executor\","
             "\"task_id\":\"t1\",\"pid\":42,\"exe\":\"/bin/my prog\",\"signal\":\"SIGKILL\","
             "\"note\":\"a\\\"b\\nc\",\"msg\":\"exited\"}");
  auto parsed = boost::json::parse(format_log_line(r, log_format::json)).as_object();
  BOOST_TEST(parsed.at("pid").as_int64() == 42);
  BOOST_TEST(parsed.at("note").as_string() == "a\"b\nc");
  BOOST_TEST(format_log_line(r, log_format::journald) ==
             "<6> [executor] task=t1 exited pid=42 exe=\"/bin/my prog\" signal=SIGKILL "
             "note=\"a\\\"b\\nc\"");
  log_format f{};
  BOOST_TEST(parse_log_format("journald", f));
  BOOST_TEST((f == log_format::journald));
  BOOST_TEST(syslog_priority(log_level::error) == 3);
  BOOST_TEST(syslog_priority(log_level::warning) == 4);
  BOOST_TEST(syslog_priority(log_level::debug) == 7);

  const std::string d = journal_datagram(r);
  BOOST_TEST(d.starts_with("MESSAGE=[executor] task=t1 exited pid=42 "));
  BOOST_TEST(d.find("\nPRIORITY=6\n") != std::string::npos);
  BOOST_TEST(d.find("\nSYSLOG_IDENTIFIER=taskexecd\n") != std::string::npos);
  BOOST_TEST(d.find("\nTASKEXEC_COMPONENT=executor\n") != std::string::npos);
  BOOST_TEST(d.find("\nTASKEXEC_TASK_ID=t1\n") != std::string::npos);
  BOOST_TEST(d.find("\nPID=42\n") != std::string::npos);
  BOOST_TEST(d.find("\nEXE=/bin/my prog\n") != std::string::npos);
  // A value with a newline: KEY, newline, its length as 8 bytes little endian.
  const std::string binary =
      std::string("\nNOTE\n") + std::string("\x05\0\0\0\0\0\0\0", 8) + "a\"b\nc\n";
  BOOST_TEST(d.ends_with(binary));
}

BOOST_AUTO_TEST_CASE(the_library_fields_reach_a_json_sink) {
  restore_logging guard;
  std::ostringstream out;
  configure_logging({.level = log_level::info, .format = log_format::json, .stream = &out});
  detail::log_fields f;
  f.add("pid", 7).add("exe", "/bin/true").add("oom_killed", false);
  detail::log(log_level::info, "executor", "t", "", "launched", f.view());
  auto ls = lines(out.str());
  BOOST_REQUIRE_EQUAL(ls.size(), 1u);
  auto o = boost::json::parse(ls[0]).as_object();
  BOOST_TEST(o.at("pid").as_int64() == 7);
  BOOST_TEST(o.at("exe").as_string() == "/bin/true");
  BOOST_TEST(o.at("oom_killed").as_bool() == false);
  BOOST_TEST(o.at("msg").as_string() == "launched");
}

BOOST_AUTO_TEST_SUITE_END()
