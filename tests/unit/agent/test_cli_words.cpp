// The command line's words before CLI11 parses them (agent/base/cli_words.cpp): `--check` as the
// check command, unknown commands and options named with the nearest known one.
#include "catch2_compat.h"

#include <CLI/CLI.hpp>

#include "agent/base/cli_words.h"

using agent::check_flag_as_command;
using agent::command_words;
using agent::did_you_mean;
using agent::unknown_word;
using Args = std::vector<std::string>;

TEST_CASE("did_you_mean: one or two edits, a transposition, or an unambiguous prefix") {
  const Args commands = {"check", "diff", "matrix", "explain"};
  CHECK(did_you_mean("chek", commands) == std::optional<std::string>("check"));
  CHECK(did_you_mean("chcek", commands) == std::optional<std::string>("check"));  // transposition
  CHECK(did_you_mean("matirx", commands) == std::optional<std::string>("matrix"));
  CHECK(did_you_mean("expl", commands) == std::optional<std::string>("explain"));  // prefix
  CHECK(did_you_mean("install", commands) == std::nullopt);
  CHECK(did_you_mean("--symver", {"--symvers", "--stablelist"}) == std::optional<std::string>("--symvers"));
  // A prefix of two words is no suggestion.
  CHECK(did_you_mean("--sig", {"--signing-key", "--signing-cert"}) == std::nullopt);
}

TEST_CASE("check_flag_as_command: --check before any command word is the check command") {
  CHECK(check_flag_as_command({"--check", "--root", "/host"}) == Args{"check", "--root", "/host"});
  CHECK(check_flag_as_command({"-v", "--root", "/host", "--check"}) == Args{"check", "-v", "--root", "/host"});
  // After a command word it stays (the parser refuses it there), and after "--" it is a value.
  CHECK(check_flag_as_command({"run", "--check"}) == Args{"run", "--check"});
  CHECK(check_flag_as_command({"--", "--check"}) == Args{"--", "--check"});
  CHECK(check_flag_as_command({"kabi", "check"}) == Args{"kabi", "check"});
}

namespace {

// A command tree shaped like the agent's: options with values, flags, positionals, a nested
// command that requires a subcommand.
struct Tree {
  CLI::App app{"t", "agent"};
  std::string s;
  std::vector<std::string> modules;
  bool flag = false;
  Tree() {
    app.add_flag("-v,--verbose", flag);
    CLI::App* run = app.add_subcommand("run");
    run->fallthrough();
    run->add_option("--root", s);
    run->add_flag("--exit-on-refuse", flag);
    CLI::App* kabi = app.add_subcommand("kabi");
    kabi->fallthrough()->require_subcommand(1);
    CLI::App* check = kabi->add_subcommand("check");
    check->fallthrough();
    check->add_option("--symvers", s)->required();
    check->add_option("-o", s);
    check->add_option("modules", modules);
    kabi->add_subcommand("matrix")->fallthrough();
  }
};

}  // namespace

TEST_CASE("unknown_word: a misspelt command or option is named, with the nearest known word") {
  Tree t;
  CHECK(unknown_word(t.app, {"kabi", "chek"}) ==
        std::optional<std::string>("kabi: unknown command 'chek' (did you mean 'check'?)"));
  CHECK(unknown_word(t.app, {"rnu"}) == std::optional<std::string>("unknown command 'rnu' (did you mean 'run'?)"));
  CHECK(unknown_word(t.app, {"kabi", "check", "--symver", "x", "a.ko"}) ==
        std::optional<std::string>("kabi check: unknown option --symver (did you mean '--symvers'?)"));
  CHECK(unknown_word(t.app, {"run", "--exit-on-refuse=1", "--rot", "/"}) ==
        std::optional<std::string>("run: unknown option --rot (did you mean '--root'?)"));
  // An option of another command is unknown here, whatever its spelling.
  CHECK(unknown_word(t.app, {"kabi", "check", "--root", "/"}).has_value());
  CHECK(unknown_word(t.app, {"run", "-x"}).has_value());
}

TEST_CASE("unknown_word: known words, values, fallthrough flags and positionals pass") {
  Tree t;
  CHECK(unknown_word(t.app, {}) == std::nullopt);
  CHECK(unknown_word(t.app, {"-v", "run", "--root", "/host", "-v", "--exit-on-refuse"}) == std::nullopt);
  CHECK(unknown_word(t.app, {"run", "--root=/host"}) == std::nullopt);
  // A value that looks like a command word is a value; positionals of a command are positionals.
  CHECK(unknown_word(t.app, {"kabi", "check", "--symvers", "matrix", "-o", "x", "a.ko", "b.ko"}) == std::nullopt);
  CHECK(unknown_word(t.app, {"kabi", "check", "-ox", "a.ko"}) == std::nullopt);
  // After "--" nothing is judged.
  CHECK(unknown_word(t.app, {"run", "--", "--anything"}) == std::nullopt);
}

TEST_CASE("command_words: the command the words name") {
  Tree t;
  CHECK(command_words(t.app, {}) == "agent");
  CHECK(command_words(t.app, {"-v", "kabi", "check", "--symvers", "x"}) == "agent kabi check");
  CHECK(command_words(t.app, {"run", "--root", "kabi"}) == "agent run");
}
