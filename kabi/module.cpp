#include "kabi/module.h"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <span>
#include <unordered_map>

#include <gelf.h>
#include <libelf.h>
#include <openssl/evp.h>

#include "kabi/elf_validity.h"
#include "kabi/file_io.h"
#include "kabi/handles.h"
#include "kabi/kernel_keys.h"
#include "kabi/signature.h"
#include "kabi/symvers.h"
#include "kabi/text.h"

namespace agent::kabi {
namespace {

using ElfHandle = CHandle<Elf, elf_end>;

constexpr size_t kModuleNameLen = 56;  // MODULE_NAME_LEN on 64-bit: 64 - sizeof(unsigned long)

struct Section {
  std::string name;
  GElf_Shdr hdr{};
  std::string_view data;  // empty for SHT_NOBITS
};

// The largest real module is ~20 MB (Debian's amdgpu.ko); one that inflates past ten times that
// is no module to judge but a decompression bomb, refused before it costs more memory.
constexpr size_t kMaxModuleImage = size_t{256} << 20;

// A compressed module is decoded only as far as it is an ELF file and no bigger than the cap:
// a hostile file costs what it decodes before it is caught, not what it claims.
Result<std::string> decompress_module(std::string_view file, const std::string& path) {
  auto out = decompress(file, path, kMaxModuleImage, std::string_view("\x7f" "ELF", 4));
  if (out) return out;
  if (out.error().code == EFBIG)
    return fail(EFBIG, "decompresses to more than " + std::to_string(kMaxModuleImage >> 20) +
                           " MiB: not a kernel module", path);
  if (out.error().code == ENOEXEC) return fail(ENOEXEC, "not an ELF file (after decompression)", path);
  return out;
}

uint64_t read_le(std::string_view d, size_t off, size_t width) {
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) v |= uint64_t(static_cast<unsigned char>(d[off + i])) << (8 * i);
  return v;
}

// Splits NUL-separated "key=value" strings; runs of NULs (padding) are skipped, as the
// kernel's get_next_modinfo() does.
void parse_modinfo(std::string_view d, ModuleInfo& m) {
  size_t pos = 0;
  bool seen_license = false, seen_srcversion = false;
  while (pos < d.size()) {
    size_t end = d.find('\0', pos);
    if (end == std::string_view::npos) end = d.size();
    std::string_view entry = d.substr(pos, end - pos);
    pos = end + 1;
    if (entry.empty()) continue;
    size_t eq = entry.find('=');
    std::string key(entry.substr(0, eq));
    std::string value(eq == std::string_view::npos ? std::string_view() : entry.substr(eq + 1));
    // get_modinfo() returns a key's first "key=" entry.
    const bool has_value = eq != std::string_view::npos;
    if (key == "vermagic") {
      if (has_value && !m.has_vermagic) m.vermagic = value;
      m.has_vermagic = m.has_vermagic || has_value;
    } else if (key == "license") {
      if (has_value && !seen_license) m.license = value;
      seen_license = seen_license || has_value;
    } else if (key == "srcversion") {
      if (has_value && !seen_srcversion) m.srcversion = value;
      seen_srcversion = seen_srcversion || has_value;
    } else if (key == "alias") m.aliases.push_back(value);
    else if (key == "import_ns") m.import_ns.push_back(value);
    else if (key == "firmware") m.firmware.push_back(value);
    else if (key == "depends") {
      size_t s = 0;
      while (s <= value.size() && !value.empty()) {
        size_t comma = value.find(',', s);
        std::string dep = value.substr(s, comma == std::string::npos ? std::string::npos : comma - s);
        if (!dep.empty()) m.depends.push_back(dep);
        if (comma == std::string::npos) break;
        s = comma + 1;
      }
    }
    m.modinfo.emplace_back(std::move(key), std::move(value));
  }
}

Result<std::vector<VersionEntry>> parse_versions(const Section& s, bool is64, const std::string& path) {
  const size_t crc_width = is64 ? 8 : 4;
  const size_t entry = 64;  // sizeof(struct modversion_info) on both 32- and 64-bit
  (void)path;
  std::vector<VersionEntry> out;
  // check_version() reads sh_size / sizeof(struct modversion_info) entries: a tail is ignored.
  for (size_t off = 0; off + entry <= s.data.size(); off += entry) {
    VersionEntry v;
    v.crc = static_cast<uint32_t>(read_le(s.data, off, crc_width));
    std::string_view name = s.data.substr(off + crc_width, entry - crc_width);
    v.name = std::string(name.substr(0, name.find('\0')));
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<VersionEntry>> parse_ext_versions(const Section& crcs, const Section& names,
                                                     const std::string& path) {
  if (crcs.data.size() % 4 != 0) return fail(ENOEXEC, "__version_ext_crcs size is not a multiple of 4", path);
  std::vector<VersionEntry> out;
  size_t pos = 0;
  for (size_t off = 0; off < crcs.data.size(); off += 4) {
    size_t end = names.data.find('\0', pos);
    if (end == std::string_view::npos)
      return fail(ENOEXEC, "__version_ext_names has fewer names than __version_ext_crcs has CRCs", path);
    out.push_back({std::string(names.data.substr(pos, end - pos)), static_cast<uint32_t>(read_le(crcs.data, off, 4))});
    pos = end + 1;
  }
  return out;
}

// struct kernel_param (include/linux/moduleparam.h) on x86-64: three pointers (name, mod, ops),
// u16 perm, s8 level, u8 flags, a pointer: 40 bytes, flags at 27. The name is a pointer, known
// only through the RELA entry that fills it in.
void read_param_flags(const std::vector<Section>& sections, const std::vector<RelocSymbol>& syms, ModuleInfo& m) {
  constexpr size_t kParamSize = 40, kFlagsAt = 27;
  constexpr uint8_t kUnsafe = 1, kHwParam = 2;  // KERNEL_PARAM_FL_UNSAFE, KERNEL_PARAM_FL_HWPARAM
  size_t pi = 0;
  for (size_t i = 1; i < sections.size() && !pi; ++i)
    if (sections[i].name == "__param" && sections[i].hdr.sh_type == SHT_PROGBITS) pi = i;
  if (!pi) return;
  const std::string_view params = sections[pi].data;
  for (const auto& rs : sections) {
    if (rs.hdr.sh_type != SHT_RELA || rs.hdr.sh_info != pi) continue;
    for (size_t k = 0; k + sizeof(Elf64_Rela) <= rs.data.size(); k += sizeof(Elf64_Rela)) {
      Elf64_Rela r;
      std::memcpy(&r, rs.data.data() + k, sizeof r);
      if (r.r_offset % kParamSize != 0 || r.r_offset + kParamSize > params.size()) continue;  // not a name field
      const uint8_t flags = static_cast<uint8_t>(params[r.r_offset + kFlagsAt]);
      if (!(flags & (kUnsafe | kHwParam))) continue;
      const size_t si = ELF64_R_SYM(r.r_info);
      if (si >= syms.size() || syms[si].shndx == SHN_UNDEF || syms[si].shndx >= sections.size()) continue;
      const std::string_view in = sections[syms[si].shndx].data;
      const uint64_t at = syms[si].value + static_cast<uint64_t>(r.r_addend);
      if (at >= in.size()) continue;
      std::string_view name = in.substr(at);
      name = name.substr(0, name.find('\0'));
      if (flags & kUnsafe) m.unsafe_params.emplace_back(name);
      if (flags & kHwParam) m.hw_params.emplace_back(name);
    }
  }
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  init_crypto();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return hex_bytes(md, len);
}

std::string parse_build_id_note(std::string_view d) {
  constexpr uint32_t kNtGnuBuildId = 3;
  size_t off = 0;
  auto align4 = [](size_t n) { return (n + 3) & ~size_t{3}; };
  while (off + 12 <= d.size()) {
    const auto namesz = static_cast<size_t>(read_le(d, off, 4));
    const auto descsz = static_cast<size_t>(read_le(d, off + 4, 4));
    const auto type = static_cast<uint32_t>(read_le(d, off + 8, 4));
    const size_t name_off = off + 12;
    if (namesz > d.size() - name_off) break;
    const size_t desc_off = name_off + align4(namesz);
    if (desc_off > d.size() || descsz > d.size() - desc_off) break;
    if (type == kNtGnuBuildId && namesz == 4 && d.substr(name_off, 4) == std::string_view("GNU\0", 4))
      return hex_bytes(reinterpret_cast<const unsigned char*>(d.data() + desc_off), descsz);
    off = desc_off + align4(descsz);
  }
  return {};
}

std::vector<std::string> ModuleInfo::modinfo_values(std::string_view key) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : modinfo)
    if (k == key) out.push_back(v);
  return out;
}

const std::vector<VersionEntry>* ModuleInfo::effective_versions() const {
  if (has_ext_versions) return &ext_versions;
  if (has_versions && versions_alloc) return &versions;
  return nullptr;
}

const VersionEntry* ModuleInfo::find_version(std::string_view symbol) const {
  const auto* table = effective_versions();
  if (!table) return nullptr;
  for (const auto& v : *table)
    if (v.name == symbol) return &v;
  return nullptr;
}

bool is_module_file_name(const std::filesystem::path& path) {
  const std::string n = path.filename().string();
  for (std::string_view ext : {".ko", ".ko.xz", ".ko.zst", ".ko.gz"})
    if (n.size() > ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0) return true;
  return false;
}

std::string module_name_from_path(std::string_view path) {
  const size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  for (std::string_view ext : {".xz", ".zst", ".gz"}) {
    if (name.size() > ext.size() && name.ends_with(ext)) {
      name.remove_suffix(ext.size());
      break;
    }
  }
  if (name.size() > 3 && name.ends_with(".ko")) name.remove_suffix(3);
  return owner_module_name(name);  // the file name without suffixes, '-' as '_'
}

Result<ModuleInfo> parse_module(std::string_view file, const std::string& path, const ReadOptions& options) {
  const std::vector<std::string>* trusted_certs = options.trusted_certs;
  ModuleInfo m;
  m.path = path;
  if (options.sha256) m.sha256 = sha256_hex(file);
  Compression comp = detect_compression(file);
  m.compression = std::string(compression_name(comp));
  std::string decompressed;
  std::string_view bytes = file;
  if (comp != Compression::None) {
    auto raw = decompress_module(file, path);
    if (!raw) return tl::unexpected(raw.error());
    decompressed = std::move(*raw);
    bytes = decompressed;
  }

  // The signature trailer is outside the ELF image the kernel parses.
  auto sig = parse_signature_trailer(bytes);
  m.signature = sig.signature;
  if (trusted_certs && m.signature.state == Signature::State::Present)
    m.signature.key_check = key_check_of(check_module_signature(bytes, *trusted_certs));
  std::string_view image(bytes.data(), sig.image_size);

  // What each kernel generation's ELF validity checks refuse. A file the reader cannot read
  // further is a module every generation refuses (the rules report the refusal); one that some
  // kernel might accept and the reader cannot read stays an error naming it.
  bool refused_by_all = true;
  for (size_t g = 0; g < kElfGenerations; ++g) {
    m.elf_refusal[g] = check_elf_validity(image, static_cast<ElfGeneration>(g));
    refused_by_all = refused_by_all && m.elf_refusal[g].has_value();
  }
  auto unreadable = [&](std::string problem) -> Result<ModuleInfo> {
    if (!refused_by_all || !options.keep_unreadable) return fail(ENOEXEC, std::move(problem), path);
    m.unreadable = true;
    if (m.name.empty()) m.name = module_name_from_path(path);
    return m;
  };
  if (image.empty()) return unreadable("empty file, not a kernel module");
  if (image.size() < 4 || image.substr(0, 4) != std::string_view("\x7f" "ELF", 4)) return unreadable("not an ELF file");

  // libelf's version handshake writes a global: once, so that modules can be parsed in parallel.
  static const bool elf_ready = elf_version(EV_CURRENT) != EV_NONE;
  if (!elf_ready) return fail(EIO, "libelf initialisation failed", path);
  auto elf_problem = [](const char* what) {
    const int e = elf_errno();
    return std::string(what) + (e ? std::string(": ") + elf_errmsg(e) : std::string());
  };
  ElfHandle elf(elf_memory(const_cast<char*>(image.data()), image.size()));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) return unreadable(elf_problem("not an ELF file"));
  GElf_Ehdr ehdr;
  if (!gelf_getehdr(elf.get(), &ehdr)) return unreadable(elf_problem("bad ELF header"));
  const bool is64 = gelf_getclass(elf.get()) == ELFCLASS64;
  // The kernel sizes the section header table by its own Elf_Shdr, whatever e_shentsize says
  // (a wrong e_shentsize is refused by the rules, elf_validity_check's order).
  const uint64_t shdr_size = is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
  if (ehdr.e_shoff > image.size() || uint64_t{ehdr.e_shnum} * shdr_size > image.size() - ehdr.e_shoff)
    return unreadable("section header table extends past the end of the file (truncated?)");
  if (ehdr.e_type != ET_REL) return unreadable("ELF type is not ET_REL (relocatable): not a kernel module");
  m.elf_machine = static_cast<uint16_t>(ehdr.e_machine);
  m.elf_shentsize = static_cast<uint16_t>(ehdr.e_shentsize);
  m.shnum = static_cast<uint16_t>(ehdr.e_shnum);
  if (ehdr.e_ident[EI_DATA] != ELFDATA2LSB) return unreadable("big-endian modules are not supported");

  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0)
    return unreadable(std::string("no section name table: ") + elf_errmsg(-1));

  // Section names as the kernel reads them: from the name table's bytes, whatever its type (6.1
  // does not check it; libelf's elf_strptr() wants SHT_STRTAB).
  std::string_view secstrings;
  if (GElf_Shdr str; shstrndx != 0 && gelf_getshdr(elf_getscn(elf.get(), shstrndx), &str) && str.sh_type != SHT_NOBITS &&
                     str.sh_offset <= image.size() && str.sh_size <= image.size() - str.sh_offset)
    secstrings = image.substr(str.sh_offset, str.sh_size);
  std::vector<Section> sections;
  std::unordered_map<std::string, std::vector<size_t>> by_name;  // indexes in file order
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf.get(), scn)) != nullptr;) {
    Section s;
    if (!gelf_getshdr(scn, &s.hdr)) return unreadable(std::string("bad section header: ") + elf_errmsg(-1));
    // A name outside the table: the validity checks judge it (6.1 only for SHF_ALLOC sections).
    if (s.hdr.sh_name < secstrings.size()) {
      const std::string_view n = secstrings.substr(s.hdr.sh_name);
      s.name = std::string(n.substr(0, n.find('\0')));
    }
    if (s.hdr.sh_type != SHT_NOBITS && s.hdr.sh_size > 0) {
      if (s.hdr.sh_offset > image.size() || s.hdr.sh_size > image.size() - s.hdr.sh_offset)
        return unreadable("section " + s.name + " extends past the end of the file (truncated?)");
      s.data = image.substr(s.hdr.sh_offset, s.hdr.sh_size);
    }
    size_t idx = elf_ndxscn(scn);
    if (sections.size() <= idx) sections.resize(idx + 1);
    by_name[s.name].push_back(idx);
    sections[idx] = std::move(s);
  }
  // The first SHF_ALLOC section of that name (6.1's find_sec()), else the first of any flags
  // (6.12+'s find_any_unique_sec(); the validity checks judge a second one).
  auto find = [&](const char* name) -> const Section* {
    auto it = by_name.find(name);
    if (it == by_name.end()) return nullptr;
    for (size_t i : it->second)
      if (sections[i].hdr.sh_flags & SHF_ALLOC) return &sections[i];
    return &sections[it->second.front()];
  };
  // module_enforce_rwx_sections() looks at every section header, section 0 included.
  for (size_t i = 0; i < sections.size() && !m.write_exec_section; ++i) {
    GElf_Shdr h{};
    if (i == 0 && !gelf_getshdr(elf_getscn(elf.get(), 0), &h)) continue;
    const uint64_t flags = i == 0 ? h.sh_flags : sections[i].hdr.sh_flags;
    if ((flags & (SHF_WRITE | SHF_EXECINSTR)) == (SHF_WRITE | SHF_EXECINSTR))
      m.write_exec_section = std::make_pair(sections[i].name, i);
  }

  // No .modinfo is no refusal of its own: no vermagic (a forced load), no licence.
  if (const Section* mi = find(".modinfo")) {
    parse_modinfo(mi->data, m);
    m.modinfo_alloc = (mi->hdr.sh_flags & SHF_ALLOC) != 0;
  } else {
    m.has_modinfo = m.modinfo_alloc = false;
  }

  // btf_module_notify() parses these when the module comes (kabi/btf.h).
  if (auto it = by_name.find(".BTF"); it != by_name.end()) m.btf = sections[it->second.front()].data;
  if (auto it = by_name.find(".BTF.base"); it != by_name.end()) m.btf_base = sections[it->second.front()].data;

  if (const Section* tm = find(".gnu.linkonce.this_module")) {
    m.this_module_size = tm->hdr.sh_size;
    const size_t name_off = is64 ? 24 : 12;  // offsetof(struct module, name)
    if (tm->data.size() >= name_off + 1) {
      std::string_view n = tm->data.substr(name_off, std::min(kModuleNameLen, tm->data.size() - name_off));
      m.name = std::string(n.substr(0, n.find('\0')));
    }
  }
  if (m.name.empty()) {
    for (const auto& [k, v] : m.modinfo)
      if (k == "name") m.name = v;
  }
  if (m.name.empty()) m.name = module_name_from_path(path);

  if (const Section* note = find(".note.gnu.build-id")) m.build_id = parse_build_id_note(note->data);

  if (const Section* v = find("__versions")) {
    m.has_versions = true;
    m.versions_alloc = (v->hdr.sh_flags & SHF_ALLOC) != 0;
    auto table = parse_versions(*v, is64, path);
    if (!table) return tl::unexpected(table.error());
    m.versions = std::move(*table);
  }
  const Section* ext_crcs = find("__version_ext_crcs");
  const Section* ext_names = find("__version_ext_names");
  if (ext_crcs && ext_names && (ext_crcs->hdr.sh_flags & SHF_ALLOC)) {
    // Fewer names than CRCs: 6.14+ refuse the file (elf_validity.h); older kernels ignore both.
    if (auto table = parse_ext_versions(*ext_crcs, *ext_names, path)) {
      m.has_ext_versions = true;
      m.ext_versions = std::move(*table);
    }
  }

  // Symbols: undefined ones in table order; exports via __ksymtab_<sym> / __crc_<sym>. The
  // first SHT_SYMTAB is the one 6.1's setup_load_info() takes; 6.4+ refuse more than one, and
  // every kernel refuses none (the rules judge symtab_count).
  const Section* symtab = nullptr;
  size_t symtab_idx = 0;
  m.symtab_count = 0;
  for (size_t i = 0; i < sections.size(); ++i)
    if (sections[i].hdr.sh_type == SHT_SYMTAB) {
      if (!symtab) {
        symtab = &sections[i];
        symtab_idx = i;
      }
      ++m.symtab_count;
    }
  if (!symtab) return m;
  if (symtab->hdr.sh_link >= sections.size()) return unreadable("symbol table links to a missing string table");
  const std::string_view strtab = sections[symtab->hdr.sh_link].data;
  const size_t symsize = is64 ? sizeof(Elf64_Sym) : sizeof(Elf32_Sym);
  const size_t nsyms = symtab->data.size() / symsize;
  Elf_Data* symdata = elf_getdata(elf_getscn(elf.get(), symtab_idx), nullptr);
  if (!symdata) return unreadable(std::string("unreadable symbol table: ") + elf_errmsg(-1));

  struct Def {
    size_t shndx;
    uint64_t value;
  };
  // Keys point into the string table, which outlives this function's use of them.
  std::unordered_map<std::string_view, Def> kcrctab, kstrtab, kstrtabns;
  std::vector<std::pair<std::string_view, Def>> ksym_order;
  for (size_t i = 1; i < nsyms; ++i) {
    GElf_Sym sym;
    if (!gelf_getsym(symdata, static_cast<int>(i), &sym)) return unreadable("bad symbol entry");
    // A name outside the string table: 6.14+ refuse the file; older kernels read past the table,
    // which the reader does not follow (the symbol is taken as unnamed).
    std::string_view name = sym.st_name < strtab.size() ? strtab.substr(sym.st_name) : std::string_view();
    name = name.substr(0, name.find('\0'));
    // simplify_symbols(): a common symbol, or a section index past the table, fails the load.
    constexpr uint16_t kShnLivepatch = 0xff20;
    if (sym.st_shndx == SHN_COMMON && name.substr(0, 9) != "__gnu_lto") {
      m.bad_symbols.push_back({std::string(name), i, static_cast<uint16_t>(sym.st_shndx), true});
    } else if (sym.st_shndx != SHN_UNDEF && sym.st_shndx != SHN_ABS && sym.st_shndx != SHN_COMMON &&
               sym.st_shndx != kShnLivepatch && sym.st_shndx >= ehdr.e_shnum) {
      m.bad_symbols.push_back({std::string(name), i, static_cast<uint16_t>(sym.st_shndx), false});
    }
    if (name.empty()) continue;
    if (sym.st_shndx == SHN_UNDEF) {
      m.undefined.push_back({std::string(name), GELF_ST_BIND(sym.st_info) == STB_WEAK, i});
      continue;
    }
    if (name.size() < 7 || name[0] != '_' || name[1] != '_') continue;  // not an export record
    auto strip = [&](std::string_view prefix) -> std::optional<std::string_view> {
      if (name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix) return name.substr(prefix.size());
      return std::nullopt;
    };
    if (auto s = strip("__ksymtab_")) {
      ksym_order.emplace_back(*s, Def{sym.st_shndx, sym.st_value});
    } else if (auto c = strip("__crc_")) {
      kcrctab[*c] = {sym.st_shndx, sym.st_value};
    } else if (auto n = strip("__kstrtabns_")) {
      kstrtabns[*n] = {sym.st_shndx, sym.st_value};
    } else if (auto t = strip("__kstrtab_")) {
      kstrtab[*t] = {sym.st_shndx, sym.st_value};
    }
  }
  if (is64 && ehdr.e_machine == EM_X86_64) {
    std::vector<RelocSection> rs(sections.size());
    for (size_t i = 0; i < sections.size(); ++i) {
      const auto& h = sections[i].hdr;
      rs[i] = {h.sh_type, h.sh_flags, h.sh_info, h.sh_size, sections[i].data};
    }
    std::vector<RelocSymbol> syms(nsyms);
    for (size_t i = 0; i < nsyms; ++i) {
      GElf_Sym sym;
      if (gelf_getsym(symdata, static_cast<int>(i), &sym)) syms[i] = {sym.st_shndx, sym.st_value};
    }
    m.relocations = check_relocations_x86_64(rs, syms);
    read_param_flags(sections, syms, m);
  }
  for (const auto& sec : sections) {
    if (sec.name == "__kcrctab") m.has_kcrctab = true;
    if (sec.name == "__kcrctab_gpl") m.has_kcrctab_gpl = true;
    if (sec.hdr.sh_flags & SHF_ALLOC) {
      if (sec.name == "__kflagstab") m.has_kflagstab = true;
      if (sec.name == "__ksymtab_gpl") m.has_ksymtab_gpl = true;
    }
  }
  // 7.x find_exported_symbol_in_section(): an export's flags byte is __kflagstab[i], i its
  // entry's index in __ksymtab (entries of equal size: the section's size over its count).
  const Section* kflagstab = m.has_kflagstab ? find("__kflagstab") : nullptr;
  size_t ksymtab_entry = 0;
  if (const Section* ks = find("__ksymtab")) {
    size_t entries = 0;
    for (const auto& [n, d] : ksym_order) entries += d.shndx < sections.size() && &sections[d.shndx] == ks;
    if (entries && ks->hdr.sh_size % entries == 0) ksymtab_entry = ks->hdr.sh_size / entries;
  }
  for (const auto& [name, def] : ksym_order) {
    ExportedSymbol e;
    e.name = name;
    // The kernel reads the name from __ksymtab_strings (where __kstrtab_<sym> points), not from
    // the symbol's name: the two differ only in an edited module, and then the string counts.
    if (auto t = kstrtab.find(name); t != kstrtab.end() && t->second.shndx < sections.size()) {
      std::string_view d = sections[t->second.shndx].data;
      if (t->second.value < d.size()) {
        std::string_view s = d.substr(t->second.value);
        s = s.substr(0, s.find('\0'));
        if (!s.empty()) e.name = std::string(s);
      }
    }
    if (def.shndx < sections.size()) {
      const Section& in = sections[def.shndx];
      e.in_ksymtab_gpl = in.name.rfind("__ksymtab_gpl", 0) == 0;
      if (kflagstab && ksymtab_entry && in.name == "__ksymtab" && def.value / ksymtab_entry < kflagstab->data.size())
        e.flags = static_cast<uint8_t>(kflagstab->data[def.value / ksymtab_entry]);
    }
    e.gpl_only = m.has_kflagstab ? e.flags >= 0 && (e.flags & kKsymFlagGplOnly) != 0 : e.in_ksymtab_gpl;
    if (auto c = kcrctab.find(name); c != kcrctab.end()) {
      if (c->second.shndx == SHN_ABS) {  // before 5.19: the CRC is the symbol's value
        e.crc = static_cast<uint32_t>(c->second.value);
      } else if (c->second.shndx < sections.size() && sections[c->second.shndx].name.rfind("__kcrctab", 0) == 0) {
        // the kernel reads CRCs only from sections of these names: elsewhere, none
        std::string_view d = sections[c->second.shndx].data;
        if (c->second.value <= d.size() && d.size() - c->second.value >= 4) e.crc = static_cast<uint32_t>(read_le(d, c->second.value, 4));
      }
    }
    if (auto n = kstrtabns.find(name); n != kstrtabns.end() && n->second.shndx < sections.size()) {
      std::string_view d = sections[n->second.shndx].data;
      if (n->second.value < d.size()) {
        std::string_view s = d.substr(n->second.value);
        e.ns = std::string(s.substr(0, s.find('\0')));
      }
    }
    m.exports.push_back(std::move(e));
  }
  return m;
}

Result<ModuleInfo> read_module(const std::filesystem::path& path, const ReadOptions& options) {
  auto file = map_file(path);
  if (!file) return tl::unexpected(file.error());
  return parse_module(file->bytes(), path.string(), options);
}

}  // namespace agent::kabi
