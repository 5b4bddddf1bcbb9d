// Self-made keys and X.509 certificates for the unit tests of the signature code (kabi's
// verifier, the agent's signer): shaped like certs/x509.genkey's and an operator's.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "catch2_compat.h"
#include "kabi/handles.h"

namespace agent::test {

using Key = CHandle<EVP_PKEY, EVP_PKEY_free>;
using Cert = CHandle<X509, X509_free>;

inline Key rsa_key() { return Key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})); }
inline Key ec_key() { return Key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

struct CertSpec {
  const char* cn = "agent test signing key";
  const char* o = nullptr;
  long serial = 0x5eed;
  bool skid = true;
  const char* key_usage = "digitalSignature";  // nullptr: no keyUsage extension
  long not_before_days = 0;
  long not_after_days = 365;
};

inline Cert make_cert(EVP_PKEY* key, const CertSpec& spec = {}) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), spec.serial);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (spec.o)
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.o), -1, -1, 0);
  if (spec.cn)
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.cn), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 3600L * 24 * spec.not_before_days);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600L * 24 * spec.not_after_days);
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  std::vector<std::pair<int, const char*>> exts = {{NID_basic_constraints, "critical,CA:FALSE"}};
  if (spec.skid) exts.emplace_back(NID_subject_key_identifier, "hash");
  if (spec.key_usage) exts.emplace_back(NID_key_usage, spec.key_usage);
  for (auto [nid, value] : exts) {
    CHandle<X509_EXTENSION, X509_EXTENSION_free> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    REQUIRE(ext);
    X509_add_ext(cert.get(), ext.get(), -1);
  }
  REQUIRE(X509_sign(cert.get(), key, EVP_sha256()) > 0);
  return cert;
}

inline std::string der_of(X509* cert) {
  unsigned char* buf = nullptr;
  const int len = i2d_X509(cert, &buf);
  REQUIRE(len > 0);
  std::string der(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return der;
}

// What a memory BIO holds.
inline std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

// A certificate in PEM.
inline std::string pem_cert(X509* cert) {
  CHandle<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_X509(bio.get(), cert) == 1);
  return bio_text(bio.get());
}

}  // namespace agent::test
