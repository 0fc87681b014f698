// rpc::server: the listener (socket, peer check, connection limit), the
// drain on stop, and the heap trim. A connection's framing, reader, writer
// and backpressure are in connection.cpp; what each method does is in the
// method table (methods.cpp, stats_subscriptions.cpp, exec_sessions.cpp).
#include "taskexec/rpc/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <malloc.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <vector>

#include "connection.hpp"
#include "taskexec/rpc/socket_dir.hpp"

namespace taskexec::rpc {

void server_metrics::note_limit(std::string_view limit) {
  const auto n = ++limits_hit[std::string(limit)];
  if (!detail::log_enabled(log_level::info))
    return;
  if (auto suppressed =
          limit_lines.admit(std::hash<std::string_view>{}(limit), log_throttle::clock::now())) {
    detail::log_fields f;
    f.add("limit", limit)
        .add("times", static_cast<std::int64_t>(n))
        .add("not_logged", static_cast<std::int64_t>(*suppressed));
    detail::log(log_level::info, "rpc", "", "", "limit reached", f.view());
  }
}

rpc_error limit_error(server_metrics& m, std::string_view name, std::string what,
                      std::size_t limit) {
  m.note_limit(name);
  rpc_error e{code::limit_exceeded, std::move(what) + " (limit " + std::to_string(limit) + ")", {}};
  e.data["limit"] = limit;
  return e;
}

void server::state::note_idle() {
  constexpr std::size_t trim_after_bytes = 256 * 1024;
  if (churn < trim_after_bytes)
    return;
  // The trim is due a second after the last time the connections went
  // idle: a burst longer than that is trimmed once, after its end, not in
  // its middle with the rest of its churn left untrimmed.
  trim_due = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  if (trim_armed)
    return;
  trim_armed = true;
  if (!trim_timer)
    trim_timer.emplace(ex);
  arm_trim();
}

void server::state::arm_trim() {
  trim_timer->expires_at(trim_due);
  std::weak_ptr<state> weak = shared_from_this();
  trim_timer->async_wait([weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self)
      return;
    if (std::chrono::steady_clock::now() < self->trim_due) {
      self->arm_trim();  // busy again since: wait for a quiet second
      return;
    }
    self->trim_armed = false;
    self->churn = 0;
#ifdef __GLIBC__
    ::malloc_trim(0);
#endif
  });
}

void server::state::connection_closed(connection* c) {
  connections.erase(c);
  note_idle();
  if (stopping && connections.empty() && on_drained) {
    auto f = std::move(on_drained);
    on_drained = nullptr;
    asio::post(ex, f);
  }
}

server::server(const asio::any_io_executor& ex, task_executor& task, server_options options)
    : state_(std::make_shared<state>(ex, task)), options_(std::move(options)) {
  state_->options = options_;
  state_->journal.on_append([w = std::weak_ptr<state>(state_)](const json::object& event) {
    if (auto s = w.lock())
      s->deliver_event(event);
  });
}

server::~server() {
  stop();
}

result<void> server::listen() {
  const std::string& path = options_.socket_path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    return make_error(errc::invalid_argument, "socket path \"" + path + "\" is empty or too long");
  // A leading NUL would make it an abstract socket, which has no
  // permissions: anyone in the network namespace could connect.
  if (path.find('\0') != std::string::npos)
    return make_error(errc::invalid_argument, "socket path contains a NUL byte");
  // With --allow-uid, other users must reach the socket: it is made 0666 and
  // created directories 0711, and SO_PEERCRED decides who may call.
  const bool shared = !options_.allowed_uids.empty();
  // Only root and we may be able to change the way to the socket: anyone
  // else could rename a directory on it and put an impostor in our place.
  if (auto safe = prepare_socket_directory(path, ::geteuid(), shared ? 0711 : 0700); !safe)
    return safe.error();
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(errc::invalid_argument, "\"" + path + "\" exists and is not a socket");
    local::socket probe(state_->ex);
    boost::system::error_code cec;
    probe.connect(local::endpoint(path), cec);
    if (!cec)
      return make_error(errc::invalid_argument, "a live daemon already owns \"" + path + "\"");
    ::unlink(path.c_str());  // stale: nobody listens
  }
  local::acceptor acc(state_->ex);
  boost::system::error_code aec;
  acc.open(local::endpoint(path).protocol(), aec);
  mode_t old = ::umask(0177);  // the socket is born 0600
  if (!aec)
    acc.bind(local::endpoint(path), aec);
  ::umask(old);
  if (!aec)
    acc.listen(asio::socket_base::max_listen_connections, aec);
  if (aec)
    return make_system_error(aec.value(), "listen on \"" + path + "\"");
  ::chmod(path.c_str(), shared ? 0666 : 0600);
  state_->acceptor.emplace(std::move(acc));
  return {};
}

result<void> server::adopt(int fd) {
  local::acceptor acc(state_->ex);
  boost::system::error_code ec;
  acc.assign(local(), fd, ec);
  if (ec) {
    ::close(fd);
    return make_system_error(ec.value(), "adopt the inherited socket");
  }
  state_->acceptor.emplace(std::move(acc));
  state_->adopted = true;
  return {};
}

void server::start() {
  asio::co_spawn(state_->ex, accept_loop(), [](const std::exception_ptr& e) {
    if (e)
      std::rethrow_exception(e);
  });
}

asio::awaitable<void> server::accept_loop() {
  auto st = state_;
  auto self = shared_from_this();
  while (st->acceptor && st->acceptor->is_open()) {
    auto [ec, sock] = co_await st->acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || st->stopping)
      co_return;
    if (ec) {
      ++st->accept_failures;
      const auto now = log_throttle::clock::now();
      if (auto n = st->accept_errors.admit(static_cast<std::uint64_t>(ec.value()), now)) {
        std::string line = "accept: " + ec.message();
        if (ec == asio::error::no_descriptors)
          line += " (retrying every 50 ms; logged once a minute)";
        if (*n > 0)
          line += " (" + std::to_string(*n) + " more since the last line)";
        log(log_level::warning, line);
      }
      if (ec == asio::error::no_descriptors) {
        // Out of descriptors: back off briefly instead of spinning.
        asio::steady_timer t(st->ex, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      continue;
    }
    if (st->accept_failures > 0) {
      log(log_level::warning,
          "accept: accepting again after " + std::to_string(st->accept_failures) + " failures");
      st->accept_failures = 0;
    }
    auto c = std::make_shared<connection>(st, std::move(sock), options_.max_message_bytes);
    ++st->metrics.connections_total;
    st->connections.emplace(c.get(), c);
    asio::co_spawn(st->ex, c->writer(), connection_guard(c));

    ucred cred{};
    socklen_t len = sizeof cred;
    bool allowed =
        ::getsockopt(c->socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
    if (allowed) {
      allowed = cred.uid == 0 || cred.uid == ::geteuid();
      for (auto u : options_.allowed_uids)
        allowed = allowed || cred.uid == u;
    }
    if (!allowed) {
      if (auto n = st->refusals.admit(cred.uid, log_throttle::clock::now())) {
        std::string line = "refused a connection of uid " + std::to_string(cred.uid) +
                           ": not allowed to call this daemon (-32005)";
        if (*n > 0)
          line += "; " + std::to_string(*n) + " more of this uid since its last line";
        log(log_level::warning, line);
      }
      c->send(make_error(nullptr, {code::permission_denied,
                                   "permission denied: uid " + std::to_string(cred.uid) +
                                       " may not call this daemon",
                                   {}}));
      ++st->metrics.connections_refused;
      c->close_after_flush();
      continue;
    }
    if (st->connections.size() > options_.max_connections) {
      c->send(make_error(nullptr, limit_error(st->metrics, "connections", "too many connections",
                                              options_.max_connections)));
      ++st->metrics.connections_refused;
      c->close_after_flush();
      continue;
    }
    asio::co_spawn(st->ex, c->reader(), connection_guard(c));
  }
}

void server::stop() {
  auto& st = *state_;
  if (st.stopping)
    return;
  st.stopping = true;
  st.end_followers("stopping");
  if (st.acceptor) {
    boost::system::error_code ignored;
    st.acceptor->close(ignored);
    if (!st.adopted)
      ::unlink(options_.socket_path.c_str());
  }
  for (auto& [p, c] : st.connections) {
    c->close_when_idle = true;
    if (c->idle())
      c->close_after_flush();
  }
  // A client that does not read would hold the drain forever: past the
  // deadline, what is left is closed without its answers.
  auto deadline = std::make_shared<asio::steady_timer>(st.ex, options_.drain_timeout);
  deadline->async_wait([deadline, w = std::weak_ptr<state>(state_)](boost::system::error_code ec) {
    auto s = w.lock();
    if (ec || !s)
      return;
    std::vector<std::shared_ptr<connection>> left;
    for (auto& [p, c] : s->connections)
      left.push_back(c);
    for (auto& c : left)
      c->force_close();
  });
}

void server::on_drained(std::function<void()> f) {
  if (state_->stopping && state_->connections.empty()) {
    asio::post(state_->ex, std::move(f));
    return;
  }
  state_->on_drained = std::move(f);
}

std::size_t server::connection_count() const noexcept {
  return state_->connections.size();
}

}  // namespace taskexec::rpc
