#include "taskexec/rpc/framer.hpp"

namespace taskexec::rpc {

void ndjson_framer::drop_all() {
  overflowed_ = true;
  buffer_.clear();
  buffer_.shrink_to_fit();
  start_ = scan_ = 0;
}

void ndjson_framer::release() {
  if (overflowed_ || start_ != buffer_.size() || buffer_.capacity() <= default_keep_bytes)
    return;
  buffer_.clear();
  buffer_.shrink_to_fit();
  start_ = scan_ = 0;
}

void ndjson_framer::compact() {
  if (start_ == 0)
    return;
  buffer_.erase(0, start_);
  start_ = 0;
}

void ndjson_framer::feed(std::string_view bytes) {
  if (overflowed_)
    return;
  compact();
  buffer_.append(bytes);
  // A partial message already over the limit will never be accepted: stop
  // buffering it now rather than when its '\n' arrives.
  if (buffer_.find('\n', scan_) == std::string::npos && buffer_.size() > max_ + 1) {
    drop_all();
  }
}

std::optional<std::string> ndjson_framer::next() {
  auto line = next_view();
  if (!line)
    return std::nullopt;
  return std::string(*line);
}

std::optional<std::string_view> ndjson_framer::next_view() {
  while (!overflowed_) {
    auto nl = buffer_.find('\n', start_ + scan_);
    if (nl == std::string::npos && start_ == buffer_.size()) {
      // Everything taken: give back what a burst made the buffer grow to.
      // A buffer kept (up to keep_) serves the next read without an
      // allocation: freed and taken again at every drain, as a stream of
      // messages drains the buffer, it made malloc give the pages back to
      // the kernel and fault them in again each time.
      buffer_.clear();
      start_ = scan_ = 0;
      if (buffer_.capacity() > keep_)
        buffer_.shrink_to_fit();
      return std::nullopt;
    }
    if (nl == std::string::npos) {
      scan_ = buffer_.size() - start_;
      // One byte of slack: a message of exactly the limit may end in "\r\n"
      // whose '\n' has not arrived yet.
      if (scan_ > max_ + 1) {
        drop_all();
      }
      return std::nullopt;
    }
    std::size_t end = nl;
    if (end > start_ && buffer_[end - 1] == '\r')
      --end;
    std::size_t len = end - start_;
    std::size_t begin = start_;
    start_ = nl + 1;
    scan_ = 0;
    if (len > max_) {
      drop_all();
      return std::nullopt;
    }
    std::string_view line(buffer_.data() + begin, len);
    if (line.find_first_not_of(" \t") == std::string_view::npos)
      continue;  // blank line
    return line;
  }
  return std::nullopt;
}

}  // namespace taskexec::rpc
