// Shared by the benchmarks: a summary of measured times.
#pragma once

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <numeric>
#include <vector>

namespace bench {

struct summary {
  double mean, p50, p90, p99, max;
};

/// Mean, percentiles and maximum of `v` (not empty).
inline summary summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
  };
  return {std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()), at(0.5),
          at(0.9), at(0.99), v.back()};
}

/// Run the coroutine that `make()` returns on `io` until it completes; an
/// exception it throws comes out of here.
template <class Make>
void run_to_end(boost::asio::io_context& io, Make make) {
  bool done = false;
  boost::asio::co_spawn(io, make(), [&](std::exception_ptr e) {
    if (e)
      std::rethrow_exception(e);
    done = true;
  });
  io.restart();
  while (!done)
    io.run_one();
}

}  // namespace bench
