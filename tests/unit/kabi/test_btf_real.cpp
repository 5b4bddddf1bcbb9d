// kabi/btf.h on real BTF: Debian's 6.12 and 7.2 kernels (their linux-headers' vmlinux, the same
// BTF the running kernel shows in /sys/kernel/btf/vmlinux) and their own xe.ko, which each
// kernel loads (tests/e2e/agreement.sh: xe-own), then edited as tests/e2e/mkcases.py's btf_*
// cases edit it (each refused by 7.2 under qemu).
#define CATCH_CONFIG_RUNNER
#include "catch2_compat.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "kabi/btf.h"
#include "kabi/module.h"
#include "kernel_roles.h"

namespace fs = std::filesystem;
using namespace agent::kabi;

namespace {

uint32_t u32_at(const std::string& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
void put_u32(std::string& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

struct Kernel {
  BaseBtf base;
  ModuleInfo xe;
};

Kernel kernel(const std::string& role) {
  const fs::path dir = agent::test::kernel_of(role) / "modules";
  auto live = RootFs::open("/");
  REQUIRE(live);
  auto base = read_kernel_btf(*live, (dir / "build" / "vmlinux").string());
  if (!base) FAIL(base.error().what());
  std::ifstream dep(dir / "modules.dep");
  std::string line, xe;
  while (std::getline(dep, line) && xe.empty())
    if (line.find("/xe.ko") != std::string::npos) xe = line.substr(0, line.find(':'));
  REQUIRE_FALSE(xe.empty());
  auto m = read_module(dir / xe);
  if (!m) FAIL(m.error().what());
  return {std::move(*base), std::move(*m)};
}

// Type records of split BTF: file offset of each in `btf` and its kind (the 24-byte header).
std::vector<std::pair<size_t, uint32_t>> types_of(const std::string& btf) {
  std::vector<std::pair<size_t, uint32_t>> out;
  const size_t hdr = u32_at(btf, 4), start = hdr + u32_at(btf, 8), end = start + u32_at(btf, 12);
  for (size_t at = start; at < end;) {
    const uint32_t info = u32_at(btf, at + 4), kind = (info >> 24) & 0x1f, vlen = info & 0xffff;
    size_t extra = (kind == 1 || kind == 14 || kind == 17) ? 4 : kind == 3 ? 12 : 0;
    if (kind == 4 || kind == 5 || kind == 15 || kind == 19) extra = 12 * size_t{vlen};
    if (kind == 6 || kind == 13) extra = 8 * size_t{vlen};
    out.emplace_back(at, kind);
    at += 12 + extra;
  }
  return out;
}

}  // namespace

TEST_CASE("btf real: each kernel's headers vmlinux gives its BTF, and its own xe parses on it") {
  for (const char* role : {"k612", "nomodversions"}) {
    INFO(role << " = " << agent::test::abi_of(role));
    const Kernel k = kernel(role);
    CHECK(k.base.nr_types > 50000);
    // The string length is the vmlinux .BTF header's (offset 20), read here from the file.
    CHECK(k.base.str_len > 1000000);
    REQUIRE(k.xe.btf.size() > 1000);
    CHECK(k.xe.btf_base.empty());  // in-tree: split on vmlinux, no distilled base
    const int major = std::string(role) == "k612" ? 6 : 7, minor = major == 6 ? 12 : 2;
    const ModuleBtfCheck c = check_module_btf(k.xe.btf, {}, k.base, major, minor);
    INFO(c.problem);
    CHECK(c.err == 0);
  }
}

TEST_CASE("btf real: xe's .BTF edited past the kernel's counts is EINVAL (mkcases btf_*)") {
  const Kernel k = kernel("nomodversions");
  const std::string& btf = k.xe.btf;
  const auto types = types_of(btf);
  REQUIRE(types.size() > 100);
  const uint32_t own_strings = u32_at(btf, 20);
  // The first offset past the kernel's and the module's strings (btf_name_offset_valid).
  std::string name = btf;
  put_u32(name, types.front().first, k.base.str_len + own_strings);
  const ModuleBtfCheck n = check_module_btf(name, {}, k.base, 7, 2);
  CHECK(n.err == EINVAL);
  CHECK(n.problem == "[" + std::to_string(k.base.nr_types) + "] Invalid name_offset:" +
                         std::to_string(k.base.str_len + own_strings));
  std::string far = btf;
  put_u32(far, types.front().first, 0xffffff);  // mkcases btf_name_range
  CHECK(check_module_btf(far, {}, k.base, 7, 2).err == EINVAL);
  // The first modifier refers to one past the last type id (the base's and the module's).
  size_t modifier = 0;
  for (const auto& [at, kind] : types)
    if (kind == 8 || kind == 9 || kind == 10 || kind == 11 || kind == 18) {
      modifier = at;
      break;
    }
  REQUIRE(modifier != 0);
  std::string ref = btf;
  put_u32(ref, modifier + 8, k.base.nr_types + static_cast<uint32_t>(types.size()));
  const ModuleBtfCheck r = check_module_btf(ref, {}, k.base, 7, 2);
  CHECK(r.err == EINVAL);
  CHECK(r.problem.find("refers to type") != std::string::npos);
  put_u32(ref, modifier + 8, 0xfffff);  // mkcases btf_type_range
  CHECK(check_module_btf(ref, {}, k.base, 7, 2).err == EINVAL);
}

int main(int argc, char** argv) {
  if (!agent::test::require_roles({"k612", "nomodversions"})) return 77;
  return Catch::Session().run(argc, argv);
}
