// Internal: a stack for a child cloned with CLONE_VM (it runs in our
// address space until it has exec'd or exited, so it needs a stack of its
// own), shared by spawn.cpp and rpc/daemon_launch.cpp.
#pragma once

#include <sys/mman.h>

#include <cstddef>

#include "sanitizers.hpp"

namespace taskexec::detail {

// 128 KiB above a guard page. spawn.cpp keeps one per thread and reuses it
// (a launch blocks the thread until the child has exec'd or exited, so
// launches on a thread never overlap); unpoison() before each reuse.
class child_stack {
 public:
  static constexpr std::size_t size = 128 * 1024;
  child_stack() {
    void* p = ::mmap(nullptr, size + guard, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
      return;
    ::mprotect(p, guard, PROT_NONE);  // stacks grow down: the guard is at the bottom
    base_ = static_cast<char*>(p);
  }
  ~child_stack() {
    if (base_)
      ::munmap(base_, size + guard);
  }
  child_stack(const child_stack&) = delete;
  child_stack& operator=(const child_stack&) = delete;
  void* top() const noexcept { return base_ ? base_ + guard + size : nullptr; }
  /// Under AddressSanitizer: the last child left its frames poisoned in the
  /// (shared) shadow memory when it exec'd or exited; clear them for reuse.
  void unpoison() noexcept {
#ifdef TASKEXEC_ASAN
    if (base_)
      __asan_unpoison_memory_region(base_ + guard, size);
#endif
  }

 private:
  static constexpr std::size_t guard = 4096;
  char* base_ = nullptr;
};

}  // namespace taskexec::detail
