// The README's lists of reason codes and exit codes against agent/base/vocabulary.h, both ways: a
// code the agent reports that the README does not name fails, and so does one the README names
// that the agent does not define.
#include "agent/base/vocabulary.h"

#include "catch2_compat.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "agent/decision/decide.h"

using namespace agent;

namespace {

std::string readme() {
  std::ifstream in(AGENT_README, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The text from `start` (which must be there) to the first `end` after it.
std::string span(const std::string& text, const std::string& start, const std::string& end) {
  const size_t a = text.find(start);
  INFO(AGENT_README << ": looking for '" << start << "'");
  REQUIRE(a != std::string::npos);
  const size_t b = text.find(end, a + start.size());
  INFO(AGENT_README << ": no '" << end << "' after '" << start << "'");
  REQUIRE(b != std::string::npos);
  return text.substr(a, b - a);
}

// The backquoted words that look like reason codes (lower case, words joined by '_'), but for
// the other words the lists quote: a decision (`refuse`) and fields (`failure`, `reason`, `detail`).
std::set<std::string> codes_in(const std::string& text) {
  static const std::regex code("`([a-z]+(_[a-z0-9]+)*)`");
  static const std::set<std::string> not_codes = {"refuse", "failure", "reason", "detail"};
  std::set<std::string> out;
  for (std::sregex_iterator it(text.begin(), text.end(), code), end; it != end; ++it)
    if (!not_codes.count((*it)[1])) out.insert((*it)[1]);
  return out;
}

std::set<std::string> defined(unsigned list) {
  std::set<std::string> out;
  for (const auto& r : kReasonCodes)
    if (r.lists & list) out.insert(std::string(r.code));
  return out;
}

void same(const std::set<std::string>& in_readme, const std::set<std::string>& in_code, const std::string& what) {
  for (const auto& c : in_code) {
    INFO(what << ": '" << c << "' is defined in the code, not listed in README.md");
    CHECK(in_readme.count(c) == 1);
  }
  for (const auto& c : in_readme) {
    INFO(what << ": README.md lists '" << c << "', the code does not define it");
    CHECK(in_code.count(c) == 1);
  }
}

}  // namespace

TEST_CASE("vocabulary: every reason code is defined once") {
  std::set<std::string> seen;
  for (const auto& r : kReasonCodes) {
    INFO(r.code);
    CHECK(seen.insert(std::string(r.code)).second);
    CHECK(r.lists != 0);
  }
  CHECK(seen.size() > 40);
}

TEST_CASE("vocabulary: the README's decision reason codes") {
  const std::string text = span(readme(), "Decision reason codes:", "The decision is a pure function");
  REQUIRE(codes_in(text).size() > 15);
  same(codes_in(text), defined(kDecisionReason), "decision reasons");
}

TEST_CASE("vocabulary: the README's entrypoint reason codes") {
  const std::string text = span(readme(), "Reason codes the entrypoint adds to the decision's:", "\n\n");
  REQUIRE(codes_in(text).size() > 15);
  same(codes_in(text), defined(kEntrypointReason), "entrypoint reasons");
}

TEST_CASE("vocabulary: the README's reasons of a failed build") {
  const std::string text = span(readme(), "a failure adds `reason` (", "`detail`");
  REQUIRE(codes_in(text).size() > 5);
  same(codes_in(text), defined(kBuildReason), "build reasons");
}

TEST_CASE("vocabulary: the README's exit code table") {
  const std::string text = readme();
  CHECK(text.find("Every command exits `" + std::to_string(kExitInputError) + "` on a usage error") != std::string::npos);
  const std::string table = span(text, "| command | 0 | 1 | other |", "\n\n");
  // | `agent check` (`agent --check`) | prebuilt ... | | `10` build ..., `20` refuse ... |
  static const std::regex row(R"(\n\| `([^`]+)`[^|]*\|([^|]*)\|([^|]*)\|([^|\n]*)\|)");
  static const std::regex number("`([0-9]+)`");
  std::set<std::pair<std::string, int>> in_readme, in_code;
  for (std::sregex_iterator it(table.begin(), table.end(), row), end; it != end; ++it) {
    const std::string command = (*it)[1];
    if ((*it)[2].str().find_first_not_of(' ') != std::string::npos) in_readme.insert({command, 0});
    if ((*it)[3].str().find_first_not_of(' ') != std::string::npos) in_readme.insert({command, 1});
    const std::string other = (*it)[4];
    for (std::sregex_iterator n(other.begin(), other.end(), number); n != std::sregex_iterator(); ++n)
      in_readme.insert({command, std::stoi((*n)[1])});
  }
  REQUIRE(in_readme.size() > 15);
  for (const auto& e : kExitCodes) in_code.insert({std::string(e.command), e.code});
  for (const auto& [command, code] : in_code) {
    INFO(command << " exits " << code << " (agent/base/vocabulary.h); README.md's table does not say so");
    CHECK(in_readme.count({command, code}) == 1);
  }
  for (const auto& [command, code] : in_readme) {
    INFO("README.md: " << command << " exits " << code << "; agent/base/vocabulary.h has no such exit code");
    CHECK(in_code.count({command, code}) == 1);
  }
}

TEST_CASE("vocabulary: the README's decision table has each decision's exit code") {
  const std::string table = span(readme(), "| exit | decision | when |", "\n\n");
  static const std::regex row(R"(\n\| ([0-9]+) \| `([a-z-]+)` \|)");
  std::set<std::pair<int, std::string>> in_readme, in_code;
  for (std::sregex_iterator it(table.begin(), table.end(), row), end; it != end; ++it)
    in_readme.insert({std::stoi((*it)[1]), (*it)[2]});
  for (Decision d : {Decision::Prebuilt, Decision::Build, Decision::Refuse, Decision::NoDevice, Decision::UpgradePending})
    in_code.insert({exit_code(d), decision_name(d)});
  CHECK(in_readme == in_code);
}

// kabi's rule codes are defined once, in kabi/rules.h's `namespace reason`: read from that
// source, they are compared with the README's table of the rules (column "reason code") and the
// audit's table (docs/kernel-load-checks.md), so a rule added without its documentation fails.
TEST_CASE("vocabulary: kabi's rule codes, README's rules table and the load-check audit name the same codes") {
  std::ifstream in(KABI_RULES_H);
  std::stringstream text;
  text << in.rdbuf();
  const std::string rules = span(text.str(), "namespace reason {", "}  // namespace reason");
  static const std::regex constant(R"re(inline constexpr const char\* k\w+ = "([a-z0-9_]+)";)re");
  std::set<std::string> in_code;
  for (std::sregex_iterator it(rules.begin(), rules.end(), constant), end; it != end; ++it) in_code.insert((*it)[1]);
  REQUIRE(in_code.size() > 60);
  REQUIRE(in_code.count("crc_mismatch") == 1);

  // The table's third column, where the codes are (the check's text may quote other words).
  const std::string table = span(readme(), "| order | check | reason code | errno |", "\n\n");
  std::set<std::string> in_readme;
  std::istringstream rows(table);
  for (std::string line; std::getline(rows, line);) {
    std::vector<std::string> cells;
    for (size_t a = 0, b; (b = line.find(" | ", a)) != std::string::npos; a = b + 3) cells.push_back(line.substr(a, b - a));
    if (cells.size() < 3 || cells[0] == "| order" || cells[0] == "|---") continue;
    for (const auto& c : codes_in(cells[2]))
      if (c != "strict" && c != "upstream") in_readme.insert(c);  // the policies a code depends on
  }
  REQUIRE(in_readme.size() > 60);
  same(in_readme, in_code, "kabi/rules.h vs README.md's rules table");

  std::ifstream audit_in(AGENT_LOAD_CHECKS_DOC);
  std::stringstream audit;
  audit << audit_in.rdbuf();
  for (const auto& c : in_code) {
    INFO("'" << c << "' (kabi/rules.h) is not in docs/kernel-load-checks.md");
    CHECK(audit.str().find("`" + c + "`") != std::string::npos);
  }
}
