// Events followers: Events with follow (the page, then every later event as
// an Events.Event notification), Events.Cancel, and how a follower ends:
// Events.End with reason "overflow" (its client reads too slowly) or
// "stopping" (the daemon stops). docs/protocol.md "Events" is the contract.
#include <boost/json/serialize.hpp>

#include "connection.hpp"
#include "methods.hpp"

namespace taskexec::rpc {

namespace {

void send_event(server::connection& c, const std::string& id, const std::string& event) {
  std::string line;
  line.reserve(event.size() + id.size() + 96);
  line += R"({"jsonrpc":"2.0","method":"Events.Event","params":{"subscription":")";
  line += id;
  line += R"(","event":)";
  line += event;
  line += "}}\n";
  c.send_line(std::move(line));
}

void send_end(server::connection& c, const std::string& id, std::string_view reason,
              std::uint64_t next) {
  json::object params;
  params["subscription"] = id;
  params["reason"] = reason;
  params["next"] = next;
  c.send(json::object{{"jsonrpc", "2.0"}, {"method", "Events.End"}, {"params", std::move(params)}});
}

// Send `event` (serialized: `text`) to follower `f` of `c`, or end it when
// its client has not read what is queued. False: it ended (remove it).
bool deliver(server::connection& c, const std::string& id, server::connection::follower& f,
             std::uint64_t seq, const std::string& text) {
  if (seq < f.next)
    return true;  // sent already (catching up)
  if (c.out_bytes > server::connection::max_out_bytes) {
    // A follower never gets a backlog past the connection's bound: its
    // stream ends, and `next` says where to ask again.
    send_end(c, id, "overflow", seq);
    return false;
  }
  send_event(c, id, text);
  f.next = seq + 1;
  return true;
}

}  // namespace

void server::state::deliver_event(const json::object& event) {
  const auto* s = event.if_contains("seq");
  if (!s || !s->is_number())
    return;
  const auto seq = s->to_number<std::uint64_t>();
  std::string text;
  for (auto& [p, c] : connections) {
    if (c->closing || c->followers.empty())
      continue;
    for (auto it = c->followers.begin(); it != c->followers.end();) {
      if (!it->second.started) {
        ++it;  // catches up from the journal when it starts
        continue;
      }
      if (text.empty())
        text = json::serialize(event);
      if (deliver(*c, it->first, it->second, seq, text))
        ++it;
      else
        it = c->followers.erase(it);
    }
  }
}

void server::state::start_follower(const std::weak_ptr<connection>& conn, const std::string& id) {
  auto c = conn.lock();
  // Cancelled before it started (an Events.Cancel in the same batch).
  if (!c || c->closing)
    return;
  auto it = c->followers.find(id);
  if (it == c->followers.end())
    return;
  auto& f = it->second;
  // What the journal kept after the answer's page (a page is bounded; what
  // follows it, and whatever was appended since, comes now), in order.
  bool more = true;
  while (more) {
    auto page = journal.since(f.next, event_journal::max_page_events);
    for (const auto& e : page.at("events").as_array()) {
      const auto& ev = e.as_object();
      if (!deliver(*c, id, f, ev.at("seq").to_number<std::uint64_t>(), json::serialize(ev))) {
        c->followers.erase(it);
        return;
      }
    }
    more = page.at("more").as_bool();
    // Past evicted seqs too: what `since` skipped is gone for everyone.
    f.next = std::max(f.next, page.at("next").to_number<std::uint64_t>());
  }
  f.started = true;
}

void server::state::end_followers(std::string_view reason) {
  for (auto& [p, c] : connections) {
    auto followers = std::move(c->followers);
    c->followers.clear();
    if (c->closing)
      continue;
    for (auto& [id, f] : followers)
      send_end(*c, id, reason, std::max<std::uint64_t>(f.next, 1));
  }
}

asio::awaitable<outcome> events_follow(server::state& srv, method_call call, events_params d) {
  const std::weak_ptr<server::connection> conn = std::move(call.conn);
  auto c = conn.lock();
  if (!c)
    co_return rpc_error{code::internal_error, "connection gone", {}};
  if (c->followers.size() >= server::connection::max_followers)
    co_return limit_error(srv.metrics, "events_followers",
                          "too many Events followers on this connection",
                          server::connection::max_followers);
  if (srv.stopping)
    co_return rpc_error{code::internal_error, "the daemon is stopping", {}};
  if (call.r.id && c->after_answer.contains(json::serialize(*call.r.id)))
    co_return rpc_error{code::invalid_request, "a request with this id is still pending", {}};
  json::value page = srv.journal.since(d.since, d.limit);
  std::string id = "events-" + std::to_string(srv.next_follower++);
  // Events from the page's `next` on follow, once its answer is queued.
  c->followers[id] =
      server::connection::follower{page.at("next").to_number<std::uint64_t>(), false};
  auto self = srv.shared_from_this();
  auto start = [self, conn, id] { self->start_follower(conn, id); };
  if (call.r.id)
    c->after_answer[json::serialize(*call.r.id)] = std::move(start);
  else
    start();  // a notification: no answer to wait for
  page.as_object()["subscription"] = id;
  co_return page;
}

asio::awaitable<outcome> events_cancel(server::state&, method_call call, stats_cancel_params d) {
  const std::string id = d.subscription;
  auto c = call.conn.lock();
  if (!c || !c->followers.contains(id))
    co_return rpc_error{code::unknown_subscription, "unknown subscription \"" + id + "\"", {}};
  c->followers.erase(id);
  co_return json::value(json::object{});
}

}  // namespace taskexec::rpc
