// A container task's root for the privileged tests: bin -> usr/bin (as on
// the host), a few programs with their libraries, and /etc holding one file.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <initializer_list>
#include <string>

#include "harness.hpp"
#include "rootfs.hpp"

namespace test_support {

struct rootfs {
  temp_dir dir;
  explicit rootfs(std::initializer_list<const char*> extra = {}) {
    namespace fs = std::filesystem;
    for (const char* b : {"sh", "ls", "cat", "hostname", "readlink", "sleep", "mknod", "grep"})
      install_binary(dir.path, "/usr/bin/" + std::string(b));
    for (const char* b : extra)
      install_binary(dir.path, "/usr/bin/" + std::string(b));
    fs::create_directory_symlink("usr/bin", dir.path / "bin");
    fs::create_directories(dir.path / "etc");
    write_file(dir / "etc/motd", "hello\n");
    fs::permissions(dir.path, fs::perms(0755));  // mkdtemp made it 0700
  }
  std::string str() const { return std::filesystem::canonical(dir.path).string(); }
};

inline taskexec::exec_command in_container(const rootfs& root, const std::string& script) {
  auto cmd = sh(script);
  cmd.isolation = "container";
  cmd.task_dir = root.str();
  return cmd;
}

}  // namespace test_support
