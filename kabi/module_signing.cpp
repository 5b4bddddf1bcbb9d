#include "kabi/module_signing.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "kabi/file_io.h"
#include "kabi/handles.h"
#include "kabi/kernel_keys.h"
#include "kabi/module.h"
#include "kabi/signature.h"
#include "kabi/text.h"

namespace agent::kabi {
namespace {

using Bio = CHandle<BIO, BIO_free>;

// The serial number's DER content octets (x509_note_serial keeps them raw: a positive serial
// whose top bit is set keeps its leading 00).
std::string raw_serial_hex(const X509* cert) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  unsigned char* der = nullptr;
  const int len = serial ? i2d_ASN1_INTEGER(serial, &der) : 0;
  if (len <= 2) {
    OPENSSL_free(der);
    return {};
  }
  // Tag 02, then a short (< 0x80) or long (0x8N + N bytes) length.
  size_t at = 1;
  const unsigned char l = der[at++];
  if (l & 0x80) at += l & 0x7f;
  std::string hex = at < static_cast<size_t>(len) ? hex_bytes(der + at, static_cast<size_t>(len) - at) : std::string();
  OPENSSL_free(der);
  return hex;
}

SigningIdentity identity_of(X509* cert, std::string_view der) {
  SigningIdentity id;
  id.signer = kernel_key_name(X509_get_subject_name(cert));
  id.key_ids = certificate_key_ids(der);
  std::string hex;
  if (const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(cert))
    hex = hex_bytes(ASN1_STRING_get0_data(skid), static_cast<size_t>(ASN1_STRING_length(skid)));
  else
    hex = raw_serial_hex(cert);
  id.description = id.signer + ": " + hex;
  return id;
}

}  // namespace

Result<SigningIdentity> certificate_identity(std::string_view der, const std::string& name) {
  init_crypto();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  CHandle<X509, X509_free> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return fail(EINVAL, "not a DER X.509 certificate (" + openssl_error() + ")", name);
  return identity_of(cert.get(), der);
}

bool is_module_signature_hash(std::string_view hash) noexcept {
  static constexpr std::array<std::string_view, 7> kHashes = {"sha224", "sha256", "sha384", "sha512",
                                                              "sha3-256", "sha3-384", "sha3-512"};
  return std::find(kHashes.begin(), kHashes.end(), hash) != kHashes.end();
}

Result<std::string> sign_module(std::string_view module_bytes, EVP_PKEY* key, X509* cert, const std::string& path_for_errors,
                                std::string_view hash) {
  init_crypto();
  if (const Compression c = detect_compression(module_bytes); c != Compression::None)
    return fail(EINVAL,
                std::string("is ") + std::string(compression_name(c)) +
                    "-compressed: a module is signed uncompressed and compressed after",
                path_for_errors);
  if (module_bytes.size() < 4 || module_bytes.substr(0, 4) != "\x7f" "ELF")
    return fail(ENOEXEC, "not an ELF module", path_for_errors);
  if (module_bytes.size() >= kSignatureMagic.size() &&
      module_bytes.substr(module_bytes.size() - kSignatureMagic.size()) == kSignatureMagic)
    return fail(EEXIST, "already carries a module signature", path_for_errors);
  if (!is_module_signature_hash(hash))
    return fail(EINVAL, "\"" + std::string(hash) + "\" is not a digest the kernel verifies module signatures with",
                path_for_errors);
  if (!key || !cert) return fail(EINVAL, "no signing key loaded", path_for_errors);
  const EVP_MD* md = EVP_get_digestbyname(std::string(hash).c_str());
  if (!md) return fail(EINVAL, "OpenSSL does not know the digest " + std::string(hash), path_for_errors);

  // A SignedData with no signer yet (CMS_PARTIAL), so that the digest is ours, not the key's
  // default; detached: the module is beside the signature, not inside it.
  constexpr unsigned kFlags = CMS_PARTIAL | CMS_DETACHED | CMS_BINARY | CMS_NOCERTS | CMS_NOSMIMECAP | CMS_NOATTR;
  CHandle<CMS_ContentInfo, CMS_ContentInfo_free> cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, kFlags));
  if (!cms) return fail(EIO, "cannot start a CMS signature (" + openssl_error() + ")", path_for_errors);
  // Without CMS_USE_KEYID the signer is named by issuer and serial number, as sign-file does by
  // default and the kernel's pkcs7 parser expects.
  if (!CMS_add1_signer(cms.get(), cert, key, md, kFlags & ~CMS_PARTIAL & ~CMS_DETACHED))
    return fail(EIO, "cannot add the signer (" + openssl_error() + ")", path_for_errors);
  Bio content(BIO_new_mem_buf(module_bytes.data(), static_cast<int>(module_bytes.size())));
  if (!content || CMS_final(cms.get(), content.get(), nullptr, CMS_BINARY | CMS_DETACHED) != 1)
    return fail(EIO, "cannot sign (" + openssl_error() + ")", path_for_errors);
  unsigned char* der = nullptr;
  const int der_len = i2d_CMS_ContentInfo(cms.get(), &der);
  if (der_len <= 0) return fail(EIO, "cannot encode the signature (" + openssl_error() + ")", path_for_errors);
  const std::string signature(reinterpret_cast<char*>(der), static_cast<size_t>(der_len));
  OPENSSL_free(der);

  // struct module_signature (include/linux/module_signature.h): algo, hash, id_type,
  // signer_len, key_id_len, 3 bytes of padding, then sig_len big-endian. For PKCS#7 all but
  // id_type and sig_len are zero: the signature names its own algorithms and signer.
  constexpr char kPkeyIdPkcs7 = 2;
  const auto len = static_cast<uint32_t>(signature.size());
  const char trailer[12] = {0, 0, kPkeyIdPkcs7, 0, 0, 0, 0, 0, static_cast<char>(len >> 24),
                            static_cast<char>(len >> 16), static_cast<char>(len >> 8), static_cast<char>(len)};
  std::string out;
  out.reserve(module_bytes.size() + signature.size() + sizeof trailer + kSignatureMagic.size());
  out.append(module_bytes);
  out.append(signature);
  out.append(trailer, sizeof trailer);
  out.append(kSignatureMagic);
  return out;
}

}  // namespace agent::kabi
