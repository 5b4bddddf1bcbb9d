// The kernel's built-in module-signing keys, and the signature check the kernel makes first
// (kernel/module/signing.c, module_sig_check) predicted from them.
//
// A distribution kernel carries the X.509 certificates it trusts for modules in vmlinux
// (`system_certificate_list`, the builtin trusted keyring). Debian signs its own modules with a
// per-build key whose certificate is among them, so a module verifies against exactly the
// kernel builds that share that key.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"

namespace agent::kabi {

// Reads a kernel image - an x86 bzImage (payload compressed with gzip, xz or zstd), a whole-file
// gzip/xz/zstd image, or an uncompressed vmlinux ELF - and returns the DER bytes of every X.509
// certificate embedded in it, in image order, without duplicates. Fails (naming the file) when
// the file can't be read, the payload can't be decompressed, or no certificate is found.
//
// Limits: this finds every DER certificate in vmlinux, which on a distribution kernel is the
// builtin trusted keyring; it cannot tell trusted certificates from others a kernel may embed
// (e.g. CONFIG_SYSTEM_REVOCATION_KEYS). Keys the kernel adds at run time (secondary and machine
// keyrings: MOK, enrolled keys) are not in the image.
[[nodiscard]] Result<std::vector<std::string>> extract_kernel_certificates(const std::filesystem::path& vmlinuz);

// The outcome of the kernel's module signature check, and what the kernel does with it:
//   Verified     - signed by a known key and the content matches: accepted, sig_ok.
//   BadSignature - signed by a known key but the content doesn't match (or the signature is
//                  otherwise rejected by the key): EKEYREJECTED, fatal even without sig_enforce.
//   UnknownKey   - signed by no key given here (ENOKEY): accepted with a taint unless
//                  sig_enforce / lockdown, then EKEYREJECTED.
//   Unsigned     - no "~Module signature appended~" trailer (ENODATA): as UnknownKey.
//   Unsupported  - a trailer whose signature is not PKCS#7 (ENOPKG): as Unsigned.
//   Malformed    - a trailer the kernel can't parse (EBADMSG and friends): fatal even without
//                  sig_enforce.
enum class SignatureCheck { Verified, BadSignature, UnknownKey, Unsigned, Unsupported, Malformed };

[[nodiscard]] std::string_view signature_check_name(SignatureCheck c) noexcept;

// `module_file_bytes` is the uncompressed .ko exactly as sign-file left it (image + PKCS#7 +
// struct module_signature + magic); a .ko.xz/.ko.zst must be decompressed first, as the kernel
// does. `certs_der` are DER X.509 certificates, e.g. from extract_kernel_certificates. The signer
// is matched by issuer + serial number or by subject key identifier, as the kernel's
// asymmetric-key lookup does; certificate validity dates and chains are not checked (the kernel
// doesn't either). Never fails: unparseable certificates in `certs_der` are skipped.
[[nodiscard]] SignatureCheck check_module_signature(std::string_view module_file_bytes,
                                                    const std::vector<std::string>& certs_der);

}  // namespace agent::kabi
