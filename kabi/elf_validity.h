// The kernel's ELF validity checks of a module image, before anything else of it is read:
// 6.1's elf_validity_check() + setup_load_info(), 6.12's elf_validity_cache_copy() and 7.2's
// additions (extended versions, the symbol string table). Pure: bytes in, first refusal out.
#pragma once

#include <optional>
#include <string_view>

#include "kabi/module.h"

namespace agent::kabi {

// Which generation of the checks a kernel runs: 6.1's before 6.4, 6.12's up to 6.13, 7.2's from
// 6.14 (extended modversions). Only 6.1.192, 6.12.118 and 7.2.13 were read; the boundaries in
// between follow the existing rules (6.4: the section counts) and module.h (6.14).
[[nodiscard]] ElfGeneration elf_generation(int version_major, int version_minor);

// The first check `image` (the module without its signature trailer) fails on a kernel of that
// generation, as the kernel reads it: the native Elf_Ehdr/Elf_Shdr/Elf_Sym at the file's
// offsets, whatever e_ident says. Checks the rules already judge from ModuleInfo fields (machine,
// e_shentsize, symbol-table count) are returned with their codes; sizeof(struct module) (the
// kernel model's) is not checked here. nullopt: the kernel accepts the file's structure.
[[nodiscard]] std::optional<ElfRefusal> check_elf_validity(std::string_view image, ElfGeneration gen);

}  // namespace agent::kabi
