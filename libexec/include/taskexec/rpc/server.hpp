// rpc::server: serves one task_executor as JSON-RPC 2.0 over a Unix socket
// (the daemon taskexecd is a thin main() around it).
//
// - Framing: NDJSON, compact messages, at most `max_message_bytes` each; a
//   larger one gets -32600 with id null and the connection is closed.
// - Requests on one connection are served concurrently (a pending Wait does
//   not block Version); responses carry their id and may come out of order.
// - Peers are checked with SO_PEERCRED: root, the server's own uid and
//   `allowed_uids` may call; anyone else gets -32005 and is disconnected.
// - The task survives every client.
//
// Lifetime: create with make_shared; start() begins accepting; stop() closes
// the listener and every connection. Thread-safety: none (one io_context).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "taskexec/error.hpp"
#include "taskexec/rpc/framer.hpp"
#include "taskexec/types.hpp"

namespace taskexec {
class task_executor;
class child_reaper;
}  // namespace taskexec

namespace taskexec::rpc {

struct server_options {
  std::string socket_path;
  std::size_t max_message_bytes = default_max_message_bytes;
  std::vector<unsigned> allowed_uids;
  std::size_t max_connections = 256;
  /// Grace of Shutdown when the caller gives none, and of the daemon's own
  /// shutdown on SIGTERM.
  std::chrono::milliseconds kill_grace{5000};
  /// After stop(), how long connections may take to answer and flush.
  std::chrono::milliseconds drain_timeout{5000};
  /// Called once the task is destroyed (Destroy): the daemon exits.
  std::function<void()> on_destroyed;
  /// Called once with the task's exit state the moment it is reaped, before
  /// the `exited` event is recorded (so an Events follower that sees
  /// `exited` knows it ran): taskexecd writes its exit file here.
  std::function<void(const process_state&)> on_exited;
  /// The process's reaper, whose counters Metrics reports ("reaper"); none
  /// when null. It must outlive the server.
  const child_reaper* reaper = nullptr;
};

class server : public std::enable_shared_from_this<server> {
 public:
  server(const boost::asio::any_io_executor& ex, task_executor& task, server_options options);
  ~server();

  /// Create the socket (mode 0600; parent directory 0700 when created),
  /// refusing a path a live server owns and removing a stale one; listen.
  result<void> listen();
  /// Instead of listen(): serve the listening socket `fd` (socket
  /// activation: systemd made it and owns its file, so stop() leaves the
  /// file in place). Owns `fd` from here, whatever the result. The socket
  /// must be a listening AF_UNIX stream socket (the caller checks).
  result<void> adopt(int fd);
  /// Accept connections until stop().
  void start();
  /// Close the listener and remove the socket file; each connection closes
  /// once its pending requests are answered and its replies written.
  void stop();
  /// Call `f` (posted) once stopped and every connection has closed.
  void on_drained(std::function<void()> f);

  std::size_t connection_count() const noexcept;
  const server_options& options() const noexcept { return options_; }

  // Opaque: defined in the library's sources (one client's connection; what
  // the server's parts share).
  struct connection;
  struct state;

 private:
  boost::asio::awaitable<void> accept_loop();
  std::shared_ptr<state> state_;
  server_options options_;
};

}  // namespace taskexec::rpc
