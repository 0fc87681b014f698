// Shared by bench_container and bench_peers: a runc bundle over a root.
#pragma once

#include <boost/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

/// A runc bundle whose rootfs is `root`: runc's default spec, no terminal,
/// `args` as the process, and the network and cgroup namespaces removed (so
/// it makes the namespaces taskexec's container isolation makes). Call
/// before the process has a child_reaper (it waits for `runc spec`).
inline bool make_runc_bundle(const std::filesystem::path& bundle, const std::filesystem::path& root,
                             const std::vector<std::string>& args) {
  namespace json = boost::json;
  std::filesystem::create_directories(bundle);
  const std::string spec_cmd = "runc spec --bundle '" + bundle.string() + "' >/dev/null 2>&1";
  if (std::system(spec_cmd.c_str()) != 0)
    return false;
  std::stringstream ss;
  ss << std::ifstream(bundle / "config.json").rdbuf();
  auto spec = json::parse(ss.str());
  auto& process = spec.at("process").as_object();
  process["terminal"] = false;
  json::array argv;
  for (auto& a : args)
    argv.emplace_back(a);
  process["args"] = argv;
  spec.at("root").as_object()["path"] = root.string();
  auto& ns = spec.at("linux").at("namespaces").as_array();
  json::array kept;
  for (const auto& n : ns) {
    const auto type = n.at("type").as_string();
    if (type != "network" && type != "cgroup")
      kept.push_back(n);
  }
  ns = kept;
  std::ofstream(bundle / "config.json") << json::serialize(spec);
  return true;
}

}  // namespace bench
