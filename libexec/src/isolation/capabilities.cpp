#include "taskexec/isolation/capabilities.hpp"

#include <sys/capability.h>

#include <cctype>
#include <memory>

namespace taskexec {

namespace {

// "cap_net_bind_service" / "CAP_NET_BIND_SERVICE" / "net_bind_service" -> "cap_net_bind_service"
std::string libcap_name(std::string_view name) {
  std::string out;
  for (char c : name)
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (out.rfind("cap_", 0) != 0)
    out = "cap_" + out;
  return out;
}

std::string display_name(cap_value_t cap) {
  std::unique_ptr<char, decltype(&cap_free)> raw(cap_to_name(cap), &cap_free);
  std::string out = raw ? raw.get() : std::to_string(cap);
  if (out.rfind("cap_", 0) == 0)
    out.erase(0, 4);
  for (auto& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<std::string> supported_caps(bool allow_net_raw) {
  std::vector<std::string> out;
  const auto bits = static_cast<cap_value_t>(cap_max_bits());
  for (cap_value_t c = 0; c < bits; ++c) {
    if (c == CAP_NET_RAW && !allow_net_raw)
      continue;
    out.push_back(display_name(c));
  }
  return out;
}

const std::vector<std::string>& default_caps() {
  static const std::vector<std::string> caps{
      "AUDIT_WRITE",      "CHOWN",   "DAC_OVERRIDE", "FOWNER",  "FSETID", "KILL",      "MKNOD",
      "NET_BIND_SERVICE", "SETFCAP", "SETGID",       "SETPCAP", "SETUID", "SYS_CHROOT"};
  return caps;
}

result<std::uint64_t> capability_mask(const std::vector<std::string>& names) {
  std::uint64_t mask = 0;
  for (const auto& n : names) {
    cap_value_t v = 0;
    if (cap_from_name(libcap_name(n).c_str(), &v) != 0 || v < 0 || v > 63)
      return make_error(errc::invalid_argument, "unknown capability \"" + n + "\"");
    mask |= std::uint64_t{1} << v;
  }
  return mask;
}

std::string_view isolation_mode(std::string_view plugin, std::string_view task) {
  return task.empty() ? plugin : task;
}

}  // namespace taskexec
