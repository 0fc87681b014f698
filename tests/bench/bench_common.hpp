// Shared by the benchmarks: a summary of measured times.
#pragma once

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <string>
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

/// One row of scripts/bench.sh's table: a figure beside its baseline,
/// measured in the same run, and its target ("" when none). Appended as
/// tab-separated fields to the file $TASKEXEC_BENCH_TABLE when it is set;
/// nothing otherwise.
inline void table_row(const std::string& figure, double value, const std::string& unit,
                      const std::string& baseline, double baseline_value,
                      const std::string& target = "") {
  const char* path = std::getenv("TASKEXEC_BENCH_TABLE");
  if (!path || !*path)
    return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\t%.6g\t%s\t%s\t%.6g\t%s\n", figure.c_str(), value, unit.c_str(),
                 baseline.c_str(), baseline_value, target.c_str());
    std::fclose(f);
  }
}

}  // namespace bench
