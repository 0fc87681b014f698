// taskexec's command line: what each command was given, and the CLI11
// parser that fills it (options.cpp). A command's options are added in its
// own add_* function there; an option shared by several commands (the
// launch options, the daemon options) in a function of its own.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "taskexec/remote_executor.hpp"
#include "taskexec/types.hpp"

namespace taskexec_cli {

struct options {
  bool json_out = false;
  std::string command;
  std::string socket;
  std::string reattach;
  std::string daemon;
  taskexec::connect_options trust;  // --expect-uid
  // launch
  taskexec::exec_command cmd;
  std::string spec_file;
  bool have_resources = false;
  // start, run: the daemon
  std::string log_file, log_level = "info";
  long long kill_grace_ms = 5000;
  std::string hostname;  // a container task's (taskexecd --hostname)
  std::vector<unsigned> allowed_uids;
  // other commands
  std::optional<long long> timeout_ms;  // run, wait, exec
  bool interactive = false;             // exec -i
  bool tty = false;                     // exec -t
  bool no_fds = false;                  // exec --no-fds: the JSON path
  std::string signal_arg;
  std::string shutdown_signal = "SIGINT";
  long long grace_ms = 5000;
  long long interval_ms = 1000;
  long long count = 0;              // 0: until interrupted
  std::string format;               // stats: table, json, openmetrics; metrics: openmetrics, json
  std::vector<std::string> labels;  // stats, metrics: K=V on every OpenMetrics sample
  unsigned long long since = 0;
  bool follow = false;            // events --follow
  std::string task_id, exit_dir;  // start: taskexecd --task-id, --exit-dir
};

/// What parse_command_line decided: run the command, or exit now.
struct parsed {
  options opts;
  std::optional<int> exit_code;  ///< set: help or version was printed, or a usage error
  std::string usage_error;       ///< non-empty: print it (exit_code is 2)
  std::string help;              ///< where to look: "taskexec wait --help"
};

parsed parse_command_line(int argc, char** argv);

}  // namespace taskexec_cli
