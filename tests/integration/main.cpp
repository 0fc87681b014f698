// Integration tier: real processes, no root needed.
#define BOOST_TEST_MODULE taskexec_integration
#include <boost/test/unit_test.hpp>

#include "harness.hpp"

using test_support::global_setup;
BOOST_TEST_GLOBAL_FIXTURE(global_setup);
