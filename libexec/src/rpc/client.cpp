// remote_executor: one connection to taskexecd, shared by concurrent calls.
// A reader coroutine matches responses to calls by id and hands Stats.Sample
// notifications to their streams; a writer coroutine sends queued messages in
// order (Asio allows one write in flight per socket).
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <charconv>
#include <cstring>
#include <deque>
#include <functional>
#include <span>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../write_no_sigpipe.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/detail/coro.hpp"
#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/framer.hpp"
#include "taskexec/signals.hpp"
#include "taskexec/version.hpp"
#include "whole_writes.hpp"

namespace taskexec {

namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using detail::no_throw_on_cancel;

namespace {

// Responses may be large (Exec output); a peer sending more than this in one
// line is broken.
constexpr std::size_t max_response_bytes = 64 * 1024 * 1024;
constexpr std::size_t framer_keep_bytes = 256 * 1024;
constexpr std::size_t max_queued_samples = 64;
// A passed session: after the exit, output of what the command left behind
// is taken this long (the daemon's linger).
constexpr auto passed_linger = std::chrono::milliseconds(100);

error lost_connection() {
  return make_error(errc::connection_failed, "connection to taskexecd lost");
}

void rethrow(const std::exception_ptr& e) {
  if (e)
    std::rethrow_exception(e);
}

}  // namespace

errc from_rpc_error(std::int64_t code) noexcept {
  switch (code) {
    case -32001:
      return errc::not_launched;
    case -32002:
      return errc::already_launched;
    case -32003:
      return errc::task_exited;
    case -32004:
      return errc::launch_failed;
    case -32005:
      return errc::permission_denied;
    case -32006:
      return errc::timed_out;
    case -32007:
    case -32601:
      return errc::unsupported;
    case -32008:
      return errc::resource_config_failed;
    case -32009:
      return errc::unknown_subscription;
    case -32602:
      return errc::invalid_argument;
    case -32603:
      return errc::internal;
    case -32010:
      return errc::limit_reached;
    default:
      return errc::protocol_error;
  }
}

// ---------------------------------------------------------------- connection

struct stats_stream::state {
  explicit state(const asio::any_io_executor& ex) : wake(ex) {}
  std::string subscription;
  std::deque<json::object> samples;
  std::uint64_t dropped = 0;
  bool ended = false;
  error end_error;
  asio::steady_timer wake;  // cancelled to wake the reader of next()
};

struct event_stream::state {
  explicit state(const asio::any_io_executor& ex) : wake(ex) {}
  std::string subscription;
  std::deque<json::object> events;
  std::uint64_t next_seq = 0;  // after the last event returned
  bool ended = false;
  error end_error;
  asio::steady_timer wake;  // cancelled to wake the reader of next()
};

struct remote_exec_session::state {
  explicit state(const asio::any_io_executor& ex)
      : wake(ex),
        space(ex, asio::steady_timer::time_point::max()),
        in_turn(ex, asio::steady_timer::time_point::max()),
        linger(ex) {}
  std::string id;
  int pid = 0;
  bool tty = false;
  std::deque<exec_event> events;
  std::size_t bytes = 0;  // of output in `events`
  std::optional<exec_event> exited;
  bool ended = false;  // the connection is gone, or the handle ended the session
  error end_error;
  asio::steady_timer wake;  // cancelled to wake the reader of read()

  // Passed descriptors ("fds": the daemon sent them): read and written
  // here; the daemon only reports the exit. Output is read by one pump per
  // source into `events`, as the daemon's session would send it.
  bool passed = false;
  struct source {
    source(const asio::any_io_executor& ex, int native, exec_stream s)
        : fd(ex, native), stream(s) {}
    asio::posix::stream_descriptor fd;
    exec_stream stream;
    bool closed = false;
  };
  std::deque<source> sources;                        // stdout (the terminal with a tty), stderr
  std::optional<asio::posix::stream_descriptor> in;  // stdin (a dup of the master with a tty)
  int master = -1;               // with a tty: sources[0]'s descriptor (resize, end of input)
  std::optional<int> exit_code;  // ExecStreaming.Exited came
  std::chrono::steady_clock::time_point exited_at, linger_until;
  asio::steady_timer space;    // cancelled when read() takes output (backpressure)
  asio::steady_timer in_turn;  // cancelled when a write's turn passes
  asio::steady_timer linger;   // the end of the linger after the exit
  std::uint64_t next_ticket = 0, turn = 0;
  std::vector<std::uint64_t> given_up;
  bool in_closed = false;  // close_stdin() called
  // At most this much output waits for read(); past it the pumps stop
  // reading and the command blocks in its writes.
  static constexpr std::size_t max_passed_bytes = 1024 * 1024;
  void next_turn() {
    ++turn;
    while (std::erase(given_up, turn) > 0)
      ++turn;
    in_turn.cancel();
  }
  // The exit is last: once every source is closed and the exit known.
  void maybe_exited() {
    if (exited || ended || !exit_code)
      return;
    for (const auto& src : sources) {
      if (!src.closed)
        return;
    }
    for (const auto& e : events) {
      if (e.kind == exec_event::type::exited)
        return;
    }
    exec_event e;
    e.kind = exec_event::type::exited;
    e.exit_code = *exit_code;
    events.push_back(e);
    wake.cancel();
  }
  /// Close every descriptor (the pumps and writes end).
  void stop_io() noexcept {
    boost::system::error_code ignored;
    for (auto& src : sources)
      src.fd.close(ignored);
    if (in)
      in->close(ignored);
    master = -1;
    space.cancel();
    in_turn.cancel();
    linger.cancel();
  }
};

namespace {
// (Re)arm the end of a passed session's linger at s->linger_until: then the
// pumps' waits are cancelled, and each reads what is left and closes.
void arm_linger(const std::shared_ptr<remote_exec_session::state>& s) {
  s->linger.expires_at(s->linger_until);
  s->linger.async_wait([w = std::weak_ptr(s)](boost::system::error_code ec) {
    auto st = w.lock();
    if (ec || !st)
      return;
    for (auto& src : st->sources) {
      boost::system::error_code ignored;
      if (!src.closed)
        src.fd.cancel(ignored);
    }
  });
}
}  // namespace

struct remote_executor::impl : std::enable_shared_from_this<impl> {
  impl(const asio::any_io_executor& ex, std::string path)
      : sock(ex), socket_path(std::move(path)) {}

  struct pending {
    asio::steady_timer* wake = nullptr;
    std::optional<json::object> response;
    bool done = false;
    // Runs when the response is read, before anything after it: a Stats
    // subscription registers its stream here so no sample is missed.
    std::function<void(const json::object&)> on_response;
  };

  local::socket sock;
  std::string socket_path;
  int peer_pid = 0;
  bool open = true;
  std::int64_t next_id = 1;
  std::unordered_map<std::int64_t, pending*> calls;
  std::unordered_map<std::string, std::weak_ptr<stats_stream::state>> streams;
  std::unordered_set<std::string> unknown_subscriptions;  // already sent Stats.Cancel
  std::unordered_map<std::string, std::weak_ptr<event_stream::state>> followers;
  std::unordered_set<std::string> unknown_followers;  // already sent Events.Cancel
  std::unordered_map<std::string, std::weak_ptr<remote_exec_session::state>> sessions;
  std::unordered_set<std::string> unknown_sessions;  // already sent ExecStreaming.Cancel

  // What opens something on the daemon (a Stats subscription, an Events
  // follower, an exec session) and how to end it: the Cancel notification
  // `method` {key: result[key]}. A call given one and cancelled before its
  // answer came ends what the late answer names, at once.
  struct cancel_rule {
    std::string_view method;
    std::string_view key;
    std::unordered_set<std::string> impl::*sent;  // ids whose Cancel was sent
  };
  static constexpr cancel_rule stats_cancel{"Stats.Cancel", "subscription",
                                            &impl::unknown_subscriptions};
  static constexpr cancel_rule follower_cancel{"Events.Cancel", "subscription",
                                               &impl::unknown_followers};
  static constexpr cancel_rule session_cancel{"ExecStreaming.Cancel", "session",
                                              &impl::unknown_sessions};
  // Calls cancelled while their answer was due, by id (one entry per such
  // call in flight: the daemon answers each request, or the connection ends).
  std::unordered_map<std::int64_t, const cancel_rule*> abandoned;

  void end_abandoned(const cancel_rule& rule, const json::object& resp) {
    const auto* res = resp.if_contains("result");
    const auto* o = res ? res->if_object() : nullptr;
    const auto* id = o ? o->if_contains(rule.key) : nullptr;
    if (id && id->is_string())
      cancel_once(this->*rule.sent, rule.method, rule.key, id->as_string());
  }

  // Output of sessions not yet read; past the bound the reader pauses.
  static constexpr std::size_t max_session_bytes = 1024 * 1024;
  std::size_t session_bytes = 0;
  std::optional<asio::steady_timer> read_resume;
  void session_read(std::size_t n) {
    session_bytes -= n;
    if (read_resume && session_bytes <= max_session_bytes)
      read_resume->cancel();
  }
  // Descriptors received (SCM_RIGHTS), one group per message that carried
  // them, in order: each ExecStreaming.Start answer with "fds" takes the
  // first group. Closed when the connection ends.
  std::deque<std::vector<int>> received_fds;
  static constexpr std::size_t max_received_groups = 16;
  // The ids of calls whose answer may carry descriptors (ExecStreaming.Start
  // with "fds"), until that answer is read. While there is one, the reader
  // uses recvmsg with room for them; otherwise asio's own read, which needs
  // no re-arming of the descriptor (epoll_ctl) before each wait.
  std::unordered_set<std::int64_t> fds_expected;
  // Cancels the reader's pending plain read when a call starts to expect
  // descriptors: that read could not take them.
  asio::cancellation_signal plain_read;
  bool plain_reading = false;
  // The descriptors of the answer being dispatched (its on_response takes them).
  exec_stdio_fds answer_fds;
  void close_received() noexcept {
    for (auto& g : received_fds) {
      for (int fd : g)
        ::close(fd);
    }
    received_fds.clear();
  }
  ~impl() { close_received(); }
  std::deque<std::string> outbox;
  bool writing = false;
  // It keeps up to 256 KiB between reads: a stream of output drains it at
  // every read, and a buffer freed and taken again each time made malloc
  // give its pages back to the kernel and fault them in again. It is given
  // back at a small read once no exec session is open (take_input).
  rpc::ndjson_framer framer{max_response_bytes, framer_keep_bytes};
  // Why the connection ended, when the daemon said so (e.g. -32005).
  std::optional<error> close_reason;
  // from_exit_state: the daemon is gone; how its task ended.
  std::optional<process_state> exit_state;

  void fail(const error& why) {
    if (!open)
      return;
    open = false;
    boost::system::error_code ignored;
    sock.close(ignored);
    outbox.clear();
    const error reason = close_reason.value_or(why);
    auto waiting = std::move(calls);
    calls.clear();
    abandoned.clear();
    fds_expected.clear();
    for (auto& [id, p] : waiting) {
      p->done = true;
      p->wake->cancel();
    }
    auto subscribed = std::move(streams);
    streams.clear();
    for (auto& [sub, w] : subscribed) {
      if (auto s = w.lock()) {
        s->ended = true;
        s->end_error = reason;
        s->wake.cancel();
      }
    }
    auto following = std::move(followers);
    followers.clear();
    for (auto& [sub, w] : following) {
      if (auto s = w.lock()) {
        s->ended = true;
        s->end_error = reason;
        s->wake.cancel();
      }
    }
    auto live = std::move(sessions);
    sessions.clear();
    for (auto& [id, w] : live) {
      if (auto s = w.lock()) {
        s->ended = true;
        s->end_error = reason;
        s->wake.cancel();
        s->stop_io();  // the daemon kills the command of a client gone
      }
    }
    if (read_resume)
      read_resume->cancel();
    close_received();
    close_reason = reason;
  }

  void send(std::string line) {
    if (!open)
      return;
    // A call's request (small) at once when nothing is queued: it goes out
    // with one send and no writer to start. Bulk (ExecStreaming.Input) and
    // what the socket does not take go through the writer (measured: bulk
    // sent here made the JSON stream path slower).
    if (!writing && outbox.empty() && line.size() <= direct_send_max) {
      const ssize_t n =
          ::send(sock.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n == static_cast<ssize_t>(line.size()))
        return;
      if (n > 0) {
        line.erase(0, static_cast<std::size_t>(n));
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        // As the writer does on an error: what the peer said may still
        // wait to be read, and the reader ends the connection at EOF.
        boost::system::error_code ignored;
        sock.shutdown(local::socket::shutdown_send, ignored);
        return;
      }
    }
    outbox.push_back(std::move(line));
    if (!writing) {
      writing = true;
      asio::co_spawn(sock.get_executor(), write_loop(shared_from_this()), rethrow);
    }
  }

  static asio::awaitable<void> write_loop(std::shared_ptr<impl> self) {
    while (self->open && !self->outbox.empty()) {
      // What is queued goes out together (a stream's Inputs in flight),
      // taken out of the queue first as the daemon's writer does.
      std::vector<std::string> batch;
      std::size_t bytes = 0;
      while (!self->outbox.empty() && batch.size() < max_batch && bytes < max_batch_bytes) {
        bytes += self->outbox.front().size();
        batch.push_back(std::move(self->outbox.front()));
        self->outbox.pop_front();
      }
      std::array<asio::const_buffer, max_batch> bufs;
      for (std::size_t i = 0; i < batch.size(); ++i)
        bufs[i] = asio::buffer(batch[i]);
      auto [ec, n] =
          co_await asio::async_write(self->sock, std::span(bufs.data(), batch.size()),
                                     rpc::whole_writes{}, asio::as_tuple(asio::use_awaitable));
      (void)n;
      if (ec) {
        // The peer has closed. What it said before (a refusal, say) may
        // still wait to be read: the reader ends the connection at EOF.
        self->outbox.clear();
        boost::system::error_code ignored;
        self->sock.shutdown(local::socket::shutdown_send, ignored);
      }
    }
    self->writing = false;
  }

  // One recvmsg: bytes, and descriptors if the daemon sent some (only
  // with an answer to ExecStreaming.Start with "fds"). -1 with errno.
  ssize_t receive(std::vector<char>& buf) {
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 8)> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(sock.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 || msg.msg_controllen == 0)
      return n;
    std::vector<int> group;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        continue;
      const std::size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < k; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        group.push_back(fd);
      }
    }
    if (!group.empty())
      received_fds.push_back(std::move(group));
    if ((msg.msg_flags & MSG_CTRUNC) != 0)
      fail(make_error(errc::protocol_error, "taskexecd sent more descriptors than expected"));
    else if (received_fds.size() > max_received_groups)
      fail(make_error(errc::protocol_error, "taskexecd sent descriptors nobody asked for"));
    return n;
  }

  static constexpr std::size_t direct_send_max = 4096;
  // The writer's batch: at most this many queued messages, and it stops
  // taking more once it holds this many bytes.
  static constexpr std::size_t max_batch = 16;
  static constexpr std::size_t max_batch_bytes = 256 * 1024;
  static constexpr std::size_t small_read = 4096;

  static asio::awaitable<void> read_loop(std::shared_ptr<impl> self) {
    std::vector<char> buf(64 * 1024);
    // Descriptors expected: after a small read (answers, not a stream of
    // output) the socket was most likely drained: wait for it to be readable
    // instead of a read that would only say EAGAIN. After a big one, output
    // is streaming in: read again at once.
    bool drained = false;
    while (self->open) {
      if (self->fds_expected.empty()) {
        // No descriptors can come: asio's read. It tries at once (between
        // calls, a recv that finds nothing yet) and then waits without
        // re-arming the descriptor; async_wait re-arms it with an epoll_ctl
        // each time, which costs more (measured: 5% to 13% more Versions
        // a second through this read, in paired runs).
        self->plain_reading = true;
        // Not a structured binding: it would span the pause's co_await
        // below, which GCC 12 mishandles.
        const std::tuple<boost::system::error_code, std::size_t> got_plain =
            co_await self->sock.async_read_some(
                asio::buffer(buf),
                asio::bind_cancellation_slot(self->plain_read.slot(),
                                             asio::as_tuple(asio::use_awaitable)));
        const auto ec = std::get<0>(got_plain);
        const auto n = std::get<1>(got_plain);
        self->plain_reading = false;
        self->plain_read.slot().clear();
        if (!self->open)
          break;
        if (ec == asio::error::operation_aborted)
          continue;  // a call now expects descriptors (nothing else here
                     // cancels this read): read with recvmsg
        if (ec) {
          self->fail(lost_connection());
          break;
        }
        drained = false;
        if (!self->take_input(std::string_view(buf.data(), n)))
          break;
        if (self->session_bytes > max_session_bytes)
          co_await self->pause_while_behind();
        continue;
      }
      if (drained) {
        drained = false;
        auto [ec] = co_await self->sock.async_wait(local::socket::wait_read,
                                                   asio::as_tuple(asio::use_awaitable));
        if (ec) {
          self->fail(lost_connection());
          break;
        }
        continue;
      }
      const ssize_t got = self->receive(buf);
      if (!self->open)
        break;
      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        drained = true;
        continue;
      }
      if (got <= 0) {
        self->fail(lost_connection());
        break;
      }
      const auto n = static_cast<std::size_t>(got);
      drained = n < small_read;
      if (!self->take_input(std::string_view(buf.data(), n)))
        break;
      if (self->session_bytes > max_session_bytes)
        co_await self->pause_while_behind();
    }
  }

  // The bytes read, framed and dispatched; false once the connection failed.
  bool take_input(std::string_view bytes) {
    framer.feed(bytes);
    while (open) {
      auto line = framer.next_view();  // valid until the next feed
      if (!line)
        break;
      dispatch(*line);
    }
    if (framer.overflowed())
      fail(make_error(errc::protocol_error, "taskexecd sent a message over 64 MiB"));
    else if (bytes.size() < small_read && sessions.empty())
      framer.release();  // a small read and no session: quiet now
    return open;
  }

  // A session's reader that falls behind holds the whole connection.
  // (A member coroutine: its caller, the reader, holds this impl.)
  asio::awaitable<void> pause_while_behind() {
    while (open && session_bytes > max_session_bytes) {
      if (!read_resume)
        read_resume.emplace(sock.get_executor());
      read_resume->expires_at(asio::steady_timer::time_point::max());
      co_await read_resume->async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  // The daemon's ExecStreaming.Output lines in the exact form it writes
  // them, without building a JSON value (they are the bulk of a session's
  // traffic); false for anything else, which takes the general path.
  bool fast_output(std::string_view line) {
    constexpr std::string_view head =
        R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":")";
    if (!line.starts_with(head))
      return false;
    line.remove_prefix(head.size());
    const auto quote = line.find('"');
    if (quote == std::string_view::npos)
      return false;
    const std::string_view sid = line.substr(0, quote);
    line.remove_prefix(quote);
    exec_stream stream;
    if (line.starts_with(R"(","stream":"stdout","data":")"))
      stream = exec_stream::stdout_stream;
    else if (line.starts_with(R"(","stream":"stderr","data":")"))
      stream = exec_stream::stderr_stream;
    else
      return false;
    line.remove_prefix(std::string_view(R"(","stream":"stdout","data":")").size());
    const auto end = line.find('"');
    if (end == std::string_view::npos)
      return false;
    const std::string_view data = line.substr(0, end);
    line.remove_prefix(end);
    bool closed = false;
    if (line == R"(","close":true}})")
      closed = true;
    else if (line != R"("}})")
      return false;
    if (sid.find('\\') != std::string_view::npos)
      return false;  // let the parser judge it
    return deliver_base64(sid, stream, data, closed);
  }

  // As deliver_output, decoding `b64` straight into the session's last
  // event when it can take it (no allocation per notification); false
  // (nothing delivered) when `b64` is not base64.
  bool deliver_base64(std::string_view sid, exec_stream stream, std::string_view b64, bool closed) {
    auto it = sessions.find(std::string(sid));
    std::shared_ptr<remote_exec_session::state> s;
    if (it != sessions.end())
      s = it->second.lock();
    // A stream's closing chunk stays an event of its own, as it came.
    if (s && !closed && !s->events.empty()) {
      auto& last = s->events.back();
      const std::size_t padding = b64.ends_with("==") ? 2 : b64.ends_with('=') ? 1 : 0;
      const std::size_t n = b64.size() / 4 * 3 - std::min(padding, b64.size() / 4 * 3);
      if (last.kind == exec_event::type::output && !last.closed && last.stream == stream &&
          last.data.size() + n <= exec_event::max_data) {
        // A second chunk for the event: output is streaming in, and the
        // event gets room for max_data at once, as the daemon's session's
        // do, not a string regrown (copied, its new pages faulted in) four
        // times on the way there.
        if (n > 0 && last.data.capacity() < exec_event::max_data)
          last.data.reserve(exec_event::max_data);
        const std::size_t before = last.data.size();
        if (!base64_decode_append(last.data, b64))
          return false;
        const std::size_t added = last.data.size() - before;
        s->bytes += added;
        session_bytes += added;
        s->wake.cancel();
        return true;
      }
    }
    auto decoded = base64_decode(b64);
    if (!decoded)
      return false;
    deliver_output(sid, stream, std::move(*decoded), closed);
    return true;
  }

  // Output of a session nobody holds (its Start call was cancelled before
  // the answer came): end it on the daemon, once.
  void cancel_unknown_session(std::string_view sid) {
    cancel_once(unknown_sessions, "ExecStreaming.Cancel", "session", sid);
  }

  // Note that the Cancel of `id` was sent; false if it was already. At most
  // 256 ids are kept: the set is cleared past that (a forgotten id costs at
  // most one more Cancel notification, which the daemon ignores).
  static bool remember_cancelled(std::unordered_set<std::string>& sent, std::string_view id) {
    if (sent.size() >= 256)
      sent.clear();
    return sent.insert(std::string(id)).second;
  }

  // A notification `method` {key: id} for something nobody here holds (the
  // call that opened it was cancelled before its answer came), sent once per
  // id; `sent` remembers at most 256 ids.
  void cancel_once(std::unordered_set<std::string>& sent, std::string_view method,
                   std::string_view key, std::string_view id) {
    if (remember_cancelled(sent, id))
      send_cancel(method, key, id);
  }

  // The notification `method` {key: id} (a Cancel: the daemon answers nothing).
  void send_cancel(std::string_view method, std::string_view key, std::string_view id) {
    json::object params;
    params[key] = id;
    json::object note;
    note["jsonrpc"] = "2.0";
    note["method"] = method;
    note["params"] = std::move(params);
    send(json::serialize(note) + "\n");
  }

  void deliver_output(std::string_view sid, exec_stream stream, std::string data, bool closed) {
    auto it = sessions.find(std::string(sid));
    if (it == sessions.end()) {
      cancel_unknown_session(sid);
      return;
    }
    auto s = it->second.lock();
    if (!s) {
      sessions.erase(it);
      return;
    }
    // The event queued last takes no more once another follows it: room it
    // was given for max_data and did not fill (streams alternating, a chunk
    // or two each) is given back, so that what waits, bounded by
    // max_session_bytes, stays near the bytes it holds.
    if (!s->events.empty()) {
      auto& last = s->events.back().data;
      if (last.capacity() > 2 * last.size() + 4096)
        last.shrink_to_fit();
    }
    exec_event e;
    e.stream = stream;
    e.data = std::move(data);
    e.closed = closed;
    s->bytes += e.data.size();
    session_bytes += e.data.size();
    s->events.push_back(std::move(e));
    s->wake.cancel();
  }

  void dispatch(std::string_view line) {
    if (fast_output(line))
      return;
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (ec || !v.is_object()) {
      fail(make_error(errc::protocol_error, "taskexecd sent something that is not a JSON object"));
      return;
    }
    auto& o = v.as_object();
    if (const auto* method = o.if_contains("method")) {
      on_notification(*method, o);
      return;
    }
    const auto* id = o.if_contains("id");
    if (!id || id->is_null()) {
      // Said to the connection as a whole (a refused peer, or a request of
      // ours it could not read, which no call can be matched to): the
      // connection ends with that error, so no call waits forever.
      const auto* err = o.if_contains("error");
      error reason = make_error(errc::protocol_error, "taskexecd sent a response without an id");
      if (err && err->is_object()) {
        const auto* code = err->as_object().if_contains("code");
        const auto* msg = err->as_object().if_contains("message");
        const auto c = code && code->is_int64() ? code->as_int64() : 0;
        const std::string said =
            msg && msg->is_string() ? std::string(msg->as_string()) : std::string("error");
        reason = c == -32005
                     ? make_error(errc::permission_denied, said)
                     : make_error(errc::protocol_error, "taskexecd refused a request: " + said);
      }
      close_reason = reason;
      fail(reason);
      return;
    }
    if (id->is_int64())
      fds_expected.erase(id->as_int64());
    // An ExecStreaming.Start answer with "fds" takes the descriptors that
    // came with its first byte.
    const auto* res = o.if_contains("result");
    const auto* fd_names = res && res->is_object() ? res->as_object().if_contains("fds") : nullptr;
    exec_stdio_fds fds;
    if (fd_names) {
      auto taken = take_fds(*fd_names);
      if (!taken) {
        fail(make_error(errc::protocol_error,
                        "taskexecd answered with \"fds\" but the descriptors did not match"));
        return;
      }
      fds = std::move(*taken);
    }
    auto it = id->is_int64() ? calls.find(id->as_int64()) : calls.end();
    if (it == calls.end()) {
      // A call whose caller gave up: what its answer opened is ended (and
      // descriptors that came with it close here).
      auto a = id->is_int64() ? abandoned.find(id->as_int64()) : abandoned.end();
      if (a != abandoned.end()) {
        const cancel_rule* rule = a->second;
        abandoned.erase(a);
        end_abandoned(*rule, o);
      } else if (fd_names) {
        if (const auto* sid = res->as_object().if_contains("session"); sid && sid->is_string())
          cancel_unknown_session(sid->as_string());
      }
      return;
    }
    auto* p = it->second;
    calls.erase(it);
    answer_fds = std::move(fds);
    if (p->on_response)
      p->on_response(o);
    answer_fds.reset();  // not taken: closed
    p->response = std::move(o);
    p->done = true;
    p->wake->cancel();
  }

  // The first group of descriptors received, named by an answer's "fds":
  // ["stdin","stdout","stderr"] or ["pty"]; nullopt when they do not match
  // (the group is closed).
  std::optional<exec_stdio_fds> take_fds(const json::value& names) {
    if (received_fds.empty())
      return std::nullopt;
    std::vector<int> group = std::move(received_fds.front());
    received_fds.pop_front();
    exec_stdio_fds out;
    const auto* a = names.if_array();
    if (a && a->size() == group.size()) {
      for (std::size_t i = 0; i < group.size(); ++i) {
        const auto* n = (*a)[i].if_string();
        int* slot = !n               ? nullptr
                    : *n == "stdin"  ? &out.stdin_fd
                    : *n == "stdout" ? &out.stdout_fd
                    : *n == "stderr" ? &out.stderr_fd
                    : *n == "pty"    ? &out.pty_fd
                                     : nullptr;
        if (slot && *slot < 0) {
          *slot = group[i];
          group[i] = -1;
        }
      }
    }
    for (int fd : group) {
      if (fd >= 0) {
        ::close(fd);  // a name missing, unknown or twice
        out.reset();
      }
    }
    const bool pipes = out.stdin_fd >= 0 && out.stdout_fd >= 0 && out.stderr_fd >= 0;
    if (!(pipes && out.pty_fd < 0) &&
        !(out.pty_fd >= 0 && out.stdin_fd < 0 && out.stdout_fd < 0 && out.stderr_fd < 0))
      return std::nullopt;
    return out;
  }

  // ExecStreaming.Output and .Exited; false for any other method.
  bool on_session_notification(const json::string& method, const json::object& o) {
    const bool output = method == "ExecStreaming.Output";
    if (!output && method != "ExecStreaming.Exited")
      return false;
    const auto* params = o.if_contains("params");
    const auto* p = params ? params->if_object() : nullptr;
    const auto* sid = p ? p->if_contains("session") : nullptr;
    if (!sid || !sid->is_string())
      return true;
    if (output) {
      const auto* stream = p->if_contains("stream");
      const auto* data = p->if_contains("data");
      const auto* close = p->if_contains("close");
      std::optional<std::string> bytes;
      if (data && data->is_string())
        bytes = base64_decode(data->as_string());
      if (!stream || !stream->is_string() || !bytes ||
          (stream->as_string() != "stdout" && stream->as_string() != "stderr")) {
        fail(make_error(errc::protocol_error, "taskexecd sent a malformed ExecStreaming.Output"));
        return true;
      }
      deliver_output(
          sid->as_string(),
          stream->as_string() == "stdout" ? exec_stream::stdout_stream : exec_stream::stderr_stream,
          std::move(*bytes), close && close->is_bool() && close->as_bool());
      return true;
    }
    auto it = sessions.find(std::string(sid->as_string()));
    if (it == sessions.end())
      return true;
    auto s = it->second.lock();
    sessions.erase(it);
    if (!s)
      return true;
    const auto* code = p->if_contains("exit_code");
    const int exit_code = code && code->is_int64() ? static_cast<int>(code->as_int64()) : -1;
    if (s->passed) {
      // What the command wrote is in its pipes now: the pumps take it, and
      // what it left behind writes for 100 ms more (as the daemon does).
      s->exit_code = exit_code;
      s->exited_at = std::chrono::steady_clock::now();
      s->linger_until = s->exited_at + passed_linger;
      arm_linger(s);
      s->maybe_exited();
      return true;
    }
    exec_event e;
    e.kind = exec_event::type::exited;
    e.exit_code = exit_code;
    s->events.push_back(e);
    s->wake.cancel();
    return true;
  }

  // Events.Event and Events.End; false for any other method.
  bool on_events_notification(const json::string& method, const json::object& o) {
    const bool event = method == "Events.Event";
    if (!event && method != "Events.End")
      return false;
    const auto* params = o.if_contains("params");
    const auto* p = params ? params->if_object() : nullptr;
    const auto* sub = p ? p->if_contains("subscription") : nullptr;
    if (!sub || !sub->is_string())
      return true;
    auto it = followers.find(std::string(sub->as_string()));
    if (it == followers.end()) {
      // Cancelled here already (Events.Cancel was sent), or a follower nobody
      // holds (its follow_events was cancelled before the answer came): end
      // it on the daemon, once.
      cancel_once(unknown_followers, "Events.Cancel", "subscription", sub->as_string());
      return true;
    }
    auto s = it->second.lock();
    if (!s) {
      followers.erase(it);
      return true;
    }
    auto end = [&](errc code, std::string why) {
      s->ended = true;
      s->end_error = make_error(code, std::move(why));
      s->wake.cancel();
      followers.erase(it);
    };
    if (!event) {
      const auto* reason = p->if_contains("reason");
      const bool overflow = reason && reason->is_string() && reason->as_string() == "overflow";
      end(overflow ? errc::limit_reached : errc::task_destroyed,
          overflow ? "events follower ended: it read too slowly (overflow)"
                   : "events follower ended: the daemon is stopping");
      return true;
    }
    const auto* ev = p->if_contains("event");
    const auto* seq = ev && ev->is_object() ? ev->as_object().if_contains("seq") : nullptr;
    if (!seq || !(seq->is_int64() || seq->is_uint64())) {
      fail(make_error(errc::protocol_error, "taskexecd sent a malformed Events.Event"));
      return true;
    }
    if (s->events.size() >= event_stream::max_queued) {
      end(errc::limit_reached,
          "events follower ended: " + std::to_string(event_stream::max_queued) +
              " events were queued unread");
      cancel_follower(sub->as_string());
      return true;
    }
    s->events.push_back(ev->as_object());
    s->wake.cancel();
    return true;
  }

  void cancel_follower(std::string_view id) {
    remember_cancelled(unknown_followers, id);  // its late events need no second Cancel
    send_cancel("Events.Cancel", "subscription", id);
  }

  void on_notification(const json::value& method, const json::object& o) {
    if (method.is_string() && on_session_notification(method.as_string(), o))
      return;
    if (method.is_string() && on_events_notification(method.as_string(), o))
      return;
    if (method.is_string() && method.as_string() == "Stats.End") {
      const auto* params = o.if_contains("params");
      const auto* sub =
          params && params->is_object() ? params->as_object().if_contains("subscription") : nullptr;
      if (!sub || !sub->is_string())
        return;
      auto it = streams.find(std::string(sub->as_string()));
      if (it == streams.end())
        return;
      if (auto s = it->second.lock()) {
        s->ended = true;
        s->end_error = make_error(errc::task_exited, "task has exited");
        s->wake.cancel();
      }
      streams.erase(it);
      return;
    }
    if (!method.is_string() || method.as_string() != "Stats.Sample")
      return;  // notifications of later versions are ignored
    const auto* params = o.if_contains("params");
    if (!params || !params->is_object())
      return;
    const auto* sub = params->as_object().if_contains("subscription");
    const auto* usage = params->as_object().if_contains("usage");
    if (!sub || !sub->is_string() || !usage || !usage->is_object())
      return;
    auto it = streams.find(std::string(sub->as_string()));
    if (it == streams.end()) {
      // A subscription nobody reads (its Stats call was cancelled after it
      // was sent): end it on the daemon, once.
      cancel_once(unknown_subscriptions, "Stats.Cancel", "subscription", sub->as_string());
      return;
    }
    auto s = it->second.lock();
    if (!s) {
      streams.erase(it);
      return;
    }
    if (s->samples.size() >= max_queued_samples) {
      s->samples.pop_front();
      ++s->dropped;
    }
    s->samples.push_back(usage->as_object());
    s->wake.cancel();
  }

  // One request, its response awaited (cancellable).
  // `tail`, when given, is the request's text after `{"jsonrpc":"2.0","id":N`
  // (method and params included, '\n' last), built by the caller.
  static asio::awaitable<result<json::value>> call(
      std::shared_ptr<impl> self, std::string method, json::value params,
      std::function<void(const json::object&)> on_response = {}, std::string tail = {},
      const cancel_rule* on_abandon = nullptr) {
    if (!self->open)
      co_return self->close_reason.value_or(lost_connection());
    const auto id = self->next_id++;
    asio::steady_timer wake(self->sock.get_executor(), asio::steady_timer::time_point::max());
    pending p;
    p.wake = &wake;
    p.on_response = std::move(on_response);
    self->calls.emplace(id, &p);
    // However this frame ends (even destroyed while suspended), its entry goes.
    struct erase_guard {
      impl& c;
      std::int64_t id;
      ~erase_guard() { c.calls.erase(id); }
    } guard{*self, id};
    if (!tail.empty()) {
      // In place: a bulk tail (input_line) has room reserved for this head,
      // so that no second copy of it is made.
      constexpr std::string_view lead = R"({"jsonrpc":"2.0","id":)";
      std::array<char, lead.size() + 24> head{};
      std::memcpy(head.data(), lead.data(), lead.size());
      const auto end = std::to_chars(head.data() + lead.size(), head.data() + head.size(), id).ptr;
      tail.insert(0, head.data(), static_cast<std::size_t>(end - head.data()));
      self->send(std::move(tail));
    } else {
      // Its answer may carry descriptors (ExecStreaming.Start with fds, the
      // only answer that does): the reader must read it with recvmsg, and a
      // plain read already waiting could not. Decided before the request
      // is sent, once nothing can throw.
      const auto* fds = method == "ExecStreaming.Start" && params.is_object()
                            ? params.as_object().if_contains("fds")
                            : nullptr;
      const bool wants_fds = fds && fds->is_bool() && fds->as_bool();
      json::object req;
      req["jsonrpc"] = "2.0";
      req["id"] = id;
      req["method"] = method;
      if (!params.is_null())
        req["params"] = std::move(params);
      std::string line = json::serialize(req) + "\n";
      if (wants_fds) {
        self->fds_expected.insert(id);
        if (self->plain_reading)
          self->plain_read.emit(asio::cancellation_type::terminal);
      }
      self->send(std::move(line));
    }
    while (!p.done) {
      auto [ec] = co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!p.done && ec == asio::error::operation_aborted) {
        // The caller gave up; a late response is dropped (the guard erases),
        // and what it opened on the daemon is ended (on_abandon).
        if (on_abandon)
          self->abandoned.emplace(id, on_abandon);
        co_return make_error(errc::operation_canceled, method + " canceled");
      }
    }
    if (!p.response)
      co_return self->close_reason.value_or(lost_connection());
    auto& r = *p.response;
    if (auto* res = r.if_contains("result"))
      co_return std::move(*res);
    const auto* err = r.if_contains("error");
    if (!err || !err->is_object())
      co_return make_error(errc::protocol_error,
                           method + ": response has neither result nor error");
    const auto* code = err->as_object().if_contains("code");
    const auto* msg = err->as_object().if_contains("message");
    co_return make_error(
        code && code->is_int64() ? from_rpc_error(code->as_int64()) : errc::protocol_error,
        msg && msg->is_string() ? std::string(msg->as_string()) : method + " failed");
  }
};

remote_executor::remote_executor(std::shared_ptr<impl> p) : impl_(std::move(p)) {}
remote_executor::remote_executor(remote_executor&&) noexcept = default;
remote_executor& remote_executor::operator=(remote_executor&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
remote_executor::~remote_executor() {
  close();
}

void remote_executor::close() noexcept {
  if (impl_)
    impl_->fail(lost_connection());
}
bool remote_executor::connected() const noexcept {
  return impl_ && impl_->open;
}
int remote_executor::daemon_pid() const noexcept {
  return impl_ ? impl_->peer_pid : 0;
}
const std::string& remote_executor::socket_path() const noexcept {
  return impl_->socket_path;
}
asio::any_io_executor remote_executor::get_executor() const {
  return impl_ ? impl_->sock.get_executor() : asio::any_io_executor{};
}

namespace {
// The server's uid must be root, ours, or the one the caller expects.
result<void> trusted_server(const std::string& socket_path, uid_t server,
                            const connect_options& options) {
  const uid_t me = ::geteuid();
  if (server == 0 || server == me || (options.expect_uid && server == *options.expect_uid))
    return {};
  std::vector<std::string> ok{"root"};
  if (me != 0)
    ok.push_back("uid " + std::to_string(me));
  if (options.expect_uid && *options.expect_uid != 0 && *options.expect_uid != me)
    ok.push_back("uid " + std::to_string(*options.expect_uid));
  std::string expected = ok.front();
  for (std::size_t i = 1; i < ok.size(); ++i)
    expected += (i + 1 == ok.size() ? " or " : ", ") + ok[i];
  return make_error(errc::connection_failed, "socket " + socket_path + " is served by uid " +
                                                 std::to_string(server) + ", expected " + expected +
                                                 ": nothing was sent to it");
}
}  // namespace

asio::awaitable<result<remote_executor>> remote_executor::connect(asio::any_io_executor ex,
                                                                  std::string socket_path,
                                                                  connect_options options) {
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un{}.sun_path))
    co_return make_error(errc::invalid_argument,
                         "socket path must have 1 to 107 bytes: \"" + socket_path + "\"");
  // Never an abstract socket (a leading NUL): it has no permissions, so
  // anyone could be listening there.
  if (socket_path.find('\0') != std::string::npos)
    co_return make_error(errc::invalid_argument, "socket path contains a NUL byte");
  auto p = std::make_shared<impl>(ex, socket_path);
  auto [ec] = co_await p->sock.async_connect(local::endpoint(socket_path),
                                             asio::as_tuple(asio::use_awaitable));
  if (ec) {
    co_return make_error(errc::connection_failed,
                         "cannot connect to taskexecd at " + socket_path + ": " + ec.message());
  }
  // Who listens on the socket, before a byte is sent: anyone who could put a
  // socket at this path would get our requests (a Launch's secrets).
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(p->sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    co_return make_system_error(errno, "read the peer of socket " + socket_path);
  if (auto trusted = trusted_server(socket_path, cred.uid, options); !trusted)
    co_return trusted.error();
  p->peer_pid = cred.pid;
  asio::co_spawn(ex, impl::read_loop(p), rethrow);
  remote_executor client(p);
  auto v = co_await client.version();
  if (!v)
    co_return v.error();
  const std::string_view ours = executor_version;
  if (v->substr(0, v->find('.')) != ours.substr(0, ours.find('.'))) {
    co_return make_error(errc::protocol_error, "taskexecd at " + socket_path + " speaks version " +
                                                   *v + ", not " + std::string(ours));
  }
  co_return client;
}

namespace {

result<process_state> to_state(result<json::value> r, std::string_view method) {
  if (!r)
    return r.error();
  try {
    return json::value_to<process_state>(*r);
  } catch (const decode_exception& e) {
    return make_error(errc::protocol_error, std::string(method) + " result: " + e.what());
  }
}

// Params built outside coroutines: GCC 12 rejects brace-initialised JSON in
// them ("array used as initializer").
json::object field(std::string_view key, json::value v) {
  json::object o;
  o[key] = std::move(v);
  return o;
}

json::object shutdown_params(const std::string& signal_name, std::chrono::milliseconds grace) {
  json::object o;
  o["signal"] = signal_name;
  o["grace_period_ms"] = grace.count();
  return o;
}

result<void> to_void(const result<json::value>& r) {
  if (!r)
    return r.error();
  return {};
}

}  // namespace

asio::awaitable<result<json::value>> remote_executor::call(std::string method, json::value params) {
  if (!impl_)
    co_return lost_connection();
  co_return co_await no_throw_on_cancel(impl::call(impl_, std::move(method), std::move(params)));
}

asio::awaitable<result<process_state>> remote_executor::launch(exec_command cmd) {
  if (cmd.stdout_fd >= 0 || cmd.stderr_fd >= 0)
    co_return make_error(errc::unsupported,
                         "stdout_fd and stderr_fd cannot be passed to a daemon; use the paths");
  co_return to_state(co_await call("Launch", json::value_from(cmd)), "Launch");
}

remote_executor remote_executor::from_exit_state(const asio::any_io_executor& ex,
                                                 std::string socket_path, int daemon_pid,
                                                 process_state state) {
  auto why = make_error(errc::connection_failed,
                        "taskexecd at " + socket_path +
                            " is gone (the task's exit state was read from its exit file)");
  auto p = std::make_shared<impl>(ex, std::move(socket_path));  // its socket is never opened
  p->open = false;
  p->peer_pid = daemon_pid;
  p->close_reason = std::move(why);
  p->exit_state = state;
  return remote_executor(std::move(p));
}

asio::awaitable<result<process_state>> remote_executor::wait() {
  if (impl_ && impl_->exit_state)
    co_return *impl_->exit_state;
  co_return to_state(co_await call("Wait", json::object{}), "Wait");
}

asio::awaitable<result<process_state>> remote_executor::wait_for(
    std::chrono::milliseconds timeout) {
  if (timeout.count() < 0)
    co_return make_error(errc::invalid_argument, "timeout is negative");
  if (impl_ && impl_->exit_state)
    co_return *impl_->exit_state;
  co_return to_state(co_await call("Wait", field("timeout_ms", timeout.count())), "Wait");
}

asio::awaitable<result<void>> remote_executor::signal(int signo) {
  co_return to_void(co_await call("Signal", field("signal", signo)));
}

asio::awaitable<result<void>> remote_executor::signal(std::string name) {
  co_return to_void(co_await call("Signal", field("signal", json::string(name))));
}

asio::awaitable<result<void>> remote_executor::shutdown(std::string signal_name,
                                                        std::chrono::milliseconds grace) {
  if (grace.count() < 0)
    co_return make_error(errc::invalid_argument, "grace period is negative");
  co_return to_void(co_await call("Shutdown", shutdown_params(signal_name, grace)));
}

asio::awaitable<result<void>> remote_executor::update_resources(task_resources resources) {
  co_return to_void(
      co_await call("UpdateResources", field("resources", json::value_from(resources))));
}

asio::awaitable<result<void>> remote_executor::destroy() {
  co_return to_void(co_await call("Destroy"));
}

asio::awaitable<result<std::string>> remote_executor::version() {
  auto r = co_await call("Version");
  if (!r)
    co_return r.error();
  const auto* v = r->is_object() ? r->as_object().if_contains("version") : nullptr;
  if (!v || !v->is_string())
    co_return make_error(errc::protocol_error, "Version result has no version string");
  co_return std::string(v->as_string());
}

asio::awaitable<result<json::object>> remote_executor::metrics() {
  auto r = co_await call("Metrics");
  if (!r)
    co_return r.error();
  if (!r->is_object())
    co_return make_error(errc::protocol_error, "Metrics result is not an object");
  co_return std::move(r->as_object());
}

asio::awaitable<result<event_page>> remote_executor::events(std::uint64_t since,
                                                            std::size_t limit) {
  json::object params{{"since", since}};
  if (limit > 0)
    params["limit"] = limit;
  auto r = co_await call("Events", std::move(params));
  if (!r)
    co_return r.error();
  const auto* o = r->if_object();
  const auto* events = o ? o->if_contains("events") : nullptr;
  const auto* next = o ? o->if_contains("next") : nullptr;
  if (!events || !events->is_array() || !next || !(next->is_int64() || next->is_uint64()))
    co_return make_error(errc::protocol_error, "Events result lacks events or next");
  event_page page;
  page.next = next->to_number<std::uint64_t>();
  if (const auto* more = o->if_contains("more"); more && more->is_bool())
    page.more = more->get_bool();
  if (const auto* dropped = o->if_contains("dropped");
      dropped && (dropped->is_int64() || dropped->is_uint64()))
    page.dropped = dropped->to_number<std::uint64_t>();
  for (const auto& e : events->as_array()) {
    if (!e.is_object())
      co_return make_error(errc::protocol_error, "Events: an event is not an object");
    page.events.push_back(e.as_object());
  }
  co_return page;
}

// ---------------------------------------------------------------- stats

asio::awaitable<result<stats_stream>> remote_executor::stats(std::chrono::milliseconds interval) {
  if (!impl_)
    co_return lost_connection();
  if (interval.count() <= 0)
    co_return make_error(errc::invalid_argument, "interval must be positive");
  auto st = std::make_shared<stats_stream::state>(impl_->sock.get_executor());
  st->wake.expires_at(asio::steady_timer::time_point::max());
  auto conn = impl_;
  auto on_response = [conn, st](const json::object& resp) {
    const auto* res = resp.if_contains("result");
    const auto* sub =
        res && res->is_object() ? res->as_object().if_contains("subscription") : nullptr;
    if (sub && sub->is_string()) {
      st->subscription = sub->as_string();
      conn->streams[st->subscription] = st;
    }
  };
  auto r =
      co_await no_throw_on_cancel(impl::call(impl_, "Stats", field("interval_ms", interval.count()),
                                             std::move(on_response), {}, &impl::stats_cancel));
  if (!r)
    co_return r.error();
  if (st->subscription.empty())
    co_return make_error(errc::protocol_error, "Stats result has no subscription");
  co_return stats_stream(impl_, st);
}

stats_stream::stats_stream(std::shared_ptr<remote_executor::impl> conn, std::shared_ptr<state> s)
    : conn_(std::move(conn)), state_(std::move(s)) {}
stats_stream::stats_stream(stats_stream&&) noexcept = default;
stats_stream& stats_stream::operator=(stats_stream&& o) noexcept {
  if (this != &o) {
    end();  // the stream replaced ends its subscription, as on destruction
    conn_ = std::move(o.conn_);
    state_ = std::move(o.state_);
  }
  return *this;
}

stats_stream::~stats_stream() {
  end();
}

void stats_stream::end() noexcept {
  if (!state_ || !conn_ || state_->ended)
    return;
  state_->ended = true;
  conn_->streams.erase(state_->subscription);
  // A notification: the daemon ends the subscription and answers nothing.
  try {
    conn_->send_cancel("Stats.Cancel", "subscription", state_->subscription);
  } catch (...) {
    // Out of memory while ending: the connection's close ends it anyway.
  }
}

asio::any_io_executor stats_stream::get_executor() const {
  return conn_ ? conn_->sock.get_executor() : asio::any_io_executor{};
}
const std::string& stats_stream::subscription() const noexcept {
  return state_->subscription;
}
std::uint64_t stats_stream::dropped() const noexcept {
  return state_->dropped;
}

namespace {

asio::awaitable<result<json::object>> next_sample(std::shared_ptr<stats_stream::state> s) {
  while (s->samples.empty() && !s->ended) {
    s->wake.expires_at(asio::steady_timer::time_point::max());
    auto [ec] = co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted && s->samples.empty() && !s->ended) {
      // Nothing arrived: our caller was cancelled.
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none)
        co_return make_error(errc::operation_canceled, "stats canceled");
    }
  }
  if (!s->samples.empty()) {
    auto v = std::move(s->samples.front());
    s->samples.pop_front();
    co_return v;
  }
  co_return s->end_error;
}

}  // namespace

asio::awaitable<result<json::object>> stats_stream::next() {
  co_return co_await no_throw_on_cancel(next_sample(state_));
}

asio::awaitable<result<void>> stats_stream::cancel() {
  if (state_->ended)
    co_return result<void>{};
  state_->ended = true;
  state_->end_error = make_error(errc::operation_canceled, "stats subscription ended");
  state_->wake.cancel();
  conn_->streams.erase(state_->subscription);
  auto r = co_await no_throw_on_cancel(remote_executor::impl::call(
      conn_, "Stats.Cancel", field("subscription", json::string(state_->subscription))));
  co_return to_void(r);
}

// ---------------------------------------------------------------- events

asio::awaitable<result<event_stream>> remote_executor::follow_events(std::uint64_t since) {
  if (!impl_)
    co_return lost_connection();
  auto st = std::make_shared<event_stream::state>(impl_->sock.get_executor());
  st->wake.expires_at(asio::steady_timer::time_point::max());
  auto conn = impl_;
  // Registered when the answer is read: the page's events first, then the
  // notifications that follow it.
  auto on_response = [conn, st](const json::object& resp) {
    const auto* res = resp.if_contains("result");
    const auto* o = res ? res->if_object() : nullptr;
    const auto* sub = o ? o->if_contains("subscription") : nullptr;
    const auto* events = o ? o->if_contains("events") : nullptr;
    const auto* next = o ? o->if_contains("next") : nullptr;
    if (!sub || !sub->is_string() || !events || !events->is_array() || !next ||
        !(next->is_int64() || next->is_uint64()))
      return;
    for (const auto& e : events->as_array()) {
      if (e.is_object())
        st->events.push_back(e.as_object());
    }
    st->subscription = sub->as_string();
    conn->followers[st->subscription] = st;
  };
  json::object params;
  params["since"] = since;
  params["follow"] = true;
  st->next_seq = since;
  auto r = co_await no_throw_on_cancel(impl::call(
      impl_, "Events", std::move(params), std::move(on_response), {}, &impl::follower_cancel));
  if (!r)
    co_return r.error();
  if (st->subscription.empty())
    co_return make_error(errc::protocol_error, "Events result has no subscription");
  co_return event_stream(impl_, st);
}

event_stream::event_stream(std::shared_ptr<remote_executor::impl> conn, std::shared_ptr<state> s)
    : conn_(std::move(conn)), state_(std::move(s)) {}
event_stream::event_stream(event_stream&&) noexcept = default;
event_stream& event_stream::operator=(event_stream&& o) noexcept {
  if (this != &o) {
    end();
    conn_ = std::move(o.conn_);
    state_ = std::move(o.state_);
  }
  return *this;
}

event_stream::~event_stream() {
  end();
}

void event_stream::end() noexcept {
  if (!state_ || !conn_ || state_->ended)
    return;
  state_->ended = true;
  conn_->followers.erase(state_->subscription);
  try {
    conn_->cancel_follower(state_->subscription);  // a notification: no answer
  } catch (...) {
    // Out of memory while ending: the connection's close ends it anyway.
  }
}

asio::any_io_executor event_stream::get_executor() const {
  return conn_ ? conn_->sock.get_executor() : asio::any_io_executor{};
}
const std::string& event_stream::subscription() const noexcept {
  return state_->subscription;
}
std::uint64_t event_stream::next_seq() const noexcept {
  return state_->next_seq;
}

namespace {

asio::awaitable<result<json::object>> next_event(std::shared_ptr<event_stream::state> s) {
  while (s->events.empty() && !s->ended) {
    s->wake.expires_at(asio::steady_timer::time_point::max());
    auto [ec] = co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted && s->events.empty() && !s->ended) {
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none)
        co_return make_error(errc::operation_canceled, "events canceled");
    }
  }
  if (!s->events.empty()) {
    auto v = std::move(s->events.front());
    s->events.pop_front();
    if (const auto* seq = v.if_contains("seq"); seq && (seq->is_int64() || seq->is_uint64()))
      s->next_seq = seq->to_number<std::uint64_t>() + 1;
    co_return v;
  }
  co_return s->end_error;
}

}  // namespace

asio::awaitable<result<json::object>> event_stream::next() {
  co_return co_await no_throw_on_cancel(next_event(state_));
}

asio::awaitable<result<void>> event_stream::cancel() {
  if (state_->ended)
    co_return result<void>{};
  state_->ended = true;
  state_->end_error = make_error(errc::operation_canceled, "events follower ended");
  state_->wake.cancel();
  conn_->followers.erase(state_->subscription);
  remote_executor::impl::remember_cancelled(conn_->unknown_followers, state_->subscription);
  auto r = co_await no_throw_on_cancel(remote_executor::impl::call(
      conn_, "Events.Cancel", field("subscription", json::string(state_->subscription))));
  co_return to_void(r);
}

// ---------------------------------------------------------------- exec

namespace {

using session_ptr = std::shared_ptr<remote_exec_session::state>;

// A passed session's output: one source read into the session's events,
// as the daemon's pump would send them; the closing chunk when it ends.
asio::awaitable<void> pump_passed(session_ptr s, std::size_t index) {
  auto& src = s->sources[index];  // a deque: stable
  const int fd = src.fd.native_handle();
  auto push = [&](std::string data) {
    exec_event e;
    e.stream = src.stream;
    s->bytes += data.size();
    e.data = std::move(data);
    s->events.push_back(std::move(e));
    s->wake.cancel();
  };
  for (;;) {
    if (s->ended || !src.fd.is_open())
      break;
    if (s->bytes >= remote_exec_session::state::max_passed_bytes) {
      // Backpressure: the command blocks in its writes while nobody reads.
      // Time blocked here after the exit does not count against the linger
      // (as on the daemon: a slow reader loses nothing).
      const auto blocked = std::chrono::steady_clock::now();
      co_await s->space.async_wait(asio::as_tuple(asio::use_awaitable));
      if (s->exit_code) {
        s->linger_until += std::chrono::steady_clock::now() - std::max(blocked, s->exited_at);
        arm_linger(s);
      }
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (s->exit_code && now >= s->linger_until) {
      // The linger is over: what is buffered now, and no more. Read until
      // nothing comes, not by FIONREAD, which does not count what a pty's
      // slave wrote last into the kernel's flip buffer (a read flushes it).
      // Bounded: one more window of output at most.
      std::size_t drained = 0;
      while (drained < remote_exec_session::state::max_passed_bytes) {
        std::string data(exec_event::max_data, '\0');
        const ssize_t n = ::read(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
          continue;
        if (n <= 0)
          break;
        data.resize(static_cast<std::size_t>(n));
        drained += data.size();
        push(std::move(data));
      }
      break;
    }
    std::string data(exec_event::max_data, '\0');
    const ssize_t n = ::read(fd, data.data(), data.size());
    if (n > 0) {
      data.resize(static_cast<std::size_t>(n));
      push(std::move(data));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    // EOF; EIO from a pty master once no process holds the terminal.
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      break;
    // Woken by data, or cancelled at the linger's end (or by stop_io).
    co_await src.fd.async_wait(asio::posix::stream_descriptor::wait_read,
                               asio::as_tuple(asio::use_awaitable));
  }
  src.closed = true;
  boost::system::error_code ignored;
  src.fd.close(ignored);
  if (s->ended)
    co_return;
  exec_event e;
  e.stream = src.stream;
  e.closed = true;
  s->events.push_back(std::move(e));
  s->wake.cancel();
  s->maybe_exited();
}

// Take the descriptors of a session started with "fds": non-blocking here,
// pumped into events; stdin written by write().
void start_passed(const session_ptr& s, exec_stdio_fds fds) {
  const auto ex = s->wake.get_executor();
  auto nonblocking = [](int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
  };
  s->passed = true;
  if (fds.pty_fd >= 0) {
    const int in = ::fcntl(fds.pty_fd, F_DUPFD_CLOEXEC, 3);
    if (in < 0 || !nonblocking(fds.pty_fd)) {
      if (in >= 0)
        ::close(in);
      // The session cannot be served: it ends at once (the daemon kills
      // the command when asked; here nothing more can be read).
      s->ended = true;
      s->end_error = make_system_error(errno, "take the session's terminal");
      return;
    }
    s->master = fds.pty_fd;
    s->sources.emplace_back(ex, std::exchange(fds.pty_fd, -1), exec_stream::stdout_stream);
    s->in.emplace(ex, in);
  } else {
    if (!nonblocking(fds.stdin_fd) || !nonblocking(fds.stdout_fd) || !nonblocking(fds.stderr_fd)) {
      s->ended = true;
      s->end_error = make_system_error(errno, "set the session's descriptors non-blocking");
      return;
    }
    s->sources.emplace_back(ex, std::exchange(fds.stdout_fd, -1), exec_stream::stdout_stream);
    s->sources.emplace_back(ex, std::exchange(fds.stderr_fd, -1), exec_stream::stderr_stream);
    s->in.emplace(ex, std::exchange(fds.stdin_fd, -1));
  }
  for (std::size_t i = 0; i < s->sources.size(); ++i)
    asio::co_spawn(ex, pump_passed(s, i), rethrow);
}

json::object exec_params(const std::string& cmd, const std::vector<std::string>& args) {
  json::object o;
  o["cmd"] = cmd;
  json::array a;
  for (const auto& x : args)
    a.emplace_back(x);
  o["args"] = std::move(a);
  return o;
}

}  // namespace

asio::awaitable<result<exec_result>> remote_executor::exec(std::string cmd,
                                                           std::vector<std::string> args,
                                                           std::chrono::milliseconds timeout) {
  if (timeout.count() < 0)
    co_return make_error(errc::invalid_argument, "timeout is negative");
  auto params = exec_params(cmd, args);
  params["timeout_ms"] = timeout.count();
  auto r = co_await call("Exec", std::move(params));
  if (!r)
    co_return r.error();
  const auto* o = r->if_object();
  const auto* out = o ? o->if_contains("output") : nullptr;
  const auto* code = o ? o->if_contains("exit_code") : nullptr;
  if (!out || !out->is_string() || !code || !code->is_int64())
    co_return make_error(errc::protocol_error, "Exec result lacks output or exit_code");
  exec_result res;
  // The exact bytes; `output` (text, U+FFFD for bytes that are not UTF-8)
  // only from a daemon older than output_base64.
  if (const auto* b64 = o->if_contains("output_base64")) {
    auto bytes = b64->is_string() ? base64_decode(b64->get_string()) : std::nullopt;
    if (!bytes)
      co_return make_error(errc::protocol_error, "Exec result: output_base64 is not base64");
    res.output = std::move(*bytes);
  } else {
    res.output = out->as_string();
  }
  res.exit_code = static_cast<int>(code->as_int64());
  co_return res;
}

asio::awaitable<result<remote_exec_session>> remote_executor::exec_streaming(
    exec_session_options options) {
  if (!impl_)
    co_return lost_connection();
  auto params = exec_params(options.cmd, options.args);
  params["tty"] = options.tty;
  if (options.tty && options.size.height > 0 && options.size.width > 0) {
    json::object size;
    size["height"] = options.size.height;
    size["width"] = options.size.width;
    params["tty_size"] = std::move(size);
  }
  const bool ask_fds = options.stdio != exec_stdio::pumped;
  if (ask_fds)
    params["fds"] = true;
  auto st = std::make_shared<remote_exec_session::state>(impl_->sock.get_executor());
  st->wake.expires_at(asio::steady_timer::time_point::max());
  st->tty = options.tty;
  auto conn = impl_;
  // Registered when the answer is read, before any notification after it.
  auto on_response = [conn, st](const json::object& resp) {
    const auto* res = resp.if_contains("result");
    const auto* o = res ? res->if_object() : nullptr;
    const auto* sid = o ? o->if_contains("session") : nullptr;
    const auto* pid = o ? o->if_contains("pid") : nullptr;
    if (sid && sid->is_string()) {
      st->id = sid->as_string();
      st->pid = pid && pid->is_int64() ? static_cast<int>(pid->as_int64()) : 0;
      conn->sessions[st->id] = st;
      if (!conn->answer_fds.empty()) {
        start_passed(st, std::move(conn->answer_fds));
        if (st->ended) {
          // Its descriptors could not be taken: nothing here can serve the
          // session, so the daemon ends it (the caller gets end_error).
          conn->sessions.erase(st->id);
          conn->cancel_unknown_session(st->id);
        }
      }
    }
  };
  // Cancelled before the answer: the late answer ends the session on the
  // daemon (session_cancel), as would its first output for a session
  // nobody holds (cancel_unknown_session).
  auto r = co_await no_throw_on_cancel(
      impl::call(impl_, "ExecStreaming.Start", params, on_response, {}, &impl::session_cancel));
  if (!r && ask_fds && options.stdio == exec_stdio::automatic &&
      r.error().code == make_error_code(errc::invalid_argument) &&
      r.error().message.find("\"fds\"") != std::string::npos) {
    // A daemon from before "fds": the JSON path.
    params.erase("fds");
    r = co_await no_throw_on_cancel(impl::call(impl_, "ExecStreaming.Start", std::move(params),
                                               std::move(on_response), {}, &impl::session_cancel));
  }
  if (!r)
    co_return r.error();
  if (st->id.empty())
    co_return make_error(errc::protocol_error, "ExecStreaming.Start result has no session");
  if (ask_fds && options.stdio == exec_stdio::passed && !st->passed)
    co_return make_error(errc::protocol_error, "ExecStreaming.Start with fds: no descriptors came");
  co_return remote_exec_session(impl_, st);
}

remote_exec_session::remote_exec_session(std::shared_ptr<remote_executor::impl> conn,
                                         std::shared_ptr<state> s)
    : conn_(std::move(conn)), state_(std::move(s)) {}
remote_exec_session::remote_exec_session(remote_exec_session&&) noexcept = default;
remote_exec_session& remote_exec_session::operator=(remote_exec_session&& o) noexcept {
  if (this != &o) {
    end();
    conn_ = std::move(o.conn_);
    state_ = std::move(o.state_);
  }
  return *this;
}
remote_exec_session::~remote_exec_session() {
  end();
}

void remote_exec_session::end() noexcept {
  if (!state_ || !conn_)
    return;
  auto& s = *state_;
  if (!s.passed)
    conn_->session_read(s.bytes);
  s.bytes = 0;
  s.events.clear();
  s.stop_io();  // our descriptors close; the daemon kills the command (Cancel)
  const bool live = !s.ended && !s.exited && conn_->sessions.erase(s.id) > 0;
  s.ended = true;
  s.end_error = make_error(errc::operation_canceled, "exec session ended");
  s.wake.cancel();  // a read() still waiting returns
  if (!live)
    return;
  try {
    // Its late output needs no second Cancel.
    remote_executor::impl::remember_cancelled(conn_->unknown_sessions, s.id);
    // A notification: the daemon kills the command and answers nothing.
    conn_->send_cancel("ExecStreaming.Cancel", "session", s.id);
  } catch (...) {
    // Out of memory while ending: the connection's close ends it anyway.
  }
}

asio::any_io_executor remote_exec_session::get_executor() const {
  return conn_ ? conn_->sock.get_executor() : asio::any_io_executor{};
}
const std::string& remote_exec_session::id() const noexcept {
  return state_->id;
}
int remote_exec_session::pid() const noexcept {
  return state_ ? state_->pid : 0;
}
bool remote_exec_session::tty() const noexcept {
  return state_ && state_->tty;
}

namespace {

asio::awaitable<result<exec_event>> next_exec_event(std::shared_ptr<remote_executor::impl> conn,
                                                    std::shared_ptr<remote_exec_session::state> s) {
  for (;;) {
    if (s->exited)
      co_return *s->exited;
    if (!s->events.empty()) {
      auto e = std::move(s->events.front());
      s->events.pop_front();
      // What else of the same stream has arrived comes along.
      while (e.kind == exec_event::type::output && !e.closed && !s->events.empty() &&
             s->events.front().kind == exec_event::type::output && !s->events.front().closed &&
             s->events.front().stream == e.stream &&
             e.data.size() + s->events.front().data.size() <= exec_event::max_data) {
        e.data += s->events.front().data;
        s->events.pop_front();
      }
      s->bytes -= e.data.size();
      if (s->passed)
        s->space.cancel();  // the pumps may read again
      else
        conn->session_read(e.data.size());
      if (e.kind == exec_event::type::exited)
        s->exited = e;
      co_return e;
    }
    if (s->ended)
      co_return s->end_error;
    s->wake.expires_at(asio::steady_timer::time_point::max());
    auto [ec] = co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted && s->events.empty() && !s->ended) {
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none)
        co_return make_error(errc::operation_canceled, "exec session read canceled");
    }
  }
}

// The request's text after its id, written by hand: base64 needs no
// escaping, and a serializer would scan every byte of it.
std::string input_line(const std::string& id, std::string_view bytes) {
  constexpr std::string_view method = R"(,"method":"ExecStreaming.Input","params":{"session":)";
  const std::string sid = json::serialize(json::string(id));
  // One allocation for the whole request: its end, and the head call()
  // puts in front ({"jsonrpc":"2.0","id":N, at most 42 bytes). Built piece
  // by piece, every Input was copied twice more (its closing append doubled
  // the buffer: 2.7 MiB for a 1 MiB piece), and freeing those copies
  // churned malloc's heap (page faults).
  std::string tail;
  tail.reserve(48 + method.size() + sid.size() + 10 + (bytes.size() + 2) / 3 * 4 + 4);
  tail += method;
  tail += sid;
  tail += R"(,"data":")";
  base64_append(tail, bytes);
  tail += "\"}}\n";
  return tail;
}

json::object input_params(const std::string& id) {
  json::object o;
  o["session"] = id;
  return o;
}

}  // namespace

asio::awaitable<result<exec_event>> remote_exec_session::read() {
  co_return co_await no_throw_on_cancel(next_exec_event(conn_, state_));
}

namespace {

// A passed session's input: writes (and the close) in call order, each
// waiting for its turn; the data is written to the command's stdin as it
// takes it. Input it no longer reads (EPIPE) is discarded, as the daemon
// does.
asio::awaitable<result<void>> passed_write(session_ptr s, std::string data, bool close) {
  if (s->in_closed)
    co_return make_error(errc::invalid_argument, "the session's stdin is closed");
  if (close)
    s->in_closed = true;
  const std::uint64_t ticket = s->next_ticket++;
  while (ticket != s->turn && !s->ended) {
    co_await s->in_turn.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto cs = co_await asio::this_coro::cancellation_state;
    if (ticket != s->turn && cs.cancelled() != asio::cancellation_type::none) {
      s->given_up.push_back(ticket);
      if (close)
        s->in_closed = false;  // not closed: a later close_stdin() closes
      co_return make_error(errc::operation_canceled, "exec session write canceled");
    }
  }
  if (s->ended)
    co_return s->end_error;
  struct turn_guard {
    remote_exec_session::state& s;
    ~turn_guard() { s.next_turn(); }
  } guard{*s};
  if (close && s->tty) {
    // A terminal has no half-close: its end-of-file character ends a read.
    termios t{};
    const int fd = s->in && s->in->is_open() ? s->in->native_handle() : -1;
    data.assign(1, fd >= 0 && ::tcgetattr(fd, &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04');
  }
  std::size_t at = 0;
  while (at < data.size() && s->in && s->in->is_open() && !s->ended) {
    const ssize_t n =
        detail::write_no_sigpipe(s->in->native_handle(), data.data() + at, data.size() - at);
    if (n >= 0) {
      at += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      break;  // EPIPE (the command closed its stdin) or EIO: nobody reads
    co_await s->in->async_wait(asio::posix::stream_descriptor::wait_write,
                               asio::as_tuple(asio::use_awaitable));
    const auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) {
      if (close)
        s->in_closed = false;  // the end-of-file character was not written
      co_return make_error(errc::operation_canceled, "exec session write canceled");
    }
  }
  if (s->ended)
    co_return s->end_error;
  if (close && !s->tty && s->in) {
    boost::system::error_code ignored;
    s->in->close(ignored);  // the pipe's only write end: the command reads EOF
  }
  co_return result<void>{};
}

}  // namespace

asio::awaitable<result<void>> remote_exec_session::write(std::string data) {
  if (state_ && state_->passed)
    co_return co_await no_throw_on_cancel(passed_write(state_, std::move(data), false));
  // Pieces that stay well below the daemon's default message limit (4 MiB)
  // once in base64.
  constexpr std::size_t piece = 1024 * 1024;
  for (std::size_t at = 0; at < data.size(); at += piece) {
    auto r = co_await no_throw_on_cancel(remote_executor::impl::call(
        conn_, "ExecStreaming.Input", nullptr, {},
        input_line(state_->id, std::string_view(data).substr(at, piece))));
    if (!r)
      co_return r.error();
  }
  co_return result<void>{};
}

asio::awaitable<result<void>> remote_exec_session::close_stdin() {
  if (state_ && state_->passed) {
    if (state_->in_closed)
      co_return result<void>{};  // idempotent, as the daemon's close
    co_return co_await no_throw_on_cancel(passed_write(state_, {}, true));
  }
  auto params = input_params(state_->id);
  params["close"] = true;
  co_return to_void(co_await no_throw_on_cancel(
      remote_executor::impl::call(conn_, "ExecStreaming.Input", std::move(params))));
}

asio::awaitable<result<void>> remote_exec_session::resize(tty_size size) {
  if (state_ && state_->passed) {
    if (!state_->tty)
      co_return make_error(errc::invalid_argument, "session \"" + state_->id + "\" has no tty");
    if (size.height == 0 || size.width == 0)
      co_return make_error(errc::invalid_argument, "a tty size needs a height and a width above 0");
    if (state_->master < 0 || state_->sources.empty() || state_->sources.front().closed)
      co_return result<void>{};  // the terminal is gone with its command
    winsize ws{};
    ws.ws_row = size.height;
    ws.ws_col = size.width;
    if (::ioctl(state_->master, TIOCSWINSZ, &ws) != 0)
      co_return make_system_error(errno, "resize the terminal");
    co_return result<void>{};
  }
  auto params = input_params(state_->id);
  json::object sz;
  sz["height"] = size.height;
  sz["width"] = size.width;
  params["tty_size"] = std::move(sz);
  co_return to_void(co_await no_throw_on_cancel(
      remote_executor::impl::call(conn_, "ExecStreaming.Input", std::move(params))));
}

asio::awaitable<result<void>> remote_exec_session::kill() {
  co_return to_void(co_await no_throw_on_cancel(
      remote_executor::impl::call(conn_, "ExecStreaming.Cancel", input_params(state_->id))));
}

}  // namespace taskexec
