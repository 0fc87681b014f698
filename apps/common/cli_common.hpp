// What the three programs' command lines share (taskexec, taskexecd,
// taskexec-stress): CLI11 parsing with one set of conventions, durations,
// --version, exit codes and the generated bash completion.
//
// Conventions (docs/client.md, "Command-line conventions"):
// - every (sub)command has its own options and -h/--help (on stdout, exit 0);
// - --opt=value and --opt value; an unknown or misplaced option is a usage
//   error naming it (exit 2);
// - durations: 500ms, 5s, 2m, 1h, 1m30s, 1.5s; in a flag whose name ends in
//   -ms a bare integer is milliseconds, elsewhere a duration needs its unit;
// - a single-valued option given twice: the last one counts;
// - --version prints the program's version, the protocol's and Boost's.
//
// Adding an option: call CLI11's add_option / add_flag on the subcommand, or
// the helpers below (add_integer, add_duration) where the value is checked
// in this project's words. A helper's callback runs while parsing and throws
// usage_error, which parse() prints as "PROGRAM: WHY" and exits 2.
#pragma once

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace taskexec::cli {

// The exit codes of taskexec (docs/client.md has the table; taskexecd and
// taskexec-stress use 0, 1 and 2 alone).
inline constexpr int exit_ok = 0;
inline constexpr int exit_failed = 1;           ///< the call or the task's operation failed
inline constexpr int exit_usage = 2;            ///< a usage error
inline constexpr int exit_unreachable = 3;      ///< no daemon answers at the socket / config
inline constexpr int exit_timeout = 124;        ///< a --timeout expired (as timeout(1))
inline constexpr int exit_daemon_failed = 125;  ///< run: the daemon failed (as docker run)
inline constexpr int exit_cannot_launch = 126;  ///< the command could not be launched
inline constexpr int exit_not_found = 127;      ///< the command's binary was not found

/// A usage error; `what` is complete ("--timeout needs a duration ...").
struct usage_error {
  std::string what;
};

/// Milliseconds of a duration: a sequence of NUMBER UNIT (units ms, s, m, h;
/// a number may have a fraction: 1.5s), such as 500ms, 5s, 2m, 1m30s. A bare
/// integer is `bare_unit_ms` milliseconds each (0: a bare integer is
/// refused). nullopt when the text is not one, or not a whole number of
/// milliseconds, or past 2^53 ms.
std::optional<long long> parse_duration_ms(std::string_view text, long long bare_unit_ms);

/// An option taking a whole number from min to max (checked as parsed).
CLI::Option* add_integer(CLI::App& app, const std::string& names,
                         std::function<void(long long)> set, long long min, long long max,
                         const std::string& help);

/// An option taking a duration from min_ms to max_ms. `bare_unit_ms` as in
/// parse_duration_ms: 1 for the -ms flags, 0 for a flag whose name has no
/// unit, 1000 for one counted in seconds.
CLI::Option* add_duration(CLI::App& app, const std::string& names,
                          std::function<void(long long)> set, long long bare_unit_ms,
                          long long min_ms, long long max_ms, const std::string& help);

/// "taskexec 1.0.0\nprotocol taskexec-jsonrpc 2.0.0\nBoost 1.81.0\n"
std::string version_text(std::string_view program);
/// {"program", "version", "protocol", "protocol_version", "boost"}
boost::json::object version_json(std::string_view program);

/// The conventions every program's App gets: a --version flag (handled by
/// parse), help on stdout, errors in our words. Call before adding options.
void configure(CLI::App& app, std::string_view program);

/// What parse() found besides the options: help or version asked for (and
/// printed), or a usage error (not printed: the caller prints it its way).
struct parse_outcome {
  std::optional<int> exit_code;  ///< set: print nothing more and exit with it
  std::string usage_error;       ///< non-empty: a usage error, exit 2
  std::string command;           ///< the subcommand given, if any (for "see X --help")
};

/// Parse argv. Help (-h/--help anywhere, for the command it follows) and
/// --version print on stdout and return exit_ok; an unknown option, an
/// option of another command, an extra argument or a bad value is a usage
/// error naming it. Options the main App holds may come before or after the
/// subcommand's name (subcommands fall through to it).
parse_outcome parse(CLI::App& app, int argc, char** argv, std::string_view program);

/// A bash completion script for the App's tree: subcommands, each one's
/// options, the choices of an option given them with `choices`, files for
/// the rest. `choices` maps "--option" (any subcommand) to its words.
std::string bash_completion(const CLI::App& app, std::string_view program,
                            const std::vector<std::pair<std::string, std::string>>& choices);

}  // namespace taskexec::cli
