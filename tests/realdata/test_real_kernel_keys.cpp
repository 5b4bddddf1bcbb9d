// kabi::extract_kernel_certificates and kabi::check_module_signature on real Debian kernels
// (tests/e2e/fetch-kernels.sh, by role): each kernel's vmlinuz holds the key its own modules
// are signed with, not another build's.
#include "catch2_compat.h"

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "kabi/file_io.h"
#include "kabi/handles.h"
#include "kabi/kernel_keys.h"
#include "kabi/signature.h"
#include "kernel_roles.h"

namespace fs = std::filesystem;
using agent::CHandle;
using agent::kabi::check_module_signature;
using agent::kabi::extract_kernel_certificates;
using agent::kabi::SignatureCheck;

namespace {

using Cert = CHandle<X509, X509_free>;

std::string strip_signature(std::string_view signed_module) {
  return std::string(signed_module.substr(0, agent::kabi::parse_signature_trailer(signed_module).image_size));
}

const std::vector<std::string>& certs_of(const fs::path& dir) {
  static std::map<fs::path, std::vector<std::string>> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) {
    auto certs = extract_kernel_certificates(dir / "vmlinuz");
    INFO((certs ? std::string() : certs.error().what()));
    REQUIRE(certs);
    it = cache.emplace(dir, std::move(*certs)).first;
  }
  return it->second;
}

std::string i915_of(const fs::path& dir) {
  const fs::path base = dir / "modules/kernel/drivers/gpu/drm/i915";
  for (const char* name : {"i915.ko", "i915.ko.xz", "i915.ko.zst"}) {
    std::error_code ec;
    if (!fs::exists(base / name, ec)) continue;
    auto bytes = agent::kabi::read_decompressed(base / name);
    INFO((bytes ? std::string() : bytes.error().what()));
    REQUIRE(bytes);
    return std::move(*bytes);
  }
  FAIL("no i915 module under " << base);
  return {};
}

// The [offset, offset+size) of an ELF64 little-endian section, found by name.
std::pair<size_t, size_t> elf_section(std::string_view elf, std::string_view wanted) {
  auto u16 = [&](size_t at) { return size_t{static_cast<unsigned char>(elf[at])} | size_t{static_cast<unsigned char>(elf[at + 1])} << 8; };
  auto u64 = [&](size_t at) {
    size_t v = 0;
    for (size_t i = 0; i < 8; ++i) v |= size_t{static_cast<unsigned char>(elf[at + i])} << (8 * i);
    return v;
  };
  REQUIRE(elf.size() > 64);
  REQUIRE(elf[4] == 2);  // ELFCLASS64
  const size_t shoff = u64(0x28), shentsize = u16(0x3a), shnum = u16(0x3c), shstrndx = u16(0x3e);
  REQUIRE(shoff + shnum * shentsize <= elf.size());
  const size_t strtab = u64(shoff + shstrndx * shentsize + 0x18);
  for (size_t i = 0; i < shnum; ++i) {
    const size_t sh = shoff + i * shentsize;
    const size_t name = strtab + (size_t{static_cast<unsigned char>(elf[sh])} | size_t{static_cast<unsigned char>(elf[sh + 1])} << 8 |
                                  size_t{static_cast<unsigned char>(elf[sh + 2])} << 16 | size_t{static_cast<unsigned char>(elf[sh + 3])} << 24);
    if (std::string_view(elf.data() + name) == wanted) return {u64(sh + 0x18), u64(sh + 0x20)};
  }
  FAIL("no section " << wanted);
  return {};
}

std::string subject_of(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  Cert cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return "?";
  CHandle<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_ONELINE);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// Verified / UnknownKey / BadSignature / Unsigned for one kernel and another with another build
// key (every Debian build signs its modules with a key of its own).
void check_real_kernel(const std::string& role, const std::string& other_role) {
  INFO(role << " = " << agent::test::abi_of(role) << ", " << other_role << " = " << agent::test::abi_of(other_role));
  const std::optional<fs::path> dir = agent::test::kernel_of(role);
  const std::optional<fs::path> other = agent::test::kernel_of(other_role);
  const auto& certs = certs_of(*dir);
  REQUIRE(!certs.empty());
  std::string subjects;
  for (const auto& c : certs) subjects += "\n  " + subject_of(c);
  INFO(role << " vmlinuz certificates:" << subjects);

  const std::string own = i915_of(*dir);
  CHECK(check_module_signature(own, certs) == SignatureCheck::Verified);

  const std::string foreign = i915_of(*other);
  CHECK(check_module_signature(foreign, certs) == SignatureCheck::UnknownKey);
  // ... and the foreign module against its own kernel's keys.
  CHECK(check_module_signature(foreign, certs_of(*other)) == SignatureCheck::Verified);

  std::string tampered = own;
  auto [off, size] = elf_section(tampered, ".modinfo");
  REQUIRE(size > 16);
  tampered[off + size / 2] ^= 0x01;
  CHECK(check_module_signature(tampered, certs) == SignatureCheck::BadSignature);

  CHECK(check_module_signature(strip_signature(own), certs) == SignatureCheck::Unsigned);
  CHECK(check_module_signature(own, {}) == SignatureCheck::UnknownKey);

  // Stopping at the own module's signer: the certificates found by then verify it.
  const std::string own_id = agent::kabi::parse_signature_trailer(own).signature.key_id;
  const std::string foreign_id = agent::kabi::parse_signature_trailer(foreign).signature.key_id;
  REQUIRE(!own_id.empty());
  REQUIRE(!foreign_id.empty());
  auto early = agent::kabi::detail::scan_kernel_certificates(*dir / "vmlinuz", {.wanted_key_ids = {own_id}, .kernel_key_ids = {}}, size_t{1} << 20);
  INFO((early ? std::string() : early.error().what()));
  REQUIRE(early);
  CHECK(early->stopped_early);
  CHECK(check_module_signature(own, early->certificates) == SignatureCheck::Verified);
  // The other build's key is not in this kernel: everything is read, and it stays unknown.
  auto full = extract_kernel_certificates(*dir / "vmlinuz", {own_id, foreign_id});
  REQUIRE(full);
  CHECK(*full == certs);
  CHECK(check_module_signature(foreign, *full) == SignatureCheck::UnknownKey);

  // The foreign signer with the kernel's own keys known (as its .builtin_trusted_keys describes
  // them: each certificate's subject key id, else its serial): stops after the last of them,
  // having found every certificate the whole image holds.
  std::vector<std::string> kernel_keys;
  for (const auto& c : certs) kernel_keys.push_back(agent::kabi::certificate_key_ids(c).back());
  auto at_keys = agent::kabi::detail::scan_kernel_certificates(
      *dir / "vmlinuz", {.wanted_key_ids = {foreign_id}, .kernel_key_ids = kernel_keys}, size_t{1} << 20);
  REQUIRE(at_keys);
  CHECK(at_keys->stopped_early);
  CHECK(at_keys->kernel_keys_found);
  CHECK(at_keys->certificates == certs);
  auto whole = agent::kabi::detail::scan_kernel_certificates(*dir / "vmlinuz", {.wanted_key_ids = {foreign_id}, .kernel_key_ids = {}},
                                                             size_t{1} << 20);
  REQUIRE(whole);
  CHECK(!whole->stopped_early);
  CHECK(at_keys->kernel_bytes < whole->kernel_bytes);
  UNSCOPED_INFO("scan stopped at the kernel's keys after " << at_keys->kernel_bytes << " of " << whole->kernel_bytes
                                                           << " bytes of vmlinux");
}

}  // namespace

TEST_CASE("real Debian 6.1 kernels: i915 against the build keys in vmlinuz", "[kabi][kernel_keys][real]") {
  check_real_kernel("k61", "k61_same");
}

TEST_CASE("real Debian 6.12 kernels: i915.ko.xz against the build keys in vmlinuz", "[kabi][kernel_keys][real]") {
  check_real_kernel("k612", "k612_old");
}
