#include "taskexec/logging.hpp"

#include <atomic>
#include <boost/core/null_deleter.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions/keyword.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/utility/formatting_ostream.hpp>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <iostream>

namespace taskexec {
namespace logging = boost::log;

namespace {
std::atomic<int> g_threshold{static_cast<int>(log_level::info)};

std::string timestamp(std::chrono::system_clock::time_point tp) {
  auto t = std::chrono::system_clock::to_time_t(tp);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(tp.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
  return buf;
}

std::string json_quote(std::string_view s) {
  return boost::json::serialize(boost::json::value(boost::json::string(s)));
}

// The length of the valid UTF-8 sequence at s[i] (1 to 4), or 0.
std::size_t utf8_sequence(const unsigned char* s, std::size_t n, std::size_t i) {
  const unsigned char b = s[i];
  const std::size_t len = b < 0x80           ? 1
                          : (b >> 5) == 0x6  ? 2
                          : (b >> 4) == 0xe  ? 3
                          : (b >> 3) == 0x1e ? 4
                                             : 0;
  if (len == 0 || i + len > n)
    return 0;
  if (len == 1)
    return 1;
  std::uint32_t cp = b & (0x7f >> len);
  for (std::size_t k = 1; k < len; ++k) {
    if ((s[i + k] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i + k] & 0x3f);
  }
  // No overlong forms, surrogates or code points above U+10FFFF.
  const bool ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) &&
                  !(len == 4 && cp < 0x10000) && !(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff;
  return ok ? len : 0;
}

}  // namespace

std::string escape_log_text(std::string_view in) {
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  std::size_t i = 0;
  // Most lines need nothing: copy them once.
  while (i < n && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
    ++i;
  if (i == n)
    return std::string(in);
  out.reserve(n + 16);
  out.append(in.substr(0, i));
  while (i < n) {
    const unsigned char b = s[i];
    if (b == '\\') {
      out += "\\\\";
    } else if (b == '\n') {
      out += "\\n";
    } else if (b == '\r') {
      out += "\\r";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7f) {
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 0xf];
    } else if (b < 0x80) {
      out += static_cast<char>(b);
    } else {
      const std::size_t len = utf8_sequence(s, n, i);
      if (len == 0) {
        out += "\\x";
        out += hex[b >> 4];
        out += hex[b & 0xf];
      } else if (len == 2 && b == 0xc2 && s[i + 1] < 0xa0) {
        // U+0080..U+009F: C1 controls (U+009B is CSI to some terminals).
        out += "\\u00";
        out += hex[s[i + 1] >> 4];
        out += hex[s[i + 1] & 0xf];
        i += 2;
        continue;
      } else {
        out.append(in.substr(i, len));
        i += len;
        continue;
      }
    }
    ++i;
  }
  return out;
}

std::optional<std::uint64_t> log_throttle::admit(std::uint64_t key, clock::time_point now) {
  auto it = slots_.find(key);
  if (it == slots_.end()) {
    if (slots_.size() >= max_keys_)
      std::erase_if(slots_, [&](const auto& kv) { return now - kv.second.last >= period_; });
    if (slots_.size() < max_keys_)
      slots_.emplace(key, slot{now, 0});
    return 0;
  }
  if (now - it->second.last < period_) {
    ++it->second.suppressed;
    return std::nullopt;
  }
  const auto suppressed = it->second.suppressed;
  it->second = slot{now, 0};
  return suppressed;
}

std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::trace:
      return "trace";
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warning:
      return "warn";
    case log_level::error:
      return "error";
    case log_level::off:
      return "off";
  }
  return "unknown";
}

bool parse_log_level(std::string_view s, log_level& out) noexcept {
  if (s == "trace")
    out = log_level::trace;
  else if (s == "debug")
    out = log_level::debug;
  else if (s == "info")
    out = log_level::info;
  else if (s == "warn" || s == "warning")
    out = log_level::warning;
  else if (s == "error")
    out = log_level::error;
  else if (s == "off")
    out = log_level::off;
  else
    return false;
  return true;
}

bool parse_log_format(std::string_view s, log_format& out) noexcept {
  if (s == "text")
    out = log_format::text;
  else if (s == "json")
    out = log_format::json;
  else
    return false;
  return true;
}

void configure_logging(const log_options& options) {
  g_threshold = static_cast<int>(options.level);
  auto core = logging::core::get();
  core->remove_all_sinks();
  if (options.level == log_level::off) {
    core->set_logging_enabled(false);
    return;
  }
  core->set_logging_enabled(true);
  using backend_t = logging::sinks::text_ostream_backend;
  auto backend = boost::make_shared<backend_t>();
  std::ostream* os = options.stream ? options.stream : &std::clog;
  backend->add_stream(boost::shared_ptr<std::ostream>(os, boost::null_deleter()));
  backend->auto_flush(true);
  auto sink = boost::make_shared<logging::sinks::synchronous_sink<backend_t>>(backend);
  const log_format format = options.format;
  sink->set_formatter([format](const logging::record_view& rec, logging::formatting_ostream& strm) {
    auto level = logging::extract_or_default<log_level>("Severity", rec, log_level::info);
    auto ts = logging::extract_or_default<std::chrono::system_clock::time_point>(
        "TimeStamp", rec, std::chrono::system_clock::now());
    auto component = logging::extract_or_default<std::string>("Component", rec, std::string());
    auto task = logging::extract<std::string>("TaskID", rec);
    auto request = logging::extract<std::string>("RequestID", rec);
    auto msg = logging::extract_or_default<std::string>("Message", rec, std::string());
    if (format == log_format::json) {
      strm << "{\"ts\":\"" << timestamp(ts) << "\",\"level\":\"" << to_string(level)
           << "\",\"component\":" << json_quote(component);
      if (task)
        strm << ",\"task_id\":" << json_quote(*task);
      if (request)
        strm << ",\"request_id\":" << json_quote(*request);
      strm << ",\"msg\":" << json_quote(msg) << '}';
    } else {
      // One record, one line, whatever a client put in the fields.
      std::string lvl(to_string(level));
      lvl.resize(5, ' ');
      strm << timestamp(ts) << ' ' << lvl << " [" << escape_log_text(component) << ']';
      if (task)
        strm << " task=" << escape_log_text(*task);
      if (request)
        strm << " req=" << escape_log_text(*request);
      strm << ' ' << escape_log_text(msg);
    }
  });
  core->add_sink(sink);
}

namespace detail {

bool log_enabled(log_level level) noexcept {
  return level != log_level::off &&
         static_cast<int>(level) >= g_threshold.load(std::memory_order_relaxed);
}

void log(log_level level, std::string_view component, std::string_view task_id,
         std::string_view request_id, std::string_view message) {
  if (!log_enabled(level))
    return;
  namespace attrs = logging::attributes;
  logging::attribute_set set;
  set.insert("Severity", attrs::constant<log_level>(level));
  set.insert("TimeStamp", attrs::constant<std::chrono::system_clock::time_point>(
                              std::chrono::system_clock::now()));
  set.insert("Component", attrs::constant<std::string>(std::string(component)));
  set.insert("Message", attrs::constant<std::string>(std::string(message)));
  if (!task_id.empty())
    set.insert("TaskID", attrs::constant<std::string>(std::string(task_id)));
  if (!request_id.empty())
    set.insert("RequestID", attrs::constant<std::string>(std::string(request_id)));
  auto core = logging::core::get();
  logging::record rec = core->open_record(set);
  if (rec)
    core->push_record(std::move(rec));
}

}  // namespace detail
}  // namespace taskexec
