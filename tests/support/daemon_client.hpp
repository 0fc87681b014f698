// Shared by the integration tests of taskexecd: a daemon started as a task
// of our own executor (so the test reaps it and sees its exit code), and a
// raw JSON-RPC client over its socket.
#pragma once

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

namespace test_support {

namespace json = boost::json;
using local = asio::local::stream_protocol;
using taskexec::exec_command;
using taskexec::task_executor;

// A daemon under test, started as our task; its handshake is read from stdout.
struct daemon_process {
  temp_dir dir;
  std::string socket;
  task_executor task{harness::get().reaper};
  json::object hello;

  asio::awaitable<void> start(std::vector<std::string> extra = {}) {
    socket = dir / "run/taskexecd.sock";  // the parent directory does not exist yet
    pipe_reader out;
    exec_command cmd;
    cmd.cmd = TASKEXECD;
    cmd.args = {"--socket", socket, "--log-level", "warn", "--kill-grace-ms", "2000"};
    cmd.args.insert(cmd.args.end(), extra.begin(), extra.end());
    cmd.stdout_fd = out.write_fd();
    auto r = co_await task.launch(cmd);
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
    out.close_write();
    auto line = co_await out.line();
    BOOST_REQUIRE_MESSAGE(!line.empty(), "no handshake from taskexecd");
    hello = json::parse(line).as_object();
  }
};

// A JSON-RPC client over the socket that matches responses by id.
class client {
 public:
  client() : sock_(harness::get().io) {}
  asio::awaitable<void> connect(const std::string& path) {
    co_await sock_.async_connect(local::endpoint(path), asio::use_awaitable);
  }
  asio::awaitable<void> send_raw(std::string text) {
    co_await asio::async_write(sock_, asio::buffer(text), asio::use_awaitable);
  }
  asio::awaitable<void> send_raw_ec(std::string text, boost::system::error_code& ec) {
    auto [e, n] =
        co_await asio::async_write(sock_, asio::buffer(text), asio::as_tuple(asio::use_awaitable));
    (void)n;
    ec = e;
  }
  asio::awaitable<void> send(int id, std::string method, json::value params = nullptr) {
    json::object req{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
    if (!params.is_null())
      req["params"] = params;
    co_await send_raw(json::serialize(req) + "\n");
  }
  /// Gone entirely, as a client that dies.
  void close() {
    boost::system::error_code ignored;
    sock_.close(ignored);
  }
  /// Half-close: no more requests, answers still wanted.
  void finish_sending() { sock_.shutdown(local::socket::shutdown_send); }
  /// The next message as it comes; a null value at EOF.
  asio::awaitable<json::value> next() {
    auto [ec, n] =
        co_await asio::async_read_until(sock_, buf_, '\n', asio::as_tuple(asio::use_awaitable));
    if (ec)
      co_return nullptr;
    std::string line(asio::buffers_begin(buf_.data()),
                     asio::buffers_begin(buf_.data()) + static_cast<long>(n));
    buf_.consume(n);
    co_return json::parse(line);
  }
  /// The response with this id (others that arrive first are kept).
  asio::awaitable<json::object> response(int id) {
    for (;;) {
      if (auto it = stash_.find(id); it != stash_.end()) {
        auto v = std::move(it->second);
        stash_.erase(it);
        co_return v;
      }
      auto v = co_await next();
      BOOST_REQUIRE_MESSAGE(!v.is_null(), "connection closed while waiting for id " << id);
      auto& o = v.as_object();
      stash_[static_cast<int>(o.at("id").as_int64())] = o;
    }
  }
  asio::awaitable<json::object> call(int id, std::string method, json::value params = nullptr) {
    co_await send(id, std::move(method), std::move(params));
    co_return co_await response(id);
  }

 private:
  local::socket sock_;
  asio::streambuf buf_;
  std::map<int, json::object> stash_;
};

/// Launch `sleep 1000` as the daemon's task through `c` (request `id`).
inline asio::awaitable<void> launch_sleeper(client& c, int id) {
  auto r = co_await c.call(id, "Launch", json::parse(R"({"cmd":"/bin/sleep","args":["1000"]})"));
  BOOST_REQUIRE_MESSAGE(r.contains("result"), json::serialize(r));
}

inline std::int64_t error_code_of(const json::object& r) {
  return r.at("error").at("code").as_int64();
}

// `n` Version requests, ids 0..n-1, as one string.
inline std::string version_flood(int n) {
  std::string flood;
  for (int i = 0; i < n; ++i)
    flood += R"({"jsonrpc":"2.0","id":)" + std::to_string(i) + R"(,"method":"Version"})" + "\n";
  return flood;
}

// Send `text` in a coroutine of its own (the daemon may stop reading until we
// read); `sent` turns true when the write completed, whatever its outcome.
// A plain function: GCC 12 mishandles init-captures in lambdas made inside
// coroutines.
inline void send_in_background(client& c, std::string text, bool& sent) {
  auto owned = std::make_shared<std::string>(std::move(text));
  asio::co_spawn(
      harness::get().io,
      [&c, &sent, owned]() -> asio::awaitable<void> {
        boost::system::error_code ec;
        co_await c.send_raw_ec(*owned, ec);
        sent = true;
      },
      [](std::exception_ptr e) {
        if (e)
          std::rethrow_exception(e);
      });
}

}  // namespace test_support
