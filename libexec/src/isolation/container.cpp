#include "taskexec/isolation/container.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "process_setup.hpp"
#include "taskexec/detail/safe_open.hpp"

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
                                          const std::vector<mount_config>& mounts,
                                          std::optional<uid_t> task_uid) {
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
  const int rootfd = ::open(task_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return not_found();
  struct close_root {
    int fd;
    ~close_root() { ::close(fd); }
  } closer{rootfd};
  const uid_t uid = task_uid ? *task_uid : ::geteuid();

  // `in_root` (absolute, inside the root) resolved as the task will resolve
  // it once the root is its "/": symlinks followed inside the root, never
  // out of it. A regular file there is the task's: made executable.
  auto in_root = [&](const std::string& path) -> result<std::optional<root_binary>> {
    auto fd = detail::open_beneath(rootfd, task_dir, path, O_PATH, 0, detail::resolve::in_root);
    if (!fd)
      return std::nullopt;
    struct close_fd {
      int fd;
      ~close_fd() { ::close(fd); }
    } closer_fd{*fd};
    struct stat st {};
    if (::fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode))
      return std::nullopt;
    // Where it is on the host, symlinks resolved (the descriptor knows).
    std::error_code ec;
    auto on_host = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(*fd), ec);
    const std::string host = ec ? join(task_dir, path) : on_host.string();
    if (auto made = make_task_file_executable(*fd, host, uid); !made) {
      auto e = made.error();
      e.message = "file " + std::string(cmd) + ": " + e.message;
      return e;
    }
    return root_binary{path, host};
  };

  for (const char* base : {"/local", ""}) {
    auto found = in_root(join(base, rel));
    if (!found)
      return found.error();
    if (*found)
      return std::move(**found);
  }
  // A mount's files are the host's: found only when executable, never changed.
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
      auto found = in_root(join(dir, rel));
      if (!found)
        return found.error();
      if (*found)
        return std::move(**found);
    }
  }
  return not_found();
}

}  // namespace taskexec
