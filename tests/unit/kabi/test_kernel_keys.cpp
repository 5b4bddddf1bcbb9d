// kabi::extract_kernel_certificates and kabi::check_module_signature on self-made keys and
// kernel images (no cache needed); on real Debian kernels: tests/realdata/test_real_kernel_keys.cpp.
#include "catch2_compat.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <lzma.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <zlib.h>
#include <zstd.h>

#include "../test_certs.h"
#include "kabi/file_io.h"
#include "kabi/handles.h"
#include "kabi/kernel_keys.h"
#include "kabi/signature.h"
#include "test_util.h"

namespace fs = std::filesystem;
using agent::CHandle;
using agent::kabi::certificate_key_ids;
using agent::kabi::check_module_signature;
using agent::kabi::extract_kernel_certificates;
using agent::kabi::SignatureCheck;
using namespace std::string_literals;

namespace {

using agent::test::Cert;
using agent::test::der_of;
using agent::test::ec_key;
using agent::test::Key;
using agent::test::rsa_key;

// A self-signed v3 certificate with a subject key identifier, like certs/x509.genkey makes.
Cert make_cert(EVP_PKEY* key, const char* cn, long serial) {
  return agent::test::make_cert(key, {.cn = cn, .o = "agent test", .serial = serial});
}

// What scripts/sign-file appends: the detached CMS (no certificates, no signed attributes),
// struct module_signature {algo 0, hash 0, id_type PKEY_ID_PKCS7, signer_len 0, key_id_len 0,
// pad[3], be32 sig_len}, then the magic.
// signed_attrs: what `openssl cms -sign` adds unless -noattr; econtent_nid: another content type.
std::string sign_module(std::string_view image, X509* cert, EVP_PKEY* key, bool use_keyid = false,
                        bool signed_attrs = false, int econtent_nid = 0) {
  CHandle<BIO, BIO_free> content(BIO_new_mem_buf(image.data(), static_cast<int>(image.size())));
  CHandle<CMS_ContentInfo, CMS_ContentInfo_free> cms(
      CMS_sign(nullptr, nullptr, nullptr, nullptr, CMS_NOCERTS | CMS_PARTIAL | CMS_BINARY | CMS_DETACHED));
  REQUIRE(cms);
  REQUIRE(CMS_add1_signer(cms.get(), cert, key, EVP_sha256(),
                          CMS_NOCERTS | CMS_BINARY | CMS_NOSMIMECAP | (signed_attrs ? 0 : CMS_NOATTR) |
                              (use_keyid ? CMS_USE_KEYID : 0)));
  if (econtent_nid) REQUIRE(CMS_set1_eContentType(cms.get(), OBJ_nid2obj(econtent_nid)) == 1);
  REQUIRE(CMS_final(cms.get(), content.get(), nullptr, CMS_NOCERTS | CMS_BINARY) == 1);
  unsigned char* buf = nullptr;
  const int len = i2d_CMS_ContentInfo(cms.get(), &buf);
  REQUIRE(len > 0);
  std::string out(image);
  out.append(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  const auto n = static_cast<uint32_t>(len);
  const char sig[12] = {0, 0, 2, 0, 0, 0, 0, 0, static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                        static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(sig, sizeof sig);
  out.append(agent::kabi::kSignatureMagic);
  return out;
}

std::string strip_signature(std::string_view signed_module) {
  return std::string(signed_module.substr(0, agent::kabi::parse_signature_trailer(signed_module).image_size));
}

// A stand-in module image: an ELF-looking blob with a .modinfo-like string.
std::string fake_module() {
  std::string image("\x7f" "ELF\x02\x01\x01", 7);
  image.resize(4096, '\0');
  image += "license=GPL\0vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions \0"s;
  for (int i = 0; i < 1000; ++i) image += static_cast<char>(i * 7);
  return image;
}

std::string gzip(std::string_view in) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string xz(std::string_view in) {
  std::string out(lzma_stream_buffer_bound(in.size()), '\0');
  size_t pos = 0;
  REQUIRE(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr, reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                                  reinterpret_cast<uint8_t*>(out.data()), &pos, out.size()) == LZMA_OK);
  out.resize(pos);
  return out;
}

std::string zstd(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 19);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string le32(size_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A minimal x86 bzImage: one setup sector after the boot sector, boot protocol 2.15, and the
// payload (compressed kernel + le32 uncompressed size) right after the setup code.
std::string bzimage(std::string_view payload) {
  std::string image(1024, '\0');
  image[0x1f1] = 1;  // setup_sects
  image[0x1fe] = '\x55';
  image[0x1ff] = '\xaa';
  image.replace(0x202, 4, "HdrS");
  image[0x206] = '\x0f';
  image[0x207] = '\x02';
  image.replace(0x248, 4, le32(0));
  image.replace(0x24c, 4, le32(payload.size()));
  image += payload;
  image += std::string(512, '\x5a');  // whatever follows the payload
  return image;
}

}  // namespace

TEST_CASE("check_module_signature on a module signed like sign-file does", "[kabi][kernel_keys]") {
  const Key key = rsa_key();
  const Key other_key = ec_key();
  REQUIRE(key);
  REQUIRE(other_key);
  const Cert cert = make_cert(key.get(), "build key", 1);
  const Cert other_cert = make_cert(other_key.get(), "other build key", 2);
  const std::string image = fake_module();
  const std::string signed_module = sign_module(image, cert.get(), key.get());
  const std::vector<std::string> trusted{der_of(cert.get())};

  SECTION("signed by a trusted key, content intact: Verified") {
    CHECK(check_module_signature(signed_module, trusted) == SignatureCheck::Verified);
    // Among other certificates and bytes that are no certificate at all.
    CHECK(check_module_signature(signed_module, {"garbage"s, der_of(other_cert.get()), trusted[0]}) ==
          SignatureCheck::Verified);
  }
  SECTION("signer named by subject key identifier (sign-file -k)") {
    CHECK(check_module_signature(sign_module(image, cert.get(), key.get(), true), trusted) == SignatureCheck::Verified);
  }
  SECTION("an EC key works the same") {
    const std::string ec_signed = sign_module(image, other_cert.get(), other_key.get());
    CHECK(check_module_signature(ec_signed, {der_of(other_cert.get())}) == SignatureCheck::Verified);
    CHECK(check_module_signature(ec_signed, trusted) == SignatureCheck::UnknownKey);
  }
  SECTION("one byte of the image changed, trailer kept: BadSignature") {
    std::string tampered = signed_module;
    tampered[4096 + 10] ^= 0x20;
    CHECK(check_module_signature(tampered, trusted) == SignatureCheck::BadSignature);
  }
  SECTION("a certificate with the signer's issuer and serial but another key: BadSignature") {
    // The kernel finds the key by id and the signature then fails with EKEYREJECTED.
    const Key impostor_key = rsa_key();
    const Cert impostor = make_cert(impostor_key.get(), "build key", 1);
    CHECK(check_module_signature(signed_module, {der_of(impostor.get())}) == SignatureCheck::BadSignature);
  }
  SECTION("signed by a key the kernel doesn't have: UnknownKey") {
    CHECK(check_module_signature(signed_module, {der_of(other_cert.get())}) == SignatureCheck::UnknownKey);
    CHECK(check_module_signature(signed_module, {}) == SignatureCheck::UnknownKey);
  }
  SECTION("no trailer: Unsigned") {
    CHECK(check_module_signature(image, trusted) == SignatureCheck::Unsigned);
    CHECK(check_module_signature(strip_signature(signed_module), trusted) == SignatureCheck::Unsigned);
    CHECK(check_module_signature("", trusted) == SignatureCheck::Unsigned);
  }
  SECTION("a trailer the kernel can't parse: Malformed") {
    std::string bad_type = signed_module;
    bad_type[bad_type.size() - agent::kabi::kSignatureMagic.size() - 12 + 2] = 1;  // id_type PKEY_ID_PGP
    CHECK(check_module_signature(bad_type, trusted) == SignatureCheck::Unsupported);

    std::string bad_cms = signed_module;
    bad_cms[image.size()] = 0x04;  // the PKCS#7 blob no longer starts with a SEQUENCE
    CHECK(check_module_signature(bad_cms, trusted) == SignatureCheck::Malformed);

    CHECK(check_module_signature(std::string(agent::kabi::kSignatureMagic), trusted) == SignatureCheck::Malformed);
  }
}

TEST_CASE("check_module_signature: signed attributes or another content type, whatever the key",
          "[kabi][kernel_keys]") {
  // pkcs7_verify(VERIFYING_MODULE_SIGNATURE) refuses both before it looks for the key.
  const Key key = rsa_key();
  REQUIRE(key);
  const Cert cert = make_cert(key.get(), "build key", 1);
  const std::vector<std::string> trusted{der_of(cert.get())};
  const std::string image = fake_module();
  const std::string plain = sign_module(image, cert.get(), key.get());
  const std::string with_attrs = sign_module(image, cert.get(), key.get(), false, true);
  // The data is there: OpenSSL itself verifies both, the second has signed attributes.
  auto p = agent::kabi::parse_signature_trailer(plain);
  auto a = agent::kabi::parse_signature_trailer(with_attrs);
  REQUIRE(p.signature.state == agent::kabi::Signature::State::Present);
  REQUIRE(a.signature.state == agent::kabi::Signature::State::Present);
  CHECK_FALSE(p.signature.signed_attributes);
  CHECK(a.signature.signed_attributes);
  CHECK(p.signature.content_type.empty());
  CHECK(a.signature.content_type.empty());
  CHECK(check_module_signature(plain, trusted) == SignatureCheck::Verified);
  CHECK(check_module_signature(with_attrs, trusted) == SignatureCheck::BadSignature);
  CHECK(check_module_signature(with_attrs, {}) == SignatureCheck::BadSignature);

  const std::string other_type = sign_module(image, cert.get(), key.get(), false, true, NID_id_smime_ct_TSTInfo);
  auto o = agent::kabi::parse_signature_trailer(other_type);
  // pkcs7_note_content() takes data and msIndirectData only: another type does not parse (EINVAL,
  // as the kernel answered tests/e2e's sig_cms_econtent_other under qemu).
  CHECK(o.signature.content_type == "1.2.840.113549.1.9.16.1.4");
  CHECK(o.signature.state == agent::kabi::Signature::State::Malformed);
  CHECK(o.signature.malformed_errno == EINVAL);
  CHECK_THAT(o.signature.problem, Catch::Contains("Unsupported data type"));
  CHECK(check_module_signature(other_type, {}) == SignatureCheck::Malformed);

  // msIndirectData (Authenticode's type, which the parser takes): without signed attributes the
  // parser refuses it (EBADMSG), with them pkcs7_verify() does (not pkcs7-data) - as the kernel
  // answered tests/e2e's sig_cms_econtent_keyid and sig_cms_econtent_attrs under qemu.
  int ms_nid = OBJ_txt2nid("1.3.6.1.4.1.311.2.1.4");
  if (ms_nid == NID_undef) ms_nid = OBJ_create("1.3.6.1.4.1.311.2.1.4", "msIndirectDataTest", "msIndirectData (test)");
  REQUIRE(ms_nid != NID_undef);
  auto bare = agent::kabi::parse_signature_trailer(sign_module(image, cert.get(), key.get(), true, false, ms_nid));
  CHECK(bare.signature.content_type == "1.3.6.1.4.1.311.2.1.4");
  CHECK(bare.signature.state == agent::kabi::Signature::State::Malformed);
  CHECK(bare.signature.malformed_errno == EBADMSG);
  CHECK_THAT(bare.signature.problem, Catch::Contains("Authenticode requires AuthAttrs"));
  auto attributed = agent::kabi::parse_signature_trailer(sign_module(image, cert.get(), key.get(), true, true, ms_nid));
  CHECK(attributed.signature.state == agent::kabi::Signature::State::Present);
  CHECK(attributed.signature.problem.empty());
  CHECK(attributed.signature.content_type == "1.3.6.1.4.1.311.2.1.4");
}

TEST_CASE("signature_check_name", "[kabi][kernel_keys]") {
  CHECK(agent::kabi::signature_check_name(SignatureCheck::Verified) == "verified");
  CHECK(agent::kabi::signature_check_name(SignatureCheck::BadSignature) == "bad-signature");
  CHECK(agent::kabi::signature_check_name(SignatureCheck::UnknownKey) == "unknown-key");
  CHECK(agent::kabi::signature_check_name(SignatureCheck::Unsigned) == "unsigned");
  CHECK(agent::kabi::signature_check_name(SignatureCheck::Malformed) == "malformed");
}

TEST_CASE("extract_kernel_certificates on self-made kernel images", "[kabi][kernel_keys]") {
  const Key key = ec_key();
  const Cert a = make_cert(key.get(), "build key", 1);
  const Cert b = make_cert(key.get(), "second key", 2);
  const std::string der_a = der_of(a.get()), der_b = der_of(b.get());

  // A "vmlinux": ELF magic, bytes that look like a DER header but aren't a certificate,
  // then system_certificate_list with a duplicate.
  std::string vmlinux("\x7f" "ELF\x02\x01\x01", 7);
  vmlinux.resize(8192, '\x90');
  vmlinux += "\x30\x82\x01\x00\x30\x82\x00\x10\xa0 not a certificate"s;
  vmlinux += der_a + der_b + der_a;
  vmlinux.resize(vmlinux.size() + 8192, '\0');
  const std::vector<std::string> expected{der_a, der_b};

  const kabi_test::TempDir tmp;
  const fs::path file = tmp / "vmlinuz";

  SECTION("uncompressed vmlinux") {
    kabi_test::spit(file, vmlinux);
    auto certs = extract_kernel_certificates(file);
    REQUIRE(certs);
    CHECK(*certs == expected);
  }
  SECTION("bzImage with an xz, zstd or gzip payload followed by its size and more bytes") {
    for (auto compress : {&xz, &zstd, &gzip}) {
      kabi_test::spit(file, bzimage(compress(vmlinux) + le32(vmlinux.size())));
      auto certs = extract_kernel_certificates(file);
      INFO((certs ? std::string() : certs.error().what()));
      REQUIRE(certs);
      CHECK(*certs == expected);
    }
  }
  SECTION("no boot header: the first stream that decompresses, after false magics") {
    for (auto compress : {&xz, &zstd, &gzip}) {
      std::string image = "MZ junk \xfd" "7zXZ\0 not xz, \x28\xb5\x2f\xfd not zstd, \x1f\x8b\x08 not gzip "s;
      image += compress(vmlinux) + le32(vmlinux.size()) + std::string(300, '\x11');
      kabi_test::spit(file, image);
      auto certs = extract_kernel_certificates(file);
      INFO((certs ? std::string() : certs.error().what()));
      REQUIRE(certs);
      CHECK(*certs == expected);
    }
  }
  SECTION("an image without certificates is an error naming the file") {
    std::string bare("\x7f" "ELF\x02\x01\x01", 7);
    bare.resize(100000, '\x30');
    kabi_test::spit(file, bzimage(xz(bare)));
    auto certs = extract_kernel_certificates(file);
    REQUIRE(!certs);
    CHECK(certs.error().path == file.string());
  }
  SECTION("an image with no compressed kernel is an error naming the file") {
    kabi_test::spit(file, "MZ this is no kernel \x1f\x8b\x08 broken"s);
    auto certs = extract_kernel_certificates(file);
    REQUIRE(!certs);
    CHECK(certs.error().path == file.string());
  }
  SECTION("a truncated payload is an error") {
    const std::string payload = xz(vmlinux);
    kabi_test::spit(file, bzimage(payload.substr(0, payload.size() / 2)));
    CHECK(!extract_kernel_certificates(file));
  }
  SECTION("a missing file is an error naming it") {
    auto certs = extract_kernel_certificates(file.string() + ".missing");
    REQUIRE(!certs);
    CHECK(certs.error().path == file.string() + ".missing");
  }
}

TEST_CASE("certificate_key_ids gives the signer ids Signature::key_id names", "[kabi][kernel_keys]") {
  const Key key = ec_key();
  const Cert cert = make_cert(key.get(), "build key", 0x1234567);
  const std::string der = der_of(cert.get());
  const std::string image = fake_module();
  const std::string by_serial = agent::kabi::parse_signature_trailer(sign_module(image, cert.get(), key.get())).signature.key_id;
  const std::string by_skid =
      agent::kabi::parse_signature_trailer(sign_module(image, cert.get(), key.get(), true)).signature.key_id;
  CHECK(by_serial == "01234567");
  CHECK(by_skid.size() == 40);  // SHA-1 of the public key
  CHECK(certificate_key_ids(der) == std::vector<std::string>{by_serial, by_skid});
  CHECK(certificate_key_ids("not a certificate").empty());
  CHECK(certificate_key_ids("").empty());
}

namespace {

// A "vmlinux" with certificates at the given offsets, filler (not all zeros: some "30 82" that
// lead nowhere) elsewhere.
std::string vmlinux_with(size_t size, const std::vector<std::pair<size_t, std::string>>& certs) {
  std::string v("\x7f" "ELF\x02\x01\x01", 7);
  v.resize(size, '\0');
  for (size_t i = 64; i + 2 < size; i += 997) v.replace(i, 2, "\x30\x82");
  for (const auto& [at, der] : certs) {
    REQUIRE(at + der.size() <= size);
    v.replace(at, der.size(), der);
  }
  return v;
}

}  // namespace

TEST_CASE("extract_kernel_certificates: certificates across chunk boundaries", "[kabi][kernel_keys]") {
  using agent::kabi::detail::scan_kernel_certificates;
  const Key key = ec_key();
  // a near the largest certificate the scan finds (65539 bytes): a long comment extension.
  const Cert a = make_cert(key.get(), "build key", 1);
  const std::string comment(65000, 'c');
  CHandle<X509_EXTENSION, X509_EXTENSION_free> ext(X509V3_EXT_conf_nid(nullptr, nullptr, NID_netscape_comment, comment.c_str()));
  REQUIRE(ext);
  REQUIRE(X509_add_ext(a.get(), ext.get(), -1) == 1);
  REQUIRE(X509_sign(a.get(), key.get(), EVP_sha256()) > 0);
  const Cert b = make_cert(key.get(), "second key", 2);
  const std::string der_a = der_of(a.get()), der_b = der_of(b.get());
  REQUIRE(der_a.size() > 65000);
  REQUIRE(der_a.size() <= 65539);

  const kabi_test::TempDir tmp;
  const fs::path file = tmp / "vmlinuz-chunks";

  // Chunk boundaries are at multiples of the chunk size in the uncompressed kernel. A chunk
  // smaller than a certificate puts one across three chunks.
  for (size_t chunk : {size_t{256}, size_t{4096}, size_t{1} << 20}) {
    for (size_t at : {chunk - 1, chunk - 2, chunk - 4, chunk - 5, chunk - 16, chunk - 200, chunk, 3 * chunk + 7}) {
      // b right after a, a again (a duplicate) 70 KB later, and b at the very end of the kernel.
      const size_t size = std::max<size_t>(at + 3 * 70000, 4 * chunk) + der_b.size();
      const std::string vmlinux = vmlinux_with(
          size, {{at, der_a}, {at + der_a.size() + 3, der_b}, {at + 2 * 70000, der_a}, {size - der_b.size(), der_b}});
      INFO("chunk " << chunk << ", certificate at " << at);
      kabi_test::spit(file, vmlinux);
      auto scan = scan_kernel_certificates(file, {}, chunk);
      INFO((scan ? std::string() : scan.error().what()));
      REQUIRE(scan);
      CHECK(scan->certificates == std::vector<std::string>{der_a, der_b});
      CHECK(scan->kernel_bytes == vmlinux.size());
      CHECK(!scan->stopped_early);
      if (at == chunk - 5) {  // the same through each decompressor
        for (auto compress : {&xz, &zstd, &gzip}) {
          kabi_test::spit(file, bzimage(compress(vmlinux) + le32(vmlinux.size())));
          auto packed = scan_kernel_certificates(file, {}, chunk);
          INFO((packed ? std::string() : packed.error().what()));
          REQUIRE(packed);
          CHECK(packed->certificates == std::vector<std::string>{der_a, der_b});
          CHECK(packed->kernel_bytes == vmlinux.size());
        }
      }
    }
  }
}

TEST_CASE("extract_kernel_certificates stops once the wanted keys are found", "[kabi][kernel_keys]") {
  using agent::kabi::detail::scan_kernel_certificates;
  const Key key = ec_key(), other_key = ec_key();  // two keys: two subject key ids
  const Cert a = make_cert(key.get(), "build key", 0x1a2b);
  const Cert b = make_cert(other_key.get(), "second key", 0x3c4d);
  const std::string der_a = der_of(a.get()), der_b = der_of(b.get());
  const auto ids_a = certificate_key_ids(der_a), ids_b = certificate_key_ids(der_b);
  REQUIRE(ids_a.size() == 2);
  REQUIRE(ids_b.size() == 2);
  REQUIRE(ids_a[1] != ids_b[1]);

  // a at 1 MiB, b at 3 MiB, 6 MiB in all.
  const size_t mib = size_t{1} << 20;
  const std::string vmlinux = vmlinux_with(6 * mib, {{mib, der_a}, {3 * mib, der_b}});
  const std::vector<std::string> both{der_a, der_b};

  const kabi_test::TempDir tmp;
  const fs::path file = tmp / "vmlinuz-early";

  auto upper = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };

  std::vector<std::pair<std::string, std::string>> images{{"uncompressed", vmlinux}};
  for (auto [name, compress] : {std::pair{"xz", &xz}, std::pair{"zstd", &zstd}, std::pair{"gzip", &gzip}})
    images.emplace_back(std::string("bzImage, ") + name, bzimage(compress(vmlinux) + le32(vmlinux.size())));
  images.emplace_back("zstd found by its magic", "MZ junk "s + zstd(vmlinux) + std::string(100, '\x11'));

  for (const auto& [name, image] : images) {
    INFO(name);
    kabi_test::spit(file, image);
    const size_t chunk = 64 << 10;

    {
      INFO("the first certificate's serial: stops after it");
      auto scan = scan_kernel_certificates(file, {.wanted_key_ids = {ids_a[0]}, .kernel_key_ids = {}}, chunk);
      INFO((scan ? std::string() : scan.error().what()));
      REQUIRE(scan);
      CHECK(scan->certificates == std::vector<std::string>{der_a});
      CHECK(scan->stopped_early);
      CHECK(scan->kernel_bytes < 2 * mib);
      auto certs = extract_kernel_certificates(file, {ids_a[0]});
      REQUIRE(certs);
      CHECK(*certs == std::vector<std::string>{der_a});
    }
    {
      INFO("the second's subject key id, in upper case, and the first's: stops after the second");
      auto scan = scan_kernel_certificates(file, {.wanted_key_ids = {upper(ids_b[1]), ids_a[1], ids_b[1]}, .kernel_key_ids = {}}, chunk);
      REQUIRE(scan);
      CHECK(scan->certificates == both);
      CHECK(scan->stopped_early);
      CHECK(scan->kernel_bytes < 4 * mib);
    }
    {
      INFO("a key the kernel doesn't have: reads everything");
      auto scan = scan_kernel_certificates(file, {.wanted_key_ids = {ids_a[0], "0badc0de"}, .kernel_key_ids = {}}, chunk);
      REQUIRE(scan);
      CHECK(scan->certificates == both);
      CHECK(!scan->stopped_early);
      CHECK(scan->kernel_bytes == vmlinux.size());
      auto certs = extract_kernel_certificates(file, {ids_a[0], "0badc0de"});
      REQUIRE(certs);
      CHECK(*certs == both);
    }
    {
      INFO("no key wanted (or only empty ids, as unsigned modules have): reads everything");
      for (const auto& wanted : {std::vector<std::string>{}, std::vector<std::string>{"", ""}}) {
        auto scan = scan_kernel_certificates(file, {.wanted_key_ids = wanted, .kernel_key_ids = {}}, chunk);
        REQUIRE(scan);
        CHECK(scan->certificates == both);
        CHECK(!scan->stopped_early);
        auto certs = extract_kernel_certificates(file, wanted);
        REQUIRE(certs);
        CHECK(*certs == both);
      }
      auto certs = extract_kernel_certificates(file);
      REQUIRE(certs);
      CHECK(*certs == both);
    }
  }
}

TEST_CASE("extract_kernel_certificates refuses an xz payload asking for a 4 GiB dictionary", "[kabi][kernel_keys]") {
  // tests/fuzz/regressions/kernel_image: a bzImage whose xz payload's LZMA2 header asks for a
  // 4 GiB dictionary. liblzma must refuse it by its memory limit, before allocating anything.
  const fs::path file =
      fs::path(KABI_FIXTURE_SRC).parent_path().parent_path() / "fuzz/regressions/kernel_image/bzimage-xz-4gib-dictionary";
  REQUIRE(fs::exists(file));
  const auto started = std::chrono::steady_clock::now();
  auto certs = extract_kernel_certificates(file);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  REQUIRE(!certs);
  CHECK(certs.error().path == file.string());
  CHECK(certs.error().code == ENOMEM);
  CHECK_THAT(certs.error().message, Catch::Contains("xz data needs") && Catch::Contains("more than the 256 MiB allowed"));
  CHECK(elapsed < std::chrono::seconds(2));

#if !defined(__SANITIZE_ADDRESS__)
  // The same with at most ~1 GB of address space (ulimit -v 1000000): the error must be the
  // memory limit, not a failed allocation.
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const rlimit limit{1000000L * 1024, 1000000L * 1024};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(2);
    auto r = extract_kernel_certificates(file);
    _exit(!r && r.error().code == ENOMEM && r.error().message.find("256 MiB allowed") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
#endif
}
