#include "kabi/elf_validity.h"

#include <elf.h>

#include <cstring>
#include <string>

#include "kabi/rules.h"

namespace agent::kabi {
namespace {

// The kernel's own types: the agent judges modules for the kernel it runs under.
using Ehdr = std::conditional_t<sizeof(void*) == 8, Elf64_Ehdr, Elf32_Ehdr>;
using Shdr = std::conditional_t<sizeof(void*) == 8, Elf64_Shdr, Elf32_Shdr>;
using Sym = std::conditional_t<sizeof(void*) == 8, Elf64_Sym, Elf32_Sym>;

constexpr const char* kNoName = "(missing .modinfo section or name field)";

class Image {
 public:
  explicit Image(std::string_view b) : b_(b) {}
  size_t len() const { return b_.size(); }
  const Ehdr& ehdr() const { return ehdr_; }
  bool read_ehdr() {
    if (b_.size() < sizeof(Ehdr)) return false;
    std::memcpy(&ehdr_, b_.data(), sizeof ehdr_);
    return true;
  }
  // Only after the section table was found inside the image.
  Shdr shdr(size_t i) const {
    Shdr s;
    std::memcpy(&s, b_.data() + ehdr_.e_shoff + i * sizeof(Shdr), sizeof s);
    return s;
  }
  // validate_section_offset(): the section's bytes lie inside the image.
  bool in_image(const Shdr& s) const {
    const uint64_t end = uint64_t(s.sh_offset) + s.sh_size;
    return end >= s.sh_offset && end <= b_.size();
  }
  std::string_view bytes(const Shdr& s) const {
    if (!in_image(s)) return {};
    return b_.substr(s.sh_offset, s.sh_size);
  }
  // secstrings + sh_name, NUL-terminated (checked before any name is read).
  std::string_view name(const Shdr& strhdr, const Shdr& s) const {
    std::string_view t = bytes(strhdr);
    if (s.sh_name >= t.size()) return {};
    t = t.substr(s.sh_name);
    return t.substr(0, t.find('\0'));
  }

 private:
  std::string_view b_;
  Ehdr ehdr_{};
};

ElfRefusal refuse(const char* code, std::string message) { return ElfRefusal{code, std::move(message)}; }

std::string u(uint64_t v) { return std::to_string(v); }

// get_modinfo(info, "name") of a .modinfo's bytes.
std::string modinfo_name(std::string_view d) {
  size_t pos = 0;
  while (pos < d.size()) {
    size_t end = d.find('\0', pos);
    if (end == std::string_view::npos) end = d.size();
    std::string_view e = d.substr(pos, end - pos);
    if (e.substr(0, 5) == "name=") return std::string(e.substr(5));
    pos = end + 1;
  }
  return {};
}

// Header checks common to every generation (elf_validity_ehdr on 6.12+).
std::optional<ElfRefusal> check_header(Image& img) {
  if (!img.read_ehdr()) return refuse(reason::kElfHeader, "Invalid ELF header len " + u(img.len()));
  const Ehdr& h = img.ehdr();
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0)
    return refuse(reason::kElfHeader, "Invalid ELF header magic: != \\177ELF");
  if (h.e_type != ET_REL) return refuse(reason::kElfType, "Invalid ELF header type: " + u(h.e_type) + " != " + u(ET_REL));
  if (kNativeElfMachine != 0 && h.e_machine != kNativeElfMachine)
    return refuse(reason::kElfMachine, "Invalid architecture in ELF header: " + u(h.e_machine));
  if (h.e_shentsize != sizeof(Shdr)) return refuse(reason::kElfShentsize, "Invalid ELF section header size");
  if (h.e_shoff >= img.len() || uint64_t{h.e_shnum} * sizeof(Shdr) > img.len() - h.e_shoff)
    return refuse(reason::kElfSectionTable, "Invalid ELF section header overflow");
  return std::nullopt;
}

std::optional<ElfRefusal> shstrndx_range(const Image& img) {
  const auto& h = img.ehdr();
  if (h.e_shstrndx == SHN_UNDEF || h.e_shstrndx >= h.e_shnum)
    return refuse(reason::kElfSectionNames, "Invalid ELF section name index: " + u(h.e_shstrndx) + " || e_shstrndx (" +
                                                u(h.e_shstrndx) + ") >= e_shnum (" + u(h.e_shnum) + ")");
  return std::nullopt;
}

std::optional<ElfRefusal> section0(const Image& img) {
  // e_shnum 0 passes the overflow check with the table's start in the last bytes of the file:
  // the kernel then reads section 0 past the image (bytes nobody wrote). Whatever they hold, the
  // section name index check after it refuses (e_shstrndx >= e_shnum 0): ENOEXEC either way.
  if (img.ehdr().e_shoff + sizeof(Shdr) > img.len()) return shstrndx_range(img);
  const Shdr s0 = img.shdr(0);
  if (s0.sh_type != SHT_NULL || s0.sh_size != 0 || s0.sh_addr != 0)
    return refuse(reason::kElfSectionTable, "ELF Spec violation: section 0 type(" + std::to_string(int(s0.sh_type)) +
                                                ")!=SH_NULL or non-zero len or addr");
  return std::nullopt;
}

std::optional<ElfRefusal> shstrtab_contents(const Image& img, const Shdr& str) {
  if (str.sh_size == 0) return refuse(reason::kElfSectionNames, "empty section name table");
  if (img.bytes(str).back() != '\0')
    return refuse(reason::kElfSectionNames, "ELF Spec violation: section name table isn't null terminated");
  return std::nullopt;
}

// 6.1: elf_validity_check() then setup_load_info().
std::optional<ElfRefusal> check_v61(Image& img) {
  if (auto r = check_header(img)) return r;
  const auto& h = img.ehdr();
  if (auto r = shstrndx_range(img)) return r;
  const Shdr str = img.shdr(h.e_shstrndx);
  if (!img.in_image(str)) return refuse(reason::kElfSectionNames, "Invalid ELF section hdr(type " + u(str.sh_type) + ")");
  if (auto r = shstrtab_contents(img, str)) return r;
  if (auto r = section0(img)) return r;
  for (size_t i = 1; i < h.e_shnum; ++i) {
    const Shdr s = img.shdr(i);
    if (s.sh_type == SHT_NULL || s.sh_type == SHT_NOBITS) continue;
    if (s.sh_type == SHT_SYMTAB && (s.sh_link == SHN_UNDEF || s.sh_link >= h.e_shnum))
      return refuse(reason::kSymbolStrtab, "Invalid ELF sh_link!=SHN_UNDEF(" + u(s.sh_link) + ") or (sh_link(" +
                                               u(s.sh_link) + ") >= hdr->e_shnum(" + u(h.e_shnum) + ")");
    if (!img.in_image(s))
      return refuse(reason::kElfSectionTable, "Invalid ELF section in module (section " + u(i) + " type " + u(s.sh_type) + ")");
    if ((s.sh_flags & SHF_ALLOC) && s.sh_name >= str.sh_size)
      return refuse(reason::kElfSectionNames,
                    "Invalid ELF section name in module (section " + u(i) + " type " + u(s.sh_type) + ")");
  }
  // setup_load_info(): find_sec() sees SHF_ALLOC sections only.
  auto find_sec = [&](std::string_view name) -> size_t {
    for (size_t i = 1; i < h.e_shnum; ++i) {
      const Shdr s = img.shdr(i);
      if ((s.sh_flags & SHF_ALLOC) && img.name(str, s) == name) return i;
    }
    return 0;
  };
  std::string name;
  if (size_t mi = find_sec(".modinfo")) name = modinfo_name(img.bytes(img.shdr(mi)));
  const std::string who = name.empty() ? kNoName : name;
  bool symtab = false;
  for (size_t i = 1; i < h.e_shnum && !symtab; ++i) symtab = img.shdr(i).sh_type == SHT_SYMTAB;
  if (!symtab) return refuse(reason::kNoSymbolTable, who + ": module has no symbols (stripped?)");
  if (!find_sec(".gnu.linkonce.this_module")) return refuse(reason::kThisModule, who + ": No module found in object");
  return std::nullopt;
}

// 6.12 and 7.2: elf_validity_cache_copy().
std::optional<ElfRefusal> check_v612(Image& img, bool v72) {
  if (auto r = check_header(img)) return r;
  const auto& h = img.ehdr();
  if (auto r = section0(img)) return r;
  for (size_t i = 1; i < h.e_shnum; ++i) {
    const Shdr s = img.shdr(i);
    if (s.sh_type == SHT_NULL || s.sh_type == SHT_NOBITS) continue;
    if (!img.in_image(s))
      return refuse(reason::kElfSectionTable, "Invalid ELF section in module (section " + u(i) + " type " + u(s.sh_type) + ")");
  }
  if (auto r = shstrndx_range(img)) return r;
  const Shdr str = img.shdr(h.e_shstrndx);
  if (str.sh_type != SHT_STRTAB) return refuse(reason::kElfSectionNames, "Invalid ELF section name table type: " + u(str.sh_type));
  if (auto r = shstrtab_contents(img, str)) return r;
  for (size_t i = 0; i < h.e_shnum; ++i) {
    const Shdr s = img.shdr(i);
    if (s.sh_type != SHT_NULL && s.sh_name >= str.sh_size)
      return refuse(reason::kElfSectionNames,
                    "Invalid ELF section name in module (section " + u(i) + " type " + u(s.sh_type) + ")");
  }
  // find_any_unique_sec(): any flags; 0 none, the index if one, -count if more.
  auto unique_sec = [&](std::string_view name) -> long {
    long idx = 0, count = 0;
    for (size_t i = 1; i < h.e_shnum; ++i)
      if (img.name(str, img.shdr(i)) == name) {
        ++count;
        idx = static_cast<long>(i);
      }
    return count <= 1 ? idx : -count;
  };
  std::string name;
  const long mi = unique_sec(".modinfo");
  if (mi < 0) return refuse(reason::kModinfoDuplicate, "Only one .modinfo section must exist.");
  if (mi > 0) name = modinfo_name(img.bytes(img.shdr(static_cast<size_t>(mi))));
  const std::string who = name.empty() ? kNoName : name;
  const long tm = unique_sec(".gnu.linkonce.this_module");
  if (tm <= 0)
    return refuse(reason::kThisModule, "module " + who + ": Exactly one .gnu.linkonce.this_module section must exist.");
  const Shdr tms = img.shdr(static_cast<size_t>(tm));
  if (tms.sh_type == SHT_NOBITS)
    return refuse(reason::kThisModule, "module " + who + ": .gnu.linkonce.this_module section must have a size set");
  if (!(tms.sh_flags & SHF_ALLOC))
    return refuse(reason::kThisModule,
                  "module " + who + ": .gnu.linkonce.this_module must occupy memory during process execution");
  // (sizeof(struct module): the rules, with the kernel model's size.)
  size_t nsym = 0, sym_idx = 0;
  for (size_t i = 1; i < h.e_shnum; ++i)
    if (img.shdr(i).sh_type == SHT_SYMTAB) {
      ++nsym;
      sym_idx = i;
    }
  if (nsym != 1)
    return refuse(nsym ? reason::kMultipleSymbolTables : reason::kNoSymbolTable, who + ": module has no symbols (stripped?)");
  const Shdr sym = img.shdr(sym_idx);
  if (sym.sh_link == SHN_UNDEF || sym.sh_link >= h.e_shnum)
    return refuse(reason::kSymbolStrtab, "Invalid ELF sh_link!=SHN_UNDEF(" + u(sym.sh_link) + ") or (sh_link(" +
                                             u(sym.sh_link) + ") >= hdr->e_shnum(" + u(h.e_shnum) + ")");
  const Shdr strtab = img.shdr(sym.sh_link);
  if (strtab.sh_type != SHT_STRTAB)
    return refuse(reason::kSymbolStrtab, "Invalid ELF symbol string table type: " + u(strtab.sh_type));
  if (!v72) return std::nullopt;

  // 7.2: elf_validity_cache_index_versions(), find_sec() (SHF_ALLOC only).
  auto find_sec = [&](std::string_view n) -> size_t {
    for (size_t i = 1; i < h.e_shnum; ++i) {
      const Shdr s = img.shdr(i);
      if ((s.sh_flags & SHF_ALLOC) && img.name(str, s) == n) return i;
    }
    return 0;
  };
  const size_t crcs = find_sec("__version_ext_crcs"), names = find_sec("__version_ext_names");
  if (!crcs != !names) return refuse(reason::kExtVersions, "extended version crc+name presence does not match");
  if (crcs) {
    size_t count = img.shdr(crcs).sh_size / 4;
    std::string_view n = img.bytes(img.shdr(names));  // NOBITS: no bytes, as good as none
    while (count--) {
      const size_t len = std::min(n.find('\0'), n.size()) + 1;
      if (len > n.size()) return refuse(reason::kExtVersions, "more extended version crcs than names");
      n.remove_prefix(len);
    }
  }
  // elf_validity_cache_strtab().
  const std::string_view t = img.bytes(strtab);
  if (strtab.sh_size == 0) return refuse(reason::kSymbolStrtab, "empty symbol string table");
  if (t.size() != strtab.sh_size) return std::nullopt;  // unreachable: every STRTAB was found inside the image
  if (t.front() != '\0') return refuse(reason::kSymbolStrtab, "symbol string table missing leading NUL");
  if (t.back() != '\0') return refuse(reason::kSymbolStrtab, "symbol string table isn't NUL terminated");
  const std::string_view syms = img.bytes(sym);
  for (size_t off = 0; off + sizeof(Sym) <= syms.size(); off += sizeof(Sym)) {
    Sym s;
    std::memcpy(&s, syms.data() + off, sizeof s);
    if (s.st_name >= strtab.sh_size) return refuse(reason::kSymbolStrtab, "symbol name out of bounds in string table");
  }
  return std::nullopt;
}

}  // namespace

ElfGeneration elf_generation(int major, int minor) {
  if (major < 6 || (major == 6 && minor < 4)) return ElfGeneration::V6_1;
  if (major == 6 && minor < 14) return ElfGeneration::V6_12;
  return ElfGeneration::V7_2;
}

std::optional<ElfRefusal> check_elf_validity(std::string_view image, ElfGeneration gen) {
  Image img(image);
  if (gen == ElfGeneration::V6_1) return check_v61(img);
  return check_v612(img, gen == ElfGeneration::V7_2);
}

}  // namespace agent::kabi
