// Module.symvers: the CRC, owner and export type of every symbol a kernel build exports.
#pragma once

#include <cstdint>
#include <functional>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kabi/file_io.h"
#include "kabi/result.h"

namespace agent::kabi {

enum class ExportType { Plain, Gpl, GplFuture, Unused, UnusedGpl };

[[nodiscard]] std::string_view export_type_name(ExportType t) noexcept;  // "EXPORT_SYMBOL_GPL", ...
[[nodiscard]] bool is_gpl_only(ExportType t) noexcept;

struct SymversEntry {
  std::string name;
  uint32_t crc = 0;
  std::string owner;      // "vmlinux" or the module path without .ko ("drivers/gpu/drm/drm")
  ExportType type = ExportType::Plain;
  std::string ns;         // symbol namespace, empty if none
  // A table that is not a Module.symvers (the in-tree __versions union) may know a symbol's CRC
  // without having seen its export: then whether it is GPL-only is unknown, and its namespace
  // is only known to be one of `ns_possible` ("" for none): each own module that uses the
  // symbol loads, so the namespace is one that module imports, or none.
  bool type_known = true;
  bool ns_known = true;
  std::vector<std::string> ns_possible;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct Symvers {
  std::string source;                              // the file it was read from
  std::vector<SymversEntry> entries;               // file order
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> index;  // name -> entries[i]
  // False when the kernel was built without CONFIG_MODVERSIONS: every CRC is 0.
  bool modversions = true;

  [[nodiscard]] const SymversEntry* find(std::string_view name) const;
  [[nodiscard]] SymversEntry* find(std::string_view name);
  // Adds an entry, or replaces the one of the same name (a later line wins, as in modpost).
  SymversEntry& add(SymversEntry e);
};

// Parses Module.symvers text: "0xCRC\tsymbol\towner\tEXPORT_TYPE[\tnamespace]" (5 columns, the
// namespace last, since 5.4) or the older 4-column form. A malformed line is an error naming
// `source` and the line number.
// With `only`, every line is still validated (and counts for `modversions`), but only the
// named symbols are kept: a check of a few modules needs ~2,000 of a kernel's ~25,000.
using SymbolSet = std::unordered_set<std::string, struct StringHash, std::equal_to<>>;
[[nodiscard]] Result<Symvers> parse_symvers(std::string_view text, const std::string& source,
                                            const SymbolSet* only = nullptr);

// A Module.symvers file's bytes, plain, .gz, .xz or .zst; `name` names it in errors.
[[nodiscard]] Result<Symvers> read_symvers(const MappedFile& file, const std::string& name, const SymbolSet* only = nullptr);
// Reads a Module.symvers file, plain, .gz, .xz or .zst.
[[nodiscard]] Result<Symvers> read_symvers(const std::filesystem::path& path, const SymbolSet* only = nullptr);

// The short module name of an owner path: "drivers/gpu/drm/drm" -> "drm"; "vmlinux" stays.
[[nodiscard]] std::string owner_module_name(std::string_view owner);

}  // namespace agent::kabi
