// Why a symbol's CRC changed: genksyms computes it over the symbol's declaration with every
// struct, union, enum and typedef it reaches expanded; this reads the same expansion from DWARF
// (libdw) of two builds and names the first declaration, type or member that differs.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kabi/result.h"

namespace agent::kabi {

struct TypeDefinition {
  std::string key;                   // "struct kabi_dev", "enum kabi_state", "typedef kabi_id_t"
  std::string head;                  // "struct kabi_dev {" / "typedef unsigned int kabi_id_t" / "struct foo (declaration only)"
  std::vector<std::string> members;  // "int id", "struct kabi_ops * ops", "KABI_READY = 1"
};

struct TypeExpansion {
  std::string file;
  std::string symbol;
  std::string declaration;               // "int kabi_dev_register(struct kabi_dev *, int)"
  std::vector<TypeDefinition> types;     // every named type it reaches, first reached first
};

// Reads the DWARF of `file` (an object, a .ko, a separate .debug file or a vmlinux; relocatable
// objects are relocated by libdwfl first) and expands the external function or variable
// `symbol`. No DWARF, or no such symbol, is an error naming the file.
[[nodiscard]] Result<TypeExpansion> expand_symbol(const std::filesystem::path& file, const std::string& symbol);

struct TypeDifference {
  std::string where;     // "declaration" or a type key
  std::string what;      // "member 2 added", "member 1 changed", "prototype changed", ...
  std::string old_text;  // the differing line (empty when added)
  std::string new_text;  // (empty when removed)
};

// The first difference, in the order genksyms meets them: the declaration, then each type as
// first reached from it; within a type, its head, then its members in order. nullopt if the
// expansions are the same (the CRCs should then be the same too).
[[nodiscard]] std::optional<TypeDifference> first_difference(const TypeExpansion& a, const TypeExpansion& b);

[[nodiscard]] std::string expansion_text(const TypeExpansion& e);
[[nodiscard]] nlohmann::json expansion_json(const TypeExpansion& e);

}  // namespace agent::kabi
