// The figures of a stress run: latency recorders with bounded memory, the
// terminal report (percentiles and a small histogram) and the JSON one.
//
// No I/O but the printing; no Asio. Unit-tested in tests/unit/stress_report_test.cpp.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace stress {

/// Latencies in nanoseconds in log-linear buckets: 64 per power of two, so
/// a percentile is within 1/64 (1.6%) of the true value, in 32 KiB whatever
/// the count. min, max and mean are exact.
class latency_recorder {
 public:
  static constexpr int sub_bits = 6;
  static constexpr int sub_buckets = 1 << sub_bits;
  static constexpr int bucket_count = (64 - sub_bits + 1) * sub_buckets;

  void record(std::uint64_t ns) noexcept;
  void merge(const latency_recorder& other) noexcept;

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept;
  /// The value at quantile q in [0, 1]: the upper end of its bucket, capped
  /// at max() (0 when empty). q = 0.5 is the median.
  std::uint64_t quantile(double q) const noexcept;

  /// Counts per power-of-ten-spaced bin (1-2-5 steps) from the bin holding
  /// min() to the one holding max(): {upper bound ns, count}.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> bins() const;

  static int bucket_of(std::uint64_t ns) noexcept;
  static std::uint64_t bucket_upper(int bucket) noexcept;

 private:
  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t count_ = 0, min_ = UINT64_MAX, max_ = 0;
  long double sum_ = 0;
};

/// One check of a scenario: it passes or it fails the run.
struct check {
  std::string name;
  bool ok = false;
  std::string detail;
};

/// A figure beside its baseline (measured in the same run) and its target.
struct comparison {
  std::string figure;
  double value = 0;
  std::string unit;
  std::string baseline;  ///< what the baseline is; empty: none
  double baseline_value = 0;
  std::string target;  ///< e.g. ">= 300"; empty: none
  bool target_met = true;
};

/// Everything one scenario reports.
struct scenario_report {
  std::string name;
  std::string summary;  ///< one line: what ran
  boost::json::object params;
  boost::json::object figures;     ///< every number, for --json
  std::vector<std::string> lines;  ///< free-form lines of the terminal report
  std::deque<std::pair<std::string, latency_recorder>>
      latencies;             ///< in report order (references stay valid)
  std::string histogram_of;  ///< which latency gets a histogram
  std::vector<comparison> comparisons;
  std::vector<check> checks;
  double seconds = 0;

  latency_recorder& latency(const std::string& name);
  void add_check(std::string name, bool ok, std::string detail = {});
  void compare(std::string figure, double value, std::string unit, std::string baseline,
               double baseline_value, std::string target = {}, bool target_met = true);
  bool ok() const noexcept;
};

/// "1.23 ms", "456 us", "2.50 s" for nanoseconds.
std::string format_duration(std::uint64_t ns);
/// The terminal report of one scenario.
std::string render_text(const scenario_report& r);
/// {count, min_ns, mean_ns, p50_ns, p90_ns, p99_ns, p999_ns, max_ns}
boost::json::object latency_json(const latency_recorder& l);
/// The whole report as JSON (every figure, check and latency).
boost::json::object render_json(const scenario_report& r);

}  // namespace stress
