// Signal names and numbers as the API accepts them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace taskexec {

/// "SIGTERM", "TERM", "sigterm" and "SIGRTMIN+3" all resolve; numbers do not
/// (use the numeric API for those). nullopt when the name is unknown.
std::optional<int> signal_from_name(std::string_view name);

/// "SIGTERM" for 15, "SIGRTMIN+3" for real-time signals, "signal N" otherwise.
std::string signal_name(int signo);

/// True for 1..SIGRTMAX, and for 0 (an existence check) when `allow_zero`.
bool valid_signal_number(int signo, bool allow_zero = true) noexcept;

}  // namespace taskexec
