// Capability names and masks (container strategy), through libcap.
#include <boost/test/unit_test.hpp>

#include <algorithm>

#include "taskexec/isolation/capabilities.hpp"

using namespace taskexec;

BOOST_AUTO_TEST_SUITE(capabilities)

BOOST_AUTO_TEST_CASE(the_default_set_is_the_seeds) {
  auto mask = capability_mask(default_caps());
  BOOST_REQUIRE(mask);
  BOOST_TEST(*mask == 0x00000000a80405fbull);  // CapEff of nobody with the defaults
  auto one = capability_mask({"NET_BIND_SERVICE"});
  BOOST_REQUIRE(one);
  BOOST_TEST(*one == 0x400ull);
}

BOOST_AUTO_TEST_CASE(names_in_every_spelling) {
  BOOST_TEST(*capability_mask({"CAP_CHOWN"}) == 1ull);
  BOOST_TEST(*capability_mask({"chown"}) == 1ull);
  BOOST_TEST(*capability_mask({"cap_kill", "KILL"}) == 0x20ull);
  auto bad = capability_mask({"CHOWN", "FLY"});
  BOOST_REQUIRE(!bad);
  BOOST_TEST((bad.error().code == make_error_code(errc::invalid_argument)));
  BOOST_TEST(bad.error().message == "unknown capability \"FLY\"");
}

BOOST_AUTO_TEST_CASE(supported_follows_net_raw) {
  auto with = supported_caps(true);
  auto without = supported_caps(false);
  BOOST_TEST(with.size() == without.size() + 1);
  BOOST_TEST(std::count(with.begin(), with.end(), "NET_RAW") == 1);
  BOOST_TEST(std::count(without.begin(), without.end(), "NET_RAW") == 0);
  BOOST_TEST(with.front() == "CHOWN");
  BOOST_REQUIRE(capability_mask(with));  // every name it gives is one it takes
}

BOOST_AUTO_TEST_CASE(the_tasks_mode_wins) {
  BOOST_TEST(isolation_mode("private", "") == "private");
  BOOST_TEST(isolation_mode("private", "host") == "host");
  BOOST_TEST(isolation_mode("host", "private") == "private");
}

BOOST_AUTO_TEST_SUITE_END()
