#include "taskexec/openmetrics.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <string_view>

namespace taskexec::openmetrics {
namespace json = boost::json;

namespace {

bool valid_name(std::string_view n) {
  if (n.empty())
    return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && (i == 0 || c < '0' || c > '9'))
      return false;
  }
  return true;
}

void append_escaped(std::string& out, std::string_view v) {
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_number(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact form
  out.append(buf, r.ptr);
}

// Writes families one at a time; every sample gets the caller's labels first.
class writer {
 public:
  explicit writer(const std::vector<label>& labels) {
    for (const auto& l : labels) {
      if (!labels_.empty())
        labels_ += ',';
      labels_ += l.name;
      labels_ += "=\"";
      append_escaped(labels_, l.value);
      labels_ += '"';
    }
  }

  enum class type { gauge, counter };

  void family(std::string_view name, type t, std::string_view help, std::string_view unit = {}) {
    family_ = name;
    counter_ = t == type::counter;
    out_ += "# TYPE ";
    out_ += name;
    out_ += counter_ ? " counter\n" : " gauge\n";
    if (!unit.empty()) {
      out_ += "# UNIT ";
      out_ += name;
      out_ += ' ';
      out_ += unit;
      out_ += '\n';
    }
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += '\n';
  }

  // A sample of the current family, with one extra label when given.
  template <class Number>
  void sample(Number v, std::string_view extra_name = {}, std::string_view extra_value = {}) {
    out_ += family_;
    if (counter_)
      out_ += "_total";
    if (!labels_.empty() || !extra_name.empty()) {
      out_ += '{';
      out_ += labels_;
      if (!extra_name.empty()) {
        if (!labels_.empty())
          out_ += ',';
        out_ += extra_name;
        out_ += "=\"";
        append_escaped(out_, extra_value);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    append_number(out_, v);
    out_ += '\n';
  }

  std::string finish() {
    out_ += "# EOF\n";
    return std::move(out_);
  }

 private:
  std::string labels_;
  std::string family_;
  bool counter_ = false;
  std::string out_;
};

error bad_label(const std::vector<label>& labels) {
  for (const auto& l : labels) {
    if (!valid_name(l.name))
      return make_error(errc::invalid_argument,
                        "label name \"" + l.name + "\" is not [a-zA-Z_][a-zA-Z0-9_]*");
  }
  return {};
}

bool has(const std::vector<std::string>& measured, std::string_view what) {
  return std::find(measured.begin(), measured.end(), what) != measured.end();
}

}  // namespace

result<std::string> from_usage(const task_resource_usage& u, const std::vector<label>& labels) {
  if (auto e = bad_label(labels); e.code)
    return e;
  writer w(labels);
  using type = writer::type;
  const auto& m = u.total.memory;
  struct memory_figure {
    const char* measured;
    const char* family;
    const char* help;
    std::uint64_t value;
  };
  const memory_figure memory[] = {
      {"RSS", "taskexec_task_memory_rss_bytes", "Resident set size of the task.", m.rss},
      {"Cache", "taskexec_task_memory_cache_bytes", "Page cache charged to the task.", m.cache},
      {"Swap", "taskexec_task_memory_swap_bytes", "Swap used by the task.", m.swap},
      {"Usage", "taskexec_task_memory_usage_bytes", "Memory charged to the task's cgroup.",
       m.usage},
      {"Max Usage", "taskexec_task_memory_max_usage_bytes",
       "Highest memory charged to the task's cgroup.", m.max_usage},
      {"Kernel Usage", "taskexec_task_memory_kernel_usage_bytes",
       "Kernel memory charged to the task's cgroup.", m.kernel_usage},
      {"Kernel Max Usage", "taskexec_task_memory_kernel_max_usage_bytes",
       "Highest kernel memory charged to the task's cgroup.", m.kernel_max_usage},
  };
  for (const auto& f : memory) {
    if (!has(m.measured, f.measured))
      continue;
    w.family(f.family, type::gauge, f.help, "bytes");
    w.sample(f.value);
  }
  if (m.pressure_some_avg10) {
    w.family("taskexec_task_memory_pressure_some_avg10_percent", type::gauge,
             "Share of the last 10 s some of the task's processes stalled on memory (PSI).");
    w.sample(*m.pressure_some_avg10);
  }
  if (m.pressure_full_avg10) {
    w.family("taskexec_task_memory_pressure_full_avg10_percent", type::gauge,
             "Share of the last 10 s all of the task's processes stalled on memory (PSI).");
    w.sample(*m.pressure_full_avg10);
  }
  if (m.events_high) {
    w.family("taskexec_task_memory_high_events", type::counter,
             "Times the task went over its memory.high (memory.events high).");
    w.sample(*m.events_high);
  }
  if (m.events_max) {
    w.family("taskexec_task_memory_max_events", type::counter,
             "Times the task reached its memory limit (memory.events max).");
    w.sample(*m.events_max);
  }
  if (m.events_oom_kill) {
    w.family("taskexec_task_memory_oom_kills", type::counter,
             "Processes of the task the OOM killer killed (memory.events oom_kill).");
    w.sample(*m.events_oom_kill);
  }

  const auto& c = u.total.cpu;
  if (has(c.measured, "Percent")) {
    w.family("taskexec_task_cpu_percent", type::gauge,
             "CPU of the task over the last interval, percent of one core.");
    w.sample(c.percent);
  }
  if (has(c.measured, "User Mode")) {
    w.family("taskexec_task_cpu_user_percent", type::gauge,
             "User-mode CPU of the task over the last interval, percent of one core.");
    w.sample(c.user_mode);
  }
  if (has(c.measured, "System Mode")) {
    w.family("taskexec_task_cpu_system_percent", type::gauge,
             "Kernel-mode CPU of the task over the last interval, percent of one core.");
    w.sample(c.system_mode);
  }
  if (has(c.measured, "Throttled Periods")) {
    w.family("taskexec_task_cpu_throttled_periods", type::counter,
             "CFS periods in which the task was throttled.");
    w.sample(c.throttled_periods);
  }
  if (has(c.measured, "Throttled Time")) {
    w.family("taskexec_task_cpu_throttled_seconds", type::counter, "Time the task was throttled.",
             "seconds");
    w.sample(static_cast<double>(c.throttled_time) / 1e9);
  }

  w.family("taskexec_task_processes", type::gauge, "Live processes of the task.");
  w.sample(static_cast<std::uint64_t>(u.pids.size()));
  if (!u.pids.empty()) {
    w.family("taskexec_process_memory_rss_bytes", type::gauge,
             "Resident set size of one process of the task.", "bytes");
    for (const auto& [pid, p] : u.pids)
      w.sample(p.memory.rss, "pid", std::to_string(pid));
    w.family("taskexec_process_cpu_percent", type::gauge,
             "CPU of one process of the task over the last interval, percent of one core.");
    for (const auto& [pid, p] : u.pids)
      w.sample(p.cpu.percent, "pid", std::to_string(pid));
  }
  return w.finish();
}

namespace {

// A member that must be a non-negative integer when present.
result<std::optional<std::uint64_t>> count(const json::object& o, std::string_view key,
                                           std::string_view where) {
  const auto* v = o.if_contains(key);
  if (!v)
    return std::optional<std::uint64_t>{};
  if (const auto* u = v->if_uint64())
    return std::optional<std::uint64_t>{*u};
  if (const auto* i = v->if_int64(); i && *i >= 0)
    return std::optional<std::uint64_t>{static_cast<std::uint64_t>(*i)};
  return make_error(errc::invalid_argument,
                    std::string(where) + "." + std::string(key) + " is not a non-negative integer");
}

result<const json::object*> section(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v)
    return static_cast<const json::object*>(nullptr);
  if (!v->is_object())
    return make_error(errc::invalid_argument, std::string(key) + " is not an object");
  return &v->get_object();
}

}  // namespace

result<std::string> from_daemon_metrics(const json::object& m, const std::vector<label>& labels) {
  if (auto e = bad_label(labels); e.code)
    return e;
  writer w(labels);
  using type = writer::type;

  // One plain figure: a member of a section, as a family of its own.
  struct figure {
    const char* key;
    const char* family;
    type t;
    const char* help;
  };
  auto figures = [&](const json::object* s, std::string_view where,
                     std::initializer_list<figure> fs) -> result<void> {
    if (!s)
      return {};
    for (const auto& f : fs) {
      auto n = count(*s, f.key, where);
      if (!n)
        return n.error();
      if (!*n)
        continue;
      w.family(f.family, f.t, f.help);
      w.sample(**n);
    }
    return {};
  };

  if (auto up = count(m, "uptime_ms", "Metrics"); !up) {
    return up.error();
  } else if (*up) {
    w.family("taskexecd_uptime_seconds", type::gauge, "Time since the daemon started.", "seconds");
    w.sample(static_cast<double>(**up) / 1000.0);
  }
  auto conns = section(m, "connections");
  if (!conns)
    return conns.error();
  if (auto r =
          figures(*conns, "connections",
                  {{"open", "taskexecd_connections_open", type::gauge, "Connections open now."},
                   {"total", "taskexecd_connections", type::counter, "Connections accepted."},
                   {"refused", "taskexecd_connections_refused", type::counter,
                    "Connections refused (peer not allowed, or too many)."}});
      !r)
    return r.error();

  // Per method and per limit: one family, a label per member.
  auto labelled = [&](std::string_view key, std::string_view label_name) -> result<void> {
    auto s = section(m, key);
    if (!s)
      return s.error();
    if (!*s)
      return {};
    for (const auto& [k, v] : **s) {
      if (!v.is_uint64() && !(v.is_int64() && v.get_int64() >= 0))
        return make_error(errc::invalid_argument, std::string(key) + "." + std::string(k) +
                                                      " is not a non-negative integer");
    }
    w.family("taskexecd_limits_hit", type::counter,
             "Requests or connections refused by a limit of the daemon.");
    for (const auto& [k, v] : **s)
      w.sample(v.to_number<std::uint64_t>(), label_name, k);
    return {};
  };
  auto requests = section(m, "requests");
  if (!requests)
    return requests.error();
  if (*requests) {
    std::vector<std::pair<std::string, std::pair<std::uint64_t, std::uint64_t>>> per_method;
    for (const auto& [name, v] : **requests) {
      if (!v.is_object())
        return make_error(errc::invalid_argument,
                          "requests." + std::string(name) + " is not an object");
      auto calls = count(v.get_object(), "calls", "requests." + std::string(name));
      if (!calls)
        return calls.error();
      auto errors = count(v.get_object(), "errors", "requests." + std::string(name));
      if (!errors)
        return errors.error();
      per_method.emplace_back(std::string(name),
                              std::make_pair(calls->value_or(0), errors->value_or(0)));
    }
    w.family("taskexecd_requests", type::counter, "Requests served, by method.");
    for (const auto& [name, n] : per_method)
      w.sample(n.first, "method", name);
    w.family("taskexecd_request_errors", type::counter,
             "Requests answered with an error, by method.");
    for (const auto& [name, n] : per_method)
      w.sample(n.second, "method", name);
  }
  if (auto r = labelled("limits_hit", "limit"); !r)
    return r.error();

  auto journal = section(m, "journal");
  if (!journal)
    return journal.error();
  if (auto r = figures(
          *journal, "journal",
          {{"events", "taskexecd_journal_events", type::gauge, "Events kept in the journal."},
           {"bytes", "taskexecd_journal_bytes", type::gauge,
            "Bytes of the events kept in the journal."},
           {"dropped", "taskexecd_journal_dropped", type::counter,
            "Events evicted from the journal by its bounds."},
           {"followers", "taskexecd_journal_followers", type::gauge,
            "Events followers open now."}});
      !r)
    return r.error();
  auto stats = section(m, "stats");
  if (!stats)
    return stats.error();
  if (auto r = figures(
          *stats, "stats",
          {{"subscriptions", "taskexecd_stats_subscriptions", type::gauge,
            "Stats subscriptions open now."},
           {"samples_sent", "taskexecd_stats_samples", type::counter, "Stats samples sent."},
           {"samples_dropped", "taskexecd_stats_samples_dropped", type::counter,
            "Stats samples not sent to a client that was not reading."},
           {"ticks_late", "taskexecd_stats_ticks_late", type::counter,
            "Stats ticks taken more than an interval late."},
           {"ticks_deferred", "taskexecd_stats_ticks_deferred", type::counter,
            "Stats ticks that waited for a fresher reading of the task."}});
      !r)
    return r.error();
  auto sweep = section(m, "sweep");
  if (!sweep)
    return sweep.error();
  if (auto r = figures(*sweep, "sweep",
                       {{"sweeps", "taskexecd_sweeps", type::counter,
                         "Shutdowns that swept the task's remaining processes."},
                        {"passes", "taskexecd_sweep_passes", type::counter,
                         "Scans of the shutdown sweeps (a sweep scans again while it finds "
                         "processes)."},
                        {"killed", "taskexecd_sweep_killed", type::counter,
                         "Processes other than the task's main one killed by a sweep."}});
      !r)
    return r.error();
  auto reaper = section(m, "reaper");
  if (!reaper)
    return reaper.error();
  if (auto r =
          figures(*reaper, "reaper",
                  {{"reaped", "taskexecd_reaper_reaped", type::counter, "Child processes reaped."},
                   {"orphans", "taskexecd_reaper_orphans", type::counter,
                    "Children reaped that no one watched (re-parented orphans)."},
                   {"watched", "taskexecd_reaper_watched", type::gauge,
                    "Children watched now (the task, running Exec commands, its watchdog)."}});
      !r)
    return r.error();
  return w.finish();
}

}  // namespace taskexec::openmetrics
