#include "taskexec/isolation/launch_plan.hpp"

#include <unistd.h>

namespace taskexec {

void launch_plan::seal() {
  argv.clear();
  argv.reserve(argv_storage.size() + 1);
  for (auto& a : argv_storage)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  envp.clear();
  envp.reserve(env_storage.size() + 1);
  for (auto& e : env_storage)
    envp.push_back(e.data());
  envp.push_back(nullptr);
}

void launch_plan::close_fds() noexcept {
  for (int* fd : {&stdin_fd, &stdout_fd, &stderr_fd}) {
    if (*fd >= 0)
      ::close(*fd);
    *fd = -1;
  }
}

}  // namespace taskexec
