#include "daemon_logging.hpp"

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/utility/formatting_ostream.hpp>
#include <chrono>
#include <iostream>
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
  auto core = logging::core::get();
  logging::record rec = core->open_record(set);
  if (rec)
    core->push_record(std::move(rec));
}

}  // namespace

void configure_logging(const log_options& options) {
  auto core = logging::core::get();
  core->remove_all_sinks();
  if (options.level == log_level::off) {
    core->set_logging_enabled(false);
    set_logger({.level = log_level::off});
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
    const auto component =
        logging::extract_or_default<std::string>("Component", rec, std::string());
    const auto task = logging::extract_or_default<std::string>("TaskID", rec, std::string());
    const auto request = logging::extract_or_default<std::string>("RequestID", rec, std::string());
    const auto msg = logging::extract_or_default<std::string>("Message", rec, std::string());
    const log_record r{
        .level = logging::extract_or_default<log_level>("Severity", rec, log_level::info),
        .time = logging::extract_or_default<std::chrono::system_clock::time_point>(
            "TimeStamp", rec, std::chrono::system_clock::now()),
        .component = component,
        .task_id = task,
        .request_id = request,
        .message = msg};
    strm << format_log_line(r, format);
  });
  core->add_sink(sink);
  set_logger({.level = options.level, .sink = push_to_core});
}

}  // namespace taskexec
