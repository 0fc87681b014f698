// Privileged tier: needs root (users, credentials). Without root the tests
// are skipped with the reason; with CI=true a missing root is a failure.
#define BOOST_TEST_MODULE taskexec_privileged
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

using test_support::global_setup;
BOOST_TEST_GLOBAL_FIXTURE(global_setup);
