// clone_launcher is a Boost.Process v2 launcher: stock v2 initializers work
// with it, and every hook runs where v2 says it runs.
#include <signal.h>

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <string>

#include "harness.hpp"
// clang-format off
#include "taskexec/detail/clone_launcher.hpp"  // first: it mends Boost 1.81's v2 includes
#include <boost/process/v2/start_dir.hpp>
// clang-format on

using namespace test_support;
using namespace taskexec;
namespace bp = boost::process::v2;

namespace {

// Records which hooks ran; on_exec_setup runs in the child and may only
// dup2 (the test reads what the child wrote to the pipe).
struct recorder {
  int stdout_fd = -1;
  bool fail_setup = false;
  int setups = 0, errors = 0, successes = 0;

  boost::system::error_code on_setup(detail::clone_launcher&, const std::filesystem::path&,
                                     const char* const*) {
    ++setups;
    if (fail_setup)
      return {EINVAL, boost::system::system_category()};
    return {};
  }
  boost::system::error_code on_exec_setup(detail::clone_launcher&, const std::filesystem::path&,
                                          const char* const*) const noexcept {
    if (::dup2(stdout_fd, 1) < 0)
      return {errno, boost::system::system_category()};
    return {};
  }
  void on_error(detail::clone_launcher&, const std::filesystem::path&, const char* const*,
                const boost::system::error_code& ec) {
    ++errors;
    last_error = ec;
  }
  boost::system::error_code last_error{};
  void on_success(detail::clone_launcher&, const std::filesystem::path&, const char* const*) {
    ++successes;
  }
};

// Claim a child from the reaper right after the launch (before any
// suspension, or the reaper may take it as an orphan); await its status later.
class exit_watch {
 public:
  explicit exit_watch(int pid)
      : timer_(harness::get().io, std::chrono::steady_clock::time_point::max()) {
    harness::get().reaper.watch(pid, [this](int, int s) {
      status_ = s;
      timer_.cancel();
    });
  }
  asio::awaitable<int> status() {
    if (status_ == -1) {
      timer_.expires_after(30s);
      co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return status_;
  }

 private:
  asio::steady_timer timer_;
  int status_ = -1;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(boost_process_launcher)

BOOST_AUTO_TEST_CASE(stock_v2_initializers_work) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    recorder rec{out.write_fd()};
    const char* argv[] = {"sh", "-c", "pwd; echo $GREETING", nullptr};
    const char* envp[] = {"GREETING=hi", nullptr};
    detail::clone_launcher launcher;
    launcher.env = envp;
    auto r = launcher.launch("/bin/sh", argv, rec, bp::process_start_dir("/tmp"));
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    exit_watch exited(*r);
    out.close_write();
    BOOST_TEST(rec.setups == 1);
    BOOST_TEST(rec.successes == 1);
    BOOST_TEST(rec.errors == 0);
    BOOST_TEST(co_await out.rest() == "/tmp\nhi\n");
    BOOST_TEST(co_await exited.status() == 0);
  });
}

BOOST_AUTO_TEST_CASE(a_failing_initializer_in_the_child_is_reported) {
  run([]() -> asio::awaitable<void> {
    pipe_reader out;
    recorder rec{out.write_fd()};
    const char* argv[] = {"true", nullptr};
    detail::clone_launcher launcher;
    auto r = launcher.launch("/bin/true", argv, rec, bp::process_start_dir("/nonexistent-dir-xyz"));
    BOOST_REQUIRE(!r);
    BOOST_REQUIRE(launcher.failed_pid > 0);
    exit_watch exited(launcher.failed_pid);
    BOOST_TEST(r.error().code == make_error_code(errc::launch_failed));
    BOOST_TEST(r.error().message == "initializer: No such file or directory");
    BOOST_TEST(rec.errors == 1);
    BOOST_TEST(rec.successes == 0);
    BOOST_TEST(co_await exited.status() == 127 << 8);
  });
}

BOOST_AUTO_TEST_CASE(a_failing_setup_never_clones) {
  run([]() -> asio::awaitable<void> {
    const auto reaped = harness::get().reaper.total_reaped();
    recorder rec;
    rec.fail_setup = true;
    const char* argv[] = {"true", nullptr};
    detail::clone_launcher launcher;
    auto r = launcher.launch("/bin/true", argv, rec);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().message == "launch setup: Invalid argument");
    BOOST_TEST(rec.errors == 1);
    BOOST_TEST(launcher.failed_pid == -1);
    BOOST_TEST(harness::get().reaper.total_reaped() == reaped);
    co_return;
  });
}

// Claims a descriptor number in on_setup (as Boost's bind_fd does) and dup2s
// onto it in the child.
struct claim_fd {
  int target;
  int source;
  boost::system::error_code on_setup(detail::clone_launcher& l, const std::filesystem::path&,
                                     const char* const*) {
    l.fd_whitelist.push_back(target);
    return {};
  }
  boost::system::error_code on_exec_setup(detail::clone_launcher&, const std::filesystem::path&,
                                          const char* const*) const noexcept {
    if (::dup2(source, target) < 0)
      return {errno, boost::system::system_category()};
    return {};
  }
};

BOOST_AUTO_TEST_CASE(exec_failure_is_reported_whatever_the_initializers_dup2_onto) {
  run([]() -> asio::awaitable<void> {
    // The number the error pipe's write end would get: an initializer
    // dup2()ing onto it must not hide the child's report.
    int probe[2];
    BOOST_REQUIRE(::pipe2(probe, O_CLOEXEC) == 0);
    ::close(probe[0]);
    ::close(probe[1]);
    int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    BOOST_REQUIRE(devnull >= 0);
    recorder rec{devnull};
    const char* argv[] = {"missing", nullptr};
    detail::clone_launcher launcher;
    auto r = launcher.launch("/nonexistent-binary-xyz", argv, rec, claim_fd{probe[1], devnull});
    ::close(devnull);
    BOOST_REQUIRE(!r);
    BOOST_REQUIRE(launcher.failed_pid > 0);
    exit_watch exited(launcher.failed_pid);
    BOOST_TEST(r.error().message == "exec \"/nonexistent-binary-xyz\": No such file or directory");
    // Initializers see the errno, not our code.
    BOOST_TEST(rec.last_error ==
               boost::system::error_code(ENOENT, boost::system::system_category()));
    BOOST_TEST(co_await exited.status() == 127 << 8);
  });
}

BOOST_AUTO_TEST_CASE(a_negative_whitelisted_descriptor_is_refused) {
  run([]() -> asio::awaitable<void> {
    const char* argv[] = {"true", nullptr};
    detail::clone_launcher launcher;
    launcher.fd_whitelist.push_back(-1);
    auto r = launcher.launch("/bin/true", argv);
    BOOST_REQUIRE(!r);
    BOOST_TEST(r.error().message == "fd_whitelist holds -1: Invalid argument");
    BOOST_TEST(launcher.failed_pid == -1);
    co_return;
  });
}

static volatile sig_atomic_t usr2_seen = 0;
static void on_usr2(int) {
  usr2_seen = 1;
}
static const char* const launched[] = {"/bin/true",
                                       "/nonexistent-binary-xyz"};  // exec, failed exec

BOOST_AUTO_TEST_CASE(a_launch_leaves_the_parents_signal_handlers_alone) {
  // The child resets every disposition before exec while it shares our
  // memory: a sigaction wrapper that keeps handlers in user memory (as
  // ThreadSanitizer's does) would lose ours. Ours must still run after.
  struct sigaction mine {
  }, old{};
  mine.sa_handler = on_usr2;
  ::sigemptyset(&mine.sa_mask);
  BOOST_REQUIRE(::sigaction(SIGUSR2, &mine, &old) == 0);
  run([]() -> asio::awaitable<void> {
    for (const char* exe : launched) {
      const char* argv[] = {"x", nullptr};
      detail::clone_launcher launcher;
      auto r = launcher.launch(exe, argv);
      exit_watch exited(r ? *r : launcher.failed_pid);
      BOOST_TEST(co_await exited.status() == (r ? 0 : 127 << 8));
    }
  });
  struct sigaction now {};
  BOOST_TEST(::sigaction(SIGUSR2, nullptr, &now) == 0);
  BOOST_TEST((now.sa_handler == &on_usr2));
  usr2_seen = 0;
  BOOST_TEST(::raise(SIGUSR2) == 0);
  BOOST_TEST(usr2_seen == 1);
  ::sigaction(SIGUSR2, &old, nullptr);
}

BOOST_AUTO_TEST_CASE(a_child_whose_exec_fails_writes_nothing_of_ours) {
  // What we buffered in stdio and not yet flushed is ours to write: the
  // child, which keeps our stdout, must not flush it when it gives up
  // (_exit under ThreadSanitizer's runtime does). Our stdout goes to a pipe
  // for the while; nothing is checked until it is back.
  run([]() -> asio::awaitable<void> {
    int p[2];
    BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    BOOST_REQUIRE(::fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
    std::fflush(stdout);
    const int saved = ::fcntl(1, F_DUPFD_CLOEXEC, 3);
    BOOST_REQUIRE(saved >= 0);
    ::dup2(p[1], 1);
    ::close(p[1]);
    std::fputs("buffered\n", stdout);  // no flush
    const char* argv[] = {"missing", nullptr};
    detail::clone_launcher launcher;
    auto r = launcher.launch("/nonexistent-binary-xyz", argv);
    int status = -1;
    if (!r) {
      exit_watch exited(launcher.failed_pid);
      status = co_await exited.status();  // the child is gone, its descriptors too
    }
    char buf[64];
    const ssize_t early = ::read(p[0], buf, sizeof buf);
    const int early_errno = errno;
    std::fflush(stdout);  // ours
    ::dup2(saved, 1);
    ::close(saved);
    std::string got;
    for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;)
      got.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    BOOST_REQUIRE(!r);
    BOOST_TEST(status == 127 << 8);
    BOOST_TEST(early == -1, "the child wrote " << early << " bytes of our stdout buffer");
    if (early == -1)
      BOOST_TEST(early_errno == EAGAIN);  // empty, not broken
    BOOST_TEST(got == "buffered\n");      // once: ours
  });
}

BOOST_AUTO_TEST_SUITE_END()
