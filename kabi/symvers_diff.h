// What changed between two kernels' CRC tables (Module.symvers), for the symbols a bundle needs
// or for all: pure functions over two parsed tables.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kabi/module.h"
#include "kabi/symvers.h"

namespace agent::kabi {

struct SymbolChange {
  std::string symbol;
  std::optional<SymversEntry> old_entry;  // absent: added
  std::optional<SymversEntry> new_entry;  // absent: removed
  bool crc = false;        // CRC changed
  bool moved = false;      // exported by another module (owner)
  bool type = false;       // export type changed (EXPORT_SYMBOL <-> EXPORT_SYMBOL_GPL)
  bool ns = false;         // namespace changed

  [[nodiscard]] bool added() const { return !old_entry; }
  [[nodiscard]] bool removed() const { return !new_entry; }
  // "crc", "added", "removed", "moved", "export_type", "namespace" (the JSON's `changes`).
  [[nodiscard]] std::vector<std::string> kinds() const;
};

// Every symbol of `a` or `b` (or only those in `only`) that was added, removed, or whose CRC,
// owner, export type or namespace differs, sorted by name. An entry whose export facts are not
// known (a table derived from a module tree) is compared on its CRC alone.
[[nodiscard]] std::vector<SymbolChange> diff_symvers(const Symvers& a, const Symvers& b, const SymbolSet* only = nullptr);

struct ModuleDiff {
  std::string name;
  std::string path;
  size_t imports = 0;                 // symbols it takes from the kernel
  std::vector<SymbolChange> changes;  // among those
};

struct BundleDiff {
  std::optional<SymbolChange> module_layout;  // when it changed
  std::vector<ModuleDiff> modules;            // bundle order
  size_t imports = 0;                         // distinct symbols the bundle takes from the kernel
  size_t changed = 0;                         // distinct ones that changed
};

// The changes among what each bundle module imports from the kernel (what no bundle module
// exports), grouped per module, plus module_layout.
[[nodiscard]] BundleDiff diff_for_bundle(const std::vector<SymbolChange>& changes, const std::vector<ModuleInfo>& bundle);

[[nodiscard]] nlohmann::json symbol_change_json(const SymbolChange& c);
[[nodiscard]] std::string symbol_change_text(const SymbolChange& c);  // one line

}  // namespace agent::kabi
