// The scan's stop at the kernel's own keys (kabi::CertificateScanStop::kernel_key_ids),
// kabi::certificates_suffice, and the certificate cache file (kabi/certificate_cache.h), on
// self-made certificates and kernel images.
#include "catch2_compat.h"

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>

#include <lzma.h>

#include "../test_certs.h"
#include "kabi/certificate_cache.h"
#include "kabi/kernel_keys.h"
#include "test_util.h"

namespace fs = std::filesystem;
using agent::kabi::certificate_key_ids;
using agent::kabi::CertificateScanStop;
using agent::kabi::KernelCertificates;

namespace {

std::string cert(const char* cn, long serial) {
  const agent::test::Key key = agent::test::ec_key();
  const agent::test::Cert c = agent::test::make_cert(key.get(), {.cn = cn, .o = "agent test", .serial = serial});
  return agent::test::der_of(c.get());
}

// `size` bytes of filler with each DER placed at its offset.
std::string vmlinux_with(size_t size, const std::vector<std::pair<size_t, std::string>>& certs) {
  std::string v(size, '\0');
  v.replace(0, 4, "\x7f" "ELF");
  for (size_t i = 4; i < size; ++i) v[i] = static_cast<char>((i * 131) >> 7);
  for (const auto& [at, der] : certs) v.replace(at, der.size(), der);
  return v;
}

std::string xz(const std::string& in) {
  std::string out(lzma_stream_buffer_bound(in.size()), '\0');
  size_t pos = 0;
  REQUIRE(lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, nullptr, reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                                  reinterpret_cast<uint8_t*>(out.data()), &pos, out.size()) == LZMA_OK);
  out.resize(pos);
  return out;
}

agent::Fd open_ro(const fs::path& p) {
  agent::Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  return fd;
}

}  // namespace

TEST_CASE("scan_kernel_image stops once every key of the kernel's built-in keyring is found", "[kabi][kernel_keys]") {
  const std::string a = cert("build key", 0x1a2b), b = cert("second key", 0x3c4d), late = cert("not loaded", 0x5e6f);
  const auto ids_a = certificate_key_ids(a), ids_b = certificate_key_ids(b);
  REQUIRE(ids_a.size() == 2);  // serial, subject key id
  REQUIRE(ids_b.size() == 2);
  const size_t mib = size_t{1} << 20;
  // a at 1 MiB, b at 2 MiB, one more at 5 MiB: the kernel's list, then something after it.
  const std::string vmlinux = vmlinux_with(6 * mib, {{mib, a}, {2 * mib, b}, {5 * mib, late}});
  const kabi_test::TempDir tmp;
  const fs::path file = tmp / "vmlinuz";
  for (const auto& [name, image] : {std::pair{"uncompressed", vmlinux}, std::pair{"xz", xz(vmlinux)}}) {
    INFO(name);
    kabi_test::spit(file, image);
    const std::string foreign = "0badc0de";  // a signer this kernel does not have
    {
      INFO("both keys, as the keyring describes them (subject key ids, a serial with its sign octet): stops after b");
      auto s = agent::kabi::scan_kernel_image(open_ro(file), file.string(),
                                              {.wanted_key_ids = {foreign}, .kernel_key_ids = {ids_a[1], "00" + ids_b[0]}});
      INFO((s ? std::string() : s.error().what()));
      REQUIRE(s);
      CHECK(s->certificates == std::vector<std::string>{a, b});
      CHECK(s->extent == KernelCertificates::Extent::KernelKeys);
      CHECK(s->kernel_bytes < 4 * mib);
      CHECK(agent::kabi::certificates_suffice(*s, {.wanted_key_ids = {foreign}, .kernel_key_ids = {ids_a[1], ids_b[1]}}));
      CHECK(!agent::kabi::certificates_suffice(*s, {.wanted_key_ids = {foreign}, .kernel_key_ids = {}}));
    }
    {
      INFO("a keyring key no certificate is: everything is read");
      auto s = agent::kabi::scan_kernel_image(open_ro(file), file.string(),
                                              {.wanted_key_ids = {foreign}, .kernel_key_ids = {ids_a[1], "77aa"}});
      REQUIRE(s);
      CHECK(s->certificates == std::vector<std::string>{a, b, late});
      CHECK(s->extent == KernelCertificates::Extent::WholeImage);
      CHECK(s->kernel_bytes == vmlinux.size());
      CHECK(agent::kabi::certificates_suffice(*s, {.wanted_key_ids = {"77aa"}, .kernel_key_ids = {}}));
    }
    {
      INFO("the signer first: stops at it, as before");
      auto s = agent::kabi::scan_kernel_image(open_ro(file), file.string(),
                                              {.wanted_key_ids = {ids_a[0]}, .kernel_key_ids = {ids_a[1], ids_b[1]}});
      REQUIRE(s);
      CHECK(s->certificates == std::vector<std::string>{a});
      CHECK(s->extent == KernelCertificates::Extent::Signers);
      CHECK(agent::kabi::certificates_suffice(*s, {.wanted_key_ids = {ids_a[1]}, .kernel_key_ids = {}}));
      CHECK(!agent::kabi::certificates_suffice(*s, {.wanted_key_ids = {ids_b[0]}, .kernel_key_ids = {ids_a[1], ids_b[1]}}));
    }
  }
}

TEST_CASE("the certificate cache file: what it holds, or an error naming the file", "[kabi][kernel_keys]") {
  const std::string a = cert("build key", 0x1a2b), b = cert("second key", 0x3c4d);
  KernelCertificates scan;
  scan.certificates = {a, b};
  scan.extent = KernelCertificates::Extent::KernelKeys;
  scan.kernel_bytes = 12345678;
  const std::string sum(64, 'a'), other(64, 'b');
  const std::string text = agent::kabi::format_certificate_cache(scan, sum);
  REQUIRE(text.starts_with("intel-gpu-agent kernel-certificates 1\nimage-sha256 " + sum + "\nextent kernel-keys 12345678\ncert "));

  auto back = agent::kabi::parse_certificate_cache(text, sum, "/c/x.certs");
  INFO((back ? std::string() : back.error().what()));
  REQUIRE(back);
  CHECK(back->certificates == scan.certificates);
  CHECK(back->extent == scan.extent);
  CHECK(back->kernel_bytes == scan.kernel_bytes);

  auto stale = agent::kabi::parse_certificate_cache(text, other, "/c/x.certs");
  REQUIRE(!stale);
  CHECK(stale.error().code == ESTALE);
  CHECK(stale.error().path == "/c/x.certs");

  auto refused = [&](const std::string& t, const char* why) {
    INFO(why);
    auto r = agent::kabi::parse_certificate_cache(t, sum, "/c/x.certs");
    REQUIRE(!r);
    CHECK(r.error().code == EINVAL);
    CHECK(r.error().path == "/c/x.certs");
    CHECK_THAT(r.error().message, Catch::Contains("not a kernel certificate cache file"));
  };
  refused("", "empty");
  refused(text.substr(0, text.size() / 2), "torn");
  refused(text.substr(0, text.size() - 1), "no last newline");
  std::string flipped = text;
  flipped[text.find("cert ") + 40] ^= 1;
  refused(flipped, "a byte changed");
  // A whole file with its checksum, but a certificate OpenSSL cannot read.
  KernelCertificates junk = scan;
  junk.certificates.push_back("\x30\x82\x00\x01z");
  refused(agent::kabi::format_certificate_cache(junk, sum), "not a certificate");
  KernelCertificates none = scan;
  none.certificates.clear();
  refused(agent::kabi::format_certificate_cache(none, sum), "no certificate");
  refused(agent::kabi::format_certificate_cache(scan, "XYZ"), "a malformed image sha256");
}

TEST_CASE("file_sha256 is the file's SHA-256", "[kabi][kernel_keys]") {
  const kabi_test::TempDir tmp;
  const fs::path file = tmp / "abc";
  kabi_test::spit(file, "abc");
  auto s = agent::kabi::file_sha256(open_ro(file), file.string());
  REQUIRE(s);
  // FIPS 180-2, appendix B.1.
  CHECK(*s == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Over more than one read block (1 MiB): 3 MiB + 1 of 'a', against Python hashlib's answer.
  const std::string big((size_t{3} << 20) + 1, 'a');
  kabi_test::spit(file, big);
  auto t = agent::kabi::file_sha256(open_ro(file), file.string());
  REQUIRE(t);
  CHECK(*t == "2b98b70051781969f52a33c9cd0e8392bb7a634a92a3be4597b25e13feb41ee6");
}
