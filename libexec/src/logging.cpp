#include "taskexec/logging.hpp"

#include <unistd.h>

#include <atomic>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <ostream>

namespace taskexec {

namespace {
// The installed logger. The threshold is copied out so a filtered record
// costs one relaxed load; the logger itself is swapped under the mutex and
// shared, so a sink being called keeps its logger alive.
std::atomic<int> g_threshold{static_cast<int>(log_level::warning)};
std::mutex g_logger_mutex;
std::shared_ptr<const logger>& installed() {
  // Never destroyed: a thread may log while the program exits.
  static auto* l = new std::shared_ptr<const logger>(std::make_shared<const logger>());
  return *l;
}

// The default sink: a line on stderr, in one write(2) so concurrent lines
// do not interleave.
void stderr_sink(const log_record& r) {
  std::string line = format_log_line(r, log_format::text);
  line += '\n';
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

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
  else if (s == "journald")
    out = log_format::journald;
  else
    return false;
  return true;
}

std::string format_log_line(const log_record& r, log_format format) {
  std::string out;
  if (format == log_format::json) {
    out.reserve(96 + r.message.size());
    out += "{\"ts\":\"";
    out += timestamp(r.time);
    out += "\",\"level\":\"";
    out += to_string(r.level);
    out += "\",\"component\":";
    out += json_quote(r.component);
    if (!r.task_id.empty()) {
      out += ",\"task_id\":";
      out += json_quote(r.task_id);
    }
    if (!r.request_id.empty()) {
      out += ",\"request_id\":";
      out += json_quote(r.request_id);
    }
    for (const auto& f : r.fields) {
      out += ',';
      out += json_quote(f.key);
      out += ':';
      out += f.number ? std::string(f.value) : json_quote(f.value);
    }
    out += ",\"msg\":";
    out += json_quote(r.message);
    out += '}';
    return out;
  }
  // One record, one line, whatever a client put in the fields.
  out.reserve(64 + r.message.size());
  if (format == log_format::journald) {
    out += '<';
    out += static_cast<char>('0' + syslog_priority(r.level));
    out += "> [";
  } else {
    std::string lvl(to_string(r.level));
    lvl.resize(5, ' ');
    out += timestamp(r.time);
    out += ' ';
    out += lvl;
    out += " [";
  }
  out += escape_log_text(r.component);
  out += ']';
  if (!r.task_id.empty()) {
    out += " task=";
    out += escape_log_text(r.task_id);
  }
  if (!r.request_id.empty()) {
    out += " req=";
    out += escape_log_text(r.request_id);
  }
  out += ' ';
  out += escape_log_text(r.message);
  for (const auto& f : r.fields) {
    out += ' ';
    out += escape_log_text(f.key);
    out += '=';
    if (f.value.find_first_of(" \"=") == std::string_view::npos && !f.value.empty()) {
      out += escape_log_text(f.value);
    } else {
      std::string v = escape_log_text(f.value);
      out += '"';
      for (const char c : v) {
        if (c == '"')
          out += '\\';
        out += c;
      }
      out += '"';
    }
  }
  return out;
}

int syslog_priority(log_level l) noexcept {
  switch (l) {
    case log_level::error:
      return 3;
    case log_level::warning:
      return 4;
    case log_level::info:
      return 6;
    default:
      return 7;
  }
}

logger::sink_type stream_sink(std::ostream& os, log_format format) {
  auto mutex = std::make_shared<std::mutex>();
  return [&os, format, mutex](const log_record& r) {
    std::string line = format_log_line(r, format);
    line += '\n';
    std::lock_guard lock(*mutex);
    os << line;
    os.flush();
  };
}

void set_logger(logger l) {
  auto next = std::make_shared<const logger>(std::move(l));
  std::lock_guard lock(g_logger_mutex);
  g_threshold.store(static_cast<int>(next->level), std::memory_order_relaxed);
  installed().swap(next);
  // The old logger is released here, or by the last record still using it.
}

namespace detail {

bool log_enabled(log_level level) noexcept {
  return level != log_level::off &&
         static_cast<int>(level) >= g_threshold.load(std::memory_order_relaxed);
}

log_fields& log_fields::add(std::string_view key, std::string_view value) {
  owned_.push_back(owned{std::string(key), std::string(value), false});
  return *this;
}

log_fields& log_fields::add(std::string_view key, std::int64_t value) {
  owned_.push_back(owned{std::string(key), std::to_string(value), true});
  return *this;
}

log_fields& log_fields::add(std::string_view key, bool value) {
  owned_.push_back(owned{std::string(key), value ? "true" : "false", true});
  return *this;
}

std::span<const log_field> log_fields::view() {
  view_.clear();
  for (const auto& o : owned_)
    view_.push_back(log_field{o.key, o.value, o.number});
  return view_;
}

void log(log_level level, std::string_view component, std::string_view task_id,
         std::string_view request_id, std::string_view message, std::span<const log_field> fields) {
  if (!log_enabled(level))
    return;
  std::shared_ptr<const logger> l;
  {
    std::lock_guard lock(g_logger_mutex);
    l = installed();
  }
  // Checked again against the logger taken: set_logger may have raised the
  // level since the first check.
  if (level == log_level::off || static_cast<int>(level) < static_cast<int>(l->level))
    return;
  const log_record r{.level = level,
                     .time = std::chrono::system_clock::now(),
                     .component = component,
                     .task_id = task_id,
                     .request_id = request_id,
                     .message = message,
                     .fields = fields};
  if (l->sink)
    l->sink(r);
  else
    stderr_sink(r);
}

}  // namespace detail
}  // namespace taskexec
