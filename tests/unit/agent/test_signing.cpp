// agent/signing: loading a key and certificate, signing a module the way the kernel reads it
// (checked with kabi's own reader and verifier), and the keyring trust decision.
#include "agent/facts/signing.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <keyutils.h>

#include "../temp_dir.h"
#include "../test_certs.h"
#include "catch2_compat.h"
#include "kabi/kernel_keys.h"
#include "kabi/module.h"
#include "kabi/signature.h"

using namespace agent;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

using test::Cert;
using test::bio_text;
using test::CertSpec;
using test::der_of;
using test::ec_key;
using test::Key;
using test::make_cert;
using test::pem_cert;
using test::rsa_key;


// PKCS#8 PEM, as `openssl genpkey` writes it; `encrypted`: with a passphrase.
std::string pem_key(EVP_PKEY* key, bool encrypted = false) {
  CHandle<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
  static char pass[] = "secret";
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, encrypted ? EVP_aes_256_cbc() : nullptr,
                                   encrypted ? reinterpret_cast<unsigned char*>(pass) : nullptr,
                                   encrypted ? 6 : 0, nullptr, nullptr) == 1);
  return bio_text(bio.get());
}

// Traditional DER (RSAPrivateKey / ECPrivateKey).
std::string der_key(EVP_PKEY* key) {
  unsigned char* buf = nullptr;
  const int len = i2d_PrivateKey(key, &buf);
  REQUIRE(len > 0);
  std::string der(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return der;
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A C-built module the kabi tests use (tests/fixtures/kabi/basic.c).
std::string fixture_module(const char* name = "basic.ko") { return slurp(fs::path(KABI_FIXTURE_DIR) / name); }

// A key and certificate written to a temp dir.
struct KeyFiles {
  KeyFiles(EVP_PKEY* pkey, X509* x509, bool pem)
      : key(dir / (pem ? "signing.pem" : "signing.der")), cert(dir / (pem ? "cert.pem" : "cert.der")),
        cert_der(der_of(x509)) {
    spit(key, pem ? pem_key(pkey) : der_key(pkey));
    spit(cert, pem ? pem_cert(x509) : cert_der);
  }
  test::TempDir dir;
  fs::path key, cert;
  std::string cert_der;
};

SigningKey load_ok(const KeyFiles& f) {
  auto k = load_signing_key(f.key, f.cert);
  INFO((k ? std::string() : k.error().what()));
  REQUIRE(k);
  return std::move(*k);
}

}  // namespace

TEST_CASE("load_signing_key: RSA in PEM, EC in DER; identity as the kernel names the key") {
  for (const bool rsa : {true, false}) {
    const bool pem = rsa;
    DYNAMIC_SECTION((rsa ? "RSA PEM" : "EC DER")) {
      Key key = rsa ? rsa_key() : ec_key();
      Cert cert = make_cert(key.get());
      KeyFiles f(key.get(), cert.get(), pem);
      SigningKey k = load_ok(f);
      CHECK(k.key_path == f.key);
      CHECK(k.cert_path == f.cert);
      CHECK(k.cert_der == f.cert_der);
      CHECK(k.cert_sha256 == kabi::sha256_hex(f.cert_der));
      CHECK(k.validity_warning.empty());
      CHECK(k.identity.signer == "agent test signing key");
      const auto ids = kabi::certificate_key_ids(f.cert_der);
      REQUIRE(ids.size() == 2);
      CHECK(ids[0] == "5eed");
      CHECK(k.identity.key_ids == ids);
      CHECK(k.identity.description == "agent test signing key: " + ids[1]);
    }
  }
}

TEST_CASE("certificate_identity: x509_fabricate_name and the serial-number description") {
  Key key = ec_key();
  auto identity = [&](const CertSpec& spec) {
    auto id = certificate_identity(der_of(make_cert(key.get(), spec).get()), "test");
    REQUIRE(id);
    return *id;
  };
  CertSpec s;
  s.skid = false;
  s.serial = 0x8a01;  // top bit set: the DER content is 00 8a 01, which the kernel keeps
  s.cn = "Debian Secure Boot CA";
  s.o = "Debian";  // a prefix of the CN: the CN alone
  auto id = identity(s);
  CHECK(id.signer == "Debian Secure Boot CA");
  CHECK(id.description == "Debian Secure Boot CA: 008a01");
  CHECK(id.key_ids == std::vector<std::string>{"8a01"});

  s.serial = 0x1234;
  s.cn = "build key";
  s.o = "Example Corp";  // unrelated: "O: CN"
  id = identity(s);
  CHECK(id.signer == "Example Corp: build key");
  CHECK(id.description == "Example Corp: build key: 1234");

  s.cn = "Example Corporation module key";
  s.o = "Example Corp Ltd";  // the first 7 bytes agree: the CN alone
  CHECK(identity(s).signer == "Example Corporation module key");

  s.cn = nullptr;
  s.o = "Only Org";
  CHECK(identity(s).signer == "Only Org");

  CHECK(certificate_identity("not a certificate", "blob.der").error().code == EINVAL);
  CHECK(certificate_identity("not a certificate", "blob.der").error().path == "blob.der");
}

// The running kernel as the oracle of the description: its own X.509 parser names a key that is
// added to this process's keyring (gone when the process ends). Where keyctl is not allowed (a
// container's seccomp profile, a kernel without asymmetric keys) there is nothing to compare
// with, and the test fails saying so.
TEST_CASE("certificate_identity: the description is the one the running kernel gives the key") {
  Key key = rsa_key();
  std::vector<CertSpec> specs(5);
  specs[0].o = "Agent Test";  // unrelated O and CN (the case differs): "O: CN"
  specs[0].cn = "agent vm signing";
  specs[1].o = "Debian";  // CN prefixed by O: the CN alone
  specs[1].cn = "Debian Secure Boot CA";
  specs[2].o = "Example Corp Ltd";  // 7 bytes in common
  specs[2].cn = "Example Corporation module key";
  specs[3].skid = false;  // the serial number's DER content, leading 00 kept
  specs[3].serial = 0x8a0102;
  specs[4].skid = false;
  specs[4].cn = nullptr;
  specs[4].o = "Only Org";
  specs[4].serial = 0x42;
  int compared = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string der = der_of(make_cert(key.get(), specs[i]).get());
    auto id = certificate_identity(der, "test");
    REQUIRE(id);
    const key_serial_t k = add_key("asymmetric", nullptr, der.data(), der.size(), KEY_SPEC_PROCESS_KEYRING);
    if (k < 0) {
      // A machine that cannot be asked proves nothing: a failure, never a pass.
      FAIL("add_key(asymmetric) failed (" << std::strerror(errno)
                                           << "): no kernel to compare the description with (keyctl not allowed, "
                                              "or a kernel without asymmetric keys)");
    }
    char* text = nullptr;
    const long n = keyctl_describe_alloc(k, &text);
    std::string described = n > 0 && text ? text : "";
    std::free(text);
    keyctl_invalidate(k);
    INFO("spec " << i << ": " << described);
    auto parsed = probes::parse_key_description(described, "keyctl_describe");
    REQUIRE(parsed);
    CHECK(parsed->type == "asymmetric");
    CHECK(parsed->description == id->description);
    ++compared;
  }
  CHECK(compared == static_cast<int>(specs.size()));
}

TEST_CASE("load_signing_key: errors name the file") {
  test::TempDir dir;
  Key key = rsa_key();
  Cert cert = make_cert(key.get());
  const fs::path good_key = dir / "key.pem", good_cert = dir / "cert.pem";
  spit(good_key, pem_key(key.get()));
  spit(good_cert, pem_cert(cert.get()));

  SECTION("missing") {
    auto r = load_signing_key(dir / "nope.pem", good_cert);
    REQUIRE(!r);
    CHECK(r.error().code == ENOENT);
    CHECK(r.error().path == (dir / "nope.pem").string());
  }
  SECTION("a directory is no key") {
    auto r = load_signing_key(dir.path(), good_cert);
    REQUIRE(!r);
    CHECK(r.error().path == dir.path().string());
  }
  SECTION("garbage key, PEM-looking garbage, garbage certificate") {
    spit(dir / "garbage", std::string(300, '\x42'));
    auto r = load_signing_key(dir / "garbage", good_cert);
    REQUIRE(!r);
    CHECK(r.error().code == EINVAL);
    CHECK(r.error().path == (dir / "garbage").string());
    CHECK_THAT(r.error().message, Contains("not a private key"));

    spit(dir / "fake.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    r = load_signing_key(dir / "fake.pem", good_cert);
    REQUIRE(!r);
    CHECK(r.error().path == (dir / "fake.pem").string());

    r = load_signing_key(good_key, dir / "garbage");
    REQUIRE(!r);
    CHECK(r.error().code == EINVAL);
    CHECK(r.error().path == (dir / "garbage").string());
    CHECK_THAT(r.error().message, Contains("not an X.509 certificate"));

    // A key where the certificate should be, and the other way round.
    r = load_signing_key(good_key, good_key);
    REQUIRE(!r);
    CHECK(r.error().path == good_key.string());
    CHECK_THAT(r.error().message, Contains("X.509"));
    r = load_signing_key(good_cert, good_cert);
    REQUIRE(!r);
    CHECK(r.error().path == good_cert.string());
  }
  SECTION("encrypted key: refused, never prompted for") {
    spit(dir / "enc.pem", pem_key(key.get(), true));
    auto r = load_signing_key(dir / "enc.pem", good_cert);
    REQUIRE(!r);
    CHECK(r.error().path == (dir / "enc.pem").string());
    CHECK_THAT(r.error().message, Contains("encrypted"));
  }
  SECTION("key and certificate do not match") {
    Key other = rsa_key();
    spit(dir / "other.pem", pem_key(other.get()));
    auto r = load_signing_key(dir / "other.pem", good_cert);
    REQUIRE(!r);
    CHECK(r.error().code == EKEYREJECTED);
    CHECK(r.error().path == (dir / "other.pem").string());
    CHECK_THAT(r.error().message, Contains(good_cert.string()));
  }
  SECTION("keyUsage without digitalSignature") {
    CertSpec spec;
    spec.key_usage = "keyCertSign";
    spit(dir / "ca.pem", pem_cert(make_cert(key.get(), spec).get()));
    auto r = load_signing_key(good_key, dir / "ca.pem");
    REQUIRE(!r);
    CHECK(r.error().code == EKEYREJECTED);
    CHECK(r.error().path == (dir / "ca.pem").string());
    CHECK_THAT(r.error().message, Contains("digitalSignature"));
    // No keyUsage at all is fine.
    spec.key_usage = nullptr;
    spit(dir / "noku.pem", pem_cert(make_cert(key.get(), spec).get()));
    CHECK(load_signing_key(good_key, dir / "noku.pem"));
  }
  SECTION("expired and not yet valid: a warning, not an error") {
    CertSpec spec;
    spec.not_before_days = -20;
    spec.not_after_days = -10;
    spit(dir / "old.pem", pem_cert(make_cert(key.get(), spec).get()));
    auto r = load_signing_key(good_key, dir / "old.pem");
    REQUIRE(r);
    CHECK_THAT(r->validity_warning, Contains("expired"));
    spec.not_before_days = 10;
    spec.not_after_days = 20;
    spit(dir / "future.pem", pem_cert(make_cert(key.get(), spec).get()));
    r = load_signing_key(good_key, dir / "future.pem");
    REQUIRE(r);
    CHECK_THAT(r->validity_warning, Contains("not valid before"));
  }
  SECTION("neither RSA nor EC") {
    Key ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    REQUIRE(ed);
    spit(dir / "ed.pem", pem_key(ed.get()));
    auto r = load_signing_key(dir / "ed.pem", good_cert);
    REQUIRE(!r);
    CHECK(r.error().path == (dir / "ed.pem").string());
    CHECK_THAT(r.error().message, Contains("RSA or ECDSA"));
  }
  SECTION("a symlinked Secret file is followed") {
    fs::create_symlink(good_key, dir / "tls.key");
    CHECK(load_signing_key(dir / "tls.key", good_cert));
  }
}

TEST_CASE("sign_module: the kernel's format, verified by kabi against the certificate") {
  const std::string module = fixture_module();
  for (const bool rsa : {true, false}) {
    DYNAMIC_SECTION((rsa ? "RSA" : "EC")) {
      Key key = rsa ? rsa_key() : ec_key();
      Cert cert = make_cert(key.get());
      KeyFiles f(key.get(), cert.get(), true);
      SigningKey k = load_ok(f);
      auto signed_module = sign_module(module, k, "basic.ko");
      INFO((signed_module ? std::string() : signed_module.error().what()));
      REQUIRE(signed_module);
      REQUIRE(signed_module->substr(0, module.size()) == module);
      REQUIRE(signed_module->size() > module.size() + 12 + kabi::kSignatureMagic.size());

      // struct module_signature: id_type 2, everything else zero but the big-endian length.
      const std::string_view tail(*signed_module);
      const auto ms = tail.substr(tail.size() - kabi::kSignatureMagic.size() - 12, 12);
      CHECK(ms.substr(0, 8) == std::string_view("\0\0\2\0\0\0\0\0", 8));
      const size_t sig_len = size_t{static_cast<unsigned char>(ms[8])} << 24 |
                             size_t{static_cast<unsigned char>(ms[9])} << 16 |
                             size_t{static_cast<unsigned char>(ms[10])} << 8 | static_cast<unsigned char>(ms[11]);
      CHECK(module.size() + sig_len + 12 + kabi::kSignatureMagic.size() == signed_module->size());

      // The CMS: detached, no certificates, no signed attributes, signer by issuer + serial.
      const auto* p = reinterpret_cast<const unsigned char*>(signed_module->data() + module.size());
      CHandle<CMS_ContentInfo, CMS_ContentInfo_free> cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(sig_len)));
      REQUIRE(cms);
      CHECK(CMS_is_detached(cms.get()) == 1);
      STACK_OF(X509)* certs = CMS_get1_certs(cms.get());
      CHECK(certs == nullptr);
      sk_X509_pop_free(certs, X509_free);
      STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
      REQUIRE(sk_CMS_SignerInfo_num(infos) == 1);
      CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, 0);
      CHECK(CMS_signed_get_attr_count(si) < 0);
      ASN1_OCTET_STRING* keyid = nullptr;
      X509_NAME* issuer = nullptr;
      ASN1_INTEGER* serial = nullptr;
      REQUIRE(CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &serial) == 1);
      CHECK(keyid == nullptr);
      CHECK(serial != nullptr);

      // kabi reads it as the kernel would, and verifies it against the certificate.
      const std::vector<std::string> trusted = {f.cert_der};
      kabi::ReadOptions options;
      options.trusted_certs = &trusted;
      auto info = kabi::parse_module(*signed_module, "basic.ko", options);
      REQUIRE(info);
      CHECK(info->name == "kabi_basic");  // basic.c names itself so
      CHECK(info->signature.state == kabi::Signature::State::Present);
      CHECK(info->signature.key_id == "5eed");
      CHECK(info->signature.key_id == k.identity.key_ids[0]);
      CHECK_THAT(info->signature.signer, Contains("agent test signing key"));
      CHECK(info->signature.hash_algo == "SHA256");  // OpenSSL's short name
      CHECK(info->signature.signed_size == module.size());
      CHECK(info->signature.key_check == kabi::Signature::KeyCheck::Verified);
      CHECK(kabi::check_module_signature(*signed_module, trusted) == kabi::SignatureCheck::Verified);

      // Another certificate: the kernel's ENOKEY.
      Key other = rsa_key();
      Cert other_cert = make_cert(other.get(), CertSpec{.cn = "someone else", .serial = 0x777});
      CHECK(kabi::check_module_signature(*signed_module, {der_of(other_cert.get())}) ==
            kabi::SignatureCheck::UnknownKey);
      // One byte of the module changed: the signature no longer matches.
      std::string tampered = *signed_module;
      tampered[100] = static_cast<char>(tampered[100] ^ 1);
      CHECK(kabi::check_module_signature(tampered, trusted) == kabi::SignatureCheck::BadSignature);

      // Signing twice.
      auto twice = sign_module(*signed_module, k, "basic.ko");
      REQUIRE(!twice);
      CHECK(twice.error().code == EEXIST);
      CHECK(twice.error().path == "basic.ko");
    }
  }
}

TEST_CASE("sign_module: digest, input checks") {
  Key key = rsa_key();
  Cert cert = make_cert(key.get());
  KeyFiles f(key.get(), cert.get(), false);
  SigningKey k = load_ok(f);
  const std::string module = fixture_module();

  auto s384 = sign_module(module, k, "m.ko", "sha384");
  REQUIRE(s384);
  auto info = kabi::parse_module(*s384, "m.ko");
  REQUIRE(info);
  CHECK(info->signature.hash_algo == "SHA384");
  CHECK(kabi::check_module_signature(*s384, {f.cert_der}) == kabi::SignatureCheck::Verified);

  auto md5 = sign_module(module, k, "m.ko", "md5");
  REQUIRE(!md5);
  CHECK(md5.error().code == EINVAL);

  auto compressed = sign_module(fixture_module("basic.ko.xz"), k, "m.ko.xz");
  REQUIRE(!compressed);
  CHECK(compressed.error().code == EINVAL);
  CHECK_THAT(compressed.error().message, Contains("xz"));

  auto not_elf = sign_module("hello world", k, "hello.ko");
  REQUIRE(!not_elf);
  CHECK(not_elf.error().code == ENOEXEC);

  // A module signed by someone else (kbuild's sign-file, here the kabi fixture) is EEXIST too.
  auto resigned = sign_module(fixture_module("signed.ko"), k, "signed.ko");
  REQUIRE(!resigned);
  CHECK(resigned.error().code == EEXIST);
}

// ---- trust -----------------------------------------------------------------------------------
namespace {

probes::KeyDescription asym(std::string description) {
  return {"asymmetric", 0, 0, 0x1f030000, std::move(description)};
}

probes::Keyring readable(std::string_view name, std::vector<probes::KeyDescription> keys = {}) {
  probes::Keyring k;
  k.name = std::string(name);
  k.state = probes::Keyring::State::Read;
  k.keys = std::move(keys);
  return k;
}

probes::Keyring missing(std::string_view name, probes::Keyring::State state = probes::Keyring::State::NotFound,
                        int error = ENOKEY) {
  probes::Keyring k;
  k.name = std::string(name);
  k.state = state;
  k.error = error;
  k.problem = "cannot find the keyring: test";
  return k;
}

const SigningIdentity kOurs{"node key", {"5eed", "aabbcc"}, "node key: aabbcc"};
const probes::KeyDescription kDebian = asym("Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1");

probes::KernelKeyrings rings(probes::Keyring builtin, probes::Keyring secondary, probes::Keyring machine,
                             probes::Keyring platform) {
  return {{std::move(builtin), std::move(secondary), std::move(machine), std::move(platform)}};
}

}  // namespace

TEST_CASE("signing_trust: the keyrings the kernel verifies modules with") {
  using V = SigningTrust::Verdict;
  const auto linked = probes::KeyDescription{"keyring", 0, 0, 0x1f0b0000, ".builtin_trusted_keys"};

  SECTION("in .builtin_trusted_keys") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {kDebian, asym(kOurs.description)}),
                                        readable(probes::kSecondaryKeyring, {linked}), readable(probes::kMachineKeyring),
                                        readable(probes::kPlatformKeyring)),
                           {});
    CHECK(t.verdict == V::Trusted);
    CHECK(t.where == ".builtin_trusted_keys");
  }
  SECTION("in .secondary_trusted_keys") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {kDebian}),
                                        readable(probes::kSecondaryKeyring, {linked, asym(kOurs.description)}),
                                        missing(probes::kMachineKeyring), readable(probes::kPlatformKeyring)),
                           {});
    CHECK(t.verdict == V::Trusted);
    CHECK(t.where == ".secondary_trusted_keys");
  }
  SECTION("in .machine (MOK), found by key id under another name") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {kDebian}),
                                        readable(probes::kSecondaryKeyring, {linked}),
                                        readable(probes::kMachineKeyring, {asym("Renamed Org: node key: AABBCC")}),
                                        readable(probes::kPlatformKeyring)),
                           {});
    CHECK(t.verdict == V::Trusted);
    CHECK(t.where == ".machine");
    CHECK_THAT(t.detail, Contains(".secondary_trusted_keys"));
  }
  SECTION("a keyring link or another type with the same description is no key") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {{"user", 0, 0, 0, kOurs.description}}),
                                        readable(probes::kSecondaryKeyring, {linked}), missing(probes::kMachineKeyring),
                                        readable(probes::kPlatformKeyring)),
                           {});
    CHECK(t.verdict == V::Untrusted);
  }
  SECTION("only in .platform, on a kernel that does not verify modules with it (upstream): untrusted, and why") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {kDebian}),
                                        readable(probes::kSecondaryKeyring, {linked}), missing(probes::kMachineKeyring),
                                        readable(probes::kPlatformKeyring, {kDebian, asym(kOurs.description)})),
                           {});
    CHECK(t.verdict == V::Untrusted);
    CHECK(t.where == ".platform");
    CHECK_THAT(t.detail, Contains("kexec and IMA, not for modules"));
  }
  SECTION("only in .platform, on a kernel that verifies modules with it (Debian's): trusted") {
    auto in_platform = rings(readable(probes::kBuiltinKeyring, {kDebian}), readable(probes::kSecondaryKeyring, {linked}),
                             missing(probes::kMachineKeyring),
                             readable(probes::kPlatformKeyring, {kDebian, asym(kOurs.description)}));
    auto t = signing_trust(kOurs, in_platform, {}, true);
    CHECK(t.verdict == V::Trusted);
    CHECK(t.where == ".platform");
    // Not there: untrusted all the same.
    auto elsewhere = rings(readable(probes::kBuiltinKeyring, {kDebian}), readable(probes::kSecondaryKeyring, {linked}),
                           missing(probes::kMachineKeyring), readable(probes::kPlatformKeyring, {kDebian}));
    CHECK(signing_trust(kOurs, elsewhere, {}, true).verdict == V::Untrusted);
    // .platform unreadable where it counts: not established, so unknown.
    auto unread = rings(readable(probes::kBuiltinKeyring, {kDebian}), readable(probes::kSecondaryKeyring, {linked}),
                        missing(probes::kMachineKeyring),
                        missing(probes::kPlatformKeyring, probes::Keyring::State::Unreadable, EACCES));
    CHECK(signing_trust(kOurs, unread, {}, true).verdict == V::Unknown);
    CHECK(signing_trust(kOurs, unread, {}, false).verdict == V::Untrusted);
  }
  SECTION("which kernels verify modules with .platform: Debian's, by /proc/version") {
    CHECK(platform_keyring_for_modules(
        "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) "
        "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)"));
    CHECK_FALSE(platform_keyring_for_modules("Linux version 6.12.0 (builder@host) (gcc 14.2.1) #1 SMP"));
  }
  SECTION("nowhere, every keyring read or absent (no secondary keyring in this kernel)") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {kDebian}), missing(probes::kSecondaryKeyring),
                                        missing(probes::kMachineKeyring), missing(probes::kPlatformKeyring)),
                           {});
    CHECK(t.verdict == V::Untrusted);
    CHECK(t.where.empty());
    CHECK_THAT(t.detail, !Contains(".platform"));
  }
  SECTION("builtin read, secondary unreadable: unknown, not untrusted") {
    auto t = signing_trust(kOurs, rings(readable(probes::kBuiltinKeyring, {kDebian}),
                                        missing(probes::kSecondaryKeyring, probes::Keyring::State::Unreadable, EACCES),
                                        missing(probes::kMachineKeyring), readable(probes::kPlatformKeyring)),
                           {});
    CHECK(t.verdict == V::Unknown);
    CHECK_THAT(t.detail, Contains(".secondary_trusted_keys: cannot find"));
  }
}

TEST_CASE("signing_trust: nothing readable, the kernel image's certificates instead") {
  using V = SigningTrust::Verdict;
  Key key = rsa_key();
  Cert ours = make_cert(key.get(), CertSpec{.cn = "node key", .serial = 0x5eed});
  Cert theirs = make_cert(key.get(), CertSpec{.cn = "Debian Secure Boot CA", .serial = 0x42, .skid = false});
  auto id = certificate_identity(der_of(ours.get()), "ours");
  REQUIRE(id);
  // What a user namespace sees: no keyring at all.
  const auto hidden = rings(missing(probes::kBuiltinKeyring), missing(probes::kSecondaryKeyring),
                            missing(probes::kMachineKeyring), missing(probes::kPlatformKeyring));

  auto found = signing_trust(*id, hidden, {der_of(theirs.get()), der_of(ours.get())});
  CHECK(found.verdict == V::Trusted);
  CHECK(found.where == kImageCertificates);

  auto not_found = signing_trust(*id, hidden, {der_of(theirs.get()), "garbage"});
  CHECK(not_found.verdict == V::Unknown);
  CHECK_THAT(not_found.detail, Contains("not among the 2 certificates"));
  CHECK_THAT(not_found.detail, Contains("MOK"));

  auto nothing = signing_trust(*id, hidden, {});
  CHECK(nothing.verdict == V::Unknown);

  // The image is a fallback only: with the keyrings read, what they say counts.
  auto read = signing_trust(*id, rings(readable(probes::kBuiltinKeyring), readable(probes::kSecondaryKeyring),
                                       readable(probes::kMachineKeyring), readable(probes::kPlatformKeyring)),
                            {der_of(ours.get())});
  CHECK(read.verdict == V::Untrusted);
}
