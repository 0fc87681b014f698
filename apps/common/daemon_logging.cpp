#include "daemon_logging.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/sinks/basic_sink_backend.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/utility/formatting_ostream.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>

namespace taskexec {
namespace logging = boost::log;

namespace {

// The library's record, into Boost.Log's core.
void push_to_core(const log_record& r) {
  namespace attrs = logging::attributes;
  logging::attribute_set set;
  set.insert("Severity", attrs::constant<log_level>(r.level));
  set.insert("TimeStamp", attrs::constant<std::chrono::system_clock::time_point>(r.time));
  set.insert("Component", attrs::constant<std::string>(std::string(r.component)));
  set.insert("Message", attrs::constant<std::string>(std::string(r.message)));
  if (!r.task_id.empty())
    set.insert("TaskID", attrs::constant<std::string>(std::string(r.task_id)));
  if (!r.request_id.empty())
    set.insert("RequestID", attrs::constant<std::string>(std::string(r.request_id)));
  if (!r.fields.empty()) {
    owned_log_fields f;
    for (const auto& x : r.fields)
      f.fields.push_back({std::string(x.key), std::string(x.value), x.number});
    set.insert("Fields", attrs::constant<owned_log_fields>(std::move(f)));
  }
  auto core = logging::core::get();
  logging::record rec = core->open_record(set);
  if (rec)
    core->push_record(std::move(rec));
}

// A Boost.Log record back as the library's (views into `keep`).
struct rebuilt {
  std::string component, task, request, message;
  owned_log_fields owned;
  std::vector<log_field> fields;
  log_record record;

  explicit rebuilt(const logging::record_view& rec)
      : component(logging::extract_or_default<std::string>("Component", rec, std::string())),
        task(logging::extract_or_default<std::string>("TaskID", rec, std::string())),
        request(logging::extract_or_default<std::string>("RequestID", rec, std::string())),
        message(logging::extract_or_default<std::string>("Message", rec, std::string())),
        owned(logging::extract_or_default<owned_log_fields>("Fields", rec, owned_log_fields{})) {
    for (const auto& f : owned.fields)
      fields.push_back(log_field{f.key, f.value, f.number});
    record = log_record{
        .level = logging::extract_or_default<log_level>("Severity", rec, log_level::info),
        .time = logging::extract_or_default<std::chrono::system_clock::time_point>(
            "TimeStamp", rec, std::chrono::system_clock::now()),
        .component = component,
        .task_id = task,
        .request_id = request,
        .message = message,
        .fields = fields};
  }
};

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
  for (const char c : key) {
    if (c >= 'a' && c <= 'z')
      k += static_cast<char>(c - 'a' + 'A');
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
      k += c;
    else
      k += '_';
  }
  if (k.empty() || k[0] == '_' || (k[0] >= '0' && k[0] <= '9'))
    k.insert(0, "F");
  return k;
}

// Sends each record to the journal's socket; one the socket refuses is
// written to `fallback` as a `<N>` line.
class journal_backend
    : public logging::sinks::basic_sink_backend<logging::sinks::synchronized_feeding> {
 public:
  journal_backend(int fd, std::ostream& fallback) : fd_(fd), fallback_(fallback) {}
  ~journal_backend() { ::close(fd_); }
  journal_backend(const journal_backend&) = delete;
  journal_backend& operator=(const journal_backend&) = delete;

  void consume(const logging::record_view& rec) {
    const rebuilt r(rec);
    const std::string d = journal_datagram(r.record);
    if (::send(fd_, d.data(), d.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(d.size()))
      return;
    fallback_ << format_log_line(r.record, log_format::journald) << '\n' << std::flush;
  }

 private:
  int fd_;
  std::ostream& fallback_;
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
  auto core = logging::core::get();
  core->remove_all_sinks();
  if (options.level == log_level::off) {
    core->set_logging_enabled(false);
    set_logger({.level = log_level::off});
    return;
  }
  core->set_logging_enabled(true);
  std::ostream* os = options.stream ? options.stream : &std::clog;
  if (options.format == log_format::journald) {
    if (const int fd = connect_journal(options.journal_socket); fd >= 0) {
      auto backend = boost::make_shared<journal_backend>(fd, *os);
      core->add_sink(
          boost::make_shared<logging::sinks::synchronous_sink<journal_backend>>(backend));
      set_logger({.level = options.level, .sink = push_to_core});
      return;
    }
  }
  using backend_t = logging::sinks::text_ostream_backend;
  auto backend = boost::make_shared<backend_t>();
  backend->add_stream(boost::shared_ptr<std::ostream>(os, boost::null_deleter()));
  backend->auto_flush(true);
  auto sink = boost::make_shared<logging::sinks::synchronous_sink<backend_t>>(backend);
  const log_format format = options.format;
  sink->set_formatter([format](const logging::record_view& rec, logging::formatting_ostream& strm) {
    const rebuilt r(rec);
    strm << format_log_line(r.record, format);
  });
  core->add_sink(sink);
  set_logger({.level = options.level, .sink = push_to_core});
}

}  // namespace taskexec
