#include "taskexec/error.hpp"

#include <cstring>

namespace taskexec {
namespace {

class category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "taskexec"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::success:
        return "success";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::not_launched:
        return "task not yet launched";
      case errc::already_launched:
        return "task already launched";
      case errc::task_exited:
        return "task has exited";
      case errc::task_destroyed:
        return "task executor destroyed";
      case errc::binary_not_found:
        return "binary could not be found";
      case errc::user_not_found:
        return "user not found";
      case errc::unsupported:
        return "not supported by the isolation";
      case errc::launch_failed:
        return "launch failed";
      case errc::shutdown_incomplete:
        return "shutdown incomplete";
      case errc::operation_canceled:
        return "operation canceled";
      case errc::permission_denied:
        return "permission denied";
      case errc::timed_out:
        return "timed out";
      case errc::resource_config_failed:
        return "resource configuration failed";
      case errc::unknown_subscription:
        return "unknown subscription or session";
      case errc::connection_failed:
        return "connection to taskexecd failed";
      case errc::protocol_error:
        return "protocol error";
      case errc::reattach_refused:
        return "reattach refused";
      case errc::internal:
        return "internal error";
      case errc::limit_reached:
        return "limit reached";
      case errc::resource_busy:
        return "resource busy";
    }
    return "unknown taskexec error " + std::to_string(ev);
  }
};

}  // namespace

const boost::system::error_category& category() noexcept {
  static const category_impl instance;
  return instance;
}

error make_error(errc code, std::string message) {
  return {make_error_code(code), std::move(message)};
}

error make_system_error(int errno_value, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(errno_value);
  return {boost::system::error_code(errno_value, boost::system::system_category()), std::move(msg)};
}

void throw_exception_from_error(const error& e, const boost::source_location& loc) {
  (void)loc;
  throw exception(e);
}

}  // namespace taskexec
