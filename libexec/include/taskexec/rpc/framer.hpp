// NDJSON framing: each message is one line terminated by '\n'. Pure (no
// I/O): the connection feeds received bytes and takes complete messages.
//
// Limits: a message longer than `max_message_bytes` (without its '\n'),
// complete or still arriving, puts the framer in the overflowed state; the
// connection then answers -32600 with id null and closes. Memory held is
// bounded by the larger of keep_bytes and max_message_bytes plus one read.
// Once every message is taken, a buffer grown past `keep_bytes` (64 KiB
// unless given) is given back; one at most that big is kept for the next
// read, as a stream of messages needs it, until release().
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace taskexec::rpc {

inline constexpr std::size_t default_max_message_bytes = 4 * 1024 * 1024;
inline constexpr std::size_t default_keep_bytes = 64 * 1024;

class ndjson_framer {
 public:
  explicit ndjson_framer(std::size_t max_message_bytes = default_max_message_bytes,
                         std::size_t keep_bytes = default_keep_bytes)
      : max_(max_message_bytes), keep_(keep_bytes) {}

  /// Append received bytes. Ignored once overflowed.
  void feed(std::string_view bytes);

  /// The next complete message, without its '\n' (and without a '\r' before
  /// it); blank lines are skipped. nullopt when no complete message is
  /// buffered, or once overflowed.
  std::optional<std::string> next();
  /// As next(), without a copy: the message in the framer's buffer, valid
  /// until the next call of feed(), next(), next_view() or release().
  std::optional<std::string_view> next_view();

  bool overflowed() const noexcept { return overflowed_; }
  /// Bytes held (consumed messages are released on the next feed or next()).
  std::size_t buffered() const noexcept { return buffer_.size() - start_; }
  std::size_t max_message_bytes() const noexcept { return max_; }
  /// Bytes of buffer held (what the limits above bound).
  std::size_t capacity() const noexcept { return buffer_.capacity(); }

  /// When every message is taken, give back the buffer kept for the next
  /// read if it is over 64 KiB (default_keep_bytes: a connection gone quiet
  /// keeps what the default would); otherwise nothing.
  void release();

 private:
  void compact();
  void drop_all();  // overflowed: nothing is kept
  std::size_t max_;
  std::size_t keep_;
  std::string buffer_;
  std::size_t start_ = 0;  // first unconsumed byte
  std::size_t scan_ = 0;   // bytes from start_ already known to hold no '\n'
  bool overflowed_ = false;
};

}  // namespace taskexec::rpc
