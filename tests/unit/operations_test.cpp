// Operations (docs/operations.md), the parts without a process: exit files
// (the record, the atomic write, reading back without symlinks and within a
// bound), the journal's listener that Events followers hang on, Events'
// follow param, and what taskexecd needs of systemd (LISTEN_FDS, the
// inherited listener's checks, the sd_notify datagram, /proc/self/cgroup,
// --cgroup-parent paths). Files and sockets only, no fork: unit tier.
#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <boost/json/parse.hpp>

#include "systemd.hpp"
#include "taskexec/rpc/exit_file.hpp"
#include "taskexec/rpc/journal.hpp"
#include "taskexec/rpc/params.hpp"

using namespace taskexec;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    char t[] = "/tmp/taskexec-ops-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

rpc::exit_record sample_record() {
  rpc::exit_record r;
  r.task_id = "web-1";
  r.daemon_pid = 4242;
  r.daemon_start_time = 987654;
  r.state.pid = 4300;
  r.state.exit_code = 137;
  r.state.signal = 9;
  r.state.time = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(1700000000123456789)));
  r.state.oom_killed = true;
  return r;
}

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(exit_files)

BOOST_AUTO_TEST_CASE(record_json_is_exact_and_strict) {
  const auto r = sample_record();
  BOOST_TEST(rpc::to_json(r) ==
             R"({"task_id":"web-1","daemon_pid":4242,"daemon_start_time":987654,)"
             R"("state":{"pid":4300,"exit_code":137,"signal":9,)"
             R"("time_unix_nano":1700000000123456789,"oom_killed":true}})");
  auto back = rpc::parse_exit_record(rpc::to_json(r));
  BOOST_REQUIRE(back);
  BOOST_TEST((*back == r));
  const std::pair<const char*, const char*> bad[] = {
      {"[]", "exit file is not a JSON object"},
      {R"({"task_id":"../x","daemon_pid":1,"daemon_start_time":1,"state":{}})",
       "exit file: task_id must be a valid task id"},
      {R"({"task_id":"t","daemon_pid":0,"daemon_start_time":1,"state":{}})",
       "exit file: daemon_pid must be a positive integer"},
      {R"({"task_id":"t","daemon_pid":1,"daemon_start_time":-1,"state":{}})",
       "exit file: daemon_start_time must be a non-negative integer"},
      {R"({"task_id":"t","daemon_pid":1,"daemon_start_time":1})", "exit file: state is required"},
      {R"({"task_id":"t","daemon_pid":1,"daemon_start_time":1,"state":{},"x":1})",
       "exit file: unknown field \"x\""},
  };
  for (const auto& [text, message] : bad) {
    auto p = rpc::parse_exit_record(text);
    BOOST_REQUIRE(!p);
    BOOST_TEST(p.error().message == message);
  }
  BOOST_TEST(rpc::valid_exit_file_id("taskexecd@web-1:a.b_c"));
  for (const char* id : {"", ".hidden", "a/b", "..", "a b", "é"})
    BOOST_TEST(!rpc::valid_exit_file_id(id), id);
  BOOST_TEST(!rpc::valid_exit_file_id(std::string(129, 'a')));
}

BOOST_AUTO_TEST_CASE(write_is_atomic_and_reads_back) {
  temp_dir t;
  // Missing directories are made.
  const auto dir = t.path / "a" / "exits";
  auto d = rpc::exit_dir::open(dir.string());
  BOOST_REQUIRE_MESSAGE(d.has_value(), (d ? std::string() : d.error().message));
  auto r = sample_record();
  BOOST_REQUIRE(d->write(r));
  const auto file = dir / "web-1.json";
  BOOST_TEST(d->file_for("web-1") == file.string());
  BOOST_TEST(slurp(file) == rpc::to_json(r) + "\n");
  struct stat st {};
  BOOST_REQUIRE(::stat(file.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0644u);
  // Written again (a second exit of the same id): replaced whole; no
  // temporary file is left behind.
  r.state.exit_code = 3;
  r.state.signal = 0;
  BOOST_REQUIRE(d->write(r));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  BOOST_TEST(names == std::vector<std::string>{"web-1.json"});
  auto back = rpc::read_exit_file(file.string());
  BOOST_REQUIRE(back);
  BOOST_TEST((*back == r));
  // An id that is no file name is refused before anything is written.
  r.task_id = "../escape";
  auto bad = d->write(r);
  BOOST_REQUIRE(!bad);
  BOOST_TEST(!fs::exists(t.path / "a" / "escape.json"));
}

BOOST_AUTO_TEST_CASE(symlinks_are_refused_and_reads_are_bounded) {
  temp_dir t;
  fs::create_directory(t.path / "real");
  fs::create_symlink(t.path / "real", t.path / "link");
  // The exit dir through a symlink: refused, nothing created there.
  auto d = rpc::exit_dir::open((t.path / "link" / "exits").string());
  BOOST_REQUIRE(!d);
  BOOST_TEST(d.error().message.find("symlink refused") != std::string::npos, d.error().message);
  BOOST_TEST(!fs::exists(t.path / "real" / "exits"));
  BOOST_TEST(!rpc::exit_dir::open("relative/dir"));
  BOOST_TEST(!rpc::exit_dir::open((t.path / ".." / "x").string()));

  auto good = rpc::exit_dir::open((t.path / "real").string());
  BOOST_REQUIRE(good);
  BOOST_REQUIRE(good->write(sample_record()));
  // Read through a symlinked directory, or a symlink as the file: refused.
  BOOST_TEST(!rpc::read_exit_file((t.path / "link" / "web-1.json").string()));
  fs::create_symlink(t.path / "real" / "web-1.json", t.path / "real" / "alias.json");
  auto via = rpc::read_exit_file((t.path / "real" / "alias.json").string());
  BOOST_REQUIRE(!via);
  // Missing: ENOENT, for the caller to tell from a bad file.
  auto none = rpc::read_exit_file((t.path / "real" / "none.json").string());
  BOOST_REQUIRE(!none);
  BOOST_TEST(none.error().code.value() == ENOENT);
  // Larger than the bound: refused without reading it all.
  {
    std::ofstream big(t.path / "real" / "big.json");
    big << std::string(rpc::exit_dir::max_bytes + 1, ' ');
  }
  auto too_big = rpc::read_exit_file((t.path / "real" / "big.json").string());
  BOOST_REQUIRE(!too_big);
  BOOST_TEST(too_big.error().message.find("larger than 4096 bytes") != std::string::npos);
  // A directory or a FIFO is not an exit file (a FIFO must not block us).
  BOOST_REQUIRE(::mkfifo((t.path / "real" / "fifo.json").c_str(), 0600) == 0);
  BOOST_TEST(!rpc::read_exit_file((t.path / "real" / "fifo.json").string()));
  BOOST_TEST(!rpc::read_exit_file((t.path / "real").string()));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(event_follow)

BOOST_AUTO_TEST_CASE(listener_sees_each_event_as_kept_in_order) {
  rpc::event_journal j(2);
  std::vector<std::pair<std::uint64_t, std::string>> seen;
  j.on_append([&](const json::object& e) {
    seen.emplace_back(e.at("seq").to_number<std::uint64_t>(),
                      std::string(e.at("type").as_string()));
  });
  j.append("launched", {{"pid", 1}});
  j.append("signalled", {{"signal", 15}});
  j.append("signalled", {{"signal", std::string(1000, 'x')}});
  j.append("exited", {});
  BOOST_TEST(seen.size() == 4u);
  BOOST_TEST(seen[0].first == 1u);
  BOOST_TEST(seen[0].second == "launched");
  BOOST_TEST(seen[3].first == 4u);
  BOOST_TEST(seen[3].second == "exited");
}

BOOST_AUTO_TEST_CASE(follow_param_is_a_boolean) {
  auto d = rpc::decode_events(json::parse(R"({"since":3,"follow":true})"));
  BOOST_REQUIRE(d);
  BOOST_TEST(d->follow);
  BOOST_TEST(d->since == 3u);
  auto plain = rpc::decode_events(json::parse(R"({})"));
  BOOST_REQUIRE(plain);
  BOOST_TEST(!plain->follow);
  auto bad = rpc::decode_events(json::parse(R"({"follow":1})"));
  BOOST_REQUIRE(!bad);
  BOOST_TEST(bad.error().message == "follow must be a boolean");
  BOOST_TEST(
      !rpc::check_request_params("Events.Cancel", json::parse(R"({"subscription":"events-1"})")));
  BOOST_TEST(!!rpc::check_request_params("Events.Cancel", json::parse(R"({})")));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(systemd_support)

BOOST_AUTO_TEST_CASE(listen_fds_for_us_only) {
  auto none = systemd::listen_fd(nullptr, nullptr, 100);
  BOOST_REQUIRE(none);
  BOOST_TEST(!none->has_value());
  auto other = systemd::listen_fd("99", "1", 100);  // inherited, meant for another
  BOOST_REQUIRE(other);
  BOOST_TEST(!other->has_value());
  auto ours = systemd::listen_fd("100", "1", 100);
  BOOST_REQUIRE(ours);
  BOOST_TEST(**ours == 3);
  auto two = systemd::listen_fd("100", "2", 100);
  BOOST_REQUIRE(!two);
  BOOST_TEST(two.error().message ==
             "socket activation passed 2 descriptors; taskexecd serves one task on one socket");
  BOOST_TEST(!systemd::listen_fd("100", "x", 100));
  BOOST_TEST(!systemd::listen_fd("100", nullptr, 100));
}

BOOST_AUTO_TEST_CASE(inherited_socket_must_be_a_listening_unix_stream_socket) {
  temp_dir t;
  const auto path = (t.path / "l.sock").string();
  fd_guard s{::socket(AF_UNIX, SOCK_STREAM, 0)};
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  BOOST_REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  auto not_yet = systemd::check_listener(s.fd);
  BOOST_REQUIRE(!not_yet);
  BOOST_TEST(not_yet.error().message ==
             "inherited descriptor " + std::to_string(s.fd) + " is not listening");
  BOOST_REQUIRE(::listen(s.fd, 4) == 0);
  auto ok = systemd::check_listener(s.fd);
  BOOST_REQUIRE(ok);
  BOOST_TEST(*ok == path);
  fd_guard dgram{::socket(AF_UNIX, SOCK_DGRAM, 0)};
  BOOST_TEST(!systemd::check_listener(dgram.fd));
  fd_guard inet{::socket(AF_INET, SOCK_STREAM, 0)};
  BOOST_TEST(!systemd::check_listener(inet.fd));
  fd_guard file{::open("/dev/null", O_RDONLY)};
  BOOST_TEST(!systemd::check_listener(file.fd));
}

BOOST_AUTO_TEST_CASE(notify_sends_one_datagram_to_a_path_or_abstract_socket) {
  temp_dir t;
  auto receive_on = [](const std::string& name) {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    socklen_t len = offsetof(sockaddr_un, sun_path) + name.size();
    if (name[0] == '@')
      a.sun_path[0] = '\0';
    else
      ++len;
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0);
    return fd;
  };
  for (const std::string& name :
       {(t.path / "notify").string(), "@taskexec-ops-test-" + std::to_string(::getpid())}) {
    fd_guard r{receive_on(name)};
    auto sent = systemd::notify(name.c_str(), "READY=1");
    BOOST_REQUIRE_MESSAGE(sent.has_value(), (sent ? std::string() : sent.error().message));
    BOOST_TEST(*sent);
    std::array<char, 64> buf{};
    auto n = ::recv(r.fd, buf.data(), buf.size(), MSG_DONTWAIT);
    BOOST_TEST(std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0) == "READY=1");
  }
  auto unset = systemd::notify(nullptr, "READY=1");
  BOOST_REQUIRE(unset);
  BOOST_TEST(!*unset);
  BOOST_TEST(!systemd::notify("relative", "READY=1"));
  BOOST_TEST(!systemd::notify((t.path / "nobody").string().c_str(), "READY=1"));
}

BOOST_AUTO_TEST_CASE(own_cgroup_and_parent_paths) {
  const char* text =
      "9:name=systemd:/system.slice/taskexecd@web.service\n"
      "4:memory:/process_api/ea68\n"
      "2:cpu,cpuacct:/system.slice/taskexecd@web.service\n"
      "0::/system.slice/taskexecd@web.service\n";
  BOOST_TEST(systemd::own_cgroup(text, "").value_or("?") == "/system.slice/taskexecd@web.service");
  BOOST_TEST(systemd::own_cgroup(text, "memory").value_or("?") == "/process_api/ea68");
  BOOST_TEST(systemd::own_cgroup(text, "cpu,cpuacct").value_or("?") ==
             "/system.slice/taskexecd@web.service");
  BOOST_TEST(!systemd::own_cgroup(text, "pids"));
  BOOST_TEST(systemd::cgroup_parent_path("/system.slice/x.service/").value() ==
             "system.slice/x.service");
  BOOST_TEST(systemd::cgroup_parent_path("taskexec").value() == "taskexec");
  for (const char* bad : {"", "/", "a/../b", "a/./b", "a b", "a//b"})
    BOOST_TEST(!systemd::cgroup_parent_path(bad), bad);
  // No cgroupfs, or the root cgroup: nothing to delegate below.
  cgroup::layout none;
  BOOST_TEST(!systemd::enter_own_leaf(none, text));
  cgroup::layout v2;
  v2.kind = cgroup::mode::v2;
  v2.root = v2.unified = "/nonexistent-cgroupfs";
  auto root = systemd::enter_own_leaf(v2, "0::/\n");
  BOOST_REQUIRE(!root);
  BOOST_TEST(root.error().message.find("root cgroup") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
