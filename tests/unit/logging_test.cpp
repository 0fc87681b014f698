#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>
#include <sstream>

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

BOOST_AUTO_TEST_SUITE_END()
