#include "kabi/symvers.h"

#include <cerrno>
#include <algorithm>
#include <array>
#include <cstring>

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

// Hex digit values, 0xff for anything else: one load per digit of the ~25,000 CRCs.
constexpr auto kHexValue = [] {
  std::array<uint8_t, 256> t{};
  t.fill(0xff);
  for (int c = 0; c < 10; ++c) t['0' + c] = static_cast<uint8_t>(c);
  for (int c = 0; c < 6; ++c) t['a' + c] = t['A' + c] = static_cast<uint8_t>(10 + c);
  return t;
}();

bool parse_crc(std::string_view s, uint32_t& out) {
  if (s.size() < 3 || s.size() > 10 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
  uint32_t v = 0;
  uint8_t bad = 0;
  for (char c : s.substr(2)) {
    const uint8_t d = kHexValue[static_cast<unsigned char>(c)];
    bad |= d;
    v = v << 4 | (d & 0xf);
  }
  out = v;
  return bad < 0x10;
}

// A check keeps ~2,000 of a kernel's ~25,000 symbols. Hashing every name to look it up in the
// set is most of the parse; this bitmap of a cheap fingerprint (length and three characters)
// turns most names away first. A set bit only means "maybe": the set decides. Without a set,
// every name may be wanted.
class NameFilter {
 public:
  explicit NameFilter(const SymbolSet* names) {
    if (!names) return;
    bits_.resize(kBits / 64);
    for (const auto& n : *names) bits_[slot(n) / 64] |= uint64_t{1} << (slot(n) % 64);
  }
  [[nodiscard]] bool maybe(std::string_view n) const {
    return bits_.empty() || ((bits_[slot(n) / 64] >> (slot(n) % 64)) & 1);
  }

 private:
  static constexpr size_t kBits = size_t{1} << 16;
  static size_t slot(std::string_view n) {
    if (n.empty()) return 0;
    const auto c = [&](size_t i) { return static_cast<size_t>(static_cast<unsigned char>(n[i])); };
    return (n.size() * 0x9E37 ^ c(0) * 0x3B1 ^ c(n.size() / 2) * 0x1F ^ c(n.size() - 1) * 0x2F5) % kBits;
  }
  std::vector<uint64_t> bits_;
};

bool parse_type(std::string_view s, ExportType& out) {
  for (const auto& tn : kTypes)
    if (s == tn.name) {
      out = tn.type;
      return true;
    }
  return false;
}

}  // namespace

std::string_view export_type_name(ExportType t) noexcept {
  for (const auto& tn : kTypes)
    if (tn.type == t) return tn.name;
  return "EXPORT_SYMBOL";
}

bool is_gpl_only(ExportType t) noexcept { return t == ExportType::Gpl || t == ExportType::UnusedGpl; }

const SymversEntry* Symvers::find(std::string_view name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &entries[it->second];
}

SymversEntry* Symvers::find(std::string_view name) {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &entries[it->second];
}

SymversEntry& Symvers::add(SymversEntry e) {
  auto [it, inserted] = index.try_emplace(e.name, entries.size());
  if (!inserted) return entries[it->second] = std::move(e);
  return entries.emplace_back(std::move(e));
}

Result<Symvers> parse_symvers(std::string_view text, const std::string& source, const SymbolSet* only) {
  Symvers sv;
  sv.source = source;
  const size_t lines = only ? only->size() : static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  sv.entries.reserve(lines);
  sv.index.reserve(lines);
  const NameFilter filter(only);
  size_t parsed = 0;
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
    // "crc<TAB>symbol<TAB>owner<TAB>type[<TAB>namespace]": 4 columns before 5.4, 5 since.
    std::string_view cols[5];
    size_t ncols = 0;
    for (const char* p = line.data(); ncols < 6;) {
      const char* end = line.data() + line.size();
      const auto* tab = static_cast<const char*>(std::memchr(p, '\t', static_cast<size_t>(end - p)));
      if (ncols == 5) return where("expected 4 or 5 tab-separated columns, found more");
      cols[ncols++] = std::string_view(p, static_cast<size_t>((tab ? tab : end) - p));
      if (!tab) break;
      p = tab + 1;
    }
    if (ncols < 4) return where("expected 4 or 5 tab-separated columns, found " + std::to_string(ncols));
    uint32_t crc = 0;
    ExportType type = ExportType::Plain;
    if (!parse_crc(cols[0], crc)) return where("bad CRC '" + std::string(cols[0]) + "'");
    if (cols[1].empty()) return where("empty symbol name");
    if (cols[2].empty()) return where("empty owner for symbol " + std::string(cols[1]));
    if (!parse_type(cols[3], type)) return where("unknown export type '" + std::string(cols[3]) + "'");
    any_nonzero |= crc != 0;
    ++parsed;
    if (only && (!filter.maybe(cols[1]) || !only->count(cols[1]))) continue;
    SymversEntry e;
    e.crc = crc;
    e.type = type;
    e.name = cols[1];
    e.owner = cols[2];
    if (ncols == 5) e.ns = cols[4];
    sv.add(std::move(e));
  }
  if (parsed == 0) return fail(EINVAL, "no symbols: empty or not a Module.symvers file", source);
  sv.modversions = any_nonzero;
  return sv;
}

Result<Symvers> read_symvers(const std::filesystem::path& path, const SymbolSet* only) {
  auto file = map_file(path, kMaxSymversSize);
  if (!file) return tl::unexpected(file.error());
  return read_symvers(*file, path.string(), only);
}

Result<Symvers> read_symvers(const MappedFile& file, const std::string& name, const SymbolSet* only) {
  const std::string& path = name;
  std::string decompressed;
  std::string_view text = file.bytes();
  if (detect_compression(text) != Compression::None) {
    auto d = decompress(text, path, kMaxSymversSize);
    if (!d) return tl::unexpected(d.error());
    decompressed = std::move(*d);
    text = decompressed;
  }
  if (std::memchr(text.data(), '\0', text.size()) != nullptr)
    return fail(EINVAL, "binary data: not a Module.symvers file", path);
  return parse_symvers(text, path, only);
}

std::string owner_module_name(std::string_view owner) {
  size_t slash = owner.rfind('/');
  std::string name(slash == std::string_view::npos ? owner : owner.substr(slash + 1));
  for (auto& c : name)
    if (c == '-') c = '_';
  return name;
}

}  // namespace agent::kabi
