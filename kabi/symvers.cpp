#include "kabi/symvers.h"

#include <cerrno>
#include <charconv>

#include "kabi/file_io.h"

namespace agent::kabi {
namespace {

struct TypeName {
  std::string_view name;
  ExportType type;
};
constexpr TypeName kTypes[] = {
    {"EXPORT_SYMBOL", ExportType::Plain},
    {"EXPORT_SYMBOL_GPL", ExportType::Gpl},
    {"EXPORT_SYMBOL_GPL_FUTURE", ExportType::GplFuture},
    {"EXPORT_UNUSED_SYMBOL", ExportType::Unused},
    {"EXPORT_UNUSED_SYMBOL_GPL", ExportType::UnusedGpl},
};

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> cols;
  size_t start = 0;
  while (true) {
    size_t tab = line.find('\t', start);
    cols.push_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  return cols;
}

bool parse_crc(std::string_view s, uint32_t& out) {
  if (s.size() < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
  s.remove_prefix(2);
  if (s.size() > 8) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string_view export_type_name(ExportType t) noexcept {
  for (const auto& tn : kTypes)
    if (tn.type == t) return tn.name;
  return "EXPORT_SYMBOL";
}

bool is_gpl_only(ExportType t) noexcept { return t == ExportType::Gpl || t == ExportType::UnusedGpl; }

const SymversEntry* Symvers::find(std::string_view name) const {
  auto it = index.find(std::string(name));
  return it == index.end() ? nullptr : &entries[it->second];
}

Result<Symvers> parse_symvers(std::string_view text, const std::string& source) {
  Symvers sv;
  sv.source = source;
  bool any_nonzero = false;
  size_t lineno = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto where = [&](const std::string& what) {
      return fail(EINVAL, "line " + std::to_string(lineno) + ": " + what, source);
    };
    auto cols = split_tabs(line);
    if (cols.size() != 4 && cols.size() != 5)
      return where("expected 4 or 5 tab-separated columns, found " + std::to_string(cols.size()));
    SymversEntry e;
    if (!parse_crc(cols[0], e.crc)) return where("bad CRC '" + std::string(cols[0]) + "'");
    if (cols[1].empty()) return where("empty symbol name");
    e.name = cols[1];
    if (cols[2].empty()) return where("empty owner for symbol " + e.name);
    e.owner = cols[2];
    // 4-column files from before 5.4 have no namespace; 5.4-5.9 put it third, after the
    // symbol ("crc sym ns owner type") only when present - modern files put it last.
    bool found = false;
    for (const auto& tn : kTypes)
      if (cols[3] == tn.name) {
        e.type = tn.type;
        found = true;
      }
    if (!found) return where("unknown export type '" + std::string(cols[3]) + "'");
    if (cols.size() == 5) e.ns = cols[4];
    any_nonzero |= e.crc != 0;
    // A later duplicate overrides, as modpost's hash table does.
    auto [it, inserted] = sv.index.emplace(e.name, sv.entries.size());
    if (inserted)
      sv.entries.push_back(std::move(e));
    else
      sv.entries[it->second] = std::move(e);
  }
  if (sv.entries.empty()) return fail(EINVAL, "no symbols: empty or not a Module.symvers file", source);
  sv.modversions = any_nonzero;
  return sv;
}

Result<Symvers> read_symvers(const std::filesystem::path& path) {
  auto text = read_decompressed(path);
  if (!text) return tl::unexpected(text.error());
  if (text->find('\0') != std::string::npos)
    return fail(EINVAL, "binary data: not a Module.symvers file", path.string());
  return parse_symvers(*text, path.string());
}

std::string owner_module_name(std::string_view owner) {
  size_t slash = owner.rfind('/');
  std::string name(slash == std::string_view::npos ? owner : owner.substr(slash + 1));
  for (auto& c : name)
    if (c == '-') c = '_';
  return name;
}

}  // namespace agent::kabi
