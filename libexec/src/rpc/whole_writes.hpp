// A completion condition for asio::async_write that lets each system call
// take as much of the buffers as the socket will.
#pragma once

#include <boost/system/error_code.hpp>
#include <cstddef>
#include <limits>

namespace taskexec::rpc {

/// asio::async_write's default condition (transfer_all) hands the kernel at
/// most 64 KiB per call, so an ExecStreaming message of 88 KiB went out in
/// two sendmsg calls, each of which could wake the peer. With this one a
/// call offers all that is left of up to 16 buffers (asio's limit per call,
/// whatever their size); the kernel still takes only what fits in the
/// socket's buffer, and async_write goes on until all is written or an
/// error ends it, as with transfer_all.
struct whole_writes {
  std::size_t operator()(const boost::system::error_code& ec, std::size_t /*written*/) const {
    return ec ? 0 : std::numeric_limits<std::size_t>::max();
  }
};

}  // namespace taskexec::rpc
