#include "kabi/signature.h"

#include <cerrno>

#include "catch2_compat.h"

#include "test_util.h"

using namespace agent::kabi;
using Catch::Matchers::Contains;
using kabi_test::fixture;
using kabi_test::slurp;

namespace {

// struct module_signature as scripts/sign-file writes it, big-endian sig_len last.
std::string module_signature(uint32_t sig_len, unsigned char id_type = 2, unsigned char signer_len = 0,
                             unsigned char key_id_len = 0, unsigned char algo = 0) {
  std::string s(12, '\0');
  s[0] = static_cast<char>(algo);
  s[2] = static_cast<char>(id_type);
  s[3] = static_cast<char>(signer_len);
  s[4] = static_cast<char>(key_id_len);
  s[8] = static_cast<char>(sig_len >> 24);
  s[9] = static_cast<char>(sig_len >> 16);
  s[10] = static_cast<char>(sig_len >> 8);
  s[11] = static_cast<char>(sig_len);
  return s;
}

std::string sign(const std::string& image, const std::string& sig, unsigned char id_type = 2) {
  return image + sig + module_signature(static_cast<uint32_t>(sig.size()), id_type) + std::string(kSignatureMagic);
}

}  // namespace

TEST_CASE("signature: a file without the magic is unsigned", "[signature]") {
  const std::string ko = slurp(fixture("basic.ko"));
  auto t = parse_signature_trailer(ko);
  CHECK(t.signature.state == Signature::State::None);
  CHECK(t.image_size == ko.size());
  CHECK(parse_signature_trailer("").signature.state == Signature::State::None);
  // The magic must end the file; one in the middle means nothing.
  auto mid = parse_signature_trailer(std::string(kSignatureMagic) + "tail");
  CHECK(mid.signature.state == Signature::State::None);
}

TEST_CASE("signature: a real CMS signature by sign-file's rules", "[signature]") {
  const std::string image = slurp(fixture("basic.ko"));
  const std::string file = slurp(fixture("signed.ko"));
  auto t = parse_signature_trailer(file);
  REQUIRE(t.signature.state == Signature::State::Present);
  CHECK(t.image_size == image.size());
  CHECK(t.signature.signed_size == image.size());
  CHECK(t.signature.problem.empty());
  // issuer + serial, as sign-file signs without -k: the serial is the key id.
  CHECK(t.signature.key_id == "5eed1234");
  CHECK_FALSE(t.signature.by_key_identifier);
  CHECK_THAT(t.signature.signer, Contains("CN = kabi unit test signing key"));
  // The issuer as a keyring describes a key (fixtures.cmake: -subj "/CN=...", self-signed).
  CHECK(t.signature.issuer_key_name == "kabi unit test signing key");
  CHECK_THAT(t.signature.hash_algo, Catch::Matchers::Equals("sha256", Catch::CaseSensitive::No));
  CHECK(t.signature.key_check == Signature::KeyCheck::NotChecked);
}

TEST_CASE("signature: garbage inside a well-formed trailer is malformed", "[signature]") {
  const std::string image = slurp(fixture("basic.ko"));
  auto t = parse_signature_trailer(slurp(fixture("badsig.ko")));
  CHECK(t.signature.state == Signature::State::Malformed);
  CHECK_THAT(t.signature.problem, Contains("PKCS#7"));
  CHECK(t.image_size == image.size());  // the length fields were sound
}

TEST_CASE("signature: trailers the kernel cannot parse", "[signature]") {
  const std::string image = "\x7f" "ELF-image-bytes";
  const std::string der = slurp(fixture("basic.ko.p7s"));
  SECTION("shorter than struct module_signature") {
    auto t = parse_signature_trailer("abc" + std::string(kSignatureMagic));
    CHECK(t.signature.state == Signature::State::Malformed);
    CHECK(t.image_size == 3);
  }
  SECTION("sig_len beyond the start of the file") {
    auto t = parse_signature_trailer(image + module_signature(1000) + std::string(kSignatureMagic));
    CHECK(t.signature.state == Signature::State::Malformed);
    CHECK_THAT(t.signature.problem, Contains("length"));
    CHECK(t.image_size <= image.size() + 12);
  }
  SECTION("sig_len zero") {
    auto t = parse_signature_trailer(image + module_signature(0) + std::string(kSignatureMagic));
    CHECK(t.signature.state == Signature::State::Malformed);
  }
  SECTION("not PKCS#7") {
    auto t = parse_signature_trailer(sign(image, der, 1));
    CHECK(t.signature.state == Signature::State::Unsupported);  // ENOPKG, not EBADMSG
    CHECK_THAT(t.signature.problem, Contains("PKCS#7"));
  }
  SECTION("PKCS#7 with non-zero signer/key-id lengths") {
    auto t = parse_signature_trailer(image + der + module_signature(static_cast<uint32_t>(der.size()), 2, 4, 0) +
                                     std::string(kSignatureMagic));
    CHECK(t.signature.state == Signature::State::Malformed);
  }
  SECTION("PKCS#7 with a non-zero algorithm byte") {
    auto t = parse_signature_trailer(image + der + module_signature(static_cast<uint32_t>(der.size()), 2, 0, 0, 1) +
                                     std::string(kSignatureMagic));
    CHECK(t.signature.state == Signature::State::Malformed);
  }
  // pkcs7_parser.c's structure checks, on sign-file's shape (SignedData v1, id-data, one
  // SignerInfo v1 by issuer and serial): the kernel answers found under qemu with
  // tests/e2e/mkcases.py's sig_cms_econtent* cases (tests/e2e/README.md).
  SECTION("SignedData and SignerInfo versions, the content type: the parser's errno") {
    const std::string data_oid("\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01", 11);
    const std::string one("\x02\x01\x01", 3);
    const size_t oid_at = der.find(data_oid);
    const size_t sd_version = der.find(one);
    REQUIRE(oid_at != std::string::npos);
    REQUIRE(sd_version != std::string::npos);
    REQUIRE(sd_version < oid_at);  // SignedData's version comes before its content type
    const size_t si_version = der.find(one, oid_at);
    REQUIRE(si_version != std::string::npos);
    REQUIRE(parse_signature_trailer(sign(image, der)).signature.problem.empty());
    auto with = [&](size_t at, char byte) {
      std::string d = der;
      d[at] = byte;
      return parse_signature_trailer(sign(image, d)).signature;
    };
    Signature s = with(sd_version + 2, '\x03');  // SignedData v3 beside SignerInfo v1
    CHECK(s.state == Signature::State::Malformed);
    CHECK(s.malformed_errno == EBADMSG);
    CHECK_THAT(s.problem, Contains("SignedData-SignerInfo version mismatch"));
    s = with(si_version + 2, '\x03');  // SignerInfo v3 under SignedData v1
    CHECK(s.malformed_errno == EBADMSG);
    CHECK_THAT(s.problem, Contains("version mismatch"));
    s = with(sd_version + 2, '\x02');
    CHECK(s.state == Signature::State::Malformed);
    CHECK(s.malformed_errno == EINVAL);
    CHECK_THAT(s.problem, Contains("Unsupported SignedData version 2"));
    s = with(si_version + 2, '\x05');
    CHECK(s.malformed_errno == EINVAL);
    CHECK_THAT(s.problem, Contains("Unsupported SignerInfo version 5"));
    s = with(oid_at + 10, '\x09');  // 1.2.840.113549.1.7.9, not data
    CHECK(s.state == Signature::State::Malformed);
    CHECK(s.malformed_errno == EINVAL);
    CHECK_THAT(s.problem, Contains("Unsupported data type"));
  }
  SECTION("the same signature spliced onto other bytes still parses (verification is kernel_keys')") {
    auto t = parse_signature_trailer(sign(image, der));
    CHECK(t.signature.state == Signature::State::Present);
    CHECK(t.image_size == image.size());
    CHECK(t.signature.key_id == "5eed1234");
  }
  SECTION("a truncated DER blob") {
    auto t = parse_signature_trailer(sign(image, der.substr(0, der.size() / 2)));
    CHECK(t.signature.state == Signature::State::Malformed);
  }
}

TEST_CASE("signature: the length is judged before the type, as mod_check_sig() does", "[signature]") {
  // mod_check_sig(ms, file_len): sig_len >= file_len - 12 is EBADMSG, whatever the id_type;
  // file_len is the file without the magic, so the signature must leave a byte of module.
  const std::string image = "\x7f" "ELF-image-bytes";
  const auto n = static_cast<uint32_t>(image.size());
  auto with = [&](uint32_t sig_len, unsigned char id_type) {
    return parse_signature_trailer(image + module_signature(sig_len, id_type) + std::string(kSignatureMagic));
  };
  SECTION("not PKCS#7 and too long: EBADMSG, not ENOPKG") {
    auto t = with(n, 1);  // exactly file_len - 12: the boundary is >=
    CHECK(t.signature.state == Signature::State::Malformed);
    CHECK_THAT(t.signature.problem, Contains("length"));
    CHECK(t.image_size == image.size() + 12);  // the kernel dropped the magic only
    CHECK(with(n + 1000, 1).signature.state == Signature::State::Malformed);
  }
  SECTION("not PKCS#7, length in bounds: ENOPKG") {
    CHECK(with(n - 1, 1).signature.state == Signature::State::Unsupported);
  }
  SECTION("PKCS#7 exactly file_len - 12 long: EBADMSG") {
    CHECK(with(n, 2).signature.state == Signature::State::Malformed);
  }
  SECTION("a trailer of exactly struct module_signature: nothing before it") {
    auto t = parse_signature_trailer(module_signature(0, 1) + std::string(kSignatureMagic));
    CHECK(t.signature.state == Signature::State::Malformed);
  }
}

TEST_CASE("signature: any trailer corruption gives a state, never a crash", "[signature]") {
  const std::string file = slurp(fixture("signed.ko"));
  const size_t trailer = file.size() - slurp(fixture("basic.ko")).size();
  for (size_t i = file.size() - trailer; i < file.size() - kSignatureMagic.size(); ++i) {
    std::string bytes = file;
    bytes[i] = static_cast<char>(bytes[i] ^ 0xff);
    auto t = parse_signature_trailer(bytes);
    CHECK(t.image_size <= bytes.size());
    if (t.signature.state == Signature::State::Malformed) CHECK_FALSE(t.signature.problem.empty());
  }
}
