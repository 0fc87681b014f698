// detail::open_beneath: paths below a directory the task controls, against
// symlinks planted in it, through openat2 and through the walk that stands
// in for it on kernels without one. Files only, no fork: unit tier.
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "taskexec/detail/safe_open.hpp"

using namespace taskexec;
using taskexec::detail::resolve;
using taskexec::detail::resolver;
namespace fs = std::filesystem;
namespace bdata = boost::unit_test::data;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    char t[] = "/tmp/taskexec-safe-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string read_fd(int fd) {
  std::string out;
  char buf[256];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// A task dir with planted symlinks, and a host directory outside it that
// they point at.
struct planted {
  temp_dir task, host;
  int dirfd = -1;
  planted() {
    write(task.path / "a" / "b" / "file", "inside\n");
    write(host.path / "victim", "host\n");
    fs::create_directories(host.path / "dir");
    fs::create_symlink(host.path / "victim", task.path / "abs");            // absolute, out
    fs::create_symlink("a/b/file", task.path / "rel");                      // relative, inside
    fs::create_symlink(host.path / "dir" / "new", task.path / "dangling");  // to nothing yet
    fs::create_directory_symlink(host.path / "dir", task.path / "mid");     // a directory, out
    fs::create_directory_symlink("a", task.path / "mid_in");                // a directory, inside
    dirfd = ::open(task.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    BOOST_REQUIRE(dirfd >= 0);
  }
  ~planted() { ::close(dirfd); }
  result<int> open(const std::string& rel, int flags, resolver impl, mode_t mode = 0,
                   resolve how = resolve::no_symlinks) const {
    return detail::open_beneath(dirfd, task.str(), rel, flags, mode, how, impl);
  }
  result<int> in_root(const std::string& rel, resolver impl) const {
    return open(rel, O_RDONLY, impl, 0, resolve::in_root);
  }
  std::string at(const std::string& rel) const { return (task.path / rel).string(); }
};

int error_of(const result<int>& r) {
  return r ? 0 : r.error().code.value();
}

const auto both = bdata::make({resolver::openat2, resolver::walk});

}  // namespace

namespace taskexec::detail {
std::ostream& operator<<(std::ostream& os, resolver r) {
  return os << (r == resolver::openat2 ? "openat2" : r == resolver::walk ? "walk" : "automatic");
}
}  // namespace taskexec::detail

BOOST_AUTO_TEST_SUITE(safe_open)

BOOST_DATA_TEST_CASE(a_path_through_real_directories_opens, both, impl) {
  planted p;
  for (const char* rel : {"a/b/file", "./a//b/./file", "a/b/../b/file"}) {
    auto fd = p.open(rel, O_RDONLY, impl);
    BOOST_REQUIRE_MESSAGE(fd, rel << ": " << (fd ? "" : fd.error().message));
    BOOST_TEST(read_fd(*fd) == "inside\n");
    BOOST_TEST((::fcntl(*fd, F_GETFD) & FD_CLOEXEC) != 0);
    ::close(*fd);
  }
  // A directory, named with a trailing slash.
  auto dir = p.open("a/b/", O_PATH | O_DIRECTORY, impl);
  BOOST_REQUIRE(dir);
  struct stat st {};
  BOOST_TEST((::fstat(*dir, &st) == 0 && S_ISDIR(st.st_mode)));
  ::close(*dir);
}

BOOST_DATA_TEST_CASE(every_symlink_is_refused_and_named, both, impl) {
  planted p;
  struct refusal {
    std::string rel;
    std::string link;  // the component named in the message
  };
  const std::vector<refusal> cases = {
      {"abs", "abs"},               // absolute, out of the dir
      {"rel", "rel"},               // relative, to a file inside
      {"mid/victim", "mid"},        // a directory component, out
      {"mid_in/b/file", "mid_in"},  // a directory component, inside
      {"a/../abs", "abs"},          // after a ".." that stays inside
      {"dangling", "dangling"},     // to nothing
      {"a/b/../../rel", "rel"},     // ".." back to the top, then a link
  };
  for (const auto& c : cases) {
    for (int flags : {O_RDONLY, O_PATH, O_WRONLY | O_APPEND, O_WRONLY | O_CREAT | O_APPEND}) {
      auto r = p.open(c.rel, flags, impl, 0644);
      BOOST_REQUIRE_MESSAGE(!r, c.rel << " flags " << flags << " opened");
      BOOST_TEST(error_of(r) == ELOOP, c.rel);
      BOOST_TEST(r.error().message == "symlink refused: \"" + p.at(c.link) + "\" is a symlink");
    }
  }
  // Nothing was created or changed through them.
  BOOST_TEST(!fs::exists(p.host.path / "dir" / "new"));
  std::ifstream victim(p.host.path / "victim");
  std::stringstream text;
  text << victim.rdbuf();
  BOOST_TEST(text.str() == "host\n");
}

BOOST_DATA_TEST_CASE(o_excl_on_a_dangling_symlink_creates_nothing, both, impl) {
  planted p;
  auto r = p.open("dangling", O_WRONLY | O_CREAT | O_EXCL, impl, 0644);
  BOOST_REQUIRE(!r);
  BOOST_TEST(error_of(r) == EEXIST);
  BOOST_TEST(!fs::exists(p.host.path / "dir" / "new"));
}

BOOST_DATA_TEST_CASE(dot_dot_may_not_climb_out, both, impl) {
  planted p;
  const std::string out = "../" + p.host.path.filename().string() + "/victim";
  for (const std::string& rel : {out, std::string("a/../../x"), std::string("a/b/../../../x"),
                                 std::string(".."), p.host.str() + "/victim"}) {
    auto r = p.open(rel, O_RDONLY, impl);
    BOOST_REQUIRE_MESSAGE(!r, rel << " opened");
    BOOST_TEST(error_of(r) == EXDEV, rel);
    BOOST_TEST(r.error().message ==
               "outside the task dir: \"" + rel + "\" leads out of \"" + p.task.str() + "\"");
  }
  // ".." that stays inside is fine, and so is the directory itself.
  auto top = p.open("a/..", O_PATH | O_DIRECTORY, impl);
  BOOST_REQUIRE(top);
  struct stat a {
  }, b{};
  BOOST_TEST((::fstat(*top, &a) == 0 && ::stat(p.task.path.c_str(), &b) == 0));
  BOOST_TEST((a.st_ino == b.st_ino && a.st_dev == b.st_dev));
  ::close(*top);
}

BOOST_DATA_TEST_CASE(files_are_created_below_and_errors_name_the_path, both, impl) {
  planted p;
  auto made = p.open("a/new.log", O_WRONLY | O_CREAT | O_EXCL, impl, 0640);
  BOOST_REQUIRE(made);
  ::close(*made);
  struct stat st {};
  BOOST_REQUIRE(::lstat(p.at("a/new.log").c_str(), &st) == 0);
  const mode_t umask = ::umask(0);
  ::umask(umask);
  BOOST_TEST(S_ISREG(st.st_mode));
  BOOST_TEST((st.st_mode & 0777) == (0640u & ~umask));
  auto missing = p.open("a/nothing/x", O_RDONLY, impl);
  BOOST_REQUIRE(!missing);
  BOOST_TEST(error_of(missing) == ENOENT);
  BOOST_TEST(missing.error().message ==
             "\"" + p.at("a/nothing/x") + "\": No such file or directory");
  auto not_dir = p.open("a/b/file/x", O_RDONLY, impl);
  BOOST_TEST(error_of(not_dir) == ENOTDIR);
}

BOOST_DATA_TEST_CASE(in_root_follows_symlinks_inside_the_root_only, both, impl) {
  planted p;
  // Absolute targets start at the root, as they will inside a container.
  fs::create_directory_symlink("/a/b", p.task.path / "root_abs");
  fs::create_symlink("/etc/hostname", p.task.path / "host_file");
  fs::create_symlink("loop2", p.task.path / "loop1");
  fs::create_symlink("loop1", p.task.path / "loop2");
  write(p.task.path / "etc" / "hostname", "the root's\n");
  for (const char* rel : {"root_abs/file", "/root_abs/file", "rel", "mid_in/b/file",
                          "../../a/b/file", "/../a/b/file"}) {
    auto fd = p.in_root(rel, impl);
    BOOST_REQUIRE_MESSAGE(fd, rel << ": " << (fd ? "" : fd.error().message));
    BOOST_TEST(read_fd(*fd) == "inside\n", rel);
    ::close(*fd);
  }
  auto host_file = p.in_root("host_file", impl);
  BOOST_REQUIRE(host_file);
  BOOST_TEST(read_fd(*host_file) == "the root's\n");
  ::close(*host_file);
  // The absolute symlink to the host's file is the root's file of that name:
  // here there is none.
  BOOST_TEST(error_of(p.in_root("abs", impl)) == ENOENT);
  BOOST_TEST(error_of(p.in_root("mid/victim", impl)) == ENOENT);
  BOOST_TEST(error_of(p.in_root("loop1", impl)) == ELOOP);
  // O_PATH of a symlink resolves it too (never the link itself).
  auto path = p.open("rel", O_PATH, impl, 0, resolve::in_root);
  BOOST_REQUIRE(path);
  struct stat st {};
  BOOST_TEST((::fstat(*path, &st) == 0 && S_ISREG(st.st_mode)));
  ::close(*path);
}

BOOST_DATA_TEST_CASE(the_raw_call_answers_minus_errno, both, impl) {
  planted p;
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "abs", O_PATH, 0, impl) == -ELOOP);
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "mid/victim", O_PATH, 0, impl) == -ELOOP);
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "../x", O_PATH, 0, impl) == -EXDEV);
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "/etc", O_PATH, 0, impl) == -EXDEV);
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "none", O_PATH, 0, impl) == -ENOENT);
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "", O_PATH, 0, impl) == -ENOENT);
  const int fd = detail::open_beneath_raw(p.dirfd, "a/b", O_PATH | O_DIRECTORY, 0, impl);
  BOOST_TEST(fd >= 0);
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(the_default_is_openat2_where_the_kernel_has_it) {
  planted p;
  // The same answers as both implementations.
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "abs", O_PATH) == -ELOOP);
  BOOST_TEST(detail::open_beneath_raw(p.dirfd, "../x", O_PATH) == -EXDEV);
}

BOOST_AUTO_TEST_CASE(paths_below_a_directory_by_their_text) {
  using detail::path_below;
  BOOST_TEST(path_below("/srv/t1/out.log", "/srv/t1").value() == "out.log");
  BOOST_TEST(path_below("/srv/t1/logs/out.log", "/srv/t1/").value() == "logs/out.log");
  BOOST_TEST(path_below("/srv/t1", "/srv/t1").value() == ".");
  // As given: the ".." stays, for open_beneath to refuse.
  BOOST_TEST(path_below("/srv/t1/../etc/x", "/srv/t1").value() == "../etc/x");
  // Normalised: a path that reaches the task dir through "..".
  BOOST_TEST(path_below("/srv/other/../t1/x", "/srv/t1").value() == "x");
  BOOST_TEST(path_below("/srv//t1/./x", "/srv/t1").value() == "x");
  BOOST_TEST(path_below("/srv/t1/x", "/srv/./t1").value() == "x");
  BOOST_TEST(!path_below("/srv/t10/x", "/srv/t1").has_value());
  BOOST_TEST(!path_below("/var/log/x", "/srv/t1").has_value());
  BOOST_TEST(!path_below("relative", "/srv/t1").has_value());
}

BOOST_AUTO_TEST_CASE(descriptor_links_in_proc_are_told_from_planted_ones) {
  temp_dir d;
  const int proc = ::open("/proc/self/fd/0", O_PATH | O_NOFOLLOW | O_CLOEXEC);
  BOOST_REQUIRE(proc >= 0);
  BOOST_TEST(detail::is_proc_fd_link(proc, "/proc/self/fd/0"));
  BOOST_TEST(!detail::is_proc_fd_link(proc, "/proc/self/fd/x"));
  ::close(proc);
  const int cwd = ::open("/proc/self/cwd", O_PATH | O_NOFOLLOW | O_CLOEXEC);
  BOOST_REQUIRE(cwd >= 0);
  BOOST_TEST(!detail::is_proc_fd_link(cwd, "/proc/self/cwd"));
  ::close(cwd);
  // A symlink named like one, but not in procfs.
  fs::create_directories(d.path / "fd");
  fs::create_symlink("/etc/passwd", d.path / "fd" / "3");
  const std::string fake = (d.path / "fd" / "3").string();
  const int planted_link = ::open(fake.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  BOOST_REQUIRE(planted_link >= 0);
  BOOST_TEST(!detail::is_proc_fd_link(planted_link, fake));
  ::close(planted_link);
}

BOOST_AUTO_TEST_SUITE_END()
