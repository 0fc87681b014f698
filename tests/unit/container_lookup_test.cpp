// Binary lookup inside a container's root: nothing outside it can be run.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include "taskexec/isolation/container.hpp"

using namespace taskexec;
namespace fs = std::filesystem;

namespace {
struct root_dir {
  fs::path path;
  root_dir() {
    char t[] = "/tmp/taskexec-root-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~root_dir() { fs::remove_all(path); }
  void program(const std::string& rel, fs::perms mode = fs::perms::owner_all) const {
    auto p = path / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << "#!/bin/sh\n";
    fs::permissions(p, mode);
  }
};
}  // namespace

BOOST_AUTO_TEST_SUITE(container_lookup)

BOOST_AUTO_TEST_CASE(the_order_of_nomads_executor) {
  root_dir r;
  const std::string root = r.path.string();
  r.program("local/app");
  r.program("app");
  r.program("tool");
  r.program("usr/bin/sh");
  r.program("bin/ls");
  auto local = lookup_binary_in_root("app", root, {});
  BOOST_REQUIRE(local);
  BOOST_TEST(local->in_root == "/local/app");
  BOOST_TEST(local->on_host == root + "/local/app");
  BOOST_TEST(lookup_binary_in_root("tool", root, {})->in_root == "/tool");
  BOOST_TEST(lookup_binary_in_root("sh", root, {})->in_root == "/usr/bin/sh");
  BOOST_TEST(lookup_binary_in_root("ls", root, {})->in_root == "/bin/ls");
  BOOST_TEST(lookup_binary_in_root("/bin/ls", root, {})->in_root == "/bin/ls");
}

BOOST_AUTO_TEST_CASE(mounts_are_searched_re_rooted) {
  root_dir r, host;
  host.program("bin/tool");
  mount_config m;
  m.task_path = "/opt/tools/";
  m.host_path = host.path.string();
  auto found = lookup_binary_in_root("/opt/tools/bin/tool", r.path.string(), {m});
  BOOST_REQUIRE(found);
  BOOST_TEST(found->in_root == "/opt/tools/bin/tool");
  BOOST_TEST(found->on_host == host.path.string() + "/bin/tool");
}

BOOST_AUTO_TEST_CASE(nothing_outside_the_root_is_found) {
  root_dir r;
  r.program("data", fs::perms::owner_read);  // not executable
  const std::string root = r.path.string();
  for (const char* cmd : {"kill", "/bin/kill", "data", "../../bin/sh", "/usr/bin/env"}) {
    auto e = lookup_binary_in_root(cmd, root, {});
    BOOST_REQUIRE(!e);
    BOOST_TEST((e.error().code == make_error_code(errc::binary_not_found)));
    BOOST_TEST(e.error().message == "file " + std::string(cmd) + " not found under path " + root);
  }
}

BOOST_AUTO_TEST_SUITE_END()
