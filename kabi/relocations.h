// What apply_relocations() (kernel/module/main.c) and x86-64's apply_relocate_add()
// (arch/x86/kernel/module.c) refuse, judged from the module file: the first relocation the
// kernel stops at, in its order (relocation sections by index, entries in order).
//
// Known from the file alone: a SHT_REL section (x86-64 has only RELA), a relocation type the
// kernel does not apply, a target whose bytes are not zero (in the file, or written by an
// earlier relocation), and an overflow that happens wherever the kernel places the module.
// Where the answer depends on run-time addresses the entry is "unchecked", never a pass.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agent::kabi {

struct RelocationFault {
  enum class Kind { RelSection, UnknownType, NonzeroTarget, Overflow };
  Kind kind = Kind::UnknownType;
  size_t section = 0;  // the relocation section's index
  size_t index = 0;    // the entry in it
  uint32_t type = 0;   // ELF64_R_TYPE
  // The entry fails both ways; 6.1 reports the target first, 6.4+ the overflow.
  bool nonzero = false;
  bool overflow = false;
};

struct Relocations {
  std::optional<RelocationFault> fault;  // the first entry the kernel refuses (ENOEXEC)
  // Entries whose outcome depends on where the kernel puts things, e.g. "section 12 entry 7:
  // R_X86_64_32 of an undefined symbol": at most a few, and how many in all.
  std::vector<std::string> unchecked;
  size_t unchecked_count = 0;
};

// One section header and its bytes (empty for SHT_NOBITS), by section index.
struct RelocSection {
  uint32_t type = 0;
  uint64_t flags = 0;
  uint32_t info = 0;
  uint64_t size = 0;
  std::string_view data;
};

// A symbol table entry as simplify_symbols() leaves it for the relocations.
struct RelocSymbol {
  uint16_t shndx = 0;
  uint64_t value = 0;
};

// x86-64 only (EM_X86_64, ELFCLASS64); the caller checks the machine.
Relocations check_relocations_x86_64(const std::vector<RelocSection>& sections, const std::vector<RelocSymbol>& symbols);

}  // namespace agent::kabi
