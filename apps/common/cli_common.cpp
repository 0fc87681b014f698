#include "cli_common.hpp"

#include <algorithm>
#include <boost/version.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <iostream>
#include <set>
#include <sstream>

#include "taskexec/version.hpp"

namespace taskexec::cli {

namespace {

constexpr long long max_duration_ms = 1LL << 53;

std::string range_text(long long min, long long max) {
  return "from " + std::to_string(min) + " to " + std::to_string(max);
}

std::string ms_text(long long ms) {
  if (ms % 3'600'000 == 0 && ms >= 3'600'000)
    return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms >= 60'000)
    return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0 && ms >= 1000)
    return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// The first name of an option's names ("-e,--env" -> "--env").
std::string long_name(const std::string& names) {
  std::string best;
  std::stringstream in(names);
  for (std::string n; std::getline(in, n, ',');) {
    if (n.starts_with("--"))
      return n;
    if (best.empty())
      best = n;
  }
  return best;
}

std::string shell_word(std::string_view program) {
  std::string out;
  for (char c : program)
    out += (std::isalnum(static_cast<unsigned char>(c)) != 0) ? c : '_';
  return out;
}

// The names an option is given by on the command line.
std::vector<std::string> spellings(const CLI::Option& o) {
  std::vector<std::string> out;
  for (const auto& s : o.get_snames())
    out.push_back("-" + s);
  for (const auto& l : o.get_lnames())
    out.push_back("--" + l);
  return out;
}

const CLI::Option* find_option(const CLI::App& app, const std::string& arg) {
  std::string name = arg.substr(0, arg.find('='));
  for (const auto* o : app.get_options()) {
    for (const auto& s : spellings(*o)) {
      if (s == name || (name.size() > 2 && name[1] != '-' && s.size() == 2 && s[1] == name[1]))
        return o;
    }
  }
  return nullptr;
}

std::string extra_error(const CLI::App& app, const CLI::App* sub, const std::string& arg) {
  if (arg.size() < 2 || arg[0] != '-')
    return sub ? "unexpected argument \"" + arg + "\" for " + sub->get_name()
               : "unknown command \"" + arg + "\"";
  const std::string name = arg.substr(0, arg.find('='));
  std::vector<std::string> owners;
  for (const auto* s : app.get_subcommands({})) {
    if (find_option(*s, name))
      owners.push_back(s->get_name());
  }
  if (sub && std::find(owners.begin(), owners.end(), sub->get_name()) != owners.end())
    return "\"" + name + "\" is an option of " + sub->get_name() + ": put it after \"" +
           sub->get_name() + "\"";
  std::string list;
  for (std::size_t i = 0; i < owners.size(); ++i)
    list += (i == 0 ? "" : i + 1 == owners.size() ? " and " : ", ") + owners[i];
  if (owners.empty())
    return "unknown option \"" + name + "\"";
  if (!sub)
    return "\"" + name + "\" is an option of " + list + ": put it after the command's name";
  return sub->get_name() + " takes no option \"" + name + "\" (" + list +
         (owners.size() == 1 ? " does)" : " do)");
}

}  // namespace

std::optional<long long> parse_duration_ms(std::string_view text, long long bare_unit_ms) {
  if (text.empty())
    return std::nullopt;
  if (text.find_first_not_of("0123456789") == std::string_view::npos) {
    if (bare_unit_ms == 0 && text.find_first_not_of('0') != std::string_view::npos)
      return std::nullopt;
    long long n = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || p != text.data() + text.size() ||
        n > max_duration_ms / std::max(bare_unit_ms, 1LL))
      return std::nullopt;
    return n * bare_unit_ms;
  }
  double total = 0;
  while (!text.empty()) {
    std::size_t digits = text.find_first_not_of("0123456789.");
    if (digits == 0 || digits == std::string_view::npos)
      return std::nullopt;
    std::string number(text.substr(0, digits));
    if (number.front() == '.' || number.back() == '.' ||
        std::count(number.begin(), number.end(), '.') > 1 || number.size() > 20)
      return std::nullopt;
    text.remove_prefix(digits);
    std::size_t unit_len = text.find_first_of("0123456789.");
    if (unit_len == std::string_view::npos)
      unit_len = text.size();
    auto unit = text.substr(0, unit_len);
    text.remove_prefix(unit_len);
    double scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "h")
      scale = 3'600'000;
    else
      return std::nullopt;
    total += std::stod(number) * scale;
    if (total > static_cast<double>(max_duration_ms))
      return std::nullopt;
  }
  const double whole = std::round(total);
  if (std::fabs(whole - total) > 1e-6)
    return std::nullopt;  // 1.0005s: not a whole millisecond
  return static_cast<long long>(whole);
}

CLI::Option* add_integer(CLI::App& app, const std::string& names,
                         std::function<void(long long)> set, long long min, long long max,
                         const std::string& help) {
  const std::string flag = long_name(names);
  return app
      .add_option_function<std::string>(
          names,
          [flag, set = std::move(set), min, max](const std::string& v) {
            long long n = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc{} || p != v.data() + v.size() || n < min || n > max)
              throw usage_error{flag + " needs a number " + range_text(min, max) + ", not \"" + v +
                                "\""};
            set(n);
          },
          help)
      ->type_name("N");
}

CLI::Option* add_duration(CLI::App& app, const std::string& names,
                          std::function<void(long long)> set, long long bare_unit_ms,
                          long long min_ms, long long max_ms, const std::string& help) {
  const std::string flag = long_name(names);
  std::string form = "a duration (500ms, 5s, 2m";
  if (bare_unit_ms == 1)
    form += "; a bare number is milliseconds";
  else if (bare_unit_ms == 1000)
    form += "; a bare number is seconds";
  else
    form += ": the unit is needed";
  form += ")";
  return app
      .add_option_function<std::string>(
          names,
          [flag, form, set = std::move(set), bare_unit_ms, min_ms, max_ms](const std::string& v) {
            auto ms = parse_duration_ms(v, bare_unit_ms);
            if (!ms || *ms < min_ms || *ms > max_ms)
              throw usage_error{flag + " needs " + form + " from " + ms_text(min_ms) + " to " +
                                ms_text(max_ms) + ", not \"" + v + "\""};
            set(*ms);
          },
          help)
      ->type_name(bare_unit_ms == 1      ? "MS|DURATION"
                  : bare_unit_ms == 1000 ? "S|DURATION"
                                         : "DURATION");
}

std::string version_text(std::string_view program) {
  std::ostringstream o;
  o << program << " " << library_version << "\n"
    << "protocol taskexec-jsonrpc " << executor_version << "\n"
    << "Boost " << BOOST_VERSION / 100000 << "." << BOOST_VERSION / 100 % 1000 << "."
    << BOOST_VERSION % 100 << "\n";
  return o.str();
}

boost::json::object version_json(std::string_view program) {
  std::string boost = std::to_string(BOOST_VERSION / 100000) + "." +
                      std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                      std::to_string(BOOST_VERSION % 100);
  boost::json::object o;
  o["program"] = program;
  o["version"] = library_version;
  o["protocol"] = "taskexec-jsonrpc";
  o["protocol_version"] = executor_version;
  o["boost"] = boost;
  return o;
}

void configure(CLI::App& app, std::string_view program) {
  app.name(std::string(program));
  app.allow_extras();  // parse() names them, in our words
  app.require_subcommand(0, 1);
  // An option given twice: the last one counts (a wrapper's default, then
  // the user's choice); options that collect (--env) keep every value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--version")
      ->description("print the program's version, the protocol's and Boost's; exit 0");
  app.get_formatter()->column_width(32);
}

parse_outcome parse(CLI::App& app, int argc, char** argv, std::string_view program) {
  parse_outcome out;
  auto done = [&] {
    if (!app.get_subcommands().empty())
      out.command = app.get_subcommands().front()->get_name();
    return out;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help() << std::flush;
    out.exit_code = exit_ok;
    return done();
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All) << std::flush;
    out.exit_code = exit_ok;
    return done();
  } catch (const CLI::ParseError& e) {
    out.usage_error = e.what();
    return done();
  } catch (const usage_error& e) {
    out.usage_error = e.what;
    return done();
  }
  if (app.get_option("--version")->count() > 0) {
    std::cout << version_text(program) << std::flush;
    out.exit_code = exit_ok;
    return done();
  }
  const CLI::App* sub = app.get_subcommands().empty() ? nullptr : app.get_subcommands().front();
  for (const auto& a : app.remaining()) {
    if (a == "--")
      continue;
    out.usage_error = extra_error(app, sub, a);
    return done();
  }
  if (sub) {
    for (const auto& a : sub->remaining()) {
      if (a == "--")
        continue;
      out.usage_error = extra_error(app, sub, a);
      return done();
    }
  }
  return done();
}

std::string bash_completion(const CLI::App& app, std::string_view program,
                            const std::vector<std::pair<std::string, std::string>>& choices) {
  const std::string fn = "_" + shell_word(program) + "_complete";
  std::set<std::string> valued;  // options that take a value
  auto options_of = [&](const CLI::App& a) {
    std::string words;
    for (const auto* o : a.get_options()) {
      if (o->get_positional() || o->get_group().empty())
        continue;
      for (const auto& s : spellings(*o)) {
        words += (words.empty() ? "" : " ") + s;
        if (o->get_items_expected_max() > 0)
          valued.insert(s);
      }
    }
    return words;
  };
  std::ostringstream o;
  o << "# bash completion for " << program << " (generated by `" << program
    << " --bash-completion`)\n"
    << fn << "() {\n"
    << "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} sub= i w\n"
    << "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
    << "    w=${COMP_WORDS[i]}\n"
    << "    if [[ $w == -- ]]; then COMPREPLY=($(compgen -f -- \"$cur\")); return 0; fi\n"
    << "    case $w in\n";
  std::string subs;
  for (const auto* s : app.get_subcommands({})) {
    subs += (subs.empty() ? "" : " ") + s->get_name();
    o << "      " << s->get_name() << ") [[ -z $sub ]] && sub=" << s->get_name() << " ;;\n";
  }
  o << "    esac\n  done\n  case $prev in\n";
  const std::string global = options_of(app);
  std::vector<std::pair<std::string, std::string>> per_sub;
  for (const auto* s : app.get_subcommands({}))
    per_sub.emplace_back(s->get_name(), options_of(*s));
  for (const auto& [opt, words] : choices) {
    if (opt.starts_with("-")) {
      o << "    " << opt << ") COMPREPLY=($(compgen -W \"" << words
        << "\" -- \"$cur\")); return 0 ;;\n";
      valued.erase(opt);
    }
  }
  if (!valued.empty()) {
    o << "    ";
    bool first = true;
    for (const auto& v : valued) {
      o << (first ? "" : "|") << v;
      first = false;
    }
    o << ") COMPREPLY=($(compgen -f -- \"$cur\")); return 0 ;;\n";
  }
  o << "  esac\n"
    << "  if [[ $cur == -* ]]; then\n"
    << "    local opts=\"" << global << "\"\n"
    << "    case $sub in\n";
  for (const auto& [name, words] : per_sub)
    o << "      " << name << ") opts+=\" " << words << "\" ;;\n";
  o << "    esac\n"
    << "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n";
  if (!subs.empty())
    o << "  elif [[ -z $sub ]]; then\n"
      << "    COMPREPLY=($(compgen -W \"" << subs << "\" -- \"$cur\"))\n";
  for (const auto& [key, words] : choices) {
    if (!key.starts_with("-"))
      o << "  elif [[ $sub == " << key << " ]]; then\n"
        << "    COMPREPLY=($(compgen -W \"" << words << "\" -- \"$cur\"))\n";
  }
  o << "  else\n"
    << "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
    << "  fi\n"
    << "}\n"
    << "complete -F " << fn << " " << program << "\n";
  return o.str();
}

}  // namespace taskexec::cli
