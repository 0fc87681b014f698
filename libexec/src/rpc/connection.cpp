// One client's connection (see connection.hpp): the reader (framing,
// limits, backpressure), the writer, and how a request goes to the method
// table and its answer comes back.
#include "connection.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <span>

#include "methods.hpp"
#include "whole_writes.hpp"

namespace taskexec::rpc {

bool server::connection::hung_up() {
  pollfd p{socket.native_handle(), 0, 0};
  return socket.is_open() && ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

asio::awaitable<bool> server::connection::wait_hangup() {
  while (socket.is_open() && !closing) {
    auto [ec] =
        co_await socket.async_wait(local::socket::wait_error, asio::as_tuple(asio::use_awaitable));
    if (ec)
      co_return false;
    if (hung_up())
      co_return true;
  }
  co_return false;
}

// One call at a time (the common case) needs no wake-up of the writer: the
// answer is written here, before the reader waits for more. What the socket
// does not take at once, and any error, is left to the writer.
void server::connection::answer(const json::value& v, exec_stdio_fds fds) {
  if (closing)
    return;
  std::string line = json::serialize(v);
  line += '\n';
  // At once when no more input is waiting: a client waiting for this answer
  // gets it without a trip through the writer. With more requests already
  // read (a pipelined burst), the writer sends all their answers together
  // once the reader has taken them.
  if (fds.empty() && framer.buffered() == 0)
    send_now(std::move(line));
  else
    send_line(std::move(line), std::move(fds));
}

void server::connection::send_now(std::string line) {
  if (closing)
    return;
  if (out.empty() && writing_bytes == 0) {
    const ssize_t n =
        ::send(socket.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(line.size())) {
      st->churn += line.size();
      return;
    }
    if (n > 0) {
      st->churn += static_cast<std::size_t>(n);
      line.erase(0, static_cast<std::size_t>(n));
    }
  }
  send_line(std::move(line));
}

// One message whose first byte carries descriptors (SCM_RIGHTS), the rest
// written as usual. The descriptors are the receiver's once sendmsg took
// the first byte; ours close with `m`.
asio::awaitable<boost::system::error_code> server::connection::send_with_fds(outgoing& m) {
  std::array<int, 4> fds{};
  std::size_t count = 0;
  for (int fd : {m.fds.stdin_fd, m.fds.stdout_fd, m.fds.stderr_fd, m.fds.pty_fd}) {
    if (fd >= 0)
      fds[count++] = fd;
  }
  std::size_t sent = 0;
  for (;;) {
    iovec iov{m.line.data(), m.line.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    if (cm == nullptr || count == 0)
      co_return boost::system::error_code(EINVAL, boost::system::system_category());
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * count);
    const ssize_t n = ::sendmsg(socket.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent = static_cast<std::size_t>(n);
      break;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno != EAGAIN)
      co_return boost::system::error_code(errno, boost::system::system_category());
    auto [ec] =
        co_await socket.async_wait(local::socket::wait_write, asio::as_tuple(asio::use_awaitable));
    if (ec)
      co_return ec;
  }
  m.fds.reset();
  if (sent < m.line.size()) {
    auto [ec, n] =
        co_await asio::async_write(socket, asio::buffer(m.line.data() + sent, m.line.size() - sent),
                                   whole_writes{}, asio::as_tuple(asio::use_awaitable));
    (void)n;
    co_return ec;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<void> server::connection::writer() {
  auto self = shared_from_this();
  for (;;) {
    while (!out.empty()) {
      boost::system::error_code ec;
      if (!out.front().fds.empty()) {
        // Alone: its descriptors go with its first byte.
        outgoing m = std::move(out.front());
        out.pop_front();
        writing_bytes = m.line.size();
        ec = co_await send_with_fds(m);
      } else {
        // Several queued messages in one write (a session's output comes
        // in many small notifications), taken out of the queue first:
        // nothing (force_close) can free them while the write is under way.
        std::vector<std::string> batch;
        std::size_t bytes = 0;
        while (!out.empty() && out.front().fds.empty() && batch.size() < 64 && bytes < 256 * 1024) {
          bytes += out.front().line.size();
          batch.push_back(std::move(out.front().line));
          out.pop_front();
        }
        std::array<asio::const_buffer, 64> bufs;
        for (std::size_t i = 0; i < batch.size(); ++i)
          bufs[i] = asio::buffer(batch[i]);
        writing_bytes = bytes;
        auto [wec, n] =
            co_await asio::async_write(socket, std::span(bufs.data(), batch.size()), whole_writes{},
                                       asio::as_tuple(asio::use_awaitable));
        (void)n;
        ec = wec;
      }
      out_bytes -= std::min(out_bytes, writing_bytes);
      writing_bytes = 0;
      if (ec) {
        closing = true;
        out.clear();
        out_bytes = 0;
        resume.cancel();
        break;
      }
      resume.cancel();
      if (out_bytes <= max_out_bytes)
        drained.notify_all();
    }
    // A burst's queue leaves its block map behind (a pointer per eight
    // messages): give it back with the rest of the burst's memory.
    if (out.empty() && pending == 0 && out_peak > 256) {
      std::deque<outgoing>().swap(out);
      out_peak = 0;
    }
    if (pending == 0)
      st->note_idle();
    if (closing)
      break;
    co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
    wake.expires_at(std::chrono::steady_clock::time_point::max());
  }
  boost::system::error_code ignored;
  socket.shutdown(local::socket::shutdown_both, ignored);
  socket.close(ignored);
  disconnected();
  st->connection_closed(this);
}

asio::awaitable<void> server::connection::reader() {
  auto self = shared_from_this();
  std::array<char, 65536> buf;
  while (!closing) {
    // Messages already received are taken one at a time, and only while
    // the connection is below its limits.
    while (!closing && !saturated()) {
      // In the framer's buffer: only this loop feeds it, below.
      auto line = framer.next_view();
      if (!line)
        break;
      if (waiting >= max_pending) {
        // Calls this read started are only posted yet: let those that
        // complete at once (a Launch refused, ...) finish before the limit
        // judges this one.
        co_await asio::post(socket.get_executor(), asio::use_awaitable);
        if (closing)
          break;
      }
      if (auto now = handle(*line)) {
        auto call = run_in_place(std::move(*now));
        co_await std::move(call);
      }
    }
    if (framer.overflowed()) {
      st->metrics.note_limit("message_bytes");
      send(make_error(
          nullptr, {code::invalid_request,
                    "message larger than " + std::to_string(framer.max_message_bytes()) + " bytes",
                    {}}));
      // No more input will be read: sessions could never get any.
      end_subscriptions();
      break;
    }
    if (closing)
      break;
    if (saturated()) {
      // Paused (backpressure), yet a client that vanishes is noticed.
      using namespace asio::experimental::awaitable_operators;
      auto woke =
          co_await (resume.async_wait(asio::as_tuple(asio::use_awaitable)) || wait_hangup());
      resume.expires_at(std::chrono::steady_clock::time_point::max());
      if (woke.index() == 1 && std::get<1>(woke)) {
        disconnected();
        break;
      }
      continue;
    }
    auto [ec, n] =
        co_await socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (ec)
      break;
    st->churn += n;
    framer.feed(std::string_view(buf.data(), n));
  }
  // End of input (or an error). A peer that only half-closed still gets
  // the answers to what it sent, and its sessions' output; a peer that is
  // gone entirely (POLLHUP) gets nothing more, so what it left pending is
  // cancelled and its sessions' commands are killed.
  const bool gone = hung_up();
  if (gone)
    disconnected();
  close_when_idle = true;
  if (idle())
    close_after_flush();
  if (!gone && !closing && co_await wait_hangup())
    disconnected();
}

std::optional<request> server::connection::handle(std::string_view line) {
  // A stream's input, as our client writes it: no JSON parser (it would
  // validate and copy every byte of the base64). Anything else is parsed.
  if (auto in = parse_exec_input(line)) {
    run_one(std::move(*in));
    return std::nullopt;
  }
  auto m = parse_message(line);
  if (!m.batch) {
    auto& it = m.items.front();
    if (auto* bad = std::get_if<invalid>(&it)) {
      st->metrics.note_invalid();
      send(make_error(bad->id, bad->error));
      return std::nullopt;
    }
    if (method_runs_in_place(std::get<request>(it).method))
      return std::get<request>(std::move(it));
    run_one(std::get<request>(std::move(it)));
    return std::nullopt;
  }
  run_batch(std::move(m.items));
  return std::nullopt;
}

asio::awaitable<void> server::connection::run_in_place(request r) {
  ++pending;
  const auto id = r.id;
  outcome o = rpc_error{code::internal_error, "internal error", {}};
  try {
    auto call = dispatch(*st, std::move(r), weak_from_this());
    o = co_await std::move(call);
  } catch (...) {
    // As run_one's: a bug in one call is that call's internal error.
  }
  if (id) {
    if (auto* err = std::get_if<rpc_error>(&o))
      answer(make_error(*id, *err));
    else
      answer(make_result(*id, std::get<json::value>(std::move(o))));
    answered(id);
  }
  request_done();
}

void server::connection::run_one(request r) {
  const bool counted = method_may_wait(r.method);
  if (counted && waiting >= max_pending) {
    st->metrics.note_refused(r.method);
    if (r.id)
      send(make_error(
          *r.id, limit_error(st->metrics, "pending", "too many requests pending on this connection",
                             max_pending)));
    return;
  }
  auto self = shared_from_this();
  ++pending;
  waiting += counted ? 1 : 0;
  auto cancel = cancels.emplace(cancels.end());
  auto request_id = r.id;
  asio::co_spawn(socket.get_executor(), dispatch(*st, std::move(r), self),
                 asio::bind_cancellation_slot(
                     cancel->slot(), [self, cancel, counted, id = std::move(request_id)](
                                         const std::exception_ptr& e, outcome o) {
                       // Answer (below), then close if this was the last one pending.
                       struct done_guard {
                         connection& c;
                         std::list<asio::cancellation_signal>::iterator it;
                         bool counted;
                         ~done_guard() {
                           c.cancels.erase(it);
                           c.waiting -= counted ? 1 : 0;
                           c.request_done();
                         }
                       } done{*self, cancel, counted};
                       if (e)
                         o = rpc_error{code::internal_error, "internal error", {}};
                       if (!id)
                         return;  // a notification: no response
                       // Descriptors (ExecStreaming.Start with fds) go with
                       // the answer; an error answer closes them.
                       auto fds = self->take_answer_fds(*id);
                       if (auto* err = std::get_if<rpc_error>(&o))
                         self->answer(make_error(*id, *err));
                       else
                         self->answer(make_result(*id, std::get<json::value>(std::move(o))),
                                      std::move(fds));
                       self->answered(id);
                     }));
}

void server::connection::run_batch(std::vector<item> items) {
  if (items.size() > max_batch) {
    st->metrics.note_limit("batch");
    send(make_error(nullptr, {code::invalid_request,
                              "batch larger than " + std::to_string(max_batch) + " requests",
                              {}}));
    return;
  }
  auto self = shared_from_this();
  struct batch_state {
    json::array responses;
    std::size_t left;
  };
  auto b = std::make_shared<batch_state>();
  b->left = items.size();
  // The batch is answered as one array once its last member is done; each
  // member counts as a request in flight until then.
  auto ids = std::make_shared<std::vector<std::optional<json::value>>>();
  auto done_one = [self, b, ids] {
    if (--b->left == 0) {
      if (!b->responses.empty())
        self->send(std::move(b->responses));
      for (const auto& id : *ids)
        self->answered(id);
    }
  };
  for (auto& it : items) {
    if (auto* bad = std::get_if<invalid>(&it)) {
      st->metrics.note_invalid();
      b->responses.push_back(make_error(bad->id, bad->error));
      done_one();
      continue;
    }
    auto r = std::get<request>(std::move(it));
    const bool counted = method_may_wait(r.method);
    if (counted && waiting >= max_pending) {
      st->metrics.note_refused(r.method);
      if (r.id)
        b->responses.push_back(make_error(
            *r.id, limit_error(st->metrics, "pending",
                               "too many requests pending on this connection", max_pending)));
      done_one();
      continue;
    }
    auto request_id = r.id;
    ids->push_back(r.id);
    ++pending;
    waiting += counted ? 1 : 0;
    auto cancel = cancels.emplace(cancels.end());
    asio::co_spawn(
        socket.get_executor(), dispatch(*st, std::move(r), self, true),
        asio::bind_cancellation_slot(
            cancel->slot(), [self, b, done_one, cancel, counted, id = std::move(request_id)](
                                const std::exception_ptr& e, outcome o) {
              if (e)
                o = rpc_error{code::internal_error, "internal error", {}};
              if (id) {
                if (auto* err = std::get_if<rpc_error>(&o))
                  b->responses.push_back(make_error(*id, *err));
                else
                  b->responses.push_back(make_result(*id, std::get<json::value>(std::move(o))));
              }
              done_one();
              self->cancels.erase(cancel);
              self->waiting -= counted ? 1 : 0;
              self->request_done();
            }));
  }
}

}  // namespace taskexec::rpc
