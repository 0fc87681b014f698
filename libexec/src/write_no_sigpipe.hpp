// Internal: write(2) without SIGPIPE, shared by the exec sessions' stdin
// writers (the embedded session and the client's passed descriptors).
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace taskexec::detail {

/// write(2) that fails with EPIPE, not a SIGPIPE, when the reader is gone:
/// the signal is blocked in this thread around the write and a SIGPIPE it
/// raised is taken back (unless one was already pending). errno as write's.
ssize_t write_no_sigpipe(int fd, const char* data, std::size_t n);

}  // namespace taskexec::detail
