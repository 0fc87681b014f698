// The parsers of /proc and cgroup files, and base64 (the protocol's byte
// encoding). Input: byte 0 picks the parser, the rest is the file content.
// Properties: no crash; pids are positive; a stat that parses has a
// positive pid and a comm within its parentheses' bounds; base64 that
// decodes encodes back to the same text.
#include <string>

#include "fuzz.hpp"
#include "taskexec/base64.hpp"
#include "taskexec/cgroups.hpp"
#include "taskexec/detail/proc.hpp"

namespace cg = taskexec::cgroup;
namespace detail = taskexec::detail;

FUZZ_TARGET(data, size) {
  if (size < 1)
    return 0;
  const std::string_view text = as_text(data + 1, size - 1);
  const std::string owned(text);
  switch (data[0] % 8) {
    case 0:
      if (auto st = detail::parse_proc_stat(text)) {
        FUZZ_CHECK(st->pid > 0);
        FUZZ_CHECK(st->comm.size() < text.size());
      }
      break;
    case 1:
      for (int pid : detail::parse_children_list(text))
        FUZZ_CHECK(pid > 0);
      break;
    case 2:
      if (auto kib = detail::parse_status_kib(text, "VmSwap"))
        FUZZ_CHECK(*kib <= (UINT64_MAX >> 10));
      break;
    case 3:
      for (int pid : cg::parse_procs(text))
        FUZZ_CHECK(pid > 0);
      break;
    case 4:
      (void)cg::keyed_value(owned, "usage_usec");
      (void)cg::keyed_value(owned, "oom_kill");
      break;
    case 5:
      (void)cg::pressure_avg10(owned, "some");
      (void)cg::pressure_avg10(owned, "full");
      break;
    case 6:
      if (auto bytes = taskexec::base64_decode(text))
        FUZZ_CHECK(taskexec::base64_encode(*bytes) == text);
      break;
    default:
      FUZZ_CHECK(*taskexec::base64_decode(taskexec::base64_encode(text)) == text);
      break;
  }
  return 0;
}
