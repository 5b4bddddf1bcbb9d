#include "kabi/relocations.h"

#include <elf.h>

#include <cstring>
#include <map>

namespace agent::kabi {
namespace {

constexpr uint64_t kShfRelaLivepatch = 0x00100000;  // SHF_RELA_LIVEPATCH (include/uapi/linux/elf.h)
constexpr size_t kRelaSize = 24;                    // sizeof(Elf64_Rela)
constexpr size_t kMaxUnchecked = 5;

// Wide enough for a 64-bit address plus a 64-bit addend without wrapping.
__extension__ typedef __int128 Wide;

// x86-64's module area, MODULES_VADDR (0xffffffffa0000000 without KASLR's larger image,
// 0xffffffffc0000000 with it) to MODULES_END: every section of a module lands inside it.
constexpr Wide kModulesLo = static_cast<int64_t>(0xffffffffa0000000ull);
constexpr Wide kModulesHi = static_cast<int64_t>(0xffffffffff000000ull);

enum class Fit { Always, Never, Depends };

// Whether every value in [lo, hi] lies in [min, max) (Always), none does (Never), or some.
// A range that leaves the signed 64-bit numbers would wrap in the kernel's u64: Depends.
Fit fit(Wide lo, Wide hi, Wide min, Wide max) {
  constexpr Wide s64min = INT64_MIN, s64max = INT64_MAX;
  if (lo < s64min || hi > s64max) return Fit::Depends;
  if (lo >= min && hi < max) return Fit::Always;
  if (hi < min || lo >= max) return Fit::Never;
  return Fit::Depends;
}

// Bytes the relocation writes, 0 for R_X86_64_NONE, nullopt for a type the kernel refuses.
std::optional<size_t> write_size(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE: return 0;
    case R_X86_64_64:
    case R_X86_64_PC64: return 8;
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_PC32:
    case R_X86_64_PLT32: return 4;
    default: return std::nullopt;
  }
}

}  // namespace

Relocations check_relocations_x86_64(const std::vector<RelocSection>& sections, const std::vector<RelocSymbol>& symbols) {
  Relocations out;
  auto unchecked = [&](size_t sec, size_t idx, const std::string& why) {
    if (out.unchecked.size() < kMaxUnchecked)
      out.unchecked.push_back("section " + std::to_string(sec) + " entry " + std::to_string(idx) + ": " + why);
    ++out.unchecked_count;
  };
  // Bytes written by earlier relocations, per target section: the kernel finds them nonzero.
  std::map<size_t, std::vector<bool>> written;

  for (size_t i = 1; i < sections.size(); ++i) {
    const RelocSection& rs = sections[i];
    if (rs.info >= sections.size()) continue;              // not a valid relocation section
    const RelocSection& target = sections[rs.info];
    if (!(target.flags & SHF_ALLOC)) continue;              // nothing loaded to relocate
    if (rs.type != SHT_REL && rs.type != SHT_RELA) continue;
    if (rs.flags & kShfRelaLivepatch) {                     // klp_apply_section_relocs()
      unchecked(i, 0, "a livepatch relocation section (applied by the livepatch core)");
      continue;
    }
    if (rs.type == SHT_REL) {
      RelocationFault f;
      f.kind = RelocationFault::Kind::RelSection;
      f.section = i;
      out.fault = f;
      return out;
    }
    std::vector<bool>& done = written[rs.info];
    for (size_t k = 0; k < rs.data.size() / kRelaSize; ++k) {
      Elf64_Rela r;
      std::memcpy(&r, rs.data.data() + k * kRelaSize, sizeof r);
      const uint32_t type = static_cast<uint32_t>(ELF64_R_TYPE(r.r_info));
      const auto size = write_size(type);
      if (!size) {
        out.fault = RelocationFault{RelocationFault::Kind::UnknownType, i, k, type, false, false};
        return out;
      }
      if (*size == 0) continue;

      // The target's bytes: the file's (zeros for SHT_NOBITS), or an earlier relocation's.
      bool nonzero = false;
      if (r.r_offset > target.size || *size > target.size - r.r_offset) {
        unchecked(i, k, "its target lies outside section " + std::to_string(rs.info));
        continue;
      }
      if (done.empty()) done.resize(target.size);
      for (size_t b = 0; b < *size; ++b) {
        const size_t at = r.r_offset + b;
        if (done[at] || (target.type != SHT_NOBITS && at < target.data.size() && target.data[at] != 0)) nonzero = true;
        done[at] = true;
      }

      // Overflow (R_X86_64_32 zero-extends, R_X86_64_32S sign-extends; the others cannot).
      bool overflow = false;
      if (type == R_X86_64_32 || type == R_X86_64_32S) {
        const Wide min = type == R_X86_64_32 ? Wide{0} : Wide{INT32_MIN};
        const Wide max = type == R_X86_64_32 ? Wide{1} << 32 : Wide{INT32_MAX} + 1;
        const uint32_t symi = static_cast<uint32_t>(ELF64_R_SYM(r.r_info));
        Fit f = Fit::Depends;
        std::string why;
        if (symi >= symbols.size()) {
          why = "its symbol index is past the symbol table";
        } else if (const RelocSymbol& s = symbols[symi]; s.shndx == SHN_ABS) {
          const int64_t v = static_cast<int64_t>(s.value + static_cast<uint64_t>(r.r_addend));
          f = fit(v, v, min, max);
        } else if (s.shndx == SHN_UNDEF) {
          // Resolved to the kernel image or a module (both in the top 2 GiB) or a per-CPU
          // offset (small): 32S always fits; 32 fits only a per-CPU offset.
          if (type == R_X86_64_32S) f = Fit::Always;
          else why = "R_X86_64_32 of an undefined symbol (fits only a per-CPU variable)";
        } else {
          const Wide d = Wide{static_cast<int64_t>(s.value)} + r.r_addend;
          f = fit(kModulesLo + d, kModulesHi + d, min, max);
          if (f == Fit::Depends) why = "whether it fits depends on where the module is placed";
        }
        if (f == Fit::Never) overflow = true;
        if (f == Fit::Depends && !nonzero) {
          unchecked(i, k, why.empty() ? "its value depends on run-time addresses" : why);
          continue;
        }
      }
      if (nonzero || overflow) {
        out.fault = RelocationFault{overflow && !nonzero ? RelocationFault::Kind::Overflow : RelocationFault::Kind::NonzeroTarget,
                                    i, k, type, nonzero, overflow};
        return out;
      }
    }
  }
  return out;
}

}  // namespace agent::kabi
