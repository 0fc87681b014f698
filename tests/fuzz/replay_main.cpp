// Replays files through a fuzz target without libFuzzer: every argument is
// a file or a directory of files (the seed corpus, the regressions). Exits
// 0 when all ran (a failing property aborts), 1 when an argument is missing
// or a directory is empty, so a moved corpus cannot pass by running nothing.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
bool run_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    return false;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::size_t ran = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    std::vector<fs::path> files;
    if (fs::is_directory(arg, ec)) {
      for (const auto& e : fs::directory_iterator(arg, ec))
        if (e.is_regular_file())
          files.push_back(e.path());
    } else if (fs::is_regular_file(arg, ec)) {
      files.push_back(arg);
    }
    if (files.empty()) {
      std::fprintf(stderr, "replay: %s: no input files\n", argv[i]);
      return 1;
    }
    for (const auto& f : files) {
      if (!run_file(f)) {
        std::fprintf(stderr, "replay: cannot read %s\n", f.c_str());
        return 1;
      }
      ++ran;
    }
  }
  std::printf("replay: %zu inputs ran, every property held\n", ran);
  return ran > 0 ? 0 : 1;
}
