// Binary lookup inside a container's root: nothing outside it can be run.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

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
  root_dir r, host;
  host.program("tool", fs::perms(0755));
  const std::string root = r.path.string();
  // A symlink in the root to a host binary: inside the container "/tmp/..."
  // is the root's, where there is nothing.
  fs::create_symlink(host.path / "tool", r.path / "hosttool");
  fs::create_directories(r.path / "usr" / "bin");
  fs::create_symlink(host.path / "tool", r.path / "usr" / "bin" / "hosttool2");
  for (const char* cmd :
       {"kill", "/bin/kill", "../../bin/sh", "/usr/bin/env", "hosttool", "hosttool2"}) {
    auto e = lookup_binary_in_root(cmd, root, {});
    BOOST_REQUIRE(!e);
    BOOST_TEST((e.error().code == make_error_code(errc::binary_not_found)));
    BOOST_TEST(e.error().message == "file " + std::string(cmd) + " not found under path " + root);
  }
}

namespace {
unsigned mode_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_regular_file_in_the_root_is_found_and_made_executable) {
  // As Nomad does: a task's file lacking any of 0555 gets them (0610 becomes
  // 0755); before, a file without execute bits was "not found under path".
  root_dir r;
  const std::string root = r.path.string();
  r.program("data", fs::perms(0400));
  r.program("usr/bin/tool", fs::perms(0610));
  r.program("local/app", fs::perms(0700));
  r.program("usr/bin/viabin", fs::perms(0644));
  fs::create_directory_symlink("usr/bin", r.path / "bin");  // as on the host
  auto data = lookup_binary_in_root("data", root, {});
  BOOST_REQUIRE_MESSAGE(data, (data ? "" : data.error().message));
  BOOST_TEST(data->in_root == "/data");
  BOOST_TEST(mode_of(r.path / "data") == 0555u);
  BOOST_TEST(lookup_binary_in_root("tool", root, {})->in_root == "/usr/bin/tool");
  BOOST_TEST(mode_of(r.path / "usr/bin/tool") == 0755u);
  BOOST_TEST(lookup_binary_in_root("app", root, {})->in_root == "/local/app");
  BOOST_TEST(mode_of(r.path / "local/app") == 0755u);
  // Through a symlink inside the root, resolved as the task will: /bin/viabin
  // is the root's usr/bin/viabin.
  auto via = lookup_binary_in_root("/bin/viabin", root, {});
  BOOST_REQUIRE_MESSAGE(via, (via ? "" : via.error().message));
  BOOST_TEST(via->in_root == "/bin/viabin");
  BOOST_TEST(via->on_host == fs::canonical(r.path).string() + "/usr/bin/viabin");
  BOOST_TEST(mode_of(r.path / "usr/bin/viabin") == 0755u);
}

BOOST_AUTO_TEST_CASE(host_files_are_never_changed) {
  root_dir r, host;
  const std::string root = r.path.string();
  host.program("secret", fs::perms(0600));
  host.program("bin/tool", fs::perms(0700));
  // A symlink to a host file is resolved inside the root: not followed out.
  fs::create_symlink(host.path / "secret", r.path / "secret");
  auto e = lookup_binary_in_root("secret", root, {});
  BOOST_REQUIRE(!e);
  BOOST_TEST((e.error().code == make_error_code(errc::binary_not_found)));
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
  // A mount's file is the host's: found as it is (executable), never changed.
  mount_config m;
  m.task_path = "/opt";
  m.host_path = host.path.string();
  auto tool = lookup_binary_in_root("/opt/bin/tool", root, {m});
  BOOST_REQUIRE(tool);
  BOOST_TEST(tool->on_host == host.path.string() + "/bin/tool");
  BOOST_TEST(mode_of(host.path / "bin/tool") == 0700u);
  BOOST_TEST(!lookup_binary_in_root("/opt/secret", root, {m}).has_value());
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
}

BOOST_AUTO_TEST_CASE(a_hard_link_to_someone_elses_file_is_not_changed) {
  root_dir r, host;
  const std::string root = r.path.string();
  host.program("secret", fs::perms(0600));
  fs::create_hard_link(host.path / "secret", r.path / "linked");
  // Owned by us, two links: for a task of another user, not ours to change.
  const uid_t other = ::geteuid() == 65534 ? 65533 : 65534;
  auto e = lookup_binary_in_root("linked", root, {}, other);
  BOOST_REQUIRE(!e);
  BOOST_TEST(e.error().code == boost::system::error_code(EPERM, boost::system::system_category()));
  BOOST_TEST(e.error().message == "file linked: \"" + fs::canonical(r.path / "linked").string() +
                                      "\" is not executable and is not made so: it has 2 links "
                                      "and belongs to uid " +
                                      std::to_string(::geteuid()) + ", not the task's user (uid " +
                                      std::to_string(other) + ")");
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
  // The owner's own task may: it could chmod the file itself.
  BOOST_TEST(lookup_binary_in_root("linked", root, {}, ::geteuid()).has_value());
  BOOST_TEST(mode_of(host.path / "secret") == 0755u);
}

BOOST_AUTO_TEST_SUITE_END()
