// Runs build/bin/taskexec-stress as a task of the test's executor and hands
// back its exit code, output and --json report.
#pragma once

#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"

namespace test_support {

struct stress_result {
  int code = -1;
  std::string out, err;
  boost::json::object report;  ///< the --json file; empty when none was written

  /// The report of the one scenario that ran.
  const boost::json::object& scenario() const {
    return report.at("scenarios").as_array().at(0).as_object();
  }
  const boost::json::value& figure(const char* name) const {
    return scenario().at("figures").at(name);
  }
  const boost::json::value& leaks(const char* name) const {
    return scenario().at("leaks").at(name);
  }
  /// Every check that failed, "name: detail" per line.
  std::string failed_checks() const {
    std::string out_;
    if (report.empty())
      return "no report";
    for (auto& s : report.at("scenarios").as_array())
      for (auto& c : s.at("checks").as_array())
        if (!c.at("ok").as_bool())
          out_ += std::string(c.at("name").as_string()) + ": " +
                  std::string(c.at("detail").as_string()) + "\n";
    return out_;
  }
};

inline asio::awaitable<stress_result> run_stress(std::vector<std::string> args) {
#ifdef TASKEXEC_SANITIZED
  // Instrumented, the daemon's heap keeps freed memory in the sanitizer's
  // quarantine: its growth says nothing of a leak (the leak check does).
  // Its peak under faults' hostile callers says as little, and its calls
  // are several times slower. A test that sets one of these bounds itself
  // keeps its own.
  auto unless_given = [&](const char* option, const char* value) {
    if (std::find(args.begin(), args.end(), option) == args.end()) {
      args.emplace_back(option);
      args.emplace_back(value);
    }
  };
  if (!args.empty() && (args[0] == "rpc-flood" || args[0] == "faults"))
    unless_given("--max-growth-kib", "0");
  if (!args.empty() && args[0] == "faults") {
    unless_given("--max-peak-kib", "0");
    unless_given("--max-version-ms", "10000");
  }
#endif
  temp_dir dir;
  auto json_path = (dir.path / "report.json").string();
  args.push_back("--json");
  args.push_back(json_path);
  args.push_back("--quiet");
  pipe_reader out, err;
  taskexec::task_executor t{harness::get().reaper};
  taskexec::exec_command cmd;
  cmd.cmd = TASKEXEC_STRESS;
  cmd.args = std::move(args);
  cmd.env.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");  // no braced list in a coroutine
  cmd.stdout_fd = out.write_fd();
  cmd.stderr_fd = err.write_fd();
  auto l = co_await t.launch(cmd);
  BOOST_REQUIRE_MESSAGE(l, (l ? "" : l.error().message));
  out.close_write();
  err.close_write();
  stress_result r;
  r.out = co_await out.rest();
  r.err = co_await err.rest();
  r.code = (co_await t.wait())->exit_code;
  std::ifstream f(json_path);
  std::stringstream text;
  text << f.rdbuf();
  if (!text.str().empty())
    r.report = boost::json::parse(text.str()).as_object();
  co_return r;
}

/// Processes that still carry the run's marker (none once a run is over).
inline std::vector<int> processes_of_run(const std::string& run_id) {
  std::vector<int> out;
  const std::string marker = "TASKEXEC_STRESS_RUN=" + run_id;
  for (auto& e : std::filesystem::directory_iterator("/proc")) {
    auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::ifstream env(e.path() / "environ");
    std::string entry;
    while (std::getline(env, entry, '\0'))
      if (entry == marker)
        out.push_back(std::stoi(name));
  }
  return out;
}

}  // namespace test_support
