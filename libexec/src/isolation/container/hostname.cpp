// A container's UTS namespace: its hostname.
#include <unistd.h>

#include "internal.hpp"

namespace taskexec::container_parts {

std::string container_hostname(const std::string& task_id) {
  return task_id.substr(0, 64);
}

bool set_hostname(const prepared& p, child_failure& f) noexcept {
  if (::sethostname(p.hostname.data(), p.hostname.size()) != 0)
    return fail_step(f, "sethostname");
  return true;
}

}  // namespace taskexec::container_parts
