// Built against an installed taskexec by tests/install/check_install.cmake.
#include <taskexec/error.hpp>
#include <taskexec/signals.hpp>
#include <taskexec/version.hpp>

#include <iostream>

int main() {
  auto sig = taskexec::signal_from_name("SIGTERM");
  std::cout << "taskexec " << taskexec::executor_version << " SIGTERM=" << sig.value_or(-1) << '\n';
  return sig == 15 ? 0 : 1;
}
