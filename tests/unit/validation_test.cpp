#include <boost/test/unit_test.hpp>

#include "taskexec/validation.hpp"

using namespace taskexec;

namespace {
exec_command base() {
  exec_command c;
  c.cmd = "/bin/true";
  return c;
}
error check(const exec_command& c, isolation_features f = 0) {
  auto r = validate_command(c, f, "host");
  BOOST_REQUIRE(!r);
  return r.error();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(command_validation)

BOOST_AUTO_TEST_CASE(minimal_command_is_valid) {
  BOOST_TEST(validate_command(base(), 0, "host").has_value());
}

BOOST_AUTO_TEST_CASE(malformed_fields_are_named) {
  auto c = base();
  c.cmd.clear();
  BOOST_TEST(check(c).message == "cmd is empty");
  BOOST_TEST(check(c).code == make_error_code(errc::invalid_argument));

  c = base();
  c.env = {"A=1", "NOEQUALS"};
  BOOST_TEST(check(c).message == "env[1] \"NOEQUALS\" is not of the form KEY=VALUE");
  c.env = {"=x"};
  BOOST_TEST(check(c).message == "env[0] \"=x\" is not of the form KEY=VALUE");

  c = base();
  c.args = {"ok", std::string("a\0b", 3)};
  BOOST_TEST(check(c).message == "args[1] contains a NUL byte");

  c = base();
  c.oom_score_adj = 1001;
  BOOST_TEST(check(c).message == "oom_score_adj 1001 is outside -1000..1000");

  c = base();
  c.resources.memory_max_mb = -2;
  BOOST_TEST(check(c, ~0u).message == "resources.memory_max_mb must be -1, 0 or positive");
  c.resources.memory_max_mb = 0;
  c.resources.cpu_shares = -1;
  BOOST_TEST(check(c, ~0u).message == "resources.cpu_shares is negative");

  c = base();
  c.default_pid_mode = "shared";
  BOOST_TEST(check(c).message == "default_pid_mode \"shared\" is not \"private\" or \"host\"");

  c = base();
  c.mounts = {{"/a", "", false, ""}};
  BOOST_TEST(check(c, ~0u).message == "mounts[0] needs task_path and host_path");
  c.mounts = {{"/a", "/b", false, "sideways"}};
  BOOST_TEST(check(c, ~0u).message == "mounts[0].propagation_mode \"sideways\" is unknown");

  c = base();
  c.devices = {{"/dev/x", "/dev/null", "rwx"}};
  BOOST_TEST(check(c, ~0u).message ==
             "devices[0].cgroup_permissions \"rwx\" may only hold r, w, m");
}

BOOST_AUTO_TEST_CASE(fields_the_isolation_cannot_honour_are_rejected) {
  struct field_case {
    void (*set)(exec_command&);
    std::string message;
  };
  const field_case cases[] = {
      {[](exec_command& c) { c.resource_limits = true; }, "resource_limits"},
      {[](exec_command& c) { c.resources.memory_mb = 256; }, "resources"},
      {[](exec_command& c) { c.basic_process_cgroup = true; }, "basic_process_cgroup"},
      {[](exec_command& c) {
         c.mounts = {{"/a", "/b", true, ""}};
       },
       "mounts"},
      {[](exec_command& c) {
         c.devices = {{"/dev/x", "/dev/null", "r"}};
       },
       "devices"},
      {[](exec_command& c) {
         c.network_isolation = network_isolation_spec{"group", "/var/run/netns/x"};
       },
       "network_isolation"},
      {[](exec_command& c) { c.default_pid_mode = "private"; }, "default_pid_mode \"private\""},
      {[](exec_command& c) { c.default_ipc_mode = "private"; }, "default_ipc_mode \"private\""},
      {[](exec_command& c) { c.capabilities = {"CAP_NET_RAW"}; }, "capabilities"},
      {[](exec_command& c) { c.no_pivot_root = true; }, "no_pivot_root"},
  };
  for (const auto& fc : cases) {
    auto c = base();
    fc.set(c);
    auto e = check(c);
    BOOST_TEST(e.code == make_error_code(errc::unsupported));
    BOOST_TEST(e.message == fc.message + " is not supported by isolation \"host\"");
    // ... and accepted by a stack that honours everything.
    BOOST_TEST(validate_command(c, ~0u, "all").has_value(), fc.message);
  }
}

BOOST_AUTO_TEST_CASE(host_modes_are_accepted) {
  auto c = base();
  c.default_pid_mode = "host";
  c.default_ipc_mode = "host";
  c.network_isolation = network_isolation_spec{"host", ""};
  BOOST_TEST(validate_command(c, 0, "host").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
