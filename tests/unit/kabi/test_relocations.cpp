// apply_relocations() / x86-64 apply_relocate_add() as the kernel runs them (6.1.192, 6.12.118,
// 7.2.13 arch/x86/kernel/module.c): the reader on the basic fixture edited in place, and the
// judgement of the values on hand-made sections where only the addresses matter.
#include "kabi/relocations.h"

#include <elf.h>

#include <algorithm>
#include <cerrno>

#include "catch2_compat.h"

#include "kabi/module.h"
#include "kabi/rules.h"
#include "test_util.h"

using namespace agent::kabi;
using kabi_test::fixture;
using kabi_test::get;
using kabi_test::put;
using kabi_test::slurp;

namespace {

const std::string& basic() {
  static const std::string b = slurp(fixture("basic.ko"));
  return b;
}

struct Rela {
  size_t section;     // the relocation section's index
  size_t at;          // the entry's offset in the file
  uint64_t offset;    // r_offset
  uint32_t type, sym;
  uint32_t target;    // sh_info
};

// Every RELA entry of the file, read with the ELF layout (not the agent's reader).
std::vector<Rela> relas(const std::string& b) {
  std::vector<Rela> out;
  const auto shoff = get<uint64_t>(b, 0x28);
  for (size_t i = 0; i < get<uint16_t>(b, 0x3c); ++i) {
    const size_t h = shoff + i * 64;
    if (get<uint32_t>(b, h + 4) != SHT_RELA) continue;
    const auto off = get<uint64_t>(b, h + 24), size = get<uint64_t>(b, h + 32);
    for (size_t k = 0; k < size / 24; ++k) {
      const size_t at = off + k * 24;
      const auto info = get<uint64_t>(b, at + 8);
      out.push_back({i, at, get<uint64_t>(b, at), static_cast<uint32_t>(info & 0xffffffff),
                     static_cast<uint32_t>(info >> 32), get<uint32_t>(b, h + 44)});
    }
  }
  return out;
}

Relocations read(const std::string& b) {
  auto m = parse_module(b, "/t/basic.ko");
  REQUIRE(m);
  return m->relocations;
}

void set_type(std::string& b, const Rela& r, uint32_t type) {
  put<uint64_t>(b, r.at + 8, (uint64_t{r.sym} << 32) | type);
}

}  // namespace

TEST_CASE("relocations: a module built for the kernel's code model passes", "[relocations]") {
  const auto all = relas(basic());
  REQUIRE(all.size() >= 5);  // the data the other cases edit is there
  const Relocations r = read(basic());
  CHECK_FALSE(r.fault);
  CHECK(r.unchecked_count == 0);
}

TEST_CASE("relocations: what the kernel refuses, read from the file", "[relocations]") {
  const auto all = relas(basic());
  REQUIRE(all.size() >= 2);
  const Rela& first = all[0];
  const Rela& second = all[1];
  REQUIRE(first.section == second.section);

  SECTION("a type apply_relocate_add() does not know (default: -ENOEXEC)") {
    std::string b = basic();
    set_type(b, second, R_X86_64_GOTPCREL);
    const Relocations r = read(b);
    REQUIRE(r.fault);
    CHECK(r.fault->kind == RelocationFault::Kind::UnknownType);
    CHECK(r.fault->section == second.section);
    CHECK(r.fault->index == 1);
    CHECK(r.fault->type == R_X86_64_GOTPCREL);
  }
  SECTION("R_X86_64_NONE writes nothing") {
    std::string b = basic();
    set_type(b, first, R_X86_64_NONE);
    CHECK_FALSE(read(b).fault);
  }
  SECTION("a target whose bytes are not zero in the file") {
    std::string b = basic();
    const auto shoff = get<uint64_t>(b, 0x28);
    const auto target_off = get<uint64_t>(b, shoff + first.target * 64 + 24);
    REQUIRE(b[target_off + first.offset] == 0);
    b[target_off + first.offset] = 0x5a;
    const Relocations r = read(b);
    REQUIRE(r.fault);
    CHECK(r.fault->kind == RelocationFault::Kind::NonzeroTarget);
    CHECK(r.fault->index == 0);
  }
  SECTION("two relocations of the same bytes: the second finds the first's value") {
    std::string b = basic();
    put<uint64_t>(b, second.at, first.offset);
    const Relocations r = read(b);
    REQUIRE(r.fault);
    CHECK(r.fault->kind == RelocationFault::Kind::NonzeroTarget);
    CHECK(r.fault->index == 1);
  }
  SECTION("SHT_REL: x86-64 applies only RELA (\"REL relocation unsupported\")") {
    std::string b = basic();
    put<uint32_t>(b, get<uint64_t>(b, 0x28) + first.section * 64 + 4, SHT_REL);
    const Relocations r = read(b);
    REQUIRE(r.fault);
    CHECK(r.fault->kind == RelocationFault::Kind::RelSection);
    CHECK(r.fault->section == first.section);
  }
  SECTION("a relocation section for a section that is not loaded is skipped") {
    std::string b = basic();
    const size_t target_hdr = get<uint64_t>(b, 0x28) + first.target * 64;
    set_type(b, second, R_X86_64_GOTPCREL);
    put<uint64_t>(b, target_hdr + 8, get<uint64_t>(b, target_hdr + 8) & ~uint64_t{SHF_ALLOC});
    CHECK_FALSE(read(b).fault);
  }
}

TEST_CASE("relocations: overflow, by where the kernel can place the module", "[relocations]") {
  // Section 1: 16 zero bytes of code; section 2: its RELA entries; symbols: 0 null, 1 defined
  // in section 1, 2 undefined, 3 absolute.
  std::string code(16, '\0');
  auto run = [&](uint32_t type, uint32_t sym, int64_t addend, uint64_t abs_value = 0) {
    Elf64_Rela r{};
    r.r_offset = 0;
    r.r_info = ELF64_R_INFO(sym, type);
    r.r_addend = addend;
    std::string rela(reinterpret_cast<const char*>(&r), sizeof r);
    std::vector<RelocSection> secs(3);
    secs[1] = {SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, 0, code.size(), code};
    secs[2] = {SHT_RELA, SHF_INFO_LINK, 1, rela.size(), rela};
    std::vector<RelocSymbol> syms{{0, 0}, {1, 4}, {SHN_UNDEF, 0}, {SHN_ABS, abs_value}};
    return check_relocations_x86_64(secs, syms);
  };
  using K = RelocationFault::Kind;
  // A module's own address is in the top 2 GiB: fits R_X86_64_32S, never R_X86_64_32.
  CHECK_FALSE(run(R_X86_64_32S, 1, 0).fault);
  REQUIRE(run(R_X86_64_32, 1, 0).fault);
  CHECK(run(R_X86_64_32, 1, 0).fault->kind == K::Overflow);
  // An addend that takes it out of the top 2 GiB wherever the module is.
  REQUIRE(run(R_X86_64_32S, 1, int64_t{1} << 40).fault);
  CHECK(run(R_X86_64_32S, 1, int64_t{1} << 40).fault->kind == K::Overflow);
  // One that may or may not: unchecked, never a pass.
  const Relocations maybe = run(R_X86_64_32S, 1, -0x40000000);
  CHECK_FALSE(maybe.fault);
  CHECK(maybe.unchecked_count == 1);
  // Undefined: the kernel image, a module (32S fits) or a per-CPU offset (only that fits 32).
  CHECK_FALSE(run(R_X86_64_32S, 2, 0).fault);
  const Relocations undef32 = run(R_X86_64_32, 2, 0);
  CHECK_FALSE(undef32.fault);
  CHECK(undef32.unchecked_count == 1);
  // Absolute values are exact.
  CHECK_FALSE(run(R_X86_64_32, 3, 0, 0xffffffff).fault);
  REQUIRE(run(R_X86_64_32, 3, 1, 0xffffffff).fault);
  CHECK_FALSE(run(R_X86_64_32S, 3, 0, 0x7fffffff).fault);
  REQUIRE(run(R_X86_64_32S, 3, 0, 0x80000000).fault);
  CHECK_FALSE(run(R_X86_64_32S, 3, 0, 0xffffffff80000000ull).fault);
  // 64-bit and PC-relative values are not checked by the kernel (PC32's check is #if 0).
  CHECK_FALSE(run(R_X86_64_64, 1, int64_t{1} << 40).fault);
  CHECK_FALSE(run(R_X86_64_PC32, 1, int64_t{1} << 40).fault);
  // Both wrong: the fault says both; the rules word it per generation.
  code[0] = 1;
  const Relocations both = run(R_X86_64_32, 1, 0);
  REQUIRE(both.fault);
  CHECK(both.fault->nonzero);
  CHECK(both.fault->overflow);
}

TEST_CASE("relocations: the rule refuses with ENOEXEC after the symbols", "[relocations][rules]") {
  std::string b = basic();
  const auto all = relas(b);
  REQUIRE(all.size() >= 2);
  set_type(b, all[1], R_X86_64_GOTPCREL);
  auto m = parse_module(b, "/t/basic.ko");
  REQUIRE(m);
  KernelModel k;
  k.release = "6.1.0-56-amd64";
  k.vermagic = m->vermagic;
  k.modversions = false;
  k.version_major = 6;
  k.version_minor = 1;
  const Evaluation ev = evaluate({*m}, k);
  REQUIRE(ev.modules.size() == 1);
  const auto& reasons = ev.modules[0].reasons;
  auto it = std::find_if(reasons.begin(), reasons.end(), [](const Reason& r) { return r.code == reason::kRelocationInvalid; });
  REQUIRE(it != reasons.end());
  CHECK(it->err == ENOEXEC);
  CHECK(it->message.rfind(m->name + ": Unknown rela relocation: 9 [section ", 0) == 0);
}
