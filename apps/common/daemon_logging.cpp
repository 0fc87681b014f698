#include "daemon_logging.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>

namespace taskexec {

namespace {

void journal_field(std::string& out, std::string_view key, std::string_view value) {
  if (value.find('\n') == std::string_view::npos) {
    out += key;
    out += '=';
    out += value;
    out += '\n';
    return;
  }
  out += key;
  out += '\n';
  std::uint64_t n = value.size();
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>((n >> (8 * i)) & 0xff);
  out += value;
  out += '\n';
}

// A journal field name: upper case letters, digits and '_', not starting
// with '_' or a digit; anything else in the library's key becomes '_'.
std::string journal_key(std::string_view key) {
  std::string k;
  k.reserve(key.size() + 1);
  // "F" first when the name would start with '_' or a digit (or be empty):
  // when the key does not start with a letter.
  const char first = key.empty() ? '\0' : key.front();
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z')))
    k += 'F';
  for (const char c : key) {
    if (c >= 'a' && c <= 'z')
      k += static_cast<char>(c - 'a' + 'A');
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
      k += c;
    else
      k += '_';
  }
  return k;
}

// Sends each record to the journal's socket; one the socket refuses is
// written to `fallback` as a `<N>` line. Owns the socket: closed when the
// sink is replaced (configure_logging again) and its last use is over.
class journal_sink {
 public:
  journal_sink(int fd, std::ostream& fallback) : fd_(fd), fallback_(fallback) {}
  ~journal_sink() { ::close(fd_); }
  journal_sink(const journal_sink&) = delete;
  journal_sink& operator=(const journal_sink&) = delete;

  void consume(const log_record& r) {
    const std::string d = journal_datagram(r);
    std::lock_guard lock(mutex_);
    if (::send(fd_, d.data(), d.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(d.size()))
      return;
    fallback_ << format_log_line(r, log_format::journald) << '\n' << std::flush;
  }

 private:
  int fd_;
  std::ostream& fallback_;
  std::mutex mutex_;
};

// A datagram socket connected to the journal, or -1.
int connect_journal(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return -1;
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string journal_datagram(const log_record& r) {
  std::string d;
  d.reserve(128 + r.message.size());
  // MESSAGE: the text line without time and priority ("[executor] launched pid=42").
  std::string line = format_log_line(r, log_format::journald);
  const auto start = line.find("> ");
  journal_field(d, "MESSAGE", start == std::string::npos ? line : line.substr(start + 2));
  journal_field(d, "PRIORITY", std::to_string(syslog_priority(r.level)));
  journal_field(d, "SYSLOG_IDENTIFIER", "taskexecd");
  journal_field(d, "TASKEXEC_COMPONENT", r.component);
  if (!r.task_id.empty())
    journal_field(d, "TASKEXEC_TASK_ID", r.task_id);
  if (!r.request_id.empty())
    journal_field(d, "TASKEXEC_REQUEST_ID", r.request_id);
  for (const auto& f : r.fields)
    journal_field(d, journal_key(f.key), f.value);
  return d;
}

void configure_logging(const log_options& options) {
  if (options.level == log_level::off) {
    set_logger({.level = log_level::off});
    return;
  }
  std::ostream* os = options.stream ? options.stream : &std::clog;
  if (options.format == log_format::journald) {
    if (const int fd = connect_journal(options.journal_socket); fd >= 0) {
      auto sink = std::make_shared<journal_sink>(fd, *os);
      set_logger(
          {.level = options.level, .sink = [sink](const log_record& r) { sink->consume(r); }});
      return;
    }
  }
  set_logger({.level = options.level, .sink = stream_sink(*os, options.format)});
}

}  // namespace taskexec
