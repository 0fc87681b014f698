// The version of the executor API, reported by `Version` (Nomad's executor
// reports "2.0.0" for its current protocol; we speak the same revision).
#pragma once

#include <string_view>

namespace taskexec {
inline constexpr std::string_view executor_version = "2.0.0";
/// The library's own version (the package's, libtaskexec.so's); the
/// build reads it from here. Independent of executor_version.
inline constexpr std::string_view library_version = "1.0.0";
}  // namespace taskexec
