#include "taskexec/codec.hpp"

#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <chrono>
#include <initializer_list>
#include <limits>
#include <optional>

namespace taskexec {
namespace json = boost::json;

namespace {

std::string join_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

using maybe_error = std::optional<decode_error>;

decode_error wrong_type(const std::string& field, std::string_view want) {
  return {field, (field.empty() ? std::string("value") : field) + " must be " + std::string(want)};
}

// Reads the fields of one JSON object, strictly.
class object_reader {
 public:
  object_reader(const json::object& o, std::string path) : o_(o), path_(std::move(path)) {}

  static decode_result<object_reader> open(const json::value& v, const std::string& path) {
    if (!v.is_object())
      return wrong_type(path, "an object");
    return object_reader(v.get_object(), path);
  }

  maybe_error only(std::initializer_list<std::string_view> known) const {
    for (const auto& kv : o_) {
      bool ok = false;
      for (auto k : known)
        ok = ok || kv.key() == k;
      if (!ok)
        return decode_error{join_path(path_, kv.key()),
                            "unknown field \"" + std::string(kv.key()) + "\""};
    }
    return std::nullopt;
  }

  maybe_error str(std::string_view key, std::string& out) const {
    const auto* v = o_.if_contains(key);
    if (!v)
      return std::nullopt;
    if (!v->is_string())
      return wrong_type(field(key), "a string");
    out = std::string(v->get_string());
    return std::nullopt;
  }

  maybe_error boolean(std::string_view key, bool& out) const {
    const auto* v = o_.if_contains(key);
    if (!v)
      return std::nullopt;
    if (!v->is_bool())
      return wrong_type(field(key), "true or false");
    out = v->get_bool();
    return std::nullopt;
  }

  template <class Int>
  maybe_error integer(std::string_view key, Int& out,
                      std::int64_t min = std::numeric_limits<Int>::min(),
                      std::int64_t max = std::numeric_limits<Int>::max()) const {
    const auto* v = o_.if_contains(key);
    if (!v)
      return std::nullopt;
    auto range_error = [&] {
      return decode_error{field(key), field(key) + " must be between " + std::to_string(min) +
                                          " and " + std::to_string(max)};
    };
    std::int64_t n = 0;
    if (v->is_int64())
      n = v->get_int64();
    else if (v->is_uint64())
      return range_error();  // Boost.JSON stores only values above INT64_MAX as uint64
    else
      return wrong_type(field(key), "an integer");
    if (n < min || n > max)
      return range_error();
    out = static_cast<Int>(n);
    return std::nullopt;
  }

  maybe_error strings(std::string_view key, std::vector<std::string>& out) const {
    const auto* v = o_.if_contains(key);
    if (!v)
      return std::nullopt;
    if (!v->is_array())
      return wrong_type(field(key), "an array of strings");
    out.clear();
    const auto& a = v->get_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_string())
        return wrong_type(index_path(field(key), i), "a string");
      out.emplace_back(a[i].get_string());
    }
    return std::nullopt;
  }

  template <class T, class Decode>
  maybe_error objects(std::string_view key, std::vector<T>& out, Decode decode) const {
    const auto* v = o_.if_contains(key);
    if (!v)
      return std::nullopt;
    if (!v->is_array())
      return wrong_type(field(key), "an array of objects");
    out.clear();
    const auto& a = v->get_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      auto item = decode(a[i], index_path(field(key), i));
      if (!item)
        return item.error();
      out.push_back(std::move(*item));
    }
    return std::nullopt;
  }

  const json::value* get(std::string_view key) const { return o_.if_contains(key); }
  std::string field(std::string_view key) const { return join_path(path_, key); }

 private:
  const json::object& o_;
  std::string path_;
};

// The first error of a chain of field reads.
#define TASKEXEC_READ(expr)   \
  do {                        \
    if (auto e_ = (expr); e_) \
      return *e_;             \
  } while (0)

decode_result<mount_config> decode_mount(const json::value& v, const std::string& path) {
  auto r = object_reader::open(v, path);
  if (!r)
    return r.error();
  mount_config m;
  TASKEXEC_READ(r->only({"task_path", "host_path", "readonly", "propagation_mode"}));
  TASKEXEC_READ(r->str("task_path", m.task_path));
  TASKEXEC_READ(r->str("host_path", m.host_path));
  TASKEXEC_READ(r->boolean("readonly", m.readonly));
  TASKEXEC_READ(r->str("propagation_mode", m.propagation_mode));
  return m;
}

decode_result<device_config> decode_device(const json::value& v, const std::string& path) {
  auto r = object_reader::open(v, path);
  if (!r)
    return r.error();
  device_config d;
  TASKEXEC_READ(r->only({"task_path", "host_path", "cgroup_permissions"}));
  TASKEXEC_READ(r->str("task_path", d.task_path));
  TASKEXEC_READ(r->str("host_path", d.host_path));
  TASKEXEC_READ(r->str("cgroup_permissions", d.cgroup_permissions));
  return d;
}

decode_result<network_isolation_spec> decode_network(const json::value& v,
                                                     const std::string& path) {
  auto r = object_reader::open(v, path);
  if (!r)
    return r.error();
  network_isolation_spec n;
  TASKEXEC_READ(r->only({"mode", "path"}));
  TASKEXEC_READ(r->str("mode", n.mode));
  TASKEXEC_READ(r->str("path", n.path));
  return n;
}

std::int64_t to_unix_nano(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

void throw_exception_from_error(const decode_error& e, const boost::source_location&) {
  throw decode_exception(e);
}

decode_result<task_resources> decode_resources(const json::value& v, const std::string& path) {
  auto r = object_reader::open(v, path);
  if (!r)
    return r.error();
  task_resources t;
  TASKEXEC_READ(r->only({"cpu_shares", "cpu_quota_us", "cpu_period_us", "cpuset_cpus", "memory_mb",
                         "memory_max_mb", "pids_max"}));
  TASKEXEC_READ(r->integer("cpu_shares", t.cpu_shares, 0));
  TASKEXEC_READ(r->integer("cpu_quota_us", t.cpu_quota_us, 0));
  TASKEXEC_READ(r->integer("cpu_period_us", t.cpu_period_us, 0));
  TASKEXEC_READ(r->str("cpuset_cpus", t.cpuset_cpus));
  TASKEXEC_READ(r->integer("memory_mb", t.memory_mb, 0));
  TASKEXEC_READ(r->integer("memory_max_mb", t.memory_max_mb, -1));
  TASKEXEC_READ(r->integer("pids_max", t.pids_max, 0));
  return t;
}

decode_result<exec_command> decode_exec_command(const json::value& v) {
  auto r = object_reader::open(v, "");
  if (!r)
    return decode_error{"", "params must be an object"};
  exec_command c;
  TASKEXEC_READ(r->only({"cmd",
                         "args",
                         "env",
                         "user",
                         "task_dir",
                         "work_dir",
                         "stdout_path",
                         "stderr_path",
                         "isolation",
                         "resource_limits",
                         "basic_process_cgroup",
                         "resources",
                         "oom_score_adj",
                         "no_pivot_root",
                         "mounts",
                         "devices",
                         "network_isolation",
                         "default_pid_mode",
                         "default_ipc_mode",
                         "capabilities"}));
  TASKEXEC_READ(r->str("cmd", c.cmd));
  TASKEXEC_READ(r->strings("args", c.args));
  TASKEXEC_READ(r->strings("env", c.env));
  TASKEXEC_READ(r->str("user", c.user));
  TASKEXEC_READ(r->str("task_dir", c.task_dir));
  TASKEXEC_READ(r->str("work_dir", c.work_dir));
  TASKEXEC_READ(r->str("stdout_path", c.stdout_path));
  TASKEXEC_READ(r->str("stderr_path", c.stderr_path));
  TASKEXEC_READ(r->str("isolation", c.isolation));
  TASKEXEC_READ(r->boolean("resource_limits", c.resource_limits));
  TASKEXEC_READ(r->boolean("basic_process_cgroup", c.basic_process_cgroup));
  if (const auto* res = r->get("resources")) {
    auto d = decode_resources(*res, "resources");
    if (!d)
      return d.error();
    c.resources = *d;
  }
  TASKEXEC_READ(r->integer("oom_score_adj", c.oom_score_adj, -1000, 1000));
  TASKEXEC_READ(r->boolean("no_pivot_root", c.no_pivot_root));
  TASKEXEC_READ(r->objects("mounts", c.mounts, decode_mount));
  TASKEXEC_READ(r->objects("devices", c.devices, decode_device));
  if (const auto* n = r->get("network_isolation"); n && !n->is_null()) {
    auto d = decode_network(*n, "network_isolation");
    if (!d)
      return d.error();
    c.network_isolation = *d;
  }
  TASKEXEC_READ(r->str("default_pid_mode", c.default_pid_mode));
  TASKEXEC_READ(r->str("default_ipc_mode", c.default_ipc_mode));
  TASKEXEC_READ(r->strings("capabilities", c.capabilities));
  return c;
}

#undef TASKEXEC_READ

void tag_invoke(const json::value_from_tag&, json::value& v, const task_resources& r) {
  v = {{"cpu_shares", r.cpu_shares},
       {"cpu_quota_us", r.cpu_quota_us},
       {"cpu_period_us", r.cpu_period_us},
       {"cpuset_cpus", r.cpuset_cpus},
       {"memory_mb", r.memory_mb},
       {"memory_max_mb", r.memory_max_mb},
       {"pids_max", r.pids_max}};
}

void tag_invoke(const json::value_from_tag&, json::value& v, const mount_config& m) {
  v = {{"task_path", m.task_path},
       {"host_path", m.host_path},
       {"readonly", m.readonly},
       {"propagation_mode", m.propagation_mode}};
}

void tag_invoke(const json::value_from_tag&, json::value& v, const device_config& d) {
  v = {{"task_path", d.task_path},
       {"host_path", d.host_path},
       {"cgroup_permissions", d.cgroup_permissions}};
}

void tag_invoke(const json::value_from_tag&, json::value& v, const network_isolation_spec& n) {
  v = {{"mode", n.mode}, {"path", n.path}};
}

void tag_invoke(const json::value_from_tag&, json::value& v, const exec_command& c) {
  json::object o;
  o["cmd"] = c.cmd;
  o["args"] = json::value_from(c.args);
  o["env"] = json::value_from(c.env);
  o["user"] = c.user;
  o["task_dir"] = c.task_dir;
  o["work_dir"] = c.work_dir;
  o["stdout_path"] = c.stdout_path;
  o["stderr_path"] = c.stderr_path;
  o["isolation"] = c.isolation.empty() ? "host" : c.isolation;
  o["resource_limits"] = c.resource_limits;
  o["basic_process_cgroup"] = c.basic_process_cgroup;
  o["resources"] = json::value_from(c.resources);
  o["oom_score_adj"] = c.oom_score_adj;
  o["no_pivot_root"] = c.no_pivot_root;
  o["mounts"] = json::value_from(c.mounts);
  o["devices"] = json::value_from(c.devices);
  o["network_isolation"] =
      c.network_isolation ? json::value_from(*c.network_isolation) : json::value(nullptr);
  o["default_pid_mode"] = c.default_pid_mode;
  o["default_ipc_mode"] = c.default_ipc_mode;
  o["capabilities"] = json::value_from(c.capabilities);
  v = std::move(o);
}

void tag_invoke(const json::value_from_tag&, json::value& v, const process_state& p) {
  v = {{"pid", p.pid},
       {"exit_code", p.exit_code},
       {"signal", p.signal},
       {"time_unix_nano", to_unix_nano(p.time)},
       {"oom_killed", p.oom_killed}};
}

exec_command tag_invoke(const json::value_to_tag<exec_command>&, const json::value& v) {
  return decode_exec_command(v).value();
}

task_resources tag_invoke(const json::value_to_tag<task_resources>&, const json::value& v) {
  return decode_resources(v, "").value();
}

process_state tag_invoke(const json::value_to_tag<process_state>&, const json::value& v) {
  auto r = object_reader::open(v, "");
  if (!r)
    throw decode_exception(r.error());
  process_state p;
  std::int64_t nanos = 0;
  for (auto e : {r->only({"pid", "exit_code", "signal", "time_unix_nano", "oom_killed"}),
                 r->integer("pid", p.pid, 0), r->integer("exit_code", p.exit_code, -1, 255),
                 r->integer("signal", p.signal, 0), r->integer("time_unix_nano", nanos, 0),
                 r->boolean("oom_killed", p.oom_killed)}) {
    if (e)
      throw decode_exception(*e);
  }
  p.time = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanos)));
  return p;
}

namespace {
json::array names(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v)
    a.emplace_back(s);
  return a;
}
}  // namespace

void tag_invoke(const json::value_from_tag&, json::value& v, const resource_usage& u) {
  json::object mem;
  mem["rss"] = u.memory.rss;
  mem["cache"] = u.memory.cache;
  mem["swap"] = u.memory.swap;
  mem["usage"] = u.memory.usage;
  mem["max_usage"] = u.memory.max_usage;
  mem["kernel_usage"] = u.memory.kernel_usage;
  mem["kernel_max_usage"] = u.memory.kernel_max_usage;
  mem["measured"] = names(u.memory.measured);
  if (u.memory.pressure_some_avg10 || u.memory.pressure_full_avg10) {
    json::object p;
    if (u.memory.pressure_some_avg10)
      p["some_avg10"] = *u.memory.pressure_some_avg10;
    if (u.memory.pressure_full_avg10)
      p["full_avg10"] = *u.memory.pressure_full_avg10;
    mem["pressure"] = std::move(p);
  }
  if (u.memory.events_high || u.memory.events_max || u.memory.events_oom_kill) {
    json::object e;
    if (u.memory.events_high)
      e["high"] = *u.memory.events_high;
    if (u.memory.events_max)
      e["max"] = *u.memory.events_max;
    if (u.memory.events_oom_kill)
      e["oom_kill"] = *u.memory.events_oom_kill;
    mem["events"] = std::move(e);
  }
  json::object cpu;
  cpu["system_mode"] = u.cpu.system_mode;
  cpu["user_mode"] = u.cpu.user_mode;
  cpu["total_ticks"] = u.cpu.total_ticks;
  cpu["throttled_periods"] = u.cpu.throttled_periods;
  cpu["throttled_time"] = u.cpu.throttled_time;
  cpu["percent"] = u.cpu.percent;
  cpu["measured"] = names(u.cpu.measured);
  json::object o;
  o["memory_stats"] = std::move(mem);
  o["cpu_stats"] = std::move(cpu);
  v = std::move(o);
}

void tag_invoke(const json::value_from_tag&, json::value& v, const task_resource_usage& u) {
  json::object o;
  o["timestamp_unix_nano"] =
      std::chrono::duration_cast<std::chrono::nanoseconds>(u.timestamp.time_since_epoch()).count();
  o["resource_usage"] = json::value_from(u.total);
  json::object pids;
  for (const auto& [pid, ru] : u.pids)
    pids[std::to_string(pid)] = json::value_from(ru);
  o["pids"] = std::move(pids);
  v = std::move(o);
}

namespace {

// The pieces of append_json(), each as Boost.JSON's serializer writes it.
struct json_writer {
  explicit json_writer(std::string& o) : out(o) {}
  std::string& out;
  json::serializer sr;
  char buf[128] = {};

  void scalar(const json::value& v) {
    sr.reset(&v);
    while (!sr.done())
      out += sr.read(buf);
  }
  void text(std::string_view s) {
    sr.reset(s);
    while (!sr.done())
      out += sr.read(buf);
  }
  template <class Int>
  void integer(Int v) {
    char digits[24];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, v).ptr);
  }
  void real(double d) { scalar(json::value(d)); }
  // "key": (keys are ours: plain ASCII, nothing to escape)
  void key(std::string_view k, bool first = false) {
    if (!first)
      out += ',';
    out += '"';
    out += k;
    out += "\":";
  }
  void names(const std::vector<std::string>& v) {
    out += '[';
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i)
        out += ',';
      text(v[i]);
    }
    out += ']';
  }
  void usage(const resource_usage& u) {
    out += "{";
    key("memory_stats", true);
    out += '{';
    key("rss", true);
    integer(u.memory.rss);
    key("cache");
    integer(u.memory.cache);
    key("swap");
    integer(u.memory.swap);
    key("usage");
    integer(u.memory.usage);
    key("max_usage");
    integer(u.memory.max_usage);
    key("kernel_usage");
    integer(u.memory.kernel_usage);
    key("kernel_max_usage");
    integer(u.memory.kernel_max_usage);
    key("measured");
    names(u.memory.measured);
    if (u.memory.pressure_some_avg10 || u.memory.pressure_full_avg10) {
      key("pressure");
      out += '{';
      bool first = true;
      if (u.memory.pressure_some_avg10) {
        key("some_avg10", first);
        real(*u.memory.pressure_some_avg10);
        first = false;
      }
      if (u.memory.pressure_full_avg10) {
        key("full_avg10", first);
        real(*u.memory.pressure_full_avg10);
      }
      out += '}';
    }
    if (u.memory.events_high || u.memory.events_max || u.memory.events_oom_kill) {
      key("events");
      out += '{';
      bool first = true;
      for (auto [name, v] :
           {std::pair{"high", &u.memory.events_high}, std::pair{"max", &u.memory.events_max},
            std::pair{"oom_kill", &u.memory.events_oom_kill}}) {
        if (*v) {
          key(name, first);
          integer(**v);
          first = false;
        }
      }
      out += '}';
    }
    out += '}';
    key("cpu_stats");
    out += '{';
    key("system_mode", true);
    real(u.cpu.system_mode);
    key("user_mode");
    real(u.cpu.user_mode);
    key("total_ticks");
    real(u.cpu.total_ticks);
    key("throttled_periods");
    integer(u.cpu.throttled_periods);
    key("throttled_time");
    integer(u.cpu.throttled_time);
    key("percent");
    real(u.cpu.percent);
    key("measured");
    names(u.cpu.measured);
    out += "}}";
  }
};

}  // namespace

void append_json(std::string& out, const task_resource_usage& u) {
  json_writer w(out);
  out += '{';
  w.key("timestamp_unix_nano", true);
  w.integer(static_cast<std::int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(u.timestamp.time_since_epoch())
          .count()));
  w.key("resource_usage");
  w.usage(u.total);
  w.key("pids");
  out += '{';
  bool first = true;
  for (const auto& [pid, ru] : u.pids) {
    if (!first)
      out += ',';
    first = false;
    out += '"';
    w.integer(pid);
    out += "\":";
    w.usage(ru);
  }
  out += "}}";
}

}  // namespace taskexec
