#include "agent/base/cli_words.h"

#include <algorithm>

#include <CLI/CLI.hpp>

namespace agent {

namespace {

// Levenshtein distance with adjacent transpositions (optimal string alignment).
size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App* s) { return !s->get_name().empty(); }))
    names.push_back(sub->get_name());
  return names;
}

bool has_positionals(const CLI::App& app) {
  const auto opts = app.get_options([](const CLI::Option* o) { return !o->nonpositional(); });
  return !opts.empty();
}

// The option `name` ("--x" or "-x") of `app` or, through fallthrough, of its parents.
const CLI::Option* find_option(const CLI::App* app, const std::string& name) {
  for (; app != nullptr; app = app->get_parent()) {
    if (const CLI::Option* o = app->get_option_no_throw(name)) return o;
    if (!app->get_fallthrough()) break;
  }
  return nullptr;
}

std::vector<std::string> option_names(const CLI::App* app) {
  std::vector<std::string> names;
  for (; app != nullptr; app = app->get_parent()) {
    for (const CLI::Option* o : app->get_options()) {
      for (const auto& l : o->get_lnames()) names.push_back("--" + l);
      for (const auto& s : o->get_snames()) names.push_back("-" + s);
    }
    if (!app->get_fallthrough()) break;
  }
  return names;
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr; app = app->get_parent())
    path = app->get_parent() == nullptr ? "agent" + path : " " + app->get_name() + path;
  return path;
}

// "kabi check: " for an error about that command's words; "" for the top level's.
std::string prefix(const CLI::App* app) {
  const std::string path = command_path(app);
  return path == "agent" ? "" : path.substr(6) + ": ";
}

std::string suggestion(std::string_view word, const std::vector<std::string>& known) {
  auto near = did_you_mean(word, known);
  return near ? " (did you mean '" + *near + "'?)" : "";
}

bool takes_value(const CLI::Option* o) { return o->get_items_expected_max() > 0; }

}  // namespace

std::optional<std::string> did_you_mean(std::string_view word, const std::vector<std::string>& known) {
  std::optional<std::string> best;
  size_t best_distance = 3;  // at most 2 edits
  for (const auto& k : known) {
    const size_t d = distance(word, k);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  if (best) return best;
  std::optional<std::string> prefixed;
  for (const auto& k : known)
    if (word.size() >= 3 && k.size() > word.size() && k.compare(0, word.size(), word) == 0) {
      if (prefixed) return std::nullopt;  // ambiguous
      prefixed = k;
    }
  return prefixed;
}

std::vector<std::string> check_flag_as_command(std::vector<std::string> args) {
  static const std::vector<std::string> kCommandWords = {"run", "unload", "ready", "build", "kabi", "manifest", "check"};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (std::find(kCommandWords.begin(), kCommandWords.end(), a) != kCommandWords.end()) break;
    if (a == "--check") {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      args.insert(args.begin(), "check");
      break;
    }
  }
  return args;
}

namespace {

// The command line walked as CLI11 will: command words descend, an option's value is skipped.
// Stops at the first word no command or option knows (`error` says which).
struct Walk {
  const CLI::App* command = nullptr;
  std::optional<std::string> error;
};

Walk walk(const CLI::App& app, const std::vector<std::string>& args) {
  Walk w{&app, std::nullopt};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() > 1 && a[0] == '-') {
      if (a[1] == '-') {
        const std::string name = a.substr(0, a.find('='));
        const CLI::Option* o = find_option(w.command, name);
        if (o == nullptr) {
          w.error = prefix(w.command) + "unknown option " + name + suggestion(name, option_names(w.command));
          return w;
        }
        if (takes_value(o) && name.size() == a.size()) ++i;  // its value is the next word
        continue;
      }
      // -x, -xy (flags together), -xVALUE
      for (size_t c = 1; c < a.size(); ++c) {
        const std::string name = std::string("-") + a[c];
        const CLI::Option* o = find_option(w.command, name);
        if (o == nullptr) {
          w.error = prefix(w.command) + "unknown option " + name + suggestion(a, option_names(w.command));
          return w;
        }
        if (takes_value(o)) {
          if (c + 1 == a.size()) ++i;
          break;
        }
      }
      continue;
    }
    const auto commands = command_names(*w.command);
    if (std::find(commands.begin(), commands.end(), a) != commands.end()) {
      w.command = w.command->get_subcommand(a);
      continue;
    }
    if (!commands.empty() && !has_positionals(*w.command)) {
      w.error = prefix(w.command) + "unknown command '" + a + "'" + suggestion(a, commands);
      return w;
    }
  }
  return w;
}

}  // namespace

std::optional<std::string> unknown_word(const CLI::App& app, const std::vector<std::string>& args) {
  return walk(app, args).error;
}

std::string command_words(const CLI::App& app, const std::vector<std::string>& args) {
  return command_path(walk(app, args).command);
}

}  // namespace agent
