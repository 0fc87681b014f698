// Internal: the method table of rpc::server. Each method is a name, whether
// it may wait, its params' decoder (taskexec/rpc/params.hpp) and a small
// function that makes the call and encodes its answer. A request's params
// are always decoded first: a request with bad params gets -32602 whatever
// else is wrong with it. The table is in methods.cpp, with the methods of
// the task; the Stats methods are in stats_subscriptions.cpp, the
// ExecStreaming ones in exec_sessions.cpp.
#pragma once

#include <memory>
#include <string_view>

#include "server_state.hpp"
#include "taskexec/rpc/params.hpp"

namespace taskexec::rpc {

/// A request as its method gets it, with the connection it came on (gone
/// once the client is).
struct method_call {
  request r;
  std::weak_ptr<server::connection> conn;
  bool batched = false;  // a member of a batch (answered in one array)
};

/// Whether `method` may wait (for the task, a command, a shutdown, room in a
/// session's stdin): only these count against connection::max_pending.
/// Every other call (Version, Metrics, Signal, Events, Stats, Stats.Cancel,
/// UpdateResources, ExecStreaming.Cancel, an unknown method) completes
/// without suspending.
bool method_may_wait(std::string_view method);

/// Whether `method` completes at once on the connection's own executor,
/// touching neither the task nor another strand (Version, Metrics, Events,
/// Events.Cancel): the reader awaits it in place, without spawning it, and
/// its answer is written before the reader waits for more.
bool method_runs_in_place(std::string_view method);

/// The answer to `r`: its method's, or -32601 for an unknown method.
asio::awaitable<outcome> dispatch(server::state& srv, request r,
                                  std::weak_ptr<server::connection> conn, bool batched = false);

// Stats (stats_subscriptions.cpp).
asio::awaitable<outcome> stats_subscribe(server::state& srv, method_call c, stats_params d);
asio::awaitable<outcome> stats_cancel(server::state& srv, method_call c, stats_cancel_params d);

// Events with follow, Events.Cancel (event_followers.cpp).
asio::awaitable<outcome> events_follow(server::state& srv, method_call c, events_params d);
asio::awaitable<outcome> events_cancel(server::state& srv, method_call c, stats_cancel_params d);

// ExecStreaming (exec_sessions.cpp).
asio::awaitable<outcome> exec_streaming_start(server::state& srv, method_call c,
                                              exec_session_options d);
asio::awaitable<outcome> exec_streaming_input(server::state& srv, method_call c,
                                              exec_input_params d);
asio::awaitable<outcome> exec_streaming_cancel(server::state& srv, method_call c,
                                               exec_cancel_params d);

}  // namespace taskexec::rpc
