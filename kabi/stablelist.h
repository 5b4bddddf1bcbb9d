// A distribution's kABI guarantee: RHEL's kabi_stablelist_<arch> ("[rhel9_x86_64_stablelist]"
// section headers, one tab-indented symbol a line) or a plain list (one symbol a line, '#'
// comments). How much of a bundle's imports it covers.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"
#include "kabi/symvers.h"

namespace agent::kabi {

struct Stablelist {
  std::string source;
  std::vector<std::string> sections;  // "[...]" headers, without the brackets
  SymbolSet symbols;
};

// A line that is neither blank, a comment, a section header nor one symbol name (letters,
// digits, '_', '.', '$') is an error naming `source` and the line; so is a list with no symbol.
[[nodiscard]] Result<Stablelist> parse_stablelist(std::string_view text, const std::string& source);
[[nodiscard]] Result<Stablelist> read_stablelist(const std::filesystem::path& path);

struct StablelistCoverage {
  std::string source;
  size_t imports = 0;                    // what is asked about
  std::vector<std::string> covered;      // sorted
  std::vector<std::string> not_covered;  // sorted
};

// `imports` (the bundle's, see bundle_imports) split into covered and not covered.
[[nodiscard]] StablelistCoverage stablelist_coverage(const Stablelist& list, const std::vector<std::string>& imports);

}  // namespace agent::kabi
