#include "taskexec/validation.hpp"

#include <string>

namespace taskexec {
namespace {

result<void> invalid(std::string msg) {
  return make_error(errc::invalid_argument, std::move(msg));
}

bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

result<void> check_text(std::string_view field, std::string_view value) {
  if (has_nul(value))
    return invalid(std::string(field) + " contains a NUL byte");
  return {};
}

bool one_of(std::string_view v, std::initializer_list<std::string_view> allowed) {
  for (auto a : allowed) {
    if (v == a)
      return true;
  }
  return false;
}

}  // namespace

result<void> validate_command(const exec_command& cmd, isolation_features supported,
                              std::string_view isolation_name) {
  if (cmd.cmd.empty())
    return invalid("cmd is empty");
  for (auto [field, value] : {std::pair<std::string_view, const std::string*>{"cmd", &cmd.cmd},
                              {"user", &cmd.user},
                              {"task_dir", &cmd.task_dir},
                              {"work_dir", &cmd.work_dir},
                              {"stdout_path", &cmd.stdout_path},
                              {"stderr_path", &cmd.stderr_path},
                              {"resources.cpuset_cpus", &cmd.resources.cpuset_cpus}}) {
    if (auto r = check_text(field, *value); !r)
      return r;
  }
  for (std::size_t i = 0; i < cmd.args.size(); ++i) {
    if (has_nul(cmd.args[i]))
      return invalid("args[" + std::to_string(i) + "] contains a NUL byte");
  }
  for (std::size_t i = 0; i < cmd.env.size(); ++i) {
    const auto& e = cmd.env[i];
    auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalid("env[" + std::to_string(i) + "] \"" + e + "\" is not of the form KEY=VALUE");
    }
    if (has_nul(e))
      return invalid("env[" + std::to_string(i) + "] contains a NUL byte");
  }
  if (cmd.oom_score_adj < -1000 || cmd.oom_score_adj > 1000) {
    return invalid("oom_score_adj " + std::to_string(cmd.oom_score_adj) +
                   " is outside -1000..1000");
  }
  const auto& r = cmd.resources;
  for (auto [field, v] :
       {std::pair<std::string_view, std::int64_t>{"resources.cpu_shares", r.cpu_shares},
        {"resources.cpu_quota_us", r.cpu_quota_us},
        {"resources.cpu_period_us", r.cpu_period_us},
        {"resources.memory_mb", r.memory_mb},
        {"resources.pids_max", r.pids_max}}) {
    if (v < 0)
      return invalid(std::string(field) + " is negative");
  }
  if (r.memory_max_mb < -1)
    return invalid("resources.memory_max_mb must be -1, 0 or positive");
  if (!one_of(cmd.default_pid_mode, {"", "private", "host"})) {
    return invalid("default_pid_mode \"" + cmd.default_pid_mode +
                   "\" is not \"private\" or \"host\"");
  }
  if (!one_of(cmd.default_ipc_mode, {"", "private", "host"})) {
    return invalid("default_ipc_mode \"" + cmd.default_ipc_mode +
                   "\" is not \"private\" or \"host\"");
  }
  for (std::size_t i = 0; i < cmd.mounts.size(); ++i) {
    const auto& m = cmd.mounts[i];
    const std::string at = "mounts[" + std::to_string(i) + "]";
    if (m.task_path.empty() || m.host_path.empty())
      return invalid(at + " needs task_path and host_path");
    if (!one_of(m.propagation_mode, {"", "private", "host-to-task", "bidirectional"})) {
      return invalid(at + ".propagation_mode \"" + m.propagation_mode + "\" is unknown");
    }
  }
  for (std::size_t i = 0; i < cmd.devices.size(); ++i) {
    const auto& d = cmd.devices[i];
    const std::string at = "devices[" + std::to_string(i) + "]";
    if (d.host_path.empty())
      return invalid(at + " needs host_path");
    if (d.cgroup_permissions.find_first_not_of("rwm") != std::string::npos) {
      return invalid(at + ".cgroup_permissions \"" + d.cgroup_permissions +
                     "\" may only hold r, w, m");
    }
  }

  // Fields the stack must honour: never silently ignored.
  auto unsupported = [&](std::string_view field) -> result<void> {
    return make_error(errc::unsupported, std::string(field) + " is not supported by isolation \"" +
                                             std::string(isolation_name) + "\"");
  };
  auto need = [&](isolation_feature f) { return (supported & static_cast<unsigned>(f)) != 0; };
  if (cmd.resource_limits && !need(isolation_feature::resource_limits))
    return unsupported("resource_limits");
  if (!cmd.resource_limits && !need(isolation_feature::resource_limits) && r != task_resources{}) {
    return unsupported("resources");
  }
  if (cmd.basic_process_cgroup && !need(isolation_feature::basic_process_cgroup)) {
    return unsupported("basic_process_cgroup");
  }
  if (!cmd.mounts.empty() && !need(isolation_feature::mounts))
    return unsupported("mounts");
  if (!cmd.devices.empty() && !need(isolation_feature::devices))
    return unsupported("devices");
  if (cmd.network_isolation && !cmd.network_isolation->path.empty() &&
      !need(isolation_feature::network_isolation)) {
    return unsupported("network_isolation");
  }
  if (cmd.default_pid_mode == "private" && !need(isolation_feature::private_pid)) {
    return unsupported("default_pid_mode \"private\"");
  }
  if (cmd.default_ipc_mode == "private" && !need(isolation_feature::private_ipc)) {
    return unsupported("default_ipc_mode \"private\"");
  }
  if (!cmd.capabilities.empty() && !need(isolation_feature::capabilities))
    return unsupported("capabilities");
  if (cmd.no_pivot_root && !need(isolation_feature::no_pivot_root))
    return unsupported("no_pivot_root");
  return {};
}

}  // namespace taskexec
