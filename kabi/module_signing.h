// Module signing as scripts/sign-file does it, and a certificate's identity as the kernel's
// asymmetric key type names it: pure functions of bytes (and a key), beside kabi/signature
// (which reads a module's signature) and kabi/kernel_keys (the kernel's certificates). The
// agent's key hygiene - where a key comes from, how long it is held - is agent/facts/signing.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kabi/result.h"

namespace agent::kabi {

// A certificate as the kernel's asymmetric key type names it once it is in a keyring.
struct SigningIdentity {
  // The subject as crypto/asymmetric_keys/x509_cert_parser.c (x509_fabricate_name) builds it:
  // the CN alone when the O is empty, is a prefix of the CN, or shares its first 7 bytes;
  // "O: CN" when both are there otherwise; the O, or else the emailAddress, without a CN.
  std::string signer;
  // Lowercase hex: serial number, then subject key identifier if any (certificate_key_ids; the
  // ids kabi's signature reader gives a module's signer).
  std::vector<std::string> key_ids;
  // What the key is called in a keyring (x509_key_preparse): "<signer>: <hex>", the hex being
  // the subject key identifier, or without one the serial number's DER content bytes (a leading
  // 00 included when the DER has one).
  std::string description;
};

// The identity of a DER certificate; EINVAL (naming `name`) when it does not parse.
[[nodiscard]] Result<SigningIdentity> certificate_identity(std::string_view der, const std::string& name);

// The digests the kernel's PKCS#7 verifier knows (crypto/asymmetric_keys/pkcs7_parser.c);
// the sha3 ones since Linux 6.7.
[[nodiscard]] bool is_module_signature_hash(std::string_view hash) noexcept;

// Returns the module with a signature appended, as scripts/sign-file appends it and
// kernel/module/signing.c (mod_verify_sig) reads it:
//   module | PKCS#7 | struct module_signature | "~Module signature appended~\n"
// where PKCS#7 is a detached CMS SignedData over the whole module, DER, with one signer named
// by issuer and serial number, digest `hash`, no signed attributes (pkcs7_verify refuses a
// module signature with authenticated attributes) and no certificates (the kernel has its own);
// struct module_signature is zero but for id_type = PKEY_ID_PKCS7 (2) and the big-endian
// signature length.
// `module_bytes` is the raw ELF: a .ko.xz/.ko.zst/.ko.gz is signed uncompressed and compressed
// afterwards, as kbuild does; it is the caller's business to decompress and recompress (a
// compressed input is EINVAL). Errors name `path_for_errors`: ENOEXEC not an ELF, EEXIST
// already signed, EINVAL an unknown hash or no key, EIO OpenSSL failed.
[[nodiscard]] Result<std::string> sign_module(std::string_view module_bytes, EVP_PKEY* key, X509* cert,
                                              const std::string& path_for_errors, std::string_view hash = "sha256");

}  // namespace agent::kabi
