// Base64 as the protocol carries exec session bytes: RFC 4648's vectors,
// every byte value, and strict refusal of what is not base64.
#include <boost/test/unit_test.hpp>

#include <string>

#include "taskexec/base64.hpp"

using namespace taskexec;

BOOST_AUTO_TEST_SUITE(base64)

BOOST_AUTO_TEST_CASE(rfc_4648_vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, coded] : vectors) {
    BOOST_TEST(base64_encode(plain) == coded);
    auto back = base64_decode(coded);
    BOOST_REQUIRE(back);
    BOOST_TEST(*back == plain);
  }
}

BOOST_AUTO_TEST_CASE(every_byte_and_every_length_round_trips) {
  std::string all;
  for (int i = 0; i < 256; ++i)
    all.push_back(static_cast<char>(i));
  BOOST_TEST(base64_encode(all).substr(0, 8) == "AAECAwQF");
  BOOST_TEST(base64_encode("\xfb\xff") == "+/8=");
  for (std::size_t n = 0; n <= all.size(); ++n) {
    const auto part = all.substr(0, n);
    const auto coded = base64_encode(part);
    BOOST_TEST(coded.size() == (n + 2) / 3 * 4);
    auto back = base64_decode(coded);
    BOOST_REQUIRE(back);
    BOOST_TEST(*back == part);
  }
  std::string out = "prefix:";
  base64_append(out, "hi");
  BOOST_TEST(out == "prefix:aGk=");
}

BOOST_AUTO_TEST_CASE(long_data_round_trips_and_a_bad_character_anywhere_is_found) {
  // Long enough for the vector code (24 bytes / 32 characters a step) and
  // its scalar tail, at every remainder.
  std::string data;
  std::uint32_t x = 12345;
  for (int i = 0; i < 5000; ++i) {
    x = x * 1103515245 + 12345;
    data.push_back(static_cast<char>(x >> 16));
  }
  for (std::size_t n : {28u, 29u, 47u, 48u, 51u, 52u, 53u, 100u, 999u, 4096u, 5000u}) {
    const auto part = data.substr(0, n);
    const auto coded = base64_encode(part);
    // The same text as one group of three at a time would give.
    std::string slow;
    for (std::size_t i = 0; i < n; i += 3)
      slow += base64_encode(part.substr(i, 3));
    BOOST_TEST(coded == slow);
    auto back = base64_decode(coded);
    BOOST_REQUIRE(back);
    BOOST_TEST(*back == part);
  }
  const auto coded = base64_encode(data.substr(0, 3000));
  for (std::size_t at : {0u, 5u, 31u, 32u, 63u, 64u, 1000u, 3995u, 3999u}) {
    for (char c : {'!', '=', '\n', '\x80', '-', '_'}) {
      if (c == '=' && at + 1 == coded.size())
        continue;  // "xxx=" at the very end is padding: valid
      auto bad = coded;
      bad[at] = c;
      BOOST_TEST(!base64_decode(bad).has_value(), "at " << at << " char " << int(c));
    }
  }
}

BOOST_AUTO_TEST_CASE(what_is_not_base64_is_refused) {
  for (const char* bad : {"Zg=", "Zg", "Z", "Zm9v!A==", "Zm 9v", "Zm9v\n", "====", "Z===",
                          "Zg==Zg==", "Zm=v", "=Zm9", "Zm9vYg=A", "\xc3\xa9\xc3\xa9"}) {
    BOOST_TEST(!base64_decode(bad).has_value(), bad);
  }
}

BOOST_AUTO_TEST_SUITE_END()
