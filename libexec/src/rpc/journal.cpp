#include "taskexec/rpc/journal.hpp"

namespace taskexec::rpc {

std::uint64_t event_journal::append(std::string_view type, boost::json::object fields,
                                    std::chrono::system_clock::time_point when) {
  boost::json::object e;
  const auto seq = next_++;
  e["seq"] = seq;
  e["time_unix_nano"] =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  e["type"] = type;
  for (auto& kv : fields)
    e[kv.key()] = std::move(kv.value());
  events_.push_back(std::move(e));
  if (events_.size() > capacity_)
    events_.pop_front();
  return seq;
}

boost::json::object event_journal::since(std::uint64_t since) const {
  const std::uint64_t first_kept = next_ - events_.size();  // seq of events_.front()
  const std::uint64_t from = since < 1 ? 1 : since;
  boost::json::array out;
  for (std::uint64_t s = std::max(from, first_kept); s < next_; ++s)
    out.push_back(events_[s - first_kept]);
  const std::uint64_t dropped = from < first_kept ? first_kept - from : 0;
  return {{"events", std::move(out)}, {"next", next_}, {"dropped", dropped}};
}

}  // namespace taskexec::rpc
