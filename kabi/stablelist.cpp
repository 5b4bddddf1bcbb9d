#include "kabi/stablelist.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kabi/file_io.h"

namespace agent::kabi {
namespace {

bool symbol_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '$';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<Stablelist> parse_stablelist(std::string_view text, const std::string& source) {
  if (std::memchr(text.data(), '\0', text.size()) != nullptr)
    return fail(EINVAL, "binary data: not a kABI stablelist", source);
  Stablelist list;
  list.source = source;
  size_t lineno = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++lineno;
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '[') {
      if (line.back() != ']' || line.size() < 3)
        return fail(EINVAL, "line " + std::to_string(lineno) + ": unterminated section header", source);
      list.sections.emplace_back(line.substr(1, line.size() - 2));
      continue;
    }
    if (!std::all_of(line.begin(), line.end(), symbol_char))
      return fail(EINVAL, "line " + std::to_string(lineno) + ": not a symbol name: '" + std::string(line.substr(0, 80)) + "'",
                  source);
    list.symbols.emplace(line);
  }
  if (list.symbols.empty()) return fail(EINVAL, "no symbols: empty or not a kABI stablelist", source);
  return list;
}

Result<Stablelist> read_stablelist(const std::filesystem::path& path) {
  auto text = read_decompressed(path, kMaxIndexSize);
  if (!text) return tl::unexpected(text.error());
  return parse_stablelist(*text, path.string());
}

StablelistCoverage stablelist_coverage(const Stablelist& list, const std::vector<std::string>& imports) {
  StablelistCoverage c;
  c.source = list.source;
  c.imports = imports.size();
  for (const auto& s : imports) (list.symbols.count(s) ? c.covered : c.not_covered).push_back(s);
  std::sort(c.covered.begin(), c.covered.end());
  std::sort(c.not_covered.begin(), c.not_covered.end());
  return c;
}

}  // namespace agent::kabi
