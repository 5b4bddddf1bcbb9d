// The module signature trailer appended by scripts/sign-file:
//   [module image][PKCS#7 / CMS signature][struct module_signature]["~Module signature appended~\n"]
#pragma once

#include <string>
#include <string_view>

#include "kabi/module.h"

struct X509_name_st;  // OpenSSL's X509_NAME

namespace agent::kabi {

inline constexpr std::string_view kSignatureMagic = "~Module signature appended~\n";

struct SignatureTrailer {
  Signature signature;
  size_t image_size = 0;  // bytes before the signature: what the kernel's ELF loader sees
};

// Never fails: a file without the magic is unsigned; one with a trailer the kernel could not
// parse is Malformed (with the problem), and the image is then taken to end before the magic.
[[nodiscard]] SignatureTrailer parse_signature_trailer(std::string_view file);

// Initializes OpenSSL once, without the system's openssl.cnf: the agent parses DER, CMS and
// X.509 and hashes with SHA-256, which the default provider does; a node's or image's config
// (engines, providers) has no say in what the kernel will accept, and reading it at every start
// costs time (README's benchmark). Called by everything here that uses OpenSSL.
void init_crypto();

// The last OpenSSL error, for a message; clears the queue so later calls start clean.
[[nodiscard]] std::string openssl_error();

// The name the kernel gives a certificate's subject (x509_fabricate_name), and so the start of
// its key's description in a keyring ("<name>: <hex>"): the CN alone when the O is empty, is a
// prefix of the CN, or shares its first 7 bytes; "O: CN" when both are there otherwise; the O,
// or else the emailAddress, without a CN. Segments as in the DER (the last of a kind wins, as
// x509_note_*), no string conversion.
[[nodiscard]] std::string kernel_key_name(const X509_name_st* name);

}  // namespace agent::kabi
