// Stats subscriptions: the Stats and Stats.Cancel methods, and the
// schedules that sample the task for them (one per interval, sharing the
// task's readings), sending Stats.Sample and Stats.End to each subscriber.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include "connection.hpp"
#include "methods.hpp"
#include "taskexec/codec.hpp"
#include "taskexec/task_executor.hpp"

namespace taskexec::rpc {

asio::awaitable<void> server::state::watch_exit(std::shared_ptr<state> self,
                                                std::shared_ptr<exit_watch> watch) {
  auto r = co_await self->task.wait();
  if (r || r.error().code != make_error_code(errc::operation_canceled)) {
    watch->exited = true;
    watch->timer.cancel();
  }
}

// The subscribers of one interval, and the timer of their ticks.
struct server::state::stats_schedule {
  stats_schedule(const asio::any_io_executor& ex, std::int64_t ms)
      : interval_ms(ms), watch(std::make_shared<exit_watch>(ex)) {}
  std::int64_t interval_ms;
  std::shared_ptr<exit_watch> watch;  // its timer is the ticks' timer
  // The reading of the last tick: the next tick's rates are since then.
  std::shared_ptr<const usage_reading> previous;
  struct subscriber {
    std::weak_ptr<connection> conn;
    std::string id;
    bool started = false;  // its first sample was sent (after its answer)
  };
  std::vector<subscriber> subscribers;
  bool stopped = false;    // its last subscriber left
  std::string usage_text;  // a tick's usage as JSON (its room kept from tick to tick)
};

namespace {
// A Stats.Sample, by hand: the usage is serialized once for every
// subscriber of a tick.
void send_sample(server::connection& c, const std::string& id, const std::string& usage,
                 server_metrics& m);
void send_end(server::connection& c, const std::string& id);
}  // namespace

namespace {
// No schedule left: the sampler goes, and with it the files it keeps open
// (the members' /proc files, the cgroup's counters); the next Stats makes
// a new one. A daemon whose Stats clients left holds no more descriptors
// than before they came.
void release_sampler_if_idle(server::state& st) {
  if (!st.schedules.empty())
    return;
  st.sampler.reset();
  st.last_reading.reset();
}
}  // namespace

std::shared_ptr<const usage_reading> server::state::reading() {
  if (!last_reading || asio::steady_timer::clock_type::now() - last_reading->at >= min_reading_gap)
    last_reading = std::make_shared<const usage_reading>(sampler->read());
  return last_reading;
}

std::shared_ptr<server::state::stats_schedule> server::state::schedule_for(
    std::int64_t interval_ms) {
  if (auto it = schedules.find(interval_ms); it != schedules.end())
    return it->second;
  auto s = std::make_shared<stats_schedule>(ex, interval_ms);
  schedules.emplace(interval_ms, s);
  asio::co_spawn(ex, run_schedule(shared_from_this(), s), [](const std::exception_ptr& e) {
    // A failure ends this schedule's samples, never the daemon.
    if (!e)
      return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      log(log_level::error, std::string("stats schedule ended: ") + x.what());
    }
  });
  return s;
}

void server::state::leave_schedule(std::int64_t interval_ms, const std::string& id) {
  auto it = schedules.find(interval_ms);
  if (it == schedules.end())
    return;
  auto s = it->second;
  std::erase_if(s->subscribers, [&](const auto& sub) { return sub.id == id; });
  if (s->subscribers.empty()) {
    // Nobody left: the schedule ends (and no longer counts as one).
    s->stopped = true;
    schedules.erase(it);
    s->watch->timer.cancel();
    release_sampler_if_idle(*this);
  }
}

// The task has exited: each subscriber's stream is over.
void server::state::end_schedule(stats_schedule& s) {
  s.stopped = true;
  if (auto it = schedules.find(s.interval_ms); it != schedules.end() && it->second.get() == &s)
    schedules.erase(it);
  release_sampler_if_idle(*this);
  auto subs = std::move(s.subscribers);
  s.subscribers.clear();
  for (auto& sub : subs) {
    auto c = sub.conn.lock();
    // One not yet started is told by its start, after its answer.
    if (!c || !sub.started || !c->subscriptions.erase(sub.id))
      continue;
    if (!c->closing)
      send_end(*c, sub.id);
  }
}

void server::state::start_subscription(const std::weak_ptr<connection>& conn, const std::string& id,
                                       std::int64_t interval_ms) {
  auto c = conn.lock();
  // Cancelled before it started (a Stats.Cancel in the same batch).
  if (!c || c->closing || !c->subscriptions.contains(id))
    return;
  stats_schedule::subscriber* sub = nullptr;
  auto it = schedules.find(interval_ms);
  if (it != schedules.end()) {
    for (auto& x : it->second->subscribers)
      sub = x.id == id ? &x : sub;
  }
  if (!sub || task.state() != task_state::running) {
    // The task exited before the answer went out: the stream is over.
    leave_schedule(interval_ms, id);
    c->subscriptions.erase(id);
    send_end(*c, id);
    return;
  }
  sub->started = true;
  // Its first sample at once (rates 0: it has no earlier one); the next
  // ones come with its schedule's ticks.
  auto r = reading();
  if (!it->second->previous)
    it->second->previous = r;
  std::string usage;
  append_json(usage, usage_between(nullptr, *r));
  send_sample(*c, id, usage, metrics);
}

asio::awaitable<void> server::state::run_schedule(std::shared_ptr<state> self,
                                                  std::shared_ptr<stats_schedule> s) {
  // One watcher of the task's exit for the whole schedule (not a wait per
  // tick): it wakes the timer early when the task exits, and is cancelled
  // when the schedule ends.
  asio::co_spawn(self->ex, watch_exit(self, s->watch),
                 asio::bind_cancellation_slot(s->watch->stop.slot(), asio::detached));
  auto& timer = s->watch->timer;
  // However the loop ends (an exception too), the watcher is cancelled.
  struct stop_watching {
    exit_watch& w;
    ~stop_watching() { w.stop.emit(asio::cancellation_type::terminal); }
  } stop_guard{*s->watch};
  // A fixed schedule (each subscriber's first sample at its start, then the
  // ticks: created + interval, + 2 intervals, ...): the time a sample takes
  // does not push the later ones back. A tick late by more than an interval
  // restarts the schedule instead of bursting to catch up.
  const auto interval = std::chrono::milliseconds(s->interval_ms);
  auto due = asio::steady_timer::clock_type::now() + interval;
  auto wake = due;
  for (;;) {
    if (s->stopped)
      break;
    if (self->task.state() != task_state::running) {
      self->end_schedule(*s);
      break;
    }
    timer.expires_at(wake);
    // The tick, or the task's exit (the watcher cancels the timer), or the
    // last subscriber leaving (stopped).
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (s->stopped || self->task.state() != task_state::running)
      continue;
    auto r = self->reading();
    if (r == s->previous) {
      // A late tick followed by one on time, within min_reading_gap of the
      // last reading: the sample waits for the next one rather than reading
      // the task once more.
      wake = r->at + min_reading_gap;
      ++self->metrics.stats_ticks_deferred;
      continue;
    }
    // Serialized once for every subscriber, into the schedule's buffer.
    auto& usage = s->usage_text;
    usage.clear();
    append_json(usage, usage_between(s->previous.get(), *r));
    s->previous = r;
    std::erase_if(s->subscribers, [&](const auto& sub) {
      auto c = sub.conn.lock();
      if (!c || c->closing)
        return true;  // gone (its end removes it too)
      if (sub.started)
        send_sample(*c, sub.id, usage, self->metrics);
      return false;
    });
    if (s->subscribers.empty()) {
      s->stopped = true;
      if (auto it = self->schedules.find(s->interval_ms);
          it != self->schedules.end() && it->second == s)
        self->schedules.erase(it);
      release_sampler_if_idle(*self);
      break;
    }
    due += interval;
    if (auto now = asio::steady_timer::clock_type::now(); due < now) {
      due = now + interval;
      ++self->metrics.stats_ticks_late;
    }
    wake = due;
  }
}

namespace {
void send_sample(server::connection& c, const std::string& id, const std::string& usage,
                 server_metrics& m) {
  if (c.out_bytes > server::connection::max_out_bytes) {
    ++c.samples_dropped;  // a client that does not read gets no backlog
    ++m.stats_samples_dropped;
    return;
  }
  ++m.stats_samples_sent;
  std::string line;
  line.reserve(usage.size() + id.size() + 96);
  line += R"({"jsonrpc":"2.0","method":"Stats.Sample","params":{"subscription":")";
  line += id;
  line += R"(","usage":)";
  line += usage;
  line += "}}\n";
  c.send_now(std::move(line));
}

void send_end(server::connection& c, const std::string& id) {
  // No sample follows.
  c.send_line(R"({"jsonrpc":"2.0","method":"Stats.End","params":{"subscription":")" + id +
              R"(","reason":"task exited"}})"
              "\n");
}
}  // namespace

asio::awaitable<outcome> stats_subscribe(server::state& srv, method_call call, stats_params d) {
  const std::int64_t interval = d.interval_ms;
  const std::weak_ptr<server::connection> conn = std::move(call.conn);
  auto c = conn.lock();
  if (!c)
    co_return rpc_error{code::internal_error, "connection gone", {}};
  if (c->subscriptions.size() >= server::connection::max_subscriptions)
    co_return limit_error(srv.metrics, "stats_subscriptions",
                          "too many Stats subscriptions on this connection",
                          server::connection::max_subscriptions);
  auto task_sampler = srv.task.sampler();
  if (!task_sampler)
    co_return to_rpc_error(task_sampler.error(), task_operation::stats);
  if (call.r.id && c->after_answer.contains(json::serialize(*call.r.id)))
    co_return rpc_error{code::invalid_request, "a request with this id is still pending", {}};
  if (!srv.schedules.contains(interval) && srv.schedules.size() >= server::state::max_schedules)
    co_return limit_error(srv.metrics, "stats_intervals",
                          "too many distinct Stats intervals in use", server::state::max_schedules);
  if (!srv.sampler)
    srv.sampler.emplace(std::move(*task_sampler));
  std::string id = "stats-" + std::to_string(srv.next_subscription++);
  auto sig = std::make_shared<asio::cancellation_signal>();
  c->subscriptions[id] = sig;
  // It joins its interval's schedule now (so the limit above holds), and
  // gets samples once started, after this call's answer is queued: its
  // first sample follows the answer at once.
  srv.schedule_for(interval)->subscribers.push_back({conn, id, false});
  // Cancelled (Stats.Cancel, the connection's end), it leaves at once.
  // Plain captures only: GCC 12 mishandles init-captures in lambdas made
  // inside coroutines.
  std::weak_ptr<server::state> weak = srv.shared_from_this();
  sig->slot().assign([weak, interval, id](asio::cancellation_type) {
    if (auto self = weak.lock())
      self->leave_schedule(interval, id);
  });
  auto self = srv.shared_from_this();
  auto start = [self, conn, id, interval] { self->start_subscription(conn, id, interval); };
  if (call.r.id)
    c->after_answer[json::serialize(*call.r.id)] = std::move(start);
  else
    start();  // a notification: no answer to wait for
  json::object out;
  out["subscription"] = id;
  // The analyzer takes the coroutine frame for a loop around this line.
  co_return json::value(std::move(out));  // NOLINT(clang-analyzer-cplusplus.Move)
}

asio::awaitable<outcome> stats_cancel(server::state&, method_call call, stats_cancel_params d) {
  const std::string id = d.subscription;
  auto c = call.conn.lock();
  if (!c || !c->subscriptions.contains(id))
    co_return rpc_error{code::unknown_subscription, "unknown subscription \"" + id + "\"", {}};
  auto sig = c->subscriptions[id];
  c->subscriptions.erase(id);
  sig->emit(asio::cancellation_type::terminal);
  co_return json::value(json::object{});
}

}  // namespace taskexec::rpc
