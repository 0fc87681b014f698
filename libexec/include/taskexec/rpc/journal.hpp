// The daemon's event journal: launched, signalled, shutdown and exited
// events with increasing sequence numbers, kept in memory with a bound, so an
// agent that reconnects asks `Events {since}` and learns what happened while
// it was away. Pure (no I/O).
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace taskexec::rpc {

class event_journal {
 public:
  explicit event_journal(std::size_t capacity = 1024) : capacity_(capacity == 0 ? 1 : capacity) {}

  /// Record an event {seq, time_unix_nano, type, ...fields}; returns its seq.
  /// The oldest event is dropped when the journal is full.
  std::uint64_t append(
      std::string_view type, boost::json::object fields,
      std::chrono::system_clock::time_point when = std::chrono::system_clock::now());

  /// {"events": [events with seq >= since], "next": seq of the next event,
  ///  "dropped": how many wanted events were already dropped by the bound}
  boost::json::object since(std::uint64_t since) const;

  std::uint64_t next_seq() const noexcept { return next_; }
  std::size_t size() const noexcept { return events_.size(); }

 private:
  std::size_t capacity_;
  std::deque<boost::json::object> events_;
  std::uint64_t next_ = 1;  // seq of the next event; the first is 1
};

}  // namespace taskexec::rpc
