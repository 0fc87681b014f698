#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

using namespace boost::asio::experimental::awaitable_operators;

std::string options::raw(const std::string& name) const {
  for (auto& s : specs_)
    if (s.name == name) {
      auto it = given_.find(name);
      return it == given_.end() ? s.fallback : it->second;
    }
  throw std::logic_error("no option --" + name);
}

long long options::num(const std::string& name, long long min) const {
  auto v = raw(name);
  long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || v.empty() || n < min)
    throw std::invalid_argument("--" + name + " needs a whole number of at least " +
                                std::to_string(min) + ", not \"" + v + "\"");
  return n;
}

bool options::flag(const std::string& name) const {
  return raw(name) == "1";
}
std::string options::str(const std::string& name) const {
  return raw(name);
}

boost::json::object options::to_json() const {
  boost::json::object o;
  for (auto& s : specs_) {
    auto v = raw(s.name);
    if (s.flag)
      o[s.name] = v == "1";
    else
      o[s.name] = v;
  }
  return o;
}

progress_line::progress_line(bool enabled) : enabled_(enabled), tty_(::isatty(2) == 1) {}

void progress_line::update(const std::string& text) {
  if (!enabled_)
    return;
  auto now = clock_type::now();
  if (tty_) {
    std::string line = "\r" + text;
    if (text.size() < width_)
      line += std::string(width_ - text.size(), ' ');
    width_ = text.size();
    std::fputs(line.c_str(), stderr);
  } else if (now - last_ >= std::chrono::seconds(5)) {
    std::fprintf(stderr, "%s\n", text.c_str());
    last_ = now;
  } else {
    return;
  }
  std::fflush(stderr);
}

void progress_line::finish() {
  if (enabled_ && tty_ && width_) {
    std::fprintf(stderr, "\r%s\r", std::string(width_, ' ').c_str());
    std::fflush(stderr);
  }
  width_ = 0;
  last_ = {};
}

std::vector<std::string> context::task_env() const {
  return {"PATH=/usr/local/bin:/usr/bin:/bin", marker};
}

std::string context::fresh_path(const std::string& stem, const std::string& suffix) {
  return run_dir + "/" + stem + "-" + std::to_string(++names) + suffix;
}

taskexec::exec_command context::helper(const std::string& name,
                                       std::vector<std::string> args) const {
  taskexec::exec_command cmd;
  cmd.cmd = self_exe;
  cmd.args = {"--helper", name};
  cmd.args.insert(cmd.args.end(), args.begin(), args.end());
  cmd.env = task_env();
  return cmd;
}

asio::awaitable<void> pause(std::chrono::milliseconds ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, ms);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> tick_progress(context& ctx, const bool& done,
                                    std::function<std::string()> status) {
  while (!done) {
    ctx.progress.update(status());
    co_await pause(std::chrono::milliseconds(250));
  }
  ctx.progress.finish();
  co_return;
}

asio::awaitable<taskexec::result<daemon_handle>> start_daemon(context& ctx, std::string socket) {
  taskexec::create_options o;
  o.socket_path = std::move(socket);
  o.daemon_path = ctx.daemon_path;
  o.log_level = "off";
  o.kill_grace = std::chrono::milliseconds(2000);
  o.handshake_timeout = std::chrono::milliseconds(20000);
  auto created = co_await taskexec::create_executor(ctx.io.get_executor(), o);
  if (!created)
    co_return created.error();
  daemon_handle d;
  d.config = created->config;
  d.client.emplace(std::move(created->client));
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, d.config.pid, 0));
  if (fd < 0)
    co_return taskexec::make_error(
        taskexec::errc::launch_failed,
        "pidfd_open of daemon " + std::to_string(d.config.pid) + " failed");
  d.pidfd = std::make_unique<asio::posix::stream_descriptor>(ctx.io, fd);
  co_return d;
}

asio::awaitable<bool> wait_exit(daemon_handle& d, std::chrono::milliseconds timeout) {
  if (!d.pidfd)
    co_return true;
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto r = co_await (d.pidfd->async_wait(asio::posix::descriptor_base::wait_read,
                                         asio::as_tuple(asio::use_awaitable)) ||
                     timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  co_return r.index() == 0;
}

asio::awaitable<taskexec::result<void>> destroy_daemon(daemon_handle& d,
                                                       std::chrono::milliseconds timeout) {
  if (d.client) {
    auto r = co_await d.client->destroy();
    d.client.reset();
    if (!r)
      co_return r.error();
  }
  if (!co_await wait_exit(d, timeout))
    co_return taskexec::make_error(taskexec::errc::timed_out,
                                   "daemon " + std::to_string(d.config.pid) +
                                       " did not exit within " + std::to_string(timeout.count()) +
                                       " ms of Destroy");
  d.pidfd.reset();
  co_return taskexec::result<void>{};
}

asio::awaitable<void> check_daemon_at_rest_and_destroy(daemon_handle& d, int fds_before,
                                                       memory_figures before,
                                                       long long growth_limit,
                                                       scenario_report& rep) {
  const int pid = d.config.pid;
  int fds_after = count_fds("/proc", pid);
  for (int i = 0; i < 200 && fds_after > fds_before; ++i) {
    co_await pause(std::chrono::milliseconds(10));
    fds_after = count_fds("/proc", pid);
  }
  auto after = read_memory("/proc", pid);
  // Anonymous, not Private_Dirty: what the daemon allocated, not the pages
  // of its binary it maps on first use while they are dirty in the page
  // cache (a daemon linked a moment before; its text is ordered so that
  // little of it is mapped at the start, apps/taskexecd/text-order.txt).
  auto grown = [&] { return after.anonymous_kib - before.anonymous_kib; };
  for (int i = 0; i < 30 && growth_limit > 0 && grown() > growth_limit; ++i) {
    co_await pause(std::chrono::milliseconds(100));
    after = read_memory("/proc", pid);
  }
  auto destroyed = co_await destroy_daemon(d, std::chrono::seconds(20));
  rep.figures["daemon_fds_before"] = fds_before;
  rep.figures["daemon_fds_after"] = fds_after;
  rep.figures["daemon_private_dirty_kib_before"] = before.private_dirty_kib;
  rep.figures["daemon_private_dirty_kib_after"] = after.private_dirty_kib;
  rep.figures["daemon_anonymous_kib_before"] = before.anonymous_kib;
  rep.figures["daemon_anonymous_kib_after"] = after.anonymous_kib;
  rep.add_check("the daemon's descriptors are back once the clients are gone",
                fds_after >= 0 && fds_after <= fds_before,
                std::to_string(fds_before) + " before, " + std::to_string(fds_after) + " after");
  if (growth_limit > 0)
    rep.add_check(
        "the daemon's memory did not grow by more than " + std::to_string(growth_limit) + " KiB",
        before.anonymous_kib >= 0 && after.anonymous_kib >= 0 && grown() <= growth_limit,
        "anonymous memory " + std::to_string(before.anonymous_kib) + " KiB before, " +
            std::to_string(after.anonymous_kib) + " KiB after (Private_Dirty " +
            std::to_string(before.private_dirty_kib) + ", " +
            std::to_string(after.private_dirty_kib) + ")");
  rep.add_check("the daemon destroyed and gone", static_cast<bool>(destroyed),
                destroyed ? "" : destroyed.error().message);
}

double cpu_seconds(int pid) {
  // Nanoseconds on a CPU from each thread's schedstat: exact, where stat's
  // utime and stime are whole clock ticks (10 ms), too coarse for a daemon
  // that works 50 us a second.
  const std::string base = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(base.c_str());
  if (!dir)
    return -1;
  double total = 0;
  while (auto* e = ::readdir(dir)) {
    if (e->d_name[0] == '.')
      continue;
    std::ifstream f(base + "/" + e->d_name + "/schedstat");
    unsigned long long ns = 0;
    if (f >> ns)
      total += static_cast<double>(ns) / 1e9;
  }
  ::closedir(dir);
  return total;
}

pipe_pair::pipe_pair() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2 failed");
  read_fd = p[0];
  write_fd = p[1];
}
pipe_pair::~pipe_pair() {
  close_write();
  if (read_fd >= 0)
    ::close(read_fd);
}
void pipe_pair::close_write() {
  if (write_fd >= 0)
    ::close(write_fd);
  write_fd = -1;
}

asio::awaitable<std::string> helper_output(context& ctx, const std::string& what,
                                           const std::string& name, std::vector<std::string> args) {
  taskexec::task_executor t(ctx.reaper);
  pipe_pair out;
  auto cmd = ctx.helper(name, std::move(args));
  cmd.stdout_fd = out.write_fd;
  if (auto r = co_await t.launch(cmd); !r)
    throw std::runtime_error(what + ": " + r.error().message);
  out.close_write();
  std::string text = co_await read_all(ctx.io, out.read_fd);
  co_await t.wait();
  co_return text;
}

asio::awaitable<std::string> read_all(asio::io_context& io, int fd, std::size_t limit) {
  asio::posix::stream_descriptor d(io, ::dup(fd));
  std::string out;
  char buf[4096];
  while (out.size() < limit) {
    auto [ec, n] =
        co_await d.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    out.append(buf, n);
    if (ec)
      break;
  }
  co_return out;
}

}  // namespace stress

namespace stress {

asio::awaitable<std::string> read_line(asio::io_context& io, int fd, std::size_t limit) {
  asio::posix::stream_descriptor d(io, ::dup(fd));
  std::string out;
  char c = 0;
  while (out.size() < limit) {
    auto [ec, n] =
        co_await asio::async_read(d, asio::buffer(&c, 1), asio::as_tuple(asio::use_awaitable));
    if (ec || n == 0 || c == '\n')
      break;
    out += c;
  }
  co_return out;
}

}  // namespace stress
