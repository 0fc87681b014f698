// taskexec-stress: the load generator. Runs scenarios against taskexecd (or
// embedded executors), reports latency, throughput and memory, and fails
// when something leaked or a check did not hold.
//
//   taskexec-stress SCENARIO [--OPTION VALUE]... [--json FILE] [--quiet]
//   taskexec-stress all [--short] [--json FILE]
//   taskexec-stress --list | --help | SCENARIO --help | --version
//
// Exit: 0 when every check passed, 1 when one failed, 2 on a usage error.
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "cli_common.hpp"
#include "stress.hpp"
#include "taskexec/logging.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

const std::vector<scenario>& scenarios() {
  static const std::vector<scenario> all = {
      {"churn",
       "create an executor, launch /bin/true, wait, destroy; N cycles, C at once",
       {{"count", "2000", "cycles"},
        {"concurrency", "8", "cycles at once"},
        {"embedded", "", "embedded task_executors instead of daemons", true},
        {"cgroup", "", "each task in a cgroup of its own (basic_process_cgroup; root)", true}},
       run_churn,
       {"--count", "40", "--concurrency", "4"}},
      {"fleet",
       "hold N tasks, each in a daemon with a Stats subscription, for T seconds",
       {{"tasks", "1000", "tasks (one daemon each)"},
        {"seconds", "30", "how long to hold them"},
        {"interval-ms", "1000", "the Stats interval"},
        {"start-concurrency", "16", "daemons started (and destroyed) at once"},
        {"peer-pss-kib", "0", "a peer's PSS per supervised process, to compare (0: none)"}},
       run_fleet,
       {"--tasks", "8", "--seconds", "2", "--interval-ms", "200"}},
      {"rpc-flood",
       "one daemon, K connections: Version, then a mix with Waits pending",
       {{"connections", "8", "connections"},
        {"phase-ms", "5000", "length of each phase"},
        {"max-calls", "10000000", "calls per phase at most"},
        {"max-growth-kib", "1024",
         "the daemon's allowed growth of anonymous memory (0: unchecked)"}},
       run_rpc_flood,
       {"--phase-ms", "400"}},
      {"reaper-storm",
       "a task forking M children as fast as it can, half of them daemonising",
       {{"children", "20000", "children to fork"},
        {"embedded", "", "an embedded executor (counts every orphan reaped)", true}},
       run_reaper_storm,
       {"--children", "400"}},
      {"output-flood",
       "a task writing a pattern to its stdout file or FIFO at full speed",
       {{"mib", "256", "MiB per round"},
        {"rounds", "3", "rounds"},
        {"fifo", "", "a FIFO we read instead of a file", true},
        {"embedded", "", "an embedded executor instead of a daemon", true}},
       run_output_flood,
       {"--mib", "8", "--rounds", "1"}},
      {"faults",
       "clients killed mid-call and mid-stream, half messages, reconnects, a daemon killed, "
       "hostile callers",
       {{"rounds", "10", "clients killed per kind of call"},
        {"reconnects", "2000", "connections opened and closed"},
        {"max-growth-kib", "1024",
         "the daemon's allowed growth at rest: anonymous memory, and RssAnon after each hostile "
         "case (0: unchecked)"},
        {"max-peak-kib", "65536",
         "the daemon's allowed RssAnon peak above idle under a hostile case (0: unchecked)"},
        {"max-version-ms", "1000", "a Version under a hostile case slower than this fails"},
        {"attack-ms", "2000", "how long the long grace and the Stats flood are held"}},
       run_faults,
       {"--rounds", "1", "--reconnects", "100", "--attack-ms", "1000"}},
  };
  return all;
}

}  // namespace stress

namespace {

using namespace stress;

int usage(const std::string& why) {
  std::cerr << "taskexec-stress: " << why << "\n(see taskexec-stress --help)\n";
  return 2;
}

// A scenario option's value: a whole number; in an option counted in
// milliseconds (-ms) or seconds (seconds, time-limit) also a duration such
// as 5s or 2m, stored as that many of its unit.
std::string scenario_value(const std::string& key, const std::string& v) {
  const bool ms = key.ends_with("-ms");
  const bool secs = key == "seconds" || key == "time-limit";
  if (ms || secs) {
    auto d = taskexec::cli::parse_duration_ms(v, ms ? 1 : 1000);
    if (!d || (secs && *d % 1000 != 0))
      throw taskexec::cli::usage_error{"--" + key + " needs a whole number of " +
                                       (ms ? "milliseconds" : "seconds") +
                                       " or a duration (5s, 2m), not \"" + v + "\""};
    return std::to_string(ms ? *d : *d / 1000);
  }
  long long n = -1;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < 0)
    throw taskexec::cli::usage_error{"--" + key + " needs a whole number, not \"" + v + "\""};
  return v;
}

void list() {
  for (auto& s : scenarios()) {
    std::printf("%s: %s\n", s.name.c_str(), s.help.c_str());
    for (auto& o : s.specs)
      std::printf("  --%-18s %s%s\n", o.name.c_str(), o.help.c_str(),
                  o.flag ? "" : (" (default " + o.fallback + ")").c_str());
  }
}

// A leak on purpose, after the scenario and before the check.
asio::awaitable<std::string> plant(context& ctx, const std::string& kind) {
  if (kind == "process") {
    // A daemonised grandchild of the run, as a task's would be if it escaped
    // (a SIGKILLed daemon's watchdog now takes those along, so it is planted
    // directly): the helper forks it into a session of its own and exits.
    auto cmd = ctx.helper("escape", strings("120"));
    std::vector<std::string> args{cmd.cmd};
    args.insert(args.end(), cmd.args.begin(), cmd.args.end());
    std::vector<char*> argv, envp;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : cmd.env)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    if (int rc = ::posix_spawn(&pid, cmd.cmd.c_str(), nullptr, nullptr, argv.data(), envp.data());
        rc != 0)
      co_return std::string("plant: spawn: ") + std::strerror(rc);
    int status = 0;
    // Blocking, briefly (the helper exits once the grandchild is forked); if
    // our reaper got it first, it has exited all the same.
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  } else if (kind == "socket") {
    auto path = ctx.fresh_path("planted", ".sock");
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::close(fd);
    if (rc != 0)
      co_return "plant: bind " + path + ": " + std::strerror(errno);
  } else if (kind == "cgroup") {
    auto parents = cgroup_parents();
    if (parents.empty())
      co_return "plant: no cgroup hierarchy";
    std::error_code ec;
    std::filesystem::create_directories(parents.front() + "/taskexec-stress-planted-" + ctx.run_id,
                                        ec);
    if (ec)
      co_return "plant: " + ec.message();
  }
  co_return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--helper")
    return run_helper(argc, argv);
  std::string json_path, run_dir, daemon_path, plant_kind;
  bool quiet = false, short_mode = false;
  long long time_limit = 300;
  std::map<std::string, std::string> given;
  std::vector<const scenario*> chosen;
  {
    CLI::App app;
    taskexec::cli::configure(app, "taskexec-stress");
    app.description(
        "taskexec-stress: the load generator (docs/stress.md).\n"
        "  taskexec-stress SCENARIO [OPTIONS]     (taskexec-stress SCENARIO --help)\n"
        "  taskexec-stress all [--short] [OPTIONS]\n"
        "  taskexec-stress --list");
    app.footer("\nExit status: 0 when every check passed, 1 when one failed, 2 on a usage error.");
    bool list_them = false, completion = false;
    app.add_flag("--list", list_them, "the scenarios and their options");
    app.add_flag("--bash-completion", completion, "print a bash completion script")->group("");
    app.add_option("--json", json_path, "every figure, check and leak, as JSON")->type_name("FILE");
    app.add_flag("--short", short_mode, "small counts, a few seconds (as the test suite runs)");
    app.add_flag("--quiet", quiet, "no progress line");
    app.add_option_function<std::string>(
           "--time-limit",
           [&](const std::string& v) {
             time_limit = std::stoll(scenario_value("time-limit", v));
             if (time_limit < 1)
               throw taskexec::cli::usage_error{"--time-limit needs at least 1 s"};
           },
           "stop a scenario's work after this long (default 300 s; 5m)")
        ->type_name("S|DURATION");
    app.add_option("--run-dir", run_dir, "sockets and files go under DIR (default: a new /tmp dir)")
        ->type_name("DIR");
    app.add_option("--taskexecd", daemon_path, "the daemon (default: beside this program)")
        ->type_name("PATH");
    app.add_option("--plant-leak", plant_kind,
                   "leak on purpose to see the leak check catch it; the run then fails")
        ->type_name("process|socket|cgroup")
        ->check(CLI::IsMember({"process", "socket", "cgroup"}));
    for (const auto& sc : scenarios()) {
      auto* sub = app.add_subcommand(sc.name, sc.help);
      sub->fallthrough();
      sub->footer("\nThe common options (taskexec-stress --help) go here too.");
      sub->callback([&chosen, &sc] { chosen.push_back(&sc); });
      for (const auto& spec : sc.specs) {
        const std::string key = spec.name;
        if (spec.flag) {
          sub->add_flag_callback(
              "--" + key, [&given, key] { given[key] = "1"; }, spec.help);
        } else {
          sub->add_option_function<std::string>(
                 "--" + key,
                 [&given, key](const std::string& v) { given[key] = scenario_value(key, v); },
                 spec.help + " (default " + spec.fallback + ")")
              ->type_name(key.ends_with("-ms") ? "MS|DURATION"
                          : key == "seconds"   ? "S|DURATION"
                                               : "N");
        }
      }
    }
    app.add_subcommand("all", "every scenario, one after the other")
        ->fallthrough()
        ->callback([&chosen] {
          for (const auto& sc : scenarios())
            chosen.push_back(&sc);
        });
    auto outcome = taskexec::cli::parse(app, argc, argv, "taskexec-stress");
    if (outcome.exit_code)
      return *outcome.exit_code;
    if (outcome.usage_error.starts_with("unknown command "))
      return usage("unknown scenario " + outcome.usage_error.substr(16) + " (--list shows them)");
    if (!outcome.usage_error.empty())
      return usage(outcome.usage_error);
    if (completion) {
      std::cout << taskexec::cli::bash_completion(app, "taskexec-stress",
                                                  {{"--plant-leak", "process socket cgroup"}});
      return 0;
    }
    if (list_them) {
      list();
      return 0;
    }
    if (chosen.empty())
      return usage("no scenario given (--list shows them)");
  }

  // Room for a fleet's connections and pidfds.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  ::signal(SIGPIPE, SIG_IGN);
  taskexec::set_logger({.level = taskexec::log_level::error});

  const std::string run_id = std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));
  const std::string marker = "TASKEXEC_STRESS_RUN=" + run_id;
  // Daemons and helpers inherit it; tasks are given it.
  ::setenv("TASKEXEC_STRESS_RUN", run_id.c_str(), 1);
  bool own_dir = run_dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/taskexec-stress-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      std::perror("mkdtemp");
      return 1;
    }
    run_dir = tmpl;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    run_dir = std::filesystem::absolute(run_dir).string();
  }

  asio::io_context io;
  taskexec::child_reaper reaper(io.get_executor(), taskexec::reaper_mode::adopt_orphans);
  context ctx{io,
              reaper,
              run_id,
              marker,
              run_dir,
              std::filesystem::read_symlink("/proc/self/exe").string(),
              daemon_path,
              progress_line(!quiet),
              std::chrono::seconds(time_limit),
              plant_kind,
              0};

  leak_options lo;
  lo.marker = marker;
  lo.self_pid = ::getpid();
  lo.run_dir = run_dir;
  lo.cgroup_parents = cgroup_parents();
  // This run's cgroups: tasks are named after the run id (churn, planted
  // leaks) or a socket in the run directory (daemons).
  lo.cgroup_marks = {run_id, std::filesystem::path(run_dir).filename().string()};

  bool all_ok = true;
  boost::json::array results;
  for (auto* s : chosen) {
    std::map<std::string, std::string> args = given;
    if (short_mode)
      for (std::size_t i = 0; i + 1 < s->short_args.size(); i += 2)
        args.emplace(s->short_args[i].substr(2), s->short_args[i + 1]);
    options opt(s->specs, args);
    scenario_report rep;
    rep.name = s->name;
    rep.params = opt.to_json();
    auto before = take_baseline(lo);
    auto t0 = clock_type::now();
    bool done = false;
    std::string plant_error;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          try {
            co_await s->run(ctx, opt, rep);
          } catch (const std::invalid_argument& e) {
            rep.add_check("options", false, e.what());
          } catch (const std::exception& e) {
            rep.add_check("the scenario ran to its end", false, e.what());
          }
          if (!ctx.plant.empty())
            plant_error = co_await plant(ctx, ctx.plant);
          done = true;
        },
        [](const std::exception_ptr& e) {
          if (e)
            std::rethrow_exception(e);
        });
    // The watchdog: a scenario still running well past its time limit (a
    // daemon or helper that stopped answering) fails. Everything of the run
    // is killed, which ends its waits; if it still does not end, the report
    // is printed as it stands and the program exits.
    auto own_time =
        std::chrono::seconds(rep.params.contains("seconds")
                                 ? std::atoll(rep.params.at("seconds").as_string().c_str())
                                 : 0) +
        std::chrono::milliseconds(
            rep.params.contains("phase-ms")
                ? 4 * std::atoll(rep.params.at("phase-ms").as_string().c_str())
                : 0);
    const auto overdue = t0 + ctx.time_limit + own_time + std::chrono::seconds(60);
    std::optional<clock_type::time_point> abandon;
    while (!done) {
      io.run_one_for(std::chrono::milliseconds(200));
      const auto now = clock_type::now();
      if (!abandon && now >= overdue) {
        rep.add_check("the scenario ended by itself", false,
                      "still running 60 s past its time limit; everything it started was killed");
        clean_up(find_leaks(lo, before));
        abandon = now + std::chrono::seconds(10);
      } else if (abandon && now >= *abandon) {
        rep.seconds = std::chrono::duration<double>(now - t0).count();
        std::cout << render_text(rep) << "taskexec-stress: " << s->name
                  << " did not end after everything it started was killed; exiting\n"
                  << std::flush;
        std::_Exit(1);
      }
    }
    rep.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    ctx.progress.finish();
    if (!plant_error.empty())
      rep.add_check("the leak was planted", false, plant_error);

    // The leak check, given a moment for processes killed just now.
    auto leaks = find_leaks_settled(lo, before, std::chrono::milliseconds(6000),
                                    [&] { io.run_for(std::chrono::milliseconds(20)); });
    rep.add_check("leak check: zombies, leftover processes, cgroups, sockets, our descriptors",
                  leaks.clean(), leaks.describe());
    boost::json::object leak_json{{"zombies", leaks.zombies.size()},
                                  {"leftover_processes", leaks.leftover.size()},
                                  {"cgroups", leaks.cgroups.size()},
                                  {"sockets", leaks.sockets.size()},
                                  {"own_fds_before", leaks.own_fds_before},
                                  {"own_fds_after", leaks.own_fds_after},
                                  {"clean", leaks.clean()},
                                  {"detail", leaks.describe()}};
    if (!leaks.clean()) {
      auto not_cleaned = clean_up(leaks);
      leak_json["cleaned_up"] = not_cleaned.empty();
      if (!not_cleaned.empty())
        std::cerr << "taskexec-stress: could not clean up: " << not_cleaned << "\n";
      // Reap what was just killed.
      io.run_for(std::chrono::milliseconds(50));
    }
    std::cout << render_text(rep) << std::flush;
    auto j = render_json(rep);
    j["leaks"] = std::move(leak_json);
    results.push_back(std::move(j));
    all_ok = all_ok && rep.ok();
  }
  if (own_dir) {
    std::error_code ec;
    std::filesystem::remove_all(run_dir, ec);
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << boost::json::serialize(boost::json::object{
             {"run_id", run_id}, {"ok", all_ok}, {"scenarios", std::move(results)}})
      << "\n";
    if (!f) {
      std::cerr << "taskexec-stress: cannot write " << json_path << "\n";
      return 1;
    }
  }
  std::cout << (all_ok ? "all checks passed\n" : "some checks FAILED\n");
  return all_ok ? 0 : 1;
}
