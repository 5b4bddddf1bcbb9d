#include "kabi/module.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "catch2_compat.h"
#include <zlib.h>

#include "test_util.h"

using namespace agent::kabi;
using Catch::Matchers::Contains;
using kabi_test::fixture;
using kabi_test::slurp;
using kabi_test::get;
using kabi_test::put;
using kabi_test::TempDir;

namespace {

ModuleInfo load(const std::string& name) {
  auto m = read_module(fixture(name));
  if (!m) FAIL("cannot read fixture " << name << ": " << m.error().what());
  return *m;
}

const UndefinedSymbol* undefined(const ModuleInfo& m, const std::string& name) {
  for (const auto& u : m.undefined)
    if (u.name == name) return &u;
  return nullptr;
}

const ExportedSymbol* exported(const ModuleInfo& m, const std::string& name) {
  for (const auto& e : m.exports)
    if (e.name == name) return &e;
  return nullptr;
}

using Strings = std::vector<std::string>;

// The basic fixture, as every way of storing it must read.
void check_basic(const ModuleInfo& m) {
  CHECK(m.name == "kabi_basic");
  CHECK(m.vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
  CHECK(m.license == "GPL");
  CHECK(m.srcversion == "0123456789ABCDEF0123456");
  CHECK(m.depends == Strings{"drm", "drm_kms_helper"});
  CHECK(m.aliases == Strings{"pci:v00008086d00005690sv*sd*bc03sc*i*", "pci:v00008086d0000100Esv*sd*bc*sc*i*"});
  CHECK(m.import_ns == Strings{"DMA_BUF"});
  CHECK(m.firmware == Strings{"i915/dg2_guc_70.bin", "i915/dg2_huc_gsc.bin"});

  // .modinfo in file order, padding skipped, unknown keys kept.
  std::vector<std::pair<std::string, std::string>> expected = {
      {"vermagic", "6.1.0-56-amd64 SMP preempt mod_unload modversions "},
      {"license", "GPL"},
      {"intree", "Y"},
      {"retpoline", "Y"},
      {"alias", "pci:v00008086d00005690sv*sd*bc03sc*i*"},
      {"alias", "pci:v00008086d0000100Esv*sd*bc*sc*i*"},
      {"import_ns", "DMA_BUF"},
      {"firmware", "i915/dg2_guc_70.bin"},
      {"firmware", "i915/dg2_huc_gsc.bin"},
      {"parm", "enable_guc:Enable GuC (int)"},
      {"depends", "drm,drm_kms_helper"},
      {"srcversion", "0123456789ABCDEF0123456"},
      {"name", "kabi_basic"},
  };
  CHECK(m.modinfo == expected);
  CHECK(m.modinfo_values("alias").size() == 2);
  CHECK(m.modinfo_values("parm") == Strings{"enable_guc:Enable GuC (int)"});
  CHECK(m.modinfo_values("nope").empty());

  CHECK(m.has_versions);
  CHECK(m.versions_alloc);
  REQUIRE(m.versions.size() == 6);
  CHECK(m.versions[0].name == "module_layout");
  CHECK(m.versions[0].crc == 0x6d4c2fd1u);
  CHECK(m.versions[5].name == "kabi_optional_hook");
  CHECK(m.versions[5].crc == 0x0badf00du);
  CHECK_FALSE(m.has_ext_versions);
  CHECK(m.ext_versions.empty());
  REQUIRE(m.effective_versions() == &m.versions);
  REQUIRE(m.find_version("dma_buf_get"));
  CHECK(m.find_version("dma_buf_get")->crc == 0x2a0e6b6eu);
  CHECK(m.find_version("not_versioned") == nullptr);

  // Undefined symbols: module_layout is versioned but never referenced, so it is not here.
  Strings names;
  for (const auto& u : m.undefined) names.push_back(u.name);
  std::sort(names.begin(), names.end());
  CHECK(names == Strings{"_printk", "dma_buf_get", "drm_dev_register", "jiffies", "kabi_optional_hook"});
  REQUIRE(undefined(m, "kabi_optional_hook"));
  CHECK(undefined(m, "kabi_optional_hook")->weak);
  CHECK_FALSE(undefined(m, "_printk")->weak);
  CHECK_FALSE(undefined(m, "jiffies")->weak);

  REQUIRE(m.exports.size() == 2);
  const ExportedSymbol* gpl = exported(m, "kabi_basic_export");
  REQUIRE(gpl);
  CHECK(gpl->gpl_only);
  REQUIRE(gpl->crc);
  CHECK(*gpl->crc == 0x1234abcdu);
  CHECK(gpl->ns == "KABI_NS");
  const ExportedSymbol* plain = exported(m, "kabi_basic_plain");
  REQUIRE(plain);
  CHECK_FALSE(plain->gpl_only);
  REQUIRE(plain->crc);
  CHECK(*plain->crc == 0xdeadbeefu);  // an absolute __crc_ symbol (before 5.19)
  CHECK(plain->ns.empty());

  CHECK(m.this_module_size == 1280);
}

// Section headers of an ELF64 little-endian file, for edits in place as tests/e2e/mkcases.py
// makes them on real modules.
struct Shdr {
  size_t at;  // offset of the header in the file
  uint32_t name, type;
  uint64_t offset, size;
  uint32_t link;
};

std::vector<Shdr> section_headers(const std::string& b) {
  const auto shoff = get<uint64_t>(b, 0x28);
  const auto shnum = get<uint16_t>(b, 0x3c);
  std::vector<Shdr> out;
  for (size_t i = 0; i < shnum; ++i) {
    const size_t at = shoff + i * 64;
    out.push_back({at, get<uint32_t>(b, at), get<uint32_t>(b, at + 4), get<uint64_t>(b, at + 24),
                   get<uint64_t>(b, at + 32), get<uint32_t>(b, at + 40)});
  }
  return out;
}

std::string section_name(const std::string& b, const Shdr& s) {
  const auto shstrndx = get<uint16_t>(b, 0x3e);
  const Shdr str = section_headers(b)[shstrndx];
  return std::string(b.c_str() + str.offset + s.name);
}

const Shdr& section(const std::vector<Shdr>& all, const std::string& b, const std::string& name) {
  for (const auto& s : all)
    if (section_name(b, s) == name) return s;
  FAIL("no section " << name);
  return all.front();
}

}  // namespace

TEST_CASE("module: every field of a plain .ko", "[module]") {
  const ModuleInfo m = load("basic.ko");
  check_basic(m);
  CHECK(m.path == fixture("basic.ko").string());
  CHECK(m.compression == "none");
  CHECK(m.signature.state == Signature::State::None);
  CHECK(m.sha256 == kabi_test::sha256_of_fixture("basic.ko"));
  CHECK(m.sha256.size() == 64);
}

TEST_CASE("module: .ko.xz, .ko.zst and .ko.gz read like the plain file", "[module]") {
  for (auto [file, comp] : {std::pair{"basic.ko.xz", "xz"}, {"basic.ko.zst", "zstd"}, {"basic.ko.gz", "gzip"}}) {
    INFO(file);
    const ModuleInfo m = load(file);
    check_basic(m);
    CHECK(m.compression == comp);
    CHECK(m.path == fixture(file).string());
  }
  // sha256 is of the file as stored, so a compressed copy has its own.
  const ModuleInfo xz = load("basic.ko.xz");
  CHECK(xz.sha256 == kabi_test::sha256_of_fixture("basic.ko.xz"));
  CHECK(xz.sha256 != kabi_test::sha256_of_fixture("basic.ko"));
}

TEST_CASE("module: parse_module takes bytes already in memory", "[module]") {
  auto m = parse_module(slurp(fixture("basic.ko.zst")), "/opt/lib/modules/6.1.0-56-amd64/kabi_basic.ko.zst");
  REQUIRE(m);
  check_basic(*m);
  CHECK(m->path == "/opt/lib/modules/6.1.0-56-amd64/kabi_basic.ko.zst");
  CHECK(m->compression == "zstd");
}

TEST_CASE("module: __versions is honoured only when SHF_ALLOC", "[module]") {
  const ModuleInfo m = load("nonalloc.ko");
  CHECK(m.has_versions);
  CHECK_FALSE(m.versions_alloc);
  // Still read (modprobe --dump-modversions prints it) but not what the kernel consults.
  CHECK(m.versions.size() == 6);
  CHECK(m.effective_versions() == nullptr);
  CHECK(m.find_version("module_layout") == nullptr);
  CHECK(m.vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
}

TEST_CASE("module: GPL-only as each generation reads it: __kflagstab (7.x), __ksymtab_gpl (6.x)", "[module]") {
  const ModuleInfo f = load("flags.ko");
  CHECK(f.has_kflagstab);
  CHECK_FALSE(f.has_ksymtab_gpl);
  REQUIRE(f.exports.size() == 2);  // flags.c: flg_plain (flags 0), flg_gpl (flags 1), both in __ksymtab
  CHECK(f.exports[0].name == "flg_plain");
  CHECK(f.exports[0].flags == 0);
  CHECK_FALSE(f.exports[0].gpl_only);
  CHECK(f.exports[1].name == "flg_gpl");
  CHECK(f.exports[1].flags == 1);
  CHECK(f.exports[1].gpl_only);
  CHECK_FALSE(f.exports[1].in_ksymtab_gpl);

  const ModuleInfo n = load("noflags.ko");  // the same with __kflagstab renamed away
  CHECK_FALSE(n.has_kflagstab);
  REQUIRE(n.exports.size() == 2);
  CHECK(n.exports[1].flags == -1);
  CHECK_FALSE(n.exports[1].gpl_only);

  const ModuleInfo p = load("provider.ko");  // 6.x: prov_gpl in __ksymtab_gpl
  CHECK_FALSE(p.has_kflagstab);
  CHECK(p.has_ksymtab_gpl);
  for (const auto& e : p.exports) {
    CHECK(e.in_ksymtab_gpl == (e.name == "prov_gpl"));
    CHECK(e.gpl_only == (e.name == "prov_gpl"));
    CHECK(e.flags == -1);
  }
}

TEST_CASE("module: extended modversions replace __versions", "[module]") {
  const ModuleInfo m = load("ext.ko");
  CHECK(m.name == "kabi_ext");
  CHECK(m.license == "GPL v2");
  CHECK(m.this_module_size == 1344);
  CHECK(m.has_versions);
  CHECK(m.versions_alloc);
  REQUIRE(m.versions.size() == 1);
  CHECK(m.versions[0].crc == 0x11111111u);
  CHECK(m.has_ext_versions);
  REQUIRE(m.ext_versions.size() == 3);
  CHECK(m.ext_versions[0].name == "module_layout");
  CHECK(m.ext_versions[0].crc == 0x6d4c2fd1u);
  CHECK(m.ext_versions[1].name == "_printk");
  CHECK(m.ext_versions[1].crc == 0x92997ed8u);
  const std::string long_name = "kabi_a_symbol_name_much_longer_than_the_fifty_six_bytes_of_modversion_info";
  CHECK(m.ext_versions[2].name == long_name);
  CHECK(m.ext_versions[2].crc == 0x0000beefu);
  CHECK(m.effective_versions() == &m.ext_versions);
  REQUIRE(m.find_version("_printk"));
  CHECK(m.find_version("_printk")->crc == 0x92997ed8u);  // the stale __versions CRC is not used
  REQUIRE(m.find_version(long_name));
  CHECK(undefined(m, long_name));
}

TEST_CASE("module: no __versions, no export CRCs, name from .modinfo", "[module]") {
  const ModuleInfo m = load("noversions.ko");
  // .gnu.linkonce.this_module has an empty name: .modinfo's name= is next.
  CHECK(m.name == "kabi_noversions");
  CHECK(m.license == "Proprietary");
  CHECK(m.vermagic == "7.2.13-amd64 SMP preempt mod_unload ");
  CHECK_FALSE(m.has_versions);
  CHECK_FALSE(m.versions_alloc);
  CHECK(m.versions.empty());
  CHECK(m.effective_versions() == nullptr);
  CHECK(m.this_module_size == 1408);
  REQUIRE(m.exports.size() == 1);
  CHECK(m.exports[0].name == "kabi_nover_export");
  CHECK_FALSE(m.exports[0].crc.has_value());
  CHECK_FALSE(m.exports[0].gpl_only);
  CHECK(m.depends.empty());
  CHECK(m.aliases.empty());
}

TEST_CASE("module: a two-module bundle's exports and imports", "[module]") {
  const ModuleInfo p = load("provider.ko");
  const ModuleInfo c = load("consumer.ko");
  CHECK(p.name == "kabi_provider");
  CHECK(p.depends.empty());  // "depends=" with nothing after it
  REQUIRE(exported(p, "prov_gpl"));
  CHECK(exported(p, "prov_gpl")->gpl_only);
  CHECK(exported(p, "prov_gpl")->crc == 0xc0ffee01u);
  REQUIRE(exported(p, "prov_plain"));
  CHECK_FALSE(exported(p, "prov_plain")->gpl_only);
  CHECK(exported(p, "prov_plain")->crc == 0xc0ffee02u);  // from __kcrctab data, not absolute
  CHECK(c.name == "kabi_consumer");
  CHECK(c.depends == Strings{"kabi_provider"});
  CHECK(undefined(c, "prov_gpl"));
  CHECK(undefined(c, "prov_plain"));
  CHECK(c.exports.empty());
}

TEST_CASE("module: an export's name is the __ksymtab_strings string, as the kernel reads it", "[module]") {
  // The symbol __ksymtab_prov_plain stays; only the string __kstrtab_prov_plain points at
  // changes (what mkcases.py's export_vmlinux does to a real module).
  std::string bytes = slurp(fixture("provider.ko"));
  const std::string old = std::string("prov_gpl\0prov_plain\0", 20);
  const size_t at = bytes.find(old);
  REQUIRE(at != std::string::npos);
  REQUIRE(bytes.find(old, at + 1) == std::string::npos);
  bytes.replace(at + 9, 10, std::string("kfree\0\0\0\0\0", 10));
  auto m = parse_module(bytes, "provider-edited.ko");
  REQUIRE(m);
  CHECK(exported(*m, "kfree"));
  CHECK_FALSE(exported(*m, "prov_plain"));
  REQUIRE(exported(*m, "kfree"));
  CHECK(exported(*m, "kfree")->crc == 0xc0ffee02u);  // the record's CRC, found by its symbol
  CHECK(exported(*m, "prov_gpl"));
}

TEST_CASE("module: signature states as read from the file", "[module]") {
  SECTION("signed") {
    const ModuleInfo m = load("signed.ko");
    check_basic(m);  // the trailer is not part of the ELF image
    CHECK(m.signature.state == Signature::State::Present);
    CHECK(m.signature.key_id == "5eed1234");
    CHECK_THAT(m.signature.signer, Contains("kabi unit test signing key"));
    CHECK(m.signature.signed_size == slurp(fixture("basic.ko")).size());
    CHECK(m.signature.key_check == Signature::KeyCheck::NotChecked);
    CHECK(m.sha256 != kabi_test::sha256_of_fixture("basic.ko"));
  }
  SECTION("signed, then compressed, as kbuild installs it") {
    for (const char* f : {"signed.ko.xz", "signed.ko.zst", "signed.ko.gz"}) {
      INFO(f);
      const ModuleInfo m = load(f);
      check_basic(m);
      CHECK(m.signature.state == Signature::State::Present);
      CHECK(m.signature.key_id == "5eed1234");
    }
  }
  SECTION("a valid trailer around garbage") {
    const ModuleInfo m = load("badsig.ko");
    check_basic(m);
    CHECK(m.signature.state == Signature::State::Malformed);
    CHECK_FALSE(m.signature.problem.empty());
  }
  SECTION("unsigned") {
    CHECK(load("basic.ko").signature.state == Signature::State::None);
  }
}

TEST_CASE("module: the signature checked against given certificates", "[module][signature]") {
  const std::vector<std::string> certs{slurp(fixture("signing_cert.der"))};
  const std::vector<std::string> none;
  using KC = Signature::KeyCheck;
  auto check = [](const agent::Result<ModuleInfo>& m) {
    if (!m) FAIL(m.error().what());
    return m->signature.key_check;
  };
  CHECK(check(read_module(fixture("signed.ko"), {.trusted_certs = &certs})) == KC::Verified);
  CHECK(check(read_module(fixture("signed.ko.xz"), {.trusted_certs = &certs})) == KC::Verified);  // checked decompressed
  CHECK(check(read_module(fixture("signed.ko"), {.trusted_certs = &none})) == KC::UnknownKey);
  CHECK(check(read_module(fixture("signed.ko"))) == KC::NotChecked);
  CHECK(check(read_module(fixture("basic.ko"), {.trusted_certs = &certs})) == KC::NotChecked);  // unsigned: state None
  CHECK(check(read_module(fixture("badsig.ko"), {.trusted_certs = &certs})) == KC::NotChecked);  // malformed: state says it

  // One byte of the signed image changed (a .modinfo string): the key is known, the content not.
  std::string bytes = slurp(fixture("signed.ko"));
  const size_t at = bytes.find("srcversion=0123456789ABCDEF0123456");
  REQUIRE(at != std::string::npos);
  bytes[at + 11] = '9';
  auto tampered = parse_module(bytes, "tampered.ko", {.trusted_certs = &certs});
  REQUIRE(tampered);
  CHECK(tampered->srcversion == "9123456789ABCDEF0123456");
  CHECK(tampered->signature.state == Signature::State::Present);
  CHECK(tampered->signature.key_check == KC::BadSignature);
}

TEST_CASE("module: names implied by file names", "[module]") {
  CHECK(module_name_from_path("/lib/modules/6.1.0/kernel/drivers/gpu/drm/drm_kms_helper.ko.xz") == "drm_kms_helper");
  CHECK(module_name_from_path("snd-hda-intel.ko.zst") == "snd_hda_intel");
  CHECK(module_name_from_path("i915.ko") == "i915");
  CHECK(module_name_from_path("i915.ko.gz") == "i915");
}

// ---- bad input: a clear error naming the path, never a crash -------------------------------

namespace {

void check_error(const agent::Result<ModuleInfo>& r, const std::string& path, const char* says) {
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ENOEXEC);
  CHECK(r.error().path == path);
  CHECK_THAT(r.error().what(), Contains(path));
  if (says) CHECK_THAT(r.error().message, Contains(says));
}

}  // namespace

TEST_CASE("module: ELF header fields the kernel judges are recorded, not fatal", "[module]") {
  // elf_validity_check() refuses these (ENOEXEC); the reader records them for the rules and
  // still reads the rest, so that a report names every problem.
  const std::string basic = slurp(fixture("basic.ko"));
  {
    auto m = parse_module(basic, "basic.ko");
    REQUIRE(m);
    CHECK(m->elf_machine == 62);  // EM_X86_64 (the fixture is built for the host)
    CHECK(m->elf_machine == kNativeElfMachine);
    CHECK(m->elf_shentsize == 64);
    CHECK(m->symtab_count == 1);
  }
  SECTION("another machine") {
    std::string b = basic;
    put<uint16_t>(b, 18, 183);  // EM_AARCH64
    auto m = parse_module(b, "arm64.ko");
    REQUIRE(m);
    CHECK(m->elf_machine == 183);
    check_basic(*m);
  }
  SECTION("a wrong section header entry size: the headers are read at the native size") {
    std::string b = basic;
    put<uint16_t>(b, 0x3a, 8);
    auto m = parse_module(b, "shentsize.ko");
    REQUIRE(m);
    CHECK(m->elf_shentsize == 8);
    check_basic(*m);
  }
  SECTION("two symbol tables: the symbols are the first one's (6.1's setup_load_info)") {
    std::string b = basic;
    const auto all = section_headers(b);
    const Shdr& symtab = section(all, b, ".symtab");
    const Shdr& strtab = section(all, b, ".strtab");
    REQUIRE(strtab.at > symtab.at);  // after it, as in a real module
    put<uint32_t>(b, strtab.at + 4, 2);  // SHT_SYMTAB
    put<uint32_t>(b, strtab.at + 40, symtab.link);
    auto m = parse_module(b, "symtab2.ko");
    REQUIRE(m);
    CHECK(m->symtab_count == 2);
    check_basic(*m);
  }
  SECTION("no symbol table") {
    std::string b = basic;
    put<uint32_t>(b, section(section_headers(b), b, ".symtab").at + 4, 1);  // SHT_PROGBITS
    auto m = parse_module(b, "stripped.ko");
    REQUIRE(m);
    CHECK(m->symtab_count == 0);
    CHECK(m->undefined.empty());
    CHECK(m->name == "kabi_basic");
  }
}

TEST_CASE("module: vermagic absent, empty, or given twice", "[module]") {
  // get_modinfo() returns the first "vermagic=" entry; none at all is check_modinfo()'s forced
  // load, an empty value is compared (and fails).
  const std::string basic = slurp(fixture("basic.ko"));
  const Shdr mi = section(section_headers(basic), basic, ".modinfo");
  const std::string_view info(basic.data() + mi.offset, mi.size);
  const std::string entry = "vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions ";
  const size_t at = mi.offset + info.find(entry);
  REQUIRE(info.find(entry) != std::string_view::npos);
  SECTION("absent") {
    std::string b = basic;
    b.replace(at, entry.size(), std::string(entry.size(), '\0'));
    auto m = parse_module(b, "novermagic.ko");
    REQUIRE(m);
    CHECK_FALSE(m->has_vermagic);
    CHECK(m->vermagic.empty());
    CHECK(m->modinfo_values("vermagic").empty());
  }
  SECTION("empty") {
    std::string b = basic;
    b.replace(at + 9, entry.size() - 9, std::string(entry.size() - 9, '\0'));
    auto m = parse_module(b, "emptyvermagic.ko");
    REQUIRE(m);
    CHECK(m->has_vermagic);
    CHECK(m->vermagic.empty());
  }
  SECTION("twice: the first counts") {
    // "license=GPL" (the next entry) made a second, shorter vermagic: "vermagic=X".
    std::string b = basic;
    const size_t lic = mi.offset + info.find("license=GPL");
    b.replace(lic, 11, std::string("vermagic=X\0", 11));
    auto m = parse_module(b, "twovermagic.ko");
    REQUIRE(m);
    CHECK(m->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
    CHECK(m->modinfo_values("vermagic").size() == 2);
  }
}

namespace {

// `head` followed by `zeros` zero bytes, gzip-compressed (a decompression bomb when large).
std::string gzip_of(const std::string& head, size_t zeros) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out;
  std::string chunk(size_t{1} << 20, '\0');
  char buf[1 << 16];
  auto feed = [&](const std::string& in, size_t n, int flush) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(n);
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof buf;
      deflate(&zs, flush);
      out.append(buf, sizeof buf - zs.avail_out);
    } while (zs.avail_out == 0);
  };
  feed(head, head.size(), Z_NO_FLUSH);
  for (size_t left = zeros; left > 0;) {
    const size_t n = std::min(left, chunk.size());
    left -= n;
    feed(chunk, n, left ? Z_NO_FLUSH : Z_FINISH);
  }
  if (zeros == 0) feed(chunk, 0, Z_FINISH);
  deflateEnd(&zs);
  return out;
}

}  // namespace

TEST_CASE("module: compressed files that inflate to no module are caught cheaply", "[module][errors]") {
  // The largest real module is ~20 MB; the reader stops at 256 MiB, and at once when the
  // first decompressed bytes are not an ELF header.
  SECTION("not ELF: stopped at the first block") {
    auto r = parse_module(gzip_of("not an elf", size_t{64} << 20), "zeros.ko.gz");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ENOEXEC);
    CHECK_THAT(r.error().message, Contains("not an ELF"));
  }
  SECTION("an ELF header followed by 300 MiB of zeros") {
    auto r = parse_module(gzip_of(slurp(fixture("basic.ko")), size_t{300} << 20), "bomb.ko.gz");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == EFBIG);
    CHECK_THAT(r.error().message, Contains("256 MiB"));
  }
  SECTION("a real module with padding under the cap still reads") {
    auto r = parse_module(gzip_of(slurp(fixture("basic.ko")), size_t{1} << 20), "padded.ko.gz");
    REQUIRE(r);
    CHECK(r->name == "kabi_basic");
  }
}

TEST_CASE("module: empty, garbage and non-module files", "[module][errors]") {
  TempDir tmp;
  SECTION("empty") {
    kabi_test::spit(tmp / "empty.ko", "");
    check_error(read_module(tmp / "empty.ko"), (tmp / "empty.ko").string(), "empty");
  }
  SECTION("garbage") {
    kabi_test::spit(tmp / "garbage.ko", std::string(4096, 'Z'));
    check_error(read_module(tmp / "garbage.ko"), (tmp / "garbage.ko").string(), "not an ELF");
  }
  SECTION("ELF magic only") {
    kabi_test::spit(tmp / "magic.ko", "\x7f" "ELF");
    check_error(read_module(tmp / "magic.ko"), (tmp / "magic.ko").string(), nullptr);
  }
  // No refusal of the kernel's own: no vermagic, no licence; the name from struct module.
  SECTION("no .modinfo: read, nothing from it") {
    auto m = read_module(fixture("nomodinfo.ko"));
    REQUIRE(m);
    CHECK_FALSE(m->has_modinfo);
    CHECK_FALSE(m->has_vermagic);
    CHECK(m->license.empty());
    CHECK(m->name == "kabi_basic");
  }
  // Refused by the ELF validity checks (elf_validity.h); the rest is still read.
  SECTION("no .gnu.linkonce.this_module: read, refused by every generation") {
    auto m = read_module(fixture("nothismodule.ko"));
    REQUIRE(m);
    CHECK_FALSE(m->unreadable);
    for (const auto& r : m->elf_refusal) CHECK(r);
    CHECK(m->name == "kabi_basic");  // from .modinfo
  }
  SECTION("__versions not a multiple of 64 bytes: the whole entries, as check_version() reads") {
    auto m = read_module(fixture("badversions.ko"));
    REQUIRE(m);
    CHECK(m->has_versions);
    CHECK(m->versions.empty());  // 60 bytes: no whole entry
  }
  SECTION("not ET_REL") {
    std::string bytes = slurp(fixture("basic.ko"));
    bytes[16] = 3;  // e_type = ET_DYN
    check_error(parse_module(bytes, "shared.so"), "shared.so", "ET_REL");
  }
  SECTION("big-endian") {
    std::string bytes = slurp(fixture("basic.ko"));
    bytes[5] = 2;  // EI_DATA = ELFDATA2MSB
    check_error(parse_module(bytes, "be.ko"), "be.ko", nullptr);
  }
  SECTION("a compressed file with garbage inside") {
    std::string xz = slurp(fixture("basic.ko.xz"));
    kabi_test::spit(tmp / "cut.ko.xz", xz.substr(0, xz.size() / 2));
    auto r = read_module(tmp / "cut.ko.xz");
    REQUIRE_FALSE(r);
    CHECK(r.error().path == (tmp / "cut.ko.xz").string());
  }
  SECTION("missing file") {
    auto r = read_module(tmp / "missing.ko");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ENOENT);
    CHECK(r.error().path == (tmp / "missing.ko").string());
  }
}

TEST_CASE("module: a .ko truncated at any length is an error naming it", "[module][errors]") {
  const std::string whole = slurp(fixture("basic.ko"));
  for (size_t len = 0; len < whole.size(); ++len) {
    auto r = parse_module(whole.substr(0, len), "truncated.ko");
    if (r) {
      FAIL_CHECK("truncated to " << len << " of " << whole.size() << " bytes, parsed as module " << r->name);
    } else if (r.error().path != "truncated.ko" || r.error().message.empty()) {
      FAIL_CHECK("error at " << len << " does not name the file: " << r.error().what());
    }
  }
}

TEST_CASE("module: corrupted bytes never crash the reader", "[module][errors]") {
  // Deterministic mutations of every fixture: a result or an error, nothing else (run the
  // sanitizer build to catch out-of-bounds reads).
  std::mt19937 rng(20261101);
  for (const char* f : {"basic.ko", "ext.ko", "signed.ko", "provider.ko"}) {
    const std::string whole = slurp(fixture(f));
    std::uniform_int_distribution<size_t> pos(0, whole.size() - 1);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int iter = 0; iter < 400; ++iter) {
      std::string bytes = whole;
      const int flips = 1 + iter % 8;
      for (int i = 0; i < flips; ++i) bytes[pos(rng)] = static_cast<char>(byte(rng));
      auto r = parse_module(bytes, f);
      if (!r) CHECK_FALSE(r.error().message.empty());
    }
  }
}

TEST_CASE("module: the GNU build id note, as in the .ko and in /sys/module/<m>/notes", "[module]") {
  // namesz 4, descsz 20, type NT_GNU_BUILD_ID (3), "GNU\0", 20 bytes of id.
  std::string note("\x04\x00\x00\x00\x14\x00\x00\x00\x03\x00\x00\x00GNU\0", 16);
  for (int i = 0; i < 20; ++i) note += static_cast<char>(0xa0 + i);
  CHECK(parse_build_id_note(note) == "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3");
  // Another note first (type 1, name "Linux", 4-byte desc) is skipped.
  std::string other("\x06\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00Linux\0\0\0\x01\x02\x03\x04", 24);
  CHECK(parse_build_id_note(other + note) == "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3");
  CHECK(parse_build_id_note("").empty());
  CHECK(parse_build_id_note(note.substr(0, 20)).empty());  // truncated: no id, no crash
  CHECK(parse_build_id_note(other).empty());
}
