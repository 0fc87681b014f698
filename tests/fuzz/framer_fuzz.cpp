// The NDJSON framer against a model of it: the input is split into chunks
// fed in turn (sizes and when to drain taken from the input), and what
// comes out must be exactly the model's messages, with the overflow state
// the model predicts and memory within the documented bound.
//
// Input: byte 0 picks the limit (1..256 bytes), byte 1 seeds the chunking
// (and the buffer kept between reads, and release() calls between chunks,
// which must lose nothing), the rest is the stream.
#include <optional>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "taskexec/rpc/framer.hpp"

namespace {

struct model_result {
  std::vector<std::string> messages;
  bool overflowed = false;
};

// What the framer must produce for `stream` with limit `max`.
model_result model(std::string_view stream, std::size_t max) {
  model_result out;
  while (true) {
    const auto nl = stream.find('\n');
    if (nl == std::string_view::npos) {
      // A partial message: past max + 1 (room for a '\r') it never fits.
      out.overflowed = stream.size() > max + 1;
      return out;
    }
    std::string_view line = stream.substr(0, nl);
    stream.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.size() > max) {
      out.overflowed = true;
      return out;
    }
    if (line.find_first_not_of(" \t") != std::string_view::npos)
      out.messages.emplace_back(line);
  }
}

}  // namespace

FUZZ_TARGET(data, size) {
  if (size < 2)
    return 0;
  const std::size_t max = 1 + data[0];
  unsigned seed = data[1];
  const std::string_view stream = as_text(data + 2, size - 2);

  taskexec::rpc::ndjson_framer framer(max, (seed & 1) ? 256 : 16);
  std::vector<std::string> got;
  auto drain = [&] {
    while (auto m = framer.next()) {
      FUZZ_CHECK(m->size() <= max);
      FUZZ_CHECK(m->find('\n') == std::string::npos);
      got.push_back(std::move(*m));
    }
  };
  std::size_t at = 0;
  while (at < stream.size()) {
    seed = seed * 1103515245u + 12345u;
    const std::size_t chunk = 1 + (seed >> 16) % 97;
    const auto piece = stream.substr(at, chunk);
    framer.feed(piece);
    at += piece.size();
    if ((seed >> 8) & 1) {
      drain();
      // Drained, what is held is one partial message within its bound.
      FUZZ_CHECK(framer.overflowed() || framer.buffered() <= max + 1);
    }
    if ((seed >> 9) & 1) {
      const std::size_t held = framer.buffered();
      framer.release();  // gives back memory, never bytes
      FUZZ_CHECK(framer.buffered() == held);
    }
  }
  drain();

  const auto expect = model(stream, max);
  FUZZ_CHECK(framer.overflowed() == expect.overflowed);
  FUZZ_CHECK(got == expect.messages);
  if (framer.overflowed()) {
    FUZZ_CHECK(framer.buffered() == 0);
    FUZZ_CHECK(!framer.next());
  } else {
    // Only a partial message may remain, never more than max + 1 bytes.
    FUZZ_CHECK(framer.buffered() <= max + 1);
  }
  return 0;
}
