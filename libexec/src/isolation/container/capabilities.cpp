// A container task's identity: its user (as in the host strategy), the
// capabilities it is given (root keeps the executor's; anyone else gets
// `capabilities`, default default_caps(), as bounding, permitted, effective,
// inheritable and ambient sets) and no_new_privs.
#include <sys/capability.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstdint>

#include "../process_setup.hpp"
#include "internal.hpp"
#include "taskexec/isolation/capabilities.hpp"
#include "taskexec/logging.hpp"

namespace taskexec {
namespace container_parts {

result<void> prepare_capabilities(const exec_command& cmd, prepared& p,
                                  const std::string& task_id) {
  if (p.root_user && !cmd.capabilities.empty()) {
    detail::log(log_level::warning, "container", task_id, "",
                "capabilities are ignored for a task running as root: it keeps the executor's");
  }
  if (!p.root_user) {
    const auto& names = cmd.capabilities.empty() ? default_caps() : cmd.capabilities;
    auto mask = capability_mask(names);
    if (!mask)
      return mask.error();
    if (!p.device_cgroup && (*mask >> CAP_MKNOD) & 1) {
      *mask &= ~(std::uint64_t{1} << CAP_MKNOD);
      detail::log(log_level::warning, "container", task_id, "",
                  "no devices cgroup on this host: MKNOD is not given to the task");
    }
    cap_t mine = cap_get_proc();
    if (!mine)
      return make_system_error(errno, "cap_get_proc");
    p.regain = cap_dup(mine);
    p.final_caps = cap_init();
    const int bits = static_cast<int>(cap_max_bits());
    std::string missing;
    for (cap_value_t c = 0; c < bits && p.regain && p.final_caps; ++c) {
      cap_flag_value_t held = CAP_CLEAR;
      cap_get_flag(mine, c, CAP_PERMITTED, &held);
      if (held == CAP_SET)
        cap_set_flag(p.regain, CAP_EFFECTIVE, 1, &c, CAP_SET);
      if ((*mask >> c) & 1) {
        if (held != CAP_SET) {
          char* n = cap_to_name(c);
          missing += std::string(missing.empty() ? "" : ", ") + (n ? n : "?");
          cap_free(n);
        }
        for (cap_flag_t f : {CAP_PERMITTED, CAP_EFFECTIVE, CAP_INHERITABLE})
          cap_set_flag(p.final_caps, f, 1, &c, CAP_SET);
        p.ambient.push_back(c);
      } else {
        p.drop_bound.push_back(c);
      }
    }
    cap_free(mine);
    if (!p.regain || !p.final_caps)
      return make_system_error(ENOMEM, "capability sets");
    if (!missing.empty()) {
      return make_error(errc::permission_denied,
                        "capabilities not held by the executor: " + missing);
    }
  }
  return {};
}

}  // namespace container_parts

// Child side: the task's user, capabilities and no_new_privs.
bool container_strategy::take_identity(const prepared& p, const launch_plan& plan,
                                       child_failure& f) noexcept {
  if (!p.root_user && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
    return fail_step(f, "prctl PR_SET_KEEPCAPS");
  if (!child_credentials(plan, f))
    return false;
  if (!p.root_user) {
    if (cap_set_proc(p.regain) != 0)
      return fail_step(f, "cap_set_proc");
    for (cap_value_t c : p.drop_bound) {
      if (cap_drop_bound(c) != 0 && errno != EINVAL)
        return fail_step(f, "cap_drop_bound");
    }
    if (cap_set_proc(p.final_caps) != 0)
      return fail_step(f, "cap_set_proc");
    if (cap_reset_ambient() != 0)
      return fail_step(f, "cap_reset_ambient");
    for (cap_value_t c : p.ambient) {
      if (cap_set_ambient(c, CAP_SET) != 0)
        return fail_step(f, "cap_set_ambient");
    }
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return fail_step(f, "prctl PR_SET_NO_NEW_PRIVS");
  return true;
}

}  // namespace taskexec
