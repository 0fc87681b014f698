// Shared by the container tests and bench_container: a task root built from
// host binaries and the libraries they load.
#pragma once

#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>

namespace test_support {

/// Everything `command` writes to stdout (popen).
inline std::string capture(const std::string& command) {
  std::string out;
  if (FILE* f = ::popen(command.c_str(), "r")) {
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
      out.append(buf, n);
    ::pclose(f);
  }
  return out;
}

/// Copy the host binary `host` into `root` at the same path, with every
/// library ldd names (and the dynamic loader), each at its own path.
inline void install_binary(const std::filesystem::path& root, const std::string& host) {
  namespace fs = std::filesystem;
  auto copy_one = [&](const std::string& from) {
    auto to = root / fs::path(from).relative_path();
    fs::create_directories(to.parent_path());
    fs::copy_file(fs::canonical(from), to, fs::copy_options::overwrite_existing);
    fs::permissions(to, fs::status(fs::canonical(from)).permissions());
  };
  copy_one(host);
  static const std::regex lib(R"((/[^ \t\n]+))");
  const auto deps = capture("ldd " + host + " 2>/dev/null");
  for (std::sregex_iterator it(deps.begin(), deps.end(), lib), end; it != end; ++it)
    copy_one((*it)[1]);
}

}  // namespace test_support
