#include <boost/test/unit_test.hpp>

#include "taskexec/error.hpp"

using namespace taskexec;

BOOST_AUTO_TEST_SUITE(error_codes)

BOOST_AUTO_TEST_CASE(category_and_messages) {
  auto ec = make_error_code(errc::not_launched);
  BOOST_TEST(std::string(ec.category().name()) == "taskexec");
  BOOST_TEST(ec.message() == "task not yet launched");
  BOOST_TEST(make_error_code(errc::binary_not_found) != make_error_code(errc::user_not_found));
  boost::system::error_code from_enum = errc::task_exited;  // is_error_code_enum
  BOOST_TEST(from_enum == make_error_code(errc::task_exited));
}

BOOST_AUTO_TEST_CASE(system_error_names_the_call) {
  auto e = make_system_error(ENOENT, "open \"/x\"");
  BOOST_TEST(e.code == boost::system::error_code(ENOENT, boost::system::system_category()));
  BOOST_TEST(e.message == "open \"/x\": No such file or directory");
}

BOOST_AUTO_TEST_CASE(result_value_throws_taskexec_exception) {
  result<int> r = make_error(errc::invalid_argument, "cmd is empty");
  BOOST_TEST(!r);
  try {
    (void)r.value();
    BOOST_FAIL("value() did not throw");
  } catch (const taskexec::exception& ex) {
    BOOST_TEST(ex.error().message == "cmd is empty");
    BOOST_TEST(ex.code() == make_error_code(errc::invalid_argument));
  }
  result<int> ok = 5;
  BOOST_TEST(ok.value() == 5);
}

BOOST_AUTO_TEST_SUITE_END()
