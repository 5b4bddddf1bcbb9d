// The kernel's ELF validity checks per generation (kabi/elf_validity.h), on the basic fixture
// edited in place as tests/e2e/mkcases.py edits real modules. Each expected message is the
// kernel's own (6.1.192 elf_validity_check/setup_load_info, 6.12.118 and 7.2.13
// elf_validity_cache_copy), not the agent's output.
#include "kabi/elf_validity.h"

#include <cerrno>
#include <cstring>

#include "catch2_compat.h"

#include "kabi/rules.h"
#include "test_util.h"

using namespace agent::kabi;
using kabi_test::fixture;
using kabi_test::slurp;
using kabi_test::get;
using kabi_test::put;

namespace {

struct Sh {
  size_t at;  // the header's offset in the file
  uint32_t name, type;
  uint64_t flags, offset, size;
  uint32_t link;
};

std::vector<Sh> sections(const std::string& b) {
  std::vector<Sh> out;
  const auto shoff = get<uint64_t>(b, 0x28);
  for (size_t i = 0; i < get<uint16_t>(b, 0x3c); ++i) {
    const size_t at = shoff + i * 64;
    out.push_back({at, get<uint32_t>(b, at), get<uint32_t>(b, at + 4), get<uint64_t>(b, at + 8),
                   get<uint64_t>(b, at + 24), get<uint64_t>(b, at + 32), get<uint32_t>(b, at + 40)});
  }
  return out;
}

Sh section(const std::string& b, const std::string& name) {
  const auto all = sections(b);
  const Sh& str = all.at(get<uint16_t>(b, 0x3e));
  for (size_t i = 0; i < all.size(); ++i)
    if (std::string(b.c_str() + str.offset + all[i].name) == name) return all[i];
  FAIL("no section " << name);
  return all.front();
}

size_t index_of(const std::string& b, const Sh& s) { return (s.at - get<uint64_t>(b, 0x28)) / 64; }

constexpr ElfGeneration kGens[] = {ElfGeneration::V6_1, ElfGeneration::V6_12, ElfGeneration::V7_2};

// The refusal of each generation: "" when it accepts the file, else "code: message".
std::vector<std::string> verdicts(const std::string& b) {
  std::vector<std::string> out;
  for (ElfGeneration g : kGens) {
    auto r = check_elf_validity(b, g);
    out.push_back(r ? r->code + ": " + r->message : "");
  }
  return out;
}

using V = std::vector<std::string>;

const std::string& basic() {
  static const std::string b = slurp(fixture("basic.ko"));
  return b;
}

}  // namespace

TEST_CASE("elf validity: generations by kernel version", "[elf]") {
  CHECK(elf_generation(6, 1) == ElfGeneration::V6_1);
  CHECK(elf_generation(6, 3) == ElfGeneration::V6_1);
  CHECK(elf_generation(6, 4) == ElfGeneration::V6_12);
  CHECK(elf_generation(6, 13) == ElfGeneration::V6_12);
  CHECK(elf_generation(6, 14) == ElfGeneration::V7_2);
  CHECK(elf_generation(7, 2) == ElfGeneration::V7_2);
  CHECK(elf_generation(0, 0) == ElfGeneration::V6_1);  // unknown: the oldest checks
}

TEST_CASE("elf validity: a real module passes every generation", "[elf]") {
  CHECK(verdicts(basic()) == V{"", "", ""});
  CHECK(verdicts(slurp(fixture("ext.ko"))) == V{"", "", ""});
}

TEST_CASE("elf validity: the header (C1, C2, C3)", "[elf]") {
  std::string b = basic();
  b[3] = 'G';
  const std::string magic = std::string(reason::kElfHeader) + ": Invalid ELF header magic: != \\177ELF";
  CHECK(verdicts(b) == V{magic, magic, magic});
  const std::string len = std::string(reason::kElfHeader) + ": Invalid ELF header len 40";
  CHECK(verdicts(basic().substr(0, 40)) == V{len, len, len});
  CHECK(verdicts("") == V(3, std::string(reason::kElfHeader) + ": Invalid ELF header len 0"));
  b = basic();
  put<uint16_t>(b, 16, 3);  // ET_DYN
  CHECK(verdicts(b) == V(3, std::string(reason::kElfType) + ": Invalid ELF header type: 3 != 1"));
  b = basic();
  b[4] = 1;  // ELFCLASS32: the kernel reads the header as its own Elf64_Ehdr all the same
  CHECK(verdicts(b) == V{"", "", ""});
  b = basic();
  put<uint16_t>(b, 18, 183);
  CHECK(verdicts(b) == V(3, std::string(reason::kElfMachine) + ": Invalid architecture in ELF header: 183"));
  b = basic();
  put<uint16_t>(b, 0x3a, 8);
  CHECK(verdicts(b) == V(3, std::string(reason::kElfShentsize) + ": Invalid ELF section header size"));
}

TEST_CASE("elf validity: the section table (C4)", "[elf]") {
  REQUIRE(get<uint64_t>(basic(), 0x28) > basic().size() / 2);  // the table is at the end
  const std::string overflow = std::string(reason::kElfSectionTable) + ": Invalid ELF section header overflow";
  CHECK(verdicts(basic().substr(0, basic().size() / 2)) == V{overflow, overflow, overflow});

  std::string b = basic();
  put<uint32_t>(b, get<uint64_t>(b, 0x28) + 4, 1);  // section 0: SHT_PROGBITS
  const std::string s0 =
      std::string(reason::kElfSectionTable) + ": ELF Spec violation: section 0 type(1)!=SH_NULL or non-zero len or addr";
  CHECK(verdicts(b) == V{s0, s0, s0});

  // A section past the end of the file.
  b = basic();
  const Sh text = section(b, ".text");
  put<uint64_t>(b, text.at + 24, b.size());
  const std::string past = std::string(reason::kElfSectionTable) + ": Invalid ELF section in module (section " +
                           std::to_string(index_of(b, text)) + " type 1)";
  CHECK(verdicts(b) == V{past, past, past});
}

TEST_CASE("elf validity: section names (C4)", "[elf]") {
  const uint16_t shnum = get<uint16_t>(basic(), 0x3c);
  std::string b = basic();
  put<uint16_t>(b, 0x3e, shnum);
  const std::string idx = std::string(reason::kElfSectionNames) + ": Invalid ELF section name index: " +
                          std::to_string(shnum) + " || e_shstrndx (" + std::to_string(shnum) + ") >= e_shnum (" +
                          std::to_string(shnum) + ")";
  CHECK(verdicts(b) == V{idx, idx, idx});

  // No sections: the index check refuses, whether section 0 is read from the file or (the table's
  // start in the last bytes, found by fuzz_module) from past its end.
  const uint16_t strndx = get<uint16_t>(basic(), 0x3e);
  REQUIRE(strndx > 0);
  const std::string none = std::string(reason::kElfSectionNames) + ": Invalid ELF section name index: " +
                           std::to_string(strndx) + " || e_shstrndx (" + std::to_string(strndx) + ") >= e_shnum (0)";
  for (uint64_t shoff : {get<uint64_t>(basic(), 0x28), uint64_t{basic().size() - 8}}) {
    b = basic();
    put<uint16_t>(b, 0x3c, 0);
    put<uint64_t>(b, 0x28, shoff);
    CHECK(verdicts(b) == V{none, none, none});
  }

  // The name table not SHT_STRTAB: 6.4+ only.
  b = basic();
  const Sh shstrtab = sections(b).at(get<uint16_t>(b, 0x3e));
  put<uint32_t>(b, shstrtab.at + 4, 1);
  CHECK(verdicts(b) == V{"", std::string(reason::kElfSectionNames) + ": Invalid ELF section name table type: 1",
                         std::string(reason::kElfSectionNames) + ": Invalid ELF section name table type: 1"});
  // Not NUL-terminated.
  b = basic();
  b[shstrtab.offset + shstrtab.size - 1] = 'x';
  CHECK(verdicts(b) ==
        V(3, std::string(reason::kElfSectionNames) + ": ELF Spec violation: section name table isn't null terminated"));

  // A name outside the table: 6.1 judges SHF_ALLOC sections only, 6.4+ every one.
  b = basic();
  const Sh comment = section(b, ".comment");
  REQUIRE_FALSE(comment.flags & 2);
  put<uint32_t>(b, comment.at, static_cast<uint32_t>(shstrtab.size));
  const std::string name = std::string(reason::kElfSectionNames) + ": Invalid ELF section name in module (section " +
                           std::to_string(index_of(b, comment)) + " type 1)";
  CHECK(verdicts(b) == V{"", name, name});
  b = basic();
  const Sh text = section(b, ".text");
  REQUIRE(text.flags & 2);
  put<uint32_t>(b, text.at, static_cast<uint32_t>(shstrtab.size) + 7);
  const std::string alloc = std::string(reason::kElfSectionNames) + ": Invalid ELF section name in module (section " +
                            std::to_string(index_of(b, text)) + " type 1)";
  CHECK(verdicts(b) == V{alloc, alloc, alloc});
}

TEST_CASE("elf validity: .modinfo twice (C5), this_module (C7)", "[elf]") {
  std::string b = basic();
  const Sh modinfo = section(b, ".modinfo");
  const Sh comment = section(b, ".comment");
  put<uint32_t>(b, comment.at, modinfo.name);  // .comment renamed .modinfo (not SHF_ALLOC)
  const std::string twice = std::string(reason::kModinfoDuplicate) + ": Only one .modinfo section must exist.";
  CHECK(verdicts(b) == V{"", twice, twice});

  const Sh tm = section(basic(), ".gnu.linkonce.this_module");
  b = basic();
  put<uint32_t>(b, tm.at + 4, 8);  // SHT_NOBITS
  const std::string nobits =
      std::string(reason::kThisModule) + ": module kabi_basic: .gnu.linkonce.this_module section must have a size set";
  CHECK(verdicts(b) == V{"", nobits, nobits});
  b = basic();
  put<uint64_t>(b, tm.at + 8, tm.flags & ~uint64_t{2});  // not SHF_ALLOC
  const std::string noalloc = std::string(reason::kThisModule) +
                              ": module kabi_basic: .gnu.linkonce.this_module must occupy memory during process execution";
  CHECK(verdicts(b) == V{std::string(reason::kThisModule) + ": kabi_basic: No module found in object", noalloc, noalloc});
  b = basic();
  put<uint32_t>(b, comment.at, tm.name);  // a second one
  const std::string two = std::string(reason::kThisModule) +
                          ": module kabi_basic: Exactly one .gnu.linkonce.this_module section must exist.";
  CHECK(verdicts(b) == V{"", two, two});
  CHECK(verdicts(slurp(fixture("nothismodule.ko"))) ==
        V{std::string(reason::kThisModule) + ": kabi_basic: No module found in object", two, two});
  // Without .modinfo the messages have no name; the kernel does not refuse for that alone.
  CHECK(verdicts(slurp(fixture("nomodinfo.ko"))) == V{"", "", ""});
}

TEST_CASE("elf validity: the symbol string table (C10)", "[elf]") {
  const Sh symtab = section(basic(), ".symtab");
  const Sh strtab = section(basic(), ".strtab");
  std::string b = basic();
  put<uint32_t>(b, symtab.at + 40, 0);
  const uint16_t shnum = get<uint16_t>(b, 0x3c);
  const std::string link = std::string(reason::kSymbolStrtab) + ": Invalid ELF sh_link!=SHN_UNDEF(0) or (sh_link(0) >= hdr->e_shnum(" +
                           std::to_string(shnum) + ")";
  CHECK(verdicts(b) == V{link, link, link});
  b = basic();
  put<uint32_t>(b, strtab.at + 4, 1);  // SHT_PROGBITS
  const std::string type = std::string(reason::kSymbolStrtab) + ": Invalid ELF symbol string table type: 1";
  CHECK(verdicts(b) == V{"", type, type});
  // 7.2's contents checks.
  b = basic();
  b[strtab.offset] = 'X';
  CHECK(verdicts(b) == V{"", "", std::string(reason::kSymbolStrtab) + ": symbol string table missing leading NUL"});
  b = basic();
  b[strtab.offset + strtab.size - 1] = 'X';
  CHECK(verdicts(b) == V{"", "", std::string(reason::kSymbolStrtab) + ": symbol string table isn't NUL terminated"});
  b = basic();
  put<uint32_t>(b, symtab.offset + 24, static_cast<uint32_t>(strtab.size));  // symbol 1's st_name
  CHECK(verdicts(b) == V{"", "", std::string(reason::kSymbolStrtab) + ": symbol name out of bounds in string table"});
}

TEST_CASE("elf validity: extended versions (C11, 6.14+)", "[elf]") {
  const std::string ext = slurp(fixture("ext.ko"));
  const Sh crcs = section(ext, "__version_ext_crcs");
  const Sh names = section(ext, "__version_ext_names");
  REQUIRE(crcs.size >= 8);
  std::string b = ext;
  put<uint64_t>(b, names.at + 8, names.flags & ~uint64_t{2});  // find_sec() no longer sees it
  CHECK(verdicts(b) == V{"", "", std::string(reason::kExtVersions) + ": extended version crc+name presence does not match"});
  b = ext;
  put<uint64_t>(b, crcs.at + 32, crcs.size + 4 * 64);  // more CRCs than names (inside the file)
  REQUIRE(crcs.offset + crcs.size + 4 * 64 <= b.size());
  CHECK(verdicts(b) == V{"", "", std::string(reason::kExtVersions) + ": more extended version crcs than names"});
}

TEST_CASE("elf validity: the module reader keeps what the kernel refuses as no module", "[elf][module]") {
  std::string b = basic();
  b[0] = 'X';
  auto plain = parse_module(b, "/b/kabi_bad.ko");
  REQUIRE_FALSE(plain);  // an error, unless asked to keep it
  CHECK(plain.error().path == "/b/kabi_bad.ko");
  auto kept = parse_module(b, "/b/kabi_bad.ko", {.trusted_certs = nullptr, .sha256 = true, .keep_unreadable = true});
  REQUIRE(kept);
  CHECK(kept->unreadable);
  CHECK(kept->name == "kabi_bad");
  CHECK(kept->sha256.size() == 64);
  for (const auto& r : kept->elf_refusal) {
    REQUIRE(r);
    CHECK(r->code == reason::kElfHeader);
  }
  // Truncated anywhere: an error without the option, a refusal of every generation with it.
  for (size_t len = 0; len < basic().size(); len += 97) {
    auto t = parse_module(basic().substr(0, len), "cut.ko", {.trusted_certs = nullptr, .sha256 = false, .keep_unreadable = true});
    REQUIRE(t);
    CHECK(t->unreadable);
    for (const auto& r : t->elf_refusal) CHECK(r);
  }
  // What only some generation refuses is read in full.
  b = basic();
  put<uint32_t>(b, section(b, ".gnu.linkonce.this_module").at + 4, 8);
  auto nobits = parse_module(b, "nobits.ko");
  REQUIRE(nobits);
  CHECK_FALSE(nobits->unreadable);
  CHECK_FALSE(nobits->elf_refusal[0]);
  CHECK(nobits->elf_refusal[1]);
  CHECK(nobits->name == "kabi_basic");  // from .modinfo: the section has no bytes
  CHECK(nobits->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
}

TEST_CASE("elf validity: the reader takes section names from the name table's bytes, whatever its type", "[elf][module]") {
  // 6.1 does not check the name table's type and loads such a module: its .modinfo must be read.
  std::string b = basic();
  const Sh shstrtab = sections(b).at(get<uint16_t>(b, 0x3e));
  REQUIRE(shstrtab.type == 3);
  auto before = parse_module(b, "kabi_basic.ko");
  REQUIRE(before);
  REQUIRE(before->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
  put<uint32_t>(b, shstrtab.at + 4, 1);  // SHT_PROGBITS
  auto m = parse_module(b, "progbits.ko");
  REQUIRE(m);
  CHECK_FALSE(m->elf_refusal[0]);
  CHECK(m->elf_refusal[1]);
  CHECK(m->name == before->name);
  CHECK(m->vermagic == before->vermagic);
  CHECK(m->license == before->license);
  CHECK(m->undefined.size() == before->undefined.size());
}

TEST_CASE("elf validity: write+exec sections and bad symbols are read (E1, H1, H2)", "[elf][module]") {
  auto good = parse_module(basic(), "basic.ko");
  REQUIRE(good);
  CHECK_FALSE(good->write_exec_section);
  CHECK(good->bad_symbols.empty());
  CHECK(good->shnum == get<uint16_t>(basic(), 0x3c));

  std::string b = basic();
  const Sh data = section(b, ".data");
  put<uint64_t>(b, data.at + 8, data.flags | 0x4);  // SHF_EXECINSTR on SHF_WRITE
  auto wx = parse_module(b, "wx.ko");
  REQUIRE(wx);
  REQUIRE(wx->write_exec_section);
  CHECK(wx->write_exec_section->first == ".data");
  CHECK(wx->write_exec_section->second == index_of(b, data));

  // The first defined, named symbol: SHN_COMMON, then an index past the table.
  const Sh symtab = section(basic(), ".symtab");
  const Sh strtab = section(basic(), ".strtab");
  size_t at = 0;
  std::string name;
  for (size_t off = symtab.offset + 24; off < symtab.offset + symtab.size; off += 24) {
    const auto st_name = get<uint32_t>(basic(), off);
    const auto shndx = get<uint16_t>(basic(), off + 6);
    if (st_name && shndx && shndx < 0xff00) {
      at = off;
      name = basic().c_str() + strtab.offset + st_name;
      break;
    }
  }
  REQUIRE(at);
  b = basic();
  put<uint16_t>(b, at + 6, 0xfff2);
  auto common = parse_module(b, "common.ko");
  REQUIRE(common);
  REQUIRE(common->bad_symbols.size() == 1);
  CHECK(common->bad_symbols[0].common);
  CHECK(common->bad_symbols[0].name == name);
  CHECK(common->bad_symbols[0].index == (at - symtab.offset) / 24);
  b = basic();
  put<uint16_t>(b, at + 6, static_cast<uint16_t>(get<uint16_t>(b, 0x3c) + 3));
  auto range = parse_module(b, "shndx.ko");
  REQUIRE(range);
  REQUIRE(range->bad_symbols.size() == 1);
  CHECK_FALSE(range->bad_symbols[0].common);
  CHECK(range->bad_symbols[0].shndx == get<uint16_t>(b, 0x3c) + 3);
}
