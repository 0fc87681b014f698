// The daemon's event journal: launched, signalled, shutdown, oom and exited
// events with increasing sequence numbers, kept in memory with a bound, so an
// agent that reconnects asks `Events {since}` and learns what happened while
// it was away. Pure (no I/O).
//
// Bounds (a client decides what the daemon records, so each is in bytes as
// well as in count):
// - every string in an event is cut to max_string_bytes (at a UTF-8
//   boundary, "..." appended): callers store canonical values (a signal's
//   name, not the client's spelling), and this is the backstop;
// - the journal holds at most `max_events` events and `max_bytes` of them
//   (each event's compact JSON size, measured when it is appended); past
//   either, the oldest event that is not pinned is evicted. `launched`,
//   `oom` and `exited` are pinned: an agent coming back must learn that the
//   task started and how it ended, however many other events came since.
//   The daemon records at most one of each, so they always fit; should the
//   pinned events alone ever exceed a bound, the oldest of them goes too;
// - one page of since() holds at most `limit` events and page_bytes of them.
#pragma once

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>

namespace taskexec::rpc {

class event_journal {
 public:
  static constexpr std::size_t default_max_events = 1024;
  static constexpr std::size_t default_max_bytes = 256 * 1024;
  static constexpr std::size_t max_string_bytes = 256;
  /// Events per page: the default, and the most a caller may ask for.
  static constexpr std::size_t default_page_events = 256;
  static constexpr std::size_t max_page_events = 1024;
  /// A page stops before the event that would take it past this many bytes
  /// of events (it always holds at least one when one is due).
  static constexpr std::size_t page_bytes = 64 * 1024;

  explicit event_journal(std::size_t max_events = default_max_events,
                         std::size_t max_bytes = default_max_bytes);

  /// Record an event {seq, time_unix_nano, type, ...fields} (strings cut to
  /// max_string_bytes) and evict what the bounds require; returns its seq.
  std::uint64_t append(
      std::string_view type, boost::json::object fields,
      std::chrono::system_clock::time_point when = std::chrono::system_clock::now());

  /// One page: {"events": [kept events with seq >= since, at most `limit`
  /// (1..max_page_events) and page_bytes], "next": the seq to ask for next,
  /// "more": whether kept events follow this page, "dropped": how many
  /// sequence numbers from `since` up to `next` are not in this page because
  /// a bound evicted them}. Paging from 0 with `next` until !more returns
  /// every kept event once, and events + dropped over the pages cover every
  /// seq from `since` on exactly once.
  boost::json::object since(std::uint64_t since, std::size_t limit = default_page_events) const;

  std::uint64_t next_seq() const noexcept { return next_; }
  std::size_t size() const noexcept { return events_.size(); }
  /// The measured size of what is kept: never above max_bytes after append.
  std::size_t bytes() const noexcept { return bytes_; }
  /// Events evicted so far.
  std::uint64_t evicted() const noexcept { return evicted_; }
  /// launched, oom and exited.
  static bool pinned(std::string_view type) noexcept;

  /// Called by append() with each new event (as kept: strings cut), once
  /// the bounds are enforced: how followers (Events with follow) learn of
  /// it. One listener; empty: none. It must not append.
  void on_append(std::function<void(const boost::json::object& event)> f) {
    listener_ = std::move(f);
  }

 private:
  struct entry {
    std::uint64_t seq;
    boost::json::object event;
    std::size_t bytes;
    bool pinned;
  };
  void evict_one();

  std::size_t max_events_;
  std::size_t max_bytes_;
  std::deque<entry> events_;  // by seq, with gaps where events were evicted
  std::size_t bytes_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t next_ = 1;  // seq of the next event; the first is 1
  std::function<void(const boost::json::object&)> listener_;
};

}  // namespace taskexec::rpc
