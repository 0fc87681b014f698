// Exec sessions: the ExecStreaming methods (Start, Input, Cancel), and
// the pump that sends a session's output and exit to its connection.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include "connection.hpp"
#include "methods.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/task_executor.hpp"

namespace taskexec::rpc {

namespace {

// The protocol's bound on the data of one ExecStreaming.Output (Nomad's).
constexpr std::size_t max_output_chunk = 4096;

// Output notifications are written by hand: they are the bulk of a session's
// traffic, and the session id and stream name need no escaping. One event
// (up to 64 KiB) becomes its notifications of at most max_output_chunk
// bytes each, in one string: one allocation and one queued message for all.
std::string output_lines(const std::string& id, exec_stream s, std::string_view data, bool close) {
  constexpr std::string_view head =
      R"({"jsonrpc":"2.0","method":"ExecStreaming.Output","params":{"session":")";
  const std::string_view stream = s == exec_stream::stdout_stream
                                      ? R"(","stream":"stdout","data":")"
                                      : R"(","stream":"stderr","data":")";
  const std::size_t lines =
      std::max<std::size_t>(1, (data.size() + max_output_chunk - 1) / max_output_chunk);
  std::string out;
  out.reserve(lines * (head.size() + id.size() + stream.size() + 20) + (data.size() + 2) / 3 * 4 +
              lines * 4);
  do {
    const auto chunk = data.substr(0, max_output_chunk);
    data.remove_prefix(chunk.size());
    out += head;
    out += id;
    out += stream;
    base64_append(out, chunk);
    out += close && data.empty() ? "\",\"close\":true}}\n" : "\"}}\n";
  } while (!data.empty());
  return out;
}

}  // namespace

asio::awaitable<void> server::state::run_session(std::shared_ptr<state> self,
                                                 std::weak_ptr<connection> conn, std::string id,
                                                 std::shared_ptr<session_entry> entry) {
  (void)self;
  // A cancel (the connection closed) ends the loop; it must not throw.
  co_await asio::this_coro::throw_if_cancelled(false);
  for (;;) {
    if (auto c = conn.lock(); !c || c->closing || !c->sessions.contains(id)) {
      break;  // the connection closed, or ended its sessions
    } else if (c->out_bytes > connection::max_out_bytes) {
      // Backpressure: nothing more is read from the command while a client
      // that does not read has a megabyte of answers waiting.
      if (co_await detail::wait_on(c->drained, std::chrono::steady_clock::time_point::max()) ==
          detail::wake::cancelled)
        break;
      continue;
    }
    auto ev = co_await entry->session.read();
    if (!ev)
      break;  // cancelled
    auto c = conn.lock();
    if (!c || c->closing)
      break;
    if (ev->kind == exec_event::type::output) {
      c->send_line(output_lines(id, ev->stream, ev->data, ev->closed));
      continue;
    }
    c->send_line(R"({"jsonrpc":"2.0","method":"ExecStreaming.Exited","params":{"session":")" + id +
                 R"(","exit_code":)" + std::to_string(ev->exit_code) + "}}\n");
    break;
  }
  if (auto c = conn.lock())
    c->session_ended(id);
}

asio::awaitable<outcome> exec_streaming_start(server::state& srv, method_call call,
                                              exec_session_options o) {
  const std::weak_ptr<server::connection> conn = std::move(call.conn);
  auto c = conn.lock();
  if (!c)
    co_return rpc_error{code::internal_error, "connection gone", {}};
  if (c->sessions.size() >= server::connection::max_sessions)
    co_return limit_error(srv.metrics, "exec_sessions", "too many exec sessions on this connection",
                          server::connection::max_sessions);
  if (!call.r.id)
    co_return params_error("",
                           "ExecStreaming.Start needs an id: its session is named in the "
                           "answer");
  if (c->after_answer.contains(json::serialize(*call.r.id)))
    co_return rpc_error{code::invalid_request, "a request with this id is still pending", {}};
  const bool pass_fds = o.stdio == exec_stdio::passed;
  if (pass_fds && call.batched)
    co_return params_error("fds",
                           "fds cannot be asked for in a batch: the descriptors go with one "
                           "answer of their own");
  o.max_queued_input = server::connection::max_session_input;
  auto started = co_await srv.task.exec_streaming(std::move(o));
  if (!started)
    co_return to_rpc_error(started.error(), task_operation::exec);
  c = conn.lock();  // the start did not suspend, but stay honest
  if (!c || c->closing)
    co_return rpc_error{code::internal_error, "connection gone", {}};
  const int pid = started->pid();
  // Passed: the descriptors go with the answer (SCM_RIGHTS); the session
  // keeps none and only reports the exit.
  exec_stdio_fds fds = pass_fds ? started->take_stdio() : exec_stdio_fds{};
  std::string id = "exec-" + std::to_string(srv.next_session++);
  auto entry = std::make_shared<session_entry>(std::move(*started));
  entry->passed = pass_fds;
  c->sessions[id] = entry;
  // Its output starts once this answer is queued: the client knows the
  // session's name before its first notification.
  auto self = srv.shared_from_this();
  c->after_answer[json::serialize(*call.r.id)] = [self, conn, id, entry] {
    asio::co_spawn(self->ex, server::state::run_session(self, conn, id, entry),
                   // The entry (its signal holds the coroutine's cancellation
                   // state) lives until the coroutine is done.
                   asio::bind_cancellation_slot(
                       entry->cancel.slot(), [id, entry](const std::exception_ptr& e) {
                         if (!e)
                           return;
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& x) {
                           log(log_level::error, "exec session " + id + " ended: " + x.what());
                         }
                       }));
  };
  json::object out;
  out["session"] = id;
  out["pid"] = pid;
  if (pass_fds) {
    json::array names;
    if (fds.pty_fd >= 0) {
      names.emplace_back("pty");
    } else {
      names.emplace_back("stdin");
      names.emplace_back("stdout");
      names.emplace_back("stderr");
    }
    out["fds"] = std::move(names);
    // The only answer that carries descriptors: clients (ours among them)
    // read it with room for them because they asked, and may read anything
    // else without.
    c->answer_fds[json::serialize(*call.r.id)] = std::move(fds);
  }
  co_return json::value(std::move(out));
}

asio::awaitable<outcome> exec_streaming_input(server::state&, method_call call,
                                              exec_input_params in) {
  // The data is decoded: its base64 text (a message may be 4 MiB) need
  // not be held while the input waits for room.
  call.r.params = nullptr;
  const std::weak_ptr<server::connection> conn = std::move(call.conn);
  const std::string id = in.session;
  auto c = conn.lock();
  auto it = c ? c->sessions.find(id) : decltype(c->sessions.end()){};
  if (!c || it == c->sessions.end())
    co_return rpc_error{code::unknown_subscription, "unknown session \"" + id + "\"", {}};
  auto entry = it->second;
  if (entry->passed)
    co_return rpc_error{code::unsupported,
                        "session \"" + id +
                            "\" passed its descriptors (fds): its input, end of input and "
                            "terminal size go through them",
                        {}};
  std::optional<std::string>& data = in.data;
  const bool close = in.close;
  if (in.size) {
    if (!entry->session.tty())
      co_return params_error("tty_size", "session \"" + id + "\" has no tty");
    // Not a start (an OS error here is internal, not -32004): a resize
    // signals the running command (SIGWINCH).
    if (auto rs = entry->session.resize(*in.size); !rs)
      co_return to_rpc_error(rs.error(), task_operation::signal);
  }
  if (data && !data->empty()) {
    // While the session's stdin is full this connection reads nothing
    // more: the client's own writes block, nobody else's.
    ++c->blocked_inputs;
    c.reset();
    auto w = co_await entry->session.write(std::move(*data));
    if (auto c2 = conn.lock()) {
      --c2->blocked_inputs;
      c2->resume.cancel();
    }
    if (!w)
      co_return to_rpc_error(w.error(), task_operation::exec);
  }
  if (close) {
    if (auto cs = entry->session.close_stdin(); !cs)
      co_return to_rpc_error(cs.error(), task_operation::exec);
  }
  co_return json::value(json::object{});
}

asio::awaitable<outcome> exec_streaming_cancel(server::state&, method_call call,
                                               exec_cancel_params d) {
  const std::string id = d.session;
  auto c = call.conn.lock();
  auto it = c ? c->sessions.find(id) : decltype(c->sessions.end()){};
  if (!c || it == c->sessions.end())
    co_return rpc_error{code::unknown_subscription, "unknown session \"" + id + "\"", {}};
  auto entry = it->second;
  entry->session.kill();
  co_return json::value(json::object{});
}

}  // namespace taskexec::rpc
