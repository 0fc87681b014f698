// prepare_socket_directory: the rules a socket's path must follow before the
// daemon listens on it (directories of another owner need root to make:
// tests/privileged/socket_trust_test.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include "taskexec/rpc/socket_dir.hpp"

using namespace taskexec;
using taskexec::rpc::prepare_socket_directory;
namespace fs = std::filesystem;

namespace {

// A fresh directory under /tmp (root's, sticky: a fine ancestor).
struct scratch {
  std::string path;
  scratch() {
    char t[] = "/tmp/taskexec-unit-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

mode_t mode_of(const std::string& path) {
  struct stat st {};
  BOOST_REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

void make_dir(const std::string& path, mode_t mode) {
  fs::create_directory(path);
  BOOST_REQUIRE(::chmod(path.c_str(), mode) == 0);
}

const uid_t me = ::geteuid();

}  // namespace

BOOST_AUTO_TEST_SUITE(socket_directory)

BOOST_AUTO_TEST_CASE(missing_directories_are_created_with_the_mode_given) {
  scratch s;
  BOOST_REQUIRE(prepare_socket_directory(s / "a/b/c/d.sock", me, 0700));
  for (const char* d : {"a", "a/b", "a/b/c"})
    BOOST_TEST(mode_of(s / d) == 0700u, d);  // whatever the umask
  BOOST_REQUIRE(prepare_socket_directory(s / "shared/d.sock", me, 0711));
  BOOST_TEST(mode_of(s / "shared") == 0711u);
  // Existing and fine: left as they are (0755 is not writable by others).
  make_dir(s / "open", 0755);
  BOOST_TEST(prepare_socket_directory(s / "open/d.sock", me, 0700).has_value());
  BOOST_TEST(mode_of(s / "open") == 0755u);
}

BOOST_AUTO_TEST_CASE(the_sockets_own_directory_must_be_writable_by_its_owner_only) {
  scratch s;
  make_dir(s / "group", 0770);
  auto r = prepare_socket_directory(s / "group/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().code == make_error_code(errc::permission_denied));
  BOOST_TEST(r.error().message == "socket directory \"" + (s / "group") +
                                      "\" (mode 0770) is writable by group without the sticky "
                                      "bit: they could replace the socket");
  // Sticky is fine above the socket (as /tmp), not as its own directory.
  make_dir(s / "sticky", 01777);
  r = prepare_socket_directory(s / "sticky/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().message ==
             "socket directory \"" + (s / "sticky") +
                 "\" (mode 1777) is writable by group and others: the socket's own directory "
                 "must be writable by its owner only");
  BOOST_TEST(prepare_socket_directory(s / "sticky/run/d.sock", me, 0700).has_value());
  BOOST_TEST(mode_of(s / "sticky/run") == 0700u);
}

BOOST_AUTO_TEST_CASE(a_writable_directory_on_the_way_is_refused_and_nothing_made_below) {
  scratch s;
  make_dir(s / "w", 0777);
  auto r = prepare_socket_directory(s / "w/run/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().message == "socket directory \"" + (s / "w") +
                                      "\" (mode 0777) is writable by group and others without "
                                      "the sticky bit: they could replace the socket");
  BOOST_TEST(!fs::exists(s / "w/run"));
  make_dir(s / "o", 0702);
  r = prepare_socket_directory(s / "o/x/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().message == "socket directory \"" + (s / "o") +
                                      "\" (mode 0702) is writable by others without the sticky "
                                      "bit: they could replace the socket");
}

BOOST_AUTO_TEST_CASE(links_are_followed_and_their_targets_checked) {
  scratch s;
  make_dir(s / "real", 0700);
  make_dir(s / "w", 0777);
  fs::create_directory_symlink(s / "real", s / "abs");
  fs::create_directory_symlink("real/../real", s / "rel");
  fs::create_directory_symlink("w", s / "to-w");
  fs::create_directory_symlink("loop", s / "loop");
  BOOST_TEST(prepare_socket_directory(s / "abs/d.sock", me, 0700).has_value());
  BOOST_TEST(prepare_socket_directory(s / "rel/d.sock", me, 0700).has_value());
  // Messages name the directory reached, links resolved.
  auto r = prepare_socket_directory(s / "to-w/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().message == "socket directory \"" + (s / "w") +
                                      "\" (mode 0777) is writable by group and others without "
                                      "the sticky bit: they could replace the socket");
  r = prepare_socket_directory(s / "loop/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().code == boost::system::error_code(ELOOP, boost::system::system_category()));
  // ".." goes up from where the links led, as the kernel does.
  BOOST_TEST(prepare_socket_directory(s / "abs/../real/d.sock", me, 0700).has_value());
  BOOST_TEST(!fs::exists(s / "abs/../made"));
  BOOST_REQUIRE(prepare_socket_directory(s / "abs/../made/d.sock", me, 0700).has_value());
  BOOST_TEST(mode_of(s / "made") == 0700u);
}

BOOST_AUTO_TEST_CASE(a_file_on_the_way_and_a_relative_path) {
  scratch s;
  { std::ofstream(s / "file") << "x"; }
  auto r = prepare_socket_directory(s / "file/d.sock", me, 0700);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().code == make_error_code(errc::invalid_argument));
  BOOST_TEST(r.error().message == "socket directory \"" + (s / "file") + "\" is not a directory");
  // Relative to the working directory, which is checked from "/" too.
  make_dir(s / "cwd", 0700);
  const auto old = fs::current_path();
  fs::current_path(s / "cwd");
  auto rel = prepare_socket_directory("sub/d.sock", me, 0700);
  auto here = prepare_socket_directory("d.sock", me, 0700);
  ::chmod((s / "cwd").c_str(), 0770);
  auto bad = prepare_socket_directory("d.sock", me, 0700);
  fs::current_path(old);
  BOOST_TEST(rel.has_value());
  BOOST_TEST(mode_of(s / "cwd/sub") == 0700u);
  BOOST_TEST(here.has_value());
  BOOST_REQUIRE(!bad);
  BOOST_TEST(bad.error().message == "socket directory \"" + (s / "cwd") +
                                        "\" (mode 0770) is writable by group without the sticky "
                                        "bit: they could replace the socket");
}

BOOST_AUTO_TEST_SUITE_END()
