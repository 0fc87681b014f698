#include "taskexec/isolation/container.hpp"

#include <sys/stat.h>
#include <unistd.h>

namespace taskexec {

namespace {

bool executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// "a" + "/b" without doubled or missing slashes.
std::string join(std::string_view a, std::string_view b) {
  std::string out(a);
  while (!out.empty() && out.back() == '/')
    out.pop_back();
  if (b.empty() || b.front() != '/')
    out += '/';
  out += b;
  return out;
}

}  // namespace

result<root_binary> lookup_binary_in_root(std::string_view cmd, const std::string& task_dir,
                                          const std::vector<mount_config>& mounts) {
  auto not_found = [&] {
    return make_error(errc::binary_not_found,
                      "file " + std::string(cmd) + " not found under path " + task_dir);
  };
  if (cmd.empty() || task_dir.empty())
    return not_found();
  // A name must not climb out of the root.
  if (cmd.find("..") != std::string_view::npos)
    return not_found();
  const bool bare = cmd.find('/') == std::string_view::npos;
  const std::string rel = cmd.front() == '/' ? std::string(cmd) : "/" + std::string(cmd);

  for (const char* base : {"/local", ""}) {
    auto host = join(join(task_dir, base), rel);
    if (executable_file(host))
      return root_binary{join(base, rel), host};
  }
  for (const auto& m : mounts) {
    if (m.task_path.empty() || m.host_path.empty())
      continue;
    std::string prefix = m.task_path;
    while (prefix.size() > 1 && prefix.back() == '/')
      prefix.pop_back();
    if (rel.rfind(prefix + "/", 0) != 0)
      continue;
    auto host = join(m.host_path, rel.substr(prefix.size()));
    if (executable_file(host))
      return root_binary{rel, host};
  }
  if (bare) {
    for (const char* dir : {"/usr/local/bin", "/usr/bin", "/bin"}) {
      auto host = join(join(task_dir, dir), rel);
      if (executable_file(host))
        return root_binary{join(dir, rel), host};
    }
  }
  return not_found();
}

}  // namespace taskexec
