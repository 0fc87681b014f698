// Binary lookup and user lookup touch the filesystem and the user database,
// never fork: unit tier.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "taskexec/isolation/host.hpp"

using namespace taskexec;
namespace fs = std::filesystem;

namespace {
struct temp_dir {
  fs::path path;
  temp_dir() {
    char t[] = "/tmp/taskexec-unit-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~temp_dir() { fs::remove_all(path); }
};
void write_file(const fs::path& p, mode_t mode) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "#!/bin/sh\necho " << p.filename().string() << "\n";
  ::chmod(p.c_str(), mode);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(binary_lookup)

BOOST_AUTO_TEST_CASE(order_is_local_then_task_dir_then_absolute_then_path) {
  temp_dir td;
  temp_dir bin;
  write_file(td.path / "local" / "tool", 0755);
  write_file(td.path / "tool", 0755);
  write_file(bin.path / "tool", 0755);
  const std::string path_env = "/nonexistent:" + bin.path.string();

  BOOST_TEST(lookup_binary("tool", td.path.string(), path_env).value() ==
             (td.path / "local" / "tool").string());
  fs::remove(td.path / "local" / "tool");
  BOOST_TEST(lookup_binary("tool", td.path.string(), path_env).value() ==
             (td.path / "tool").string());
  fs::remove(td.path / "tool");
  BOOST_TEST(lookup_binary("tool", td.path.string(), path_env).value() ==
             (bin.path / "tool").string());
  // An absolute host path is used as it is.
  BOOST_TEST(lookup_binary((bin.path / "tool").string(), td.path.string(), "").value() ==
             (bin.path / "tool").string());
  // Default PATH when the task has none.
  auto sh = lookup_binary("sh", "", "");
  BOOST_REQUIRE(sh);
  BOOST_TEST((*sh == "/usr/local/bin/sh" || *sh == "/usr/bin/sh" || *sh == "/bin/sh"), *sh);
}

BOOST_AUTO_TEST_CASE(task_relative_paths_with_slashes) {
  temp_dir td;
  write_file(td.path / "bin" / "run", 0755);
  BOOST_TEST(lookup_binary("bin/run", td.path.string(), "/usr/bin").value() ==
             (td.path / "bin" / "run").string());
  // A relative path with a slash is never searched in PATH.
  auto r = lookup_binary("bin/env", td.path.string(), "/usr");
  BOOST_REQUIRE(!r);
}

BOOST_AUTO_TEST_CASE(not_found_names_the_binary) {
  temp_dir td;
  auto r = lookup_binary("no-such-binary-xyz", td.path.string(), "/usr/bin:/bin");
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().code == make_error_code(errc::binary_not_found));
  BOOST_TEST(r.error().message == "binary \"no-such-binary-xyz\" could not be found");
  // Directories do not count as binaries.
  fs::create_directories(td.path / "somedir-xyz");
  BOOST_TEST(!lookup_binary("somedir-xyz", td.path.string(), "").has_value());
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

BOOST_AUTO_TEST_CASE(found_file_without_exec_bits_gets_them) {
  temp_dir td;
  write_file(td.path / "script.sh", 0600);
  auto r = lookup_binary("script.sh", td.path.string(), "");
  BOOST_REQUIRE(r);
  struct stat st {};
  BOOST_REQUIRE(::stat(r->c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0755u);
}

BOOST_AUTO_TEST_CASE(a_task_file_lacking_any_of_0555_gets_them_as_nomad_does) {
  // Before, only a file with no execute bit at all was changed: a 0700
  // script stayed 0700, and its task's user (not its owner) could not run it.
  temp_dir td;
  const std::vector<std::pair<unsigned, unsigned>> modes = {
      {0610, 0755}, {0700, 0755}, {0644, 0755}, {0600, 0755},
      {0755, 0755}, {0500, 0555}, {0711, 0755}, {04700, 04755}};
  for (const auto& [before, after] : modes) {
    const auto name = "tool-" + std::to_string(before);
    write_file(td.path / "local" / name, before);
    auto r = lookup_binary(name, td.path.string(), "");
    BOOST_REQUIRE_MESSAGE(r, name << ": " << (r ? "" : r.error().message));
    BOOST_TEST(*r == (td.path / "local" / name).string());
    BOOST_TEST(mode_of(td.path / "local" / name) == after, name);
  }
  // An absolute path and a PATH entry below the task dir are the task's too.
  write_file(td.path / "abs", 0700);
  BOOST_TEST(lookup_binary((td.path / "abs").string(), td.path.string(), "").value() ==
             (td.path / "abs").string());
  BOOST_TEST(mode_of(td.path / "abs") == 0755u);
  write_file(td.path / "bin" / "inpath", 0710);
  BOOST_TEST(lookup_binary("inpath", td.path.string(), (td.path / "bin").string()).value() ==
             (td.path / "bin" / "inpath").string());
  BOOST_TEST(mode_of(td.path / "bin" / "inpath") == 0755u);
}

BOOST_AUTO_TEST_CASE(executable_host_files_and_symlinks_out_are_untouched) {
  temp_dir td;
  temp_dir host;
  write_file(host.path / "tool", 0700);
  write_file(host.path / "data", 0644);
  // An executable host file, by absolute path and in PATH: used as it is.
  BOOST_TEST(lookup_binary((host.path / "tool").string(), td.path.string(), "").value() ==
             (host.path / "tool").string());
  BOOST_TEST(lookup_binary("tool", td.path.string(), host.path.string()).value() ==
             (host.path / "tool").string());
  BOOST_TEST(mode_of(host.path / "tool") == 0700u);
  // A symlink in the task dir to a host file is not followed for a chmod:
  // an executable one is still found (exec follows it), unchanged...
  fs::create_symlink(host.path / "tool", td.path / "linked-tool");
  BOOST_TEST(lookup_binary("linked-tool", td.path.string(), "").value() ==
             (td.path / "linked-tool").string());
  BOOST_TEST(mode_of(host.path / "tool") == 0700u);
  // ... a non-executable one is not, and stays as it is; so through a
  // symlinked directory.
  fs::create_symlink(host.path / "data", td.path / "linked-data");
  BOOST_TEST(!lookup_binary("linked-data", td.path.string(), "").has_value());
  fs::create_directory_symlink(host.path, td.path / "local");
  BOOST_TEST(!lookup_binary("data", td.path.string(), "").has_value());
  BOOST_TEST(mode_of(host.path / "data") == 0644u);
}

BOOST_AUTO_TEST_CASE(a_hard_link_to_someone_elses_file_is_left_as_it_is) {
  temp_dir td;
  temp_dir host;
  write_file(host.path / "secret", 0600);
  write_file(host.path / "runnable", 0700);
  fs::create_hard_link(host.path / "secret", td.path / "secret");
  fs::create_hard_link(host.path / "runnable", td.path / "runnable");
  // Two links, owned by us: for a task of another user, maybe a host file.
  const uid_t other = ::geteuid() == 65534 ? 65533 : 65534;
  auto r = lookup_binary("secret", td.path.string(), "", other);
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().code == boost::system::error_code(EPERM, boost::system::system_category()));
  BOOST_TEST(r.error().message ==
             "binary \"secret\": \"" + (td.path / "secret").string() +
                 "\" is not executable and is not made so: it has 2 links and belongs to uid " +
                 std::to_string(::geteuid()) + ", not the task's user (uid " +
                 std::to_string(other) + ")");
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
  // With an execute bit it is found, and still not changed.
  BOOST_TEST(lookup_binary("runnable", td.path.string(), "", other).value() ==
             (td.path / "runnable").string());
  BOOST_TEST(mode_of(host.path / "runnable") == 0700u);
  // A file with one link is the task dir's whoever owns it (an artifact
  // unpacked by root); one the task's user owns, it could change itself.
  write_file(td.path / "single", 0600);
  BOOST_TEST(lookup_binary("single", td.path.string(), "", other).has_value());
  BOOST_TEST(mode_of(td.path / "single") == 0755u);
  BOOST_TEST(lookup_binary("secret", td.path.string(), "", ::geteuid()).has_value());
  BOOST_TEST(mode_of(host.path / "secret") == 0755u);
}

BOOST_AUTO_TEST_CASE(host_files_are_never_made_executable) {
  temp_dir td;
  temp_dir host;
  write_file(host.path / "secret", 0600);
  write_file(host.path / "tool", 0600);
  auto mode_of = [](const fs::path& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 07777;
  };
  // An absolute host path is returned as it is (exec will say EACCES)...
  BOOST_TEST(lookup_binary((host.path / "secret").string(), td.path.string(), "").value() ==
             (host.path / "secret").string());
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
  // ... a PATH entry without execute bits is skipped, as a shell would ...
  BOOST_TEST(!lookup_binary("tool", td.path.string(), host.path.string()).has_value());
  BOOST_TEST(mode_of(host.path / "tool") == 0600u);
  // ... and neither a symlink nor ".." inside the task dir reaches outside it.
  fs::create_symlink(host.path / "secret", td.path / "secretlink-xyz");
  BOOST_TEST(!lookup_binary("secretlink-xyz", td.path.string(), "").has_value());
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
  const auto up = "../" + host.path.filename().string() + "/secret";
  BOOST_TEST(!lookup_binary(up, td.path.string(), "").has_value());
  BOOST_TEST(mode_of(host.path / "secret") == 0600u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(user_lookup)

BOOST_AUTO_TEST_CASE(root_by_name_and_number) {
  auto by_name = lookup_user("root");
  BOOST_REQUIRE(by_name);
  BOOST_TEST(by_name->uid == 0u);
  BOOST_TEST(by_name->home == "/root");
  auto by_uid = lookup_user("0");
  BOOST_REQUIRE(by_uid);
  BOOST_TEST(by_uid->name == "root");
}

BOOST_AUTO_TEST_CASE(nobody_has_only_its_own_group) {
  auto id = lookup_user("nobody");
  BOOST_REQUIRE(id);
  BOOST_TEST(id->uid == 65534u);
  BOOST_TEST(id->gid == 65534u);
  BOOST_TEST(id->groups == std::vector<gid_t>{65534}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(unknown_user_is_named) {
  auto r = lookup_user("no-such-user-xyz");
  BOOST_REQUIRE(!r);
  BOOST_TEST(r.error().code == make_error_code(errc::user_not_found));
  BOOST_TEST(r.error().message == "user \"no-such-user-xyz\" not found");
  BOOST_TEST(!lookup_user("987654").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
