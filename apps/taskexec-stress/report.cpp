#include "report.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace stress {

int latency_recorder::bucket_of(std::uint64_t ns) noexcept {
  if (ns < sub_buckets)
    return static_cast<int>(ns);
  int e = 63 - std::countl_zero(ns);                // >= sub_bits
  auto m = static_cast<int>(ns >> (e - sub_bits));  // in [64, 128)
  return (e - sub_bits + 1) * sub_buckets + (m - sub_buckets);
}

std::uint64_t latency_recorder::bucket_upper(int bucket) noexcept {
  if (bucket < sub_buckets)
    return static_cast<std::uint64_t>(bucket);
  int g = bucket / sub_buckets;
  auto m = static_cast<std::uint64_t>(bucket % sub_buckets) + sub_buckets;
  int shift = g - 1;
  // The top bucket's end is UINT64_MAX; computing it would overflow.
  if (shift >= 64 - sub_bits - 1 && m == 2 * sub_buckets - 1)
    return UINT64_MAX;
  return ((m + 1) << shift) - 1;
}

void latency_recorder::record(std::uint64_t ns) noexcept {
  ++counts_[static_cast<std::size_t>(bucket_of(ns))];
  ++count_;
  min_ = std::min(min_, ns);
  max_ = std::max(max_, ns);
  sum_ += static_cast<long double>(ns);
}

void latency_recorder::merge(const latency_recorder& o) noexcept {
  for (std::size_t i = 0; i < counts_.size(); ++i)
    counts_[i] += o.counts_[i];
  count_ += o.count_;
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
  sum_ += o.sum_;
}

double latency_recorder::mean() const noexcept {
  return count_ ? static_cast<double>(sum_ / static_cast<long double>(count_)) : 0.0;
}

std::uint64_t latency_recorder::quantile(double q) const noexcept {
  if (count_ == 0)
    return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the q-th value, 1-based: ceil(q * count), at least 1.
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (int b = 0; b < bucket_count; ++b) {
    seen += counts_[static_cast<std::size_t>(b)];
    if (seen >= rank)
      return std::clamp(bucket_upper(b), min_, max_);
  }
  return max_;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> latency_recorder::bins() const {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  if (count_ == 0)
    return out;
  // Bin upper bounds 1, 2, 5, 10, 20, 50, ... ns; the first bin is the one
  // holding min, the last the one holding max.
  std::vector<std::uint64_t> bounds;
  for (std::uint64_t decade = 1; decade <= UINT64_MAX / 10; decade *= 10)
    for (std::uint64_t step : {1, 2, 5})
      bounds.push_back(decade * step);
  bounds.push_back(UINT64_MAX);
  auto bin_of = [&](std::uint64_t v) {
    return static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) -
                                    bounds.begin());
  };
  std::size_t first = bin_of(min_), last = bin_of(max_);
  for (std::size_t i = first; i <= last; ++i)
    out.emplace_back(bounds[i], 0);
  for (int b = 0; b < bucket_count; ++b) {
    auto c = counts_[static_cast<std::size_t>(b)];
    if (c == 0)
      continue;
    // By the bucket's lower end: a bucket straddling a bin boundary goes to
    // the bin its smallest values belong to.
    auto lower = b == 0 ? 0 : bucket_upper(b - 1) + 1;
    auto v = std::clamp(lower, min_, max_);
    out[bin_of(v) - first].second += c;
  }
  return out;
}

latency_recorder& scenario_report::latency(const std::string& n) {
  for (auto& [name_, rec] : latencies)
    if (name_ == n)
      return rec;
  return latencies.emplace_back(n, latency_recorder{}).second;
}

void scenario_report::add_check(std::string n, bool passed, std::string detail) {
  checks.push_back({std::move(n), passed, std::move(detail)});
}

void scenario_report::compare(std::string figure, double value, std::string unit,
                              std::string baseline, double baseline_value, std::string target,
                              bool target_met) {
  comparisons.push_back({std::move(figure), value, std::move(unit), std::move(baseline),
                         baseline_value, std::move(target), target_met});
}

bool scenario_report::ok() const noexcept {
  return std::all_of(checks.begin(), checks.end(), [](const check& c) { return c.ok; });
}

std::string format_duration(std::uint64_t ns) {
  char buf[32];
  auto v = static_cast<double>(ns);
  if (ns < 1000)
    std::snprintf(buf, sizeof buf, "%llu ns", static_cast<unsigned long long>(ns));
  else if (ns < 1'000'000)
    std::snprintf(buf, sizeof buf, "%.1f us", v / 1e3);
  else if (ns < 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.2f ms", v / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2f s", v / 1e9);
  return buf;
}

namespace {

std::string format_value(double v) {
  char buf[48];
  if (v != 0 && std::fabs(v) < 10)
    std::snprintf(buf, sizeof buf, "%.3g", v);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

std::string render_text(const scenario_report& r) {
  std::ostringstream o;
  o << "== " << r.name << ": " << r.summary << "\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "   took %.2f s\n", r.seconds);
  o << buf;
  for (auto& l : r.lines)
    o << "   " << l << "\n";
  if (!r.latencies.empty()) {
    std::snprintf(buf, sizeof buf, "   %-22s %8s %10s %10s %10s %10s %10s\n", "latency", "count",
                  "p50", "p90", "p99", "p99.9", "max");
    o << buf;
    for (auto& [n, l] : r.latencies) {
      if (l.count() == 0)
        continue;
      std::snprintf(
          buf, sizeof buf, "   %-22s %8llu %10s %10s %10s %10s %10s\n", n.c_str(),
          static_cast<unsigned long long>(l.count()), format_duration(l.quantile(0.5)).c_str(),
          format_duration(l.quantile(0.9)).c_str(), format_duration(l.quantile(0.99)).c_str(),
          format_duration(l.quantile(0.999)).c_str(), format_duration(l.max()).c_str());
      o << buf;
    }
  }
  for (auto& [n, l] : r.latencies) {
    if (n != r.histogram_of || l.count() == 0)
      continue;
    o << "   histogram of " << n << ":\n";
    auto bins = l.bins();
    std::uint64_t top = 0;
    for (auto& b : bins)
      top = std::max(top, b.second);
    std::uint64_t lower = 0;
    for (auto& [upper, c] : bins) {
      auto bar = static_cast<std::size_t>(top ? (c * 40 + top - 1) / top : 0);
      std::string label = "<= " + format_duration(upper);
      if (upper == UINT64_MAX)
        label = "> " + format_duration(lower);
      std::snprintf(buf, sizeof buf, "     %-12s %-40s %llu\n", label.c_str(),
                    std::string(bar, '#').c_str(), static_cast<unsigned long long>(c));
      o << buf;
      lower = upper;
    }
  }
  for (auto& c : r.comparisons) {
    std::string line = "   " + c.figure + ": " + format_value(c.value) + " " + c.unit;
    if (!c.baseline.empty()) {
      line += "; " + c.baseline + ": " + format_value(c.baseline_value) + " " + c.unit;
      if (c.baseline_value != 0) {
        std::snprintf(buf, sizeof buf, " (ratio %.2fx)", c.value / c.baseline_value);
        line += buf;
      }
    }
    if (!c.target.empty())
      line += std::string("; target ") + c.target + ": " + (c.target_met ? "met" : "NOT met");
    o << line << "\n";
  }
  for (auto& c : r.checks)
    o << "   [" << (c.ok ? " ok " : "FAIL") << "] " << c.name
      << (c.detail.empty() ? "" : ": " + c.detail) << "\n";
  o << "   result: " << (r.ok() ? "PASS" : "FAIL") << "\n";
  return o.str();
}

boost::json::object latency_json(const latency_recorder& l) {
  return {{"count", l.count()},           {"min_ns", l.min()},         {"mean_ns", l.mean()},
          {"p50_ns", l.quantile(0.5)},    {"p90_ns", l.quantile(0.9)}, {"p99_ns", l.quantile(0.99)},
          {"p999_ns", l.quantile(0.999)}, {"max_ns", l.max()}};
}

boost::json::object render_json(const scenario_report& r) {
  boost::json::object lat;
  for (auto& [n, l] : r.latencies)
    lat[n] = latency_json(l);
  boost::json::array check_list, comps;
  for (auto& c : r.checks)
    check_list.push_back(boost::json::object{{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
  for (auto& c : r.comparisons) {
    boost::json::object o{{"figure", c.figure}, {"value", c.value}, {"unit", c.unit}};
    if (!c.baseline.empty()) {
      o["baseline"] = c.baseline;
      o["baseline_value"] = c.baseline_value;
      if (c.baseline_value != 0)
        o["ratio"] = c.value / c.baseline_value;
    }
    if (!c.target.empty()) {
      o["target"] = c.target;
      o["target_met"] = c.target_met;
    }
    comps.push_back(std::move(o));
  }
  return {{"scenario", r.name},   {"summary", r.summary}, {"ok", r.ok()},
          {"seconds", r.seconds}, {"params", r.params},   {"figures", r.figures},
          {"latency", lat},       {"comparisons", comps}, {"checks", check_list}};
}

}  // namespace stress
