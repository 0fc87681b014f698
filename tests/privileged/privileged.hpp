#pragma once

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace test_support {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::strcmp(ci, "true") == 0;
}

/// Decorator: run as root; skip with a reason otherwise, except in CI where
/// the test runs and fails on its first check (a skip there would hide it).
struct needs_root {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    if (::geteuid() == 0 || in_ci())
      return true;
    boost::test_tools::assertion_result r(false);
    r.message() << "needs root (euid is " << ::geteuid() << "); run as root, as CI does";
    return r;
  }
};

#define TASKEXEC_REQUIRE_ROOT()           \
  BOOST_REQUIRE_MESSAGE(::geteuid() == 0, \
                        "privileged test without root while CI=true: failing instead of skipping")

}  // namespace test_support
