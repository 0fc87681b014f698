// NDJSON framing: each message is one line terminated by '\n'. Pure (no
// I/O): the connection feeds received bytes and takes complete messages.
//
// Limits: a message longer than `max_message_bytes` (without its '\n'),
// complete or still arriving, puts the framer in the overflowed state; the
// connection then answers -32600 with id null and closes. Memory held is
// bounded by max_message_bytes plus one read; once every message is taken,
// a buffer grown by a burst shrinks back to 64 KiB.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace taskexec::rpc {

inline constexpr std::size_t default_max_message_bytes = 4 * 1024 * 1024;

class ndjson_framer {
 public:
  explicit ndjson_framer(std::size_t max_message_bytes = default_max_message_bytes)
      : max_(max_message_bytes) {}

  /// Append received bytes. Ignored once overflowed.
  void feed(std::string_view bytes);

  /// The next complete message, without its '\n' (and without a '\r' before
  /// it); blank lines are skipped. nullopt when no complete message is
  /// buffered, or once overflowed.
  std::optional<std::string> next();
  /// As next(), without a copy: the message in the framer's buffer, valid
  /// until the next call of feed(), next() or next_view().
  std::optional<std::string_view> next_view();

  bool overflowed() const noexcept { return overflowed_; }
  /// Bytes held (consumed messages are released on the next feed or next()).
  std::size_t buffered() const noexcept { return buffer_.size() - start_; }
  std::size_t max_message_bytes() const noexcept { return max_; }

 private:
  void compact();
  void drop_all();  // overflowed: nothing is kept
  std::size_t max_;
  std::string buffer_;
  std::size_t start_ = 0;  // first unconsumed byte
  std::size_t scan_ = 0;   // bytes from start_ already known to hold no '\n'
  bool overflowed_ = false;
};

}  // namespace taskexec::rpc
