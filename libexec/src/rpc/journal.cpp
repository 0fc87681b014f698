#include "taskexec/rpc/journal.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>

namespace taskexec::rpc {
namespace json = boost::json;

namespace {

// `s` cut to at most `max` bytes plus "...", never inside a UTF-8 sequence.
void bound_string(json::string& s, std::size_t max) {
  if (s.size() <= max)
    return;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80)
    --n;  // s[n] continues a sequence: cut before the sequence starts
  s.resize(n);
  s.append("...");
}

void bound_strings(json::value& v, std::size_t max, int depth = 0) {
  if (depth > 64)
    return;  // our own events are flat; nothing deeper is ever recorded
  if (auto* s = v.if_string()) {
    bound_string(*s, max);
  } else if (auto* o = v.if_object()) {
    for (auto& kv : *o)
      bound_strings(kv.value(), max, depth + 1);
  } else if (auto* a = v.if_array()) {
    for (auto& e : *a)
      bound_strings(e, max, depth + 1);
  }
}

}  // namespace

event_journal::event_journal(std::size_t max_events, std::size_t max_bytes)
    : max_events_(max_events == 0 ? 1 : max_events), max_bytes_(max_bytes) {}

bool event_journal::pinned(std::string_view type) noexcept {
  return type == "launched" || type == "oom" || type == "exited";
}

std::uint64_t event_journal::append(std::string_view type, json::object fields,
                                    std::chrono::system_clock::time_point when) {
  json::value ev = json::object{};
  auto& e = ev.get_object();
  const auto seq = next_++;
  e["seq"] = seq;
  e["time_unix_nano"] =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  e["type"] = type;
  for (auto& kv : fields)
    e[kv.key()] = std::move(kv.value());
  bound_strings(ev, max_string_bytes);
  const std::size_t size = json::serialize(ev).size();
  events_.push_back(entry{seq, std::move(e), size, pinned(type)});
  bytes_ += size;
  while (!events_.empty() && (events_.size() > max_events_ || bytes_ > max_bytes_))
    evict_one();
  // The event as kept (one that alone exceeds a bound is gone already:
  // a follower sees its seq skipped, as for any eviction).
  if (listener_ && !events_.empty() && events_.back().seq == seq)
    listener_(events_.back().event);
  return seq;
}

void event_journal::evict_one() {
  auto it = std::find_if(events_.begin(), events_.end(), [](const entry& x) { return !x.pinned; });
  if (it == events_.end())
    it = events_.begin();  // only pinned events left (see the header)
  bytes_ -= it->bytes;
  events_.erase(it);
  ++evicted_;
}

json::object event_journal::since(std::uint64_t since, std::size_t limit) const {
  limit = std::clamp<std::size_t>(limit, 1, max_page_events);
  const std::uint64_t from = std::max<std::uint64_t>(since, 1);
  json::array out;
  auto it = std::lower_bound(events_.begin(), events_.end(), from,
                             [](const entry& x, std::uint64_t s) { return x.seq < s; });
  std::size_t taken = 0, bytes = 0;
  std::uint64_t last = 0;
  for (; it != events_.end() && taken < limit; ++it) {
    if (taken > 0 && bytes + it->bytes > page_bytes)
      break;
    out.push_back(it->event);
    bytes += it->bytes;
    last = it->seq;
    ++taken;
  }
  const bool more = it != events_.end();
  const std::uint64_t next = more ? last + 1 : next_;
  // Every seq in [from, next) is either in this page or was evicted.
  const std::uint64_t dropped = next > from ? next - from - taken : 0;
  return {{"events", std::move(out)}, {"next", next}, {"more", more}, {"dropped", dropped}};
}

}  // namespace taskexec::rpc
