#include "taskexec/signals.hpp"

#include <csignal>
#include <cstring>

#include <array>
#include <charconv>
#include <utility>

namespace taskexec {
namespace {

struct named_signal {
  std::string_view name;  // without the SIG prefix
  int number;
};

constexpr std::array<named_signal, 31> k_signals{{
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"SYS", SIGSYS},
}};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z')
      x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z')
      y = static_cast<char>(y - 'a' + 'A');
    if (x != y)
      return false;
  }
  return true;
}

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size())
    return std::nullopt;
  return v;
}

}  // namespace

std::optional<int> signal_from_name(std::string_view name) {
  if (name.size() > 3 && iequals(name.substr(0, 3), "SIG"))
    name.remove_prefix(3);
  if (name.empty())
    return std::nullopt;
  for (const auto& s : k_signals) {
    if (iequals(name, s.name))
      return s.number;
  }
  // RTMIN, RTMIN+n, RTMAX, RTMAX-n
  for (auto [base, sign] :
       {std::pair{std::string_view("RTMIN"), 1}, std::pair{std::string_view("RTMAX"), -1}}) {
    if (name.size() < base.size() || !iequals(name.substr(0, base.size()), base))
      continue;
    std::string_view rest = name.substr(base.size());
    int off = 0;
    if (!rest.empty()) {
      if (rest[0] != (sign > 0 ? '+' : '-'))
        return std::nullopt;
      auto v = parse_int(rest.substr(1));
      if (!v || *v < 0)
        return std::nullopt;
      off = *v;
    }
    int signo = (sign > 0 ? SIGRTMIN : SIGRTMAX) + sign * off;
    if (signo < SIGRTMIN || signo > SIGRTMAX)
      return std::nullopt;
    return signo;
  }
  return std::nullopt;
}

std::string signal_name(int signo) {
  if (signo == SIGIOT)
    return "SIGABRT";  // SIGIOT is an alias; prefer the common name
  for (const auto& s : k_signals) {
    if (s.number == signo)
      return "SIG" + std::string(s.name);
  }
  if (signo >= SIGRTMIN && signo <= SIGRTMAX) {
    return signo == SIGRTMIN ? "SIGRTMIN" : "SIGRTMIN+" + std::to_string(signo - SIGRTMIN);
  }
  return "signal " + std::to_string(signo);
}

bool valid_signal_number(int signo, bool allow_zero) noexcept {
  if (signo == 0)
    return allow_zero;
  return signo > 0 && signo <= SIGRTMAX;
}

}  // namespace taskexec
