#include <boost/test/unit_test.hpp>

#include <csignal>

#include "taskexec/signals.hpp"

using namespace taskexec;

BOOST_AUTO_TEST_SUITE(signal_names)

BOOST_AUTO_TEST_CASE(names_resolve) {
  BOOST_TEST(signal_from_name("SIGINT").value() == SIGINT);
  BOOST_TEST(signal_from_name("TERM").value() == SIGTERM);
  BOOST_TEST(signal_from_name("sigkill").value() == SIGKILL);
  BOOST_TEST(signal_from_name("SIGUSR2").value() == SIGUSR2);
  BOOST_TEST(signal_from_name("SIGRTMIN").value() == SIGRTMIN);
  BOOST_TEST(signal_from_name("SIGRTMIN+2").value() == SIGRTMIN + 2);
  BOOST_TEST(signal_from_name("SIGRTMAX-1").value() == SIGRTMAX - 1);
}

BOOST_AUTO_TEST_CASE(unknown_names_do_not) {
  for (auto bad :
       {"", "SIG", "SIGFOO", "15", "SIGRTMIN+99", "SIGRTMAX+1", "SIGRTMIN-1", "SIGINT "}) {
    BOOST_TEST(!signal_from_name(bad).has_value(), bad);
  }
}

BOOST_AUTO_TEST_CASE(numbers_to_names) {
  BOOST_TEST(signal_name(SIGTERM) == "SIGTERM");
  BOOST_TEST(signal_name(SIGABRT) == "SIGABRT");
  BOOST_TEST(signal_name(SIGRTMIN + 3) == "SIGRTMIN+3");
  BOOST_TEST(signal_name(200) == "signal 200");
}

BOOST_AUTO_TEST_CASE(valid_numbers) {
  BOOST_TEST(valid_signal_number(0));
  BOOST_TEST(!valid_signal_number(0, false));
  BOOST_TEST(valid_signal_number(SIGKILL));
  BOOST_TEST(valid_signal_number(SIGRTMAX));
  BOOST_TEST(!valid_signal_number(-1));
  BOOST_TEST(!valid_signal_number(SIGRTMAX + 1));
}

BOOST_AUTO_TEST_SUITE_END()
