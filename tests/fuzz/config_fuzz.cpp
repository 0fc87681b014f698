// The reattach config parser and the daemon's handshake parser.
// Properties: no crash; a config that parses serialises (to_json) to text
// that parses to the same config; a handshake's pid is a valid pid.
#include "fuzz.hpp"
#include "taskexec/remote_executor.hpp"

FUZZ_TARGET(data, size) {
  const auto text = as_text(data, size);
  if (auto c = taskexec::parse_reattach_config(text)) {
    FUZZ_CHECK(!c->socket.empty());
    FUZZ_CHECK(c->pid > 0);
    auto again = taskexec::parse_reattach_config(taskexec::to_json(*c));
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(*again == *c);
  } else {
    FUZZ_CHECK(!c.error().message.empty());
  }
  if (auto pid = taskexec::parse_handshake(text))
    FUZZ_CHECK(*pid > 0 && *pid <= 0x3fffffff);
  return 0;
}
