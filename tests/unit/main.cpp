// Unit tier: no fork, no root. Codecs, state machines, parsers, calculators.
#define BOOST_TEST_MODULE taskexec_unit
#include <boost/test/unit_test.hpp>
