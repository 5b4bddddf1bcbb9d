// The words of a command line before CLI11 parses it: `agent --check` as the `check` command,
// and an unknown command or option named with the nearest known one ("did you mean").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace agent {

// The known word nearest to `word` (edit distance at most 2, or `word` a prefix of exactly one),
// if any.
[[nodiscard]] std::optional<std::string> did_you_mean(std::string_view word, const std::vector<std::string>& known);

// `agent [global flags] --check OPTIONS` is the `check` command: the arguments (argv without
// argv[0]) with a `--check` before any command word moved to be that command. Unchanged when there
// is no such `--check` (a `--check` after another command stays, for the parser to refuse).
[[nodiscard]] std::vector<std::string> check_flag_as_command(std::vector<std::string> args);

// The words CLI11 would misreport, checked against `app`'s commands and options: an unknown
// command ("A subcommand is required"), an unknown option reported as a missing one ("--symvers is
// required" for `--symver`). The message, without the "agent: " prefix, or nullopt when every
// command and option word is known. Values are not judged (the parser does that).
[[nodiscard]] std::optional<std::string> unknown_word(const CLI::App& app, const std::vector<std::string>& args);

// The command the words name, as "agent kabi check" ("agent" when none).
[[nodiscard]] std::string command_words(const CLI::App& app, const std::vector<std::string>& args);

}  // namespace agent
