#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

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

BOOST_AUTO_TEST_CASE(off_disables) {
  restore_logging guard;
  std::ostringstream out;
  configure_logging({.level = log_level::off, .stream = &out});
  BOOST_TEST(!detail::log_enabled(log_level::error));
  detail::log(log_level::error, "x", "", "", "nothing");
  BOOST_TEST(out.str().empty());
}

BOOST_AUTO_TEST_SUITE_END()
