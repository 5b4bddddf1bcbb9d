// A module's split BTF against a base, as btf_parse_module() (kernel/bpf/btf.c) judges it: each
// expected errno and message is the kernel's for that input (6.1, 6.12, 7.2 sources).
#include "kabi/btf.h"

#include <cerrno>

#include "btf_builder.h"
#include "catch2_compat.h"

using namespace agent::kabi;
using Catch::Matchers::Contains;
using kabi_test::BtfBuilder;

namespace {

constexpr int kENOTSUPP = 524;

// vmlinux-like base: [1] int (4 bytes), [2] int * ; strings "\0int\0".
BaseBtf base() {
  BtfBuilder b;
  const uint32_t n = b.name("int");
  b.type(n, kabi_test::kBtfInt, 0, 4, {32}).type(0, kabi_test::kBtfPtr, 0, 1);
  auto r = parse_base_btf(b.bytes(), "test-base");
  REQUIRE(r);
  return *r;
}

// Split BTF on base(): [3] const int, [4] typedef foo -> [3]; its own strings "\0foo\0" start at
// the base's string length (5), so "foo" is at 6.
BtfBuilder module_btf() {
  BtfBuilder b;
  b.name("foo");
  b.type(0, kabi_test::kBtfConst, 0, 1).type(6, kabi_test::kBtfTypedef, 0, 3);
  return b;
}

ModuleBtfCheck check(const std::string& btf, int major = 7, int minor = 2, const std::string& btf_base = {}) {
  return check_module_btf(btf, btf_base, base(), major, minor);
}

}  // namespace

TEST_CASE("btf: the base's counts are what a module's ids and offsets continue from") {
  const BaseBtf b = base();
  CHECK(b.nr_types == 3);  // void, int, int *
  CHECK(b.str_len == 5);
  CHECK(b.source == "test-base");
}

TEST_CASE("btf: a well-formed split BTF passes on every generation") {
  for (auto [major, minor] : {std::pair{6, 1}, std::pair{6, 12}, std::pair{7, 2}}) {
    const ModuleBtfCheck c = check(module_btf().bytes(), major, minor);
    INFO(major << "." << minor << ": " << c.problem);
    CHECK(c.err == 0);
    CHECK_FALSE(c.relocation);
  }
}

TEST_CASE("btf: a name offset past the base's and the module's strings is EINVAL") {
  // The last valid offset: base 5 + own 5 - 1.
  BtfBuilder ok;  // an int: the one kind whose name btf.c does not judge
  ok.name("foo");
  ok.type(9, kabi_test::kBtfInt, 0, 4, {32});
  CHECK(check(ok.bytes()).err == 0);
  BtfBuilder bad;
  bad.name("foo");
  bad.type(10, kabi_test::kBtfInt, 0, 4, {32});
  const ModuleBtfCheck c = check(bad.bytes());
  CHECK(c.err == EINVAL);
  CHECK_THAT(c.problem, Contains("[3] Invalid name_offset:10"));
}

TEST_CASE("btf: a modifier referring past the last type id is EINVAL") {
  BtfBuilder ok = module_btf();
  ok.type(0, kabi_test::kBtfConst, 0, 4);  // [5] -> [4]: exists
  CHECK(check(ok.bytes()).err == 0);
  BtfBuilder bad = module_btf();
  bad.type(0, kabi_test::kBtfConst, 0, 6);  // [5] -> [6]: the last id is 5
  for (auto [major, minor] : {std::pair{6, 1}, std::pair{7, 2}}) {
    const ModuleBtfCheck c = check(bad.bytes(), major, minor);
    CHECK(c.err == EINVAL);
    CHECK_THAT(c.problem, Contains("refers to type 6"));
  }
  // A pointer is no modifier: its target is checked later (btf_resolve), not by the module parse.
  BtfBuilder ptr = module_btf();
  ptr.type(0, kabi_test::kBtfPtr, 0, 99);
  CHECK(check(ptr.bytes()).err == 0);
}

TEST_CASE("btf: a modifier cycle is ELOOP") {
  BtfBuilder b;
  b.type(0, kabi_test::kBtfConst, 0, 4).type(0, kabi_test::kBtfConst, 0, 3);  // [3] -> [4] -> [3]
  const ModuleBtfCheck c = check(b.bytes());
  CHECK(c.err == ELOOP);
  CHECK(c.problem == "Max chain length or cycle detected");
}

TEST_CASE("btf: 6.x wants type tags before other modifiers, 7.2 does not look") {
  BtfBuilder b;
  b.name("tag");
  b.type(6, kabi_test::kBtfTypeTag, 0, 1).type(0, kabi_test::kBtfConst, 0, 3);  // [4] const -> [3] tag
  CHECK(check(b.bytes(), 7, 2).err == 0);
  const ModuleBtfCheck c = check(b.bytes(), 6, 12);
  CHECK(c.err == EINVAL);
  CHECK(c.problem == "Type tags don't precede modifiers");
}

TEST_CASE("btf: header, sections and strings as btf_parse_hdr and btf_parse_str_sec judge them") {
  const std::string good = module_btf().bytes();
  auto edited = [&](size_t at, uint8_t byte) {
    std::string b = good;
    b[at] = static_cast<char>(byte);
    return b;
  };
  CHECK(check(edited(0, 0x9e)).err == EINVAL);  // magic
  CHECK(check(edited(0, 0x9e)).problem == "Invalid magic");
  CHECK(check(edited(2, 2)).err == kENOTSUPP);   // version
  CHECK(check(edited(3, 1)).err == kENOTSUPP);   // flags
  CHECK(check(good.substr(0, 6)).problem == "hdr_len not found");
  // A byte after the string section: no section covers it.
  CHECK(check(good + std::string(1, '\0')).problem == "Unsupported section found");
  // The string section's last byte must be NUL.
  const ModuleBtfCheck unterminated = check(edited(good.size() - 1, 'x'));
  CHECK(unterminated.err == EINVAL);
  CHECK(unterminated.problem == "Invalid string section");
  // A longer header: 6.x knows 24 bytes, so any non-zero byte after them is E2BIG; 7.2 knows 32.
  std::string longer = good.substr(0, 24) + std::string(8, '\0') + good.substr(24);
  longer[4] = 32;
  CHECK(check(longer, 6, 12).err == 0);
  CHECK(check(longer, 7, 2).err == 0);
  longer[30] = 1;  // 7.2: layout_len 1 << 16, 6.x: an unknown header byte
  CHECK(check(longer, 6, 12).err == E2BIG);
  CHECK(check(longer, 7, 2).problem == "Section overlap found");  // a layout section at 0
}

TEST_CASE("btf: a type record longer than what is left, or of no known kind, is EINVAL") {
  BtfBuilder b = module_btf();
  b.type(0, kabi_test::kBtfStruct, 2, 8, {0, 1, 0});  // two members announced, one there
  const ModuleBtfCheck c = check(b.bytes());
  CHECK(c.err == EINVAL);
  CHECK(c.problem == "[5] meta_left:12 meta_needed:24");
  BtfBuilder k = module_btf();
  k.type(0, 20, 0, 0);
  CHECK(check(k.bytes()).problem == "[5] Invalid kind:20");
  // 6.x: bits outside BTF_INFO_MASK; 7.2 reads them as the kind's (kind 0x20 | 2 = 34)
  BtfBuilder m = module_btf();
  m.type(0, kabi_test::kBtfPtr | 0x20, 0, 1);
  CHECK(check(m.bytes(), 6, 1).problem == "[5] Invalid btf_info");
  CHECK(check(m.bytes(), 7, 2).problem == "[5] Invalid kind:34");
}

TEST_CASE("btf: .BTF.base is the module's base from 6.11 on; 6.1 parses the module on vmlinux") {
  // A distilled base with a long name: the module's name offset 7 is inside it ("led_n").
  BtfBuilder distilled;
  const uint32_t n = distilled.name("distilled_n");  // strings: 13 bytes
  distilled.type(n, kabi_test::kBtfInt, 0, 4, {32});
  BtfBuilder mod;
  mod.name("x");
  mod.type(7, kabi_test::kBtfTypedef, 0, 1);  // [2] typedef led_n -> [1]
  const std::string base_bytes = distilled.bytes();
  const ModuleBtfCheck on612 = check(mod.bytes(), 6, 12, base_bytes);
  CHECK(on612.err == 0);
  CHECK(on612.relocation);
  // 6.1 has no btf_relocate: offset 7 is the module's own 2 (after vmlinux's 5): "", no name.
  const ModuleBtfCheck on61 = check(mod.bytes(), 6, 1, base_bytes);
  CHECK(on61.err == EINVAL);
  CHECK_FALSE(on61.relocation);
  // A distilled base that does not parse fails the module.
  const ModuleBtfCheck broken = check(mod.bytes(), 7, 2, base_bytes.substr(0, 20));
  CHECK(broken.err == EINVAL);
  CHECK_THAT(broken.problem, Contains(".BTF.base: "));
}

TEST_CASE("btf: names each kind must have, in the base's strings or the module's") {
  // The base's "x32_SIZE" at 1: offset 2 is "32_SIZE", no C identifier (what a module built on
  // another build's vmlinux meets: its offsets land inside other strings).
  BtfBuilder b;
  const uint32_t x = b.name("x32_SIZE");
  b.type(0, kabi_test::kBtfInt, 0, 4, {32});
  auto on = parse_base_btf(b.bytes(), "names-base");
  REQUIRE(on);
  auto with_member = [&](uint32_t member_name) {
    BtfBuilder m;
    m.type(0, kabi_test::kBtfStruct, 1, 4, {member_name, 1, 0});
    return check_module_btf(m.bytes(), {}, *on, 6, 12);
  };
  CHECK(with_member(x).err == 0);      // x32_SIZE
  CHECK(with_member(0).err == 0);      // anonymous member
  const ModuleBtfCheck digit = with_member(x + 1);
  CHECK(digit.err == EINVAL);
  CHECK(digit.problem == "[2] Invalid name");
  CHECK(with_member(100).problem == "[2] Invalid member name_offset:100");
  // A typedef needs a name; a const must have none.
  BtfBuilder t;
  t.type(0, kabi_test::kBtfTypedef, 0, 1);
  CHECK(check_module_btf(t.bytes(), {}, *on, 7, 2).problem == "[2] Invalid name");
  BtfBuilder c;
  c.type(x, kabi_test::kBtfConst, 0, 1);
  CHECK(check_module_btf(c.bytes(), {}, *on, 7, 2).problem == "[2] Invalid name");
}

TEST_CASE("btf: the base from a vmlinux ELF's .BTF, and what is no base") {
  CHECK_FALSE(parse_base_btf("\x7f" "ELF", "short"));
  std::string junk(64, '\0');
  junk[4] = 24;  // hdr_len
  auto not_btf = parse_base_btf(junk, "junk");
  REQUIRE_FALSE(not_btf);
  CHECK_THAT(not_btf.error().what(), Contains("junk"));
  CHECK_THAT(not_btf.error().what(), Contains("Invalid magic"));
}
