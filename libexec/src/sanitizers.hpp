// Which sanitizer this translation unit is built with, for the code that
// clones a child onto a stack of its own (spawn.cpp, rpc/daemon_launch.cpp):
// TASKEXEC_ASAN (and the ASan interface, to unpoison a reused stack) or
// TASKEXEC_TSAN (the child then gets a copy of our memory, not a share).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TASKEXEC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define TASKEXEC_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TASKEXEC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TASKEXEC_TSAN 1
#endif
#endif
