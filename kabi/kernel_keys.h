// The kernel's built-in module-signing keys, and the signature check the kernel makes first
// (kernel/module/signing.c, module_sig_check) predicted from them.
//
// A distribution kernel carries the X.509 certificates it trusts for modules in vmlinux
// (`system_certificate_list`, the builtin trusted keyring). Debian signs its own modules with a
// per-build key whose certificate is among them, so a module verifies against exactly the
// kernel builds that share that key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/fd.h"
#include "kabi/module.h"
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
// keyrings: MOK, enrolled keys) are not in the image. Only certificates whose DER length fits in
// two bytes (at most 65539 bytes in all, 30 82 xx xx) are found: a kernel's signing certificates
// are 1-2 KiB.
//
// Cost: the image is read and decompressed 1 MiB at a time and scanned as it goes; the whole
// vmlinux is never held. Memory is what the decompressor needs for its history - an xz
// dictionary (32 MiB for x86 kernels; a stream asking for more than 256 MiB is refused with an
// error), a zstd window (up to 128 MiB, at most the decompressed size), 32 KiB for gzip - plus
// about 1.5 MiB. Time is one decompression of the kernel (bench/results.md has its cost).
[[nodiscard]] Result<std::vector<std::string>> extract_kernel_certificates(const std::filesystem::path& vmlinuz);

// The same, but stops reading the image as soon as every id in `wanted_key_ids` matches a
// certificate found so far. The ids are as Signature::key_id gives them (hex, as sign-file's
// signer identifier carries it: the signing certificate's serial number, or its subject key
// identifier) and are matched, case-insensitively, against both of each certificate's ids (see
// certificate_key_ids). Returns the certificates found up to the stop, every wanted one among
// them, so check_module_signature on a module whose key id was wanted gives the answer it would
// give with all of the kernel's certificates. When some id matches no certificate the whole
// image is scanned, as above: a wanted key then missing from the result is not in the kernel.
// Empty ids (unsigned modules) are ignored; a list with no non-empty id scans everything.
// Matching is by id alone: a certificate with the wanted serial number but another issuer
// would stop the scan too (Debian's build keys have 20-byte random serials).
// A kernel's certificates sit well before the end of vmlinux, so stopping there saves the rest of
// the decompression, and on a zstd kernel the memory of the rest of the window (bench/results.md).
[[nodiscard]] Result<std::vector<std::string>> extract_kernel_certificates(
    const std::filesystem::path& vmlinuz, const std::vector<std::string>& wanted_key_ids);

// A key id as ids are compared: lowercase hex without leading 00 octets (the kernel keeps a
// serial number's sign octet in a key's description; OpenSSL gives the magnitude).
[[nodiscard]] std::string canonical_key_id(std::string_view hex);

// The ids a DER certificate answers to, as lowercase hex: its serial number, then its subject
// key identifier if it has one. Empty if `der` is not a certificate.
[[nodiscard]] std::vector<std::string> certificate_key_ids(std::string_view der);

// Where a scan of a kernel image may stop before the end of vmlinux. Ids are hex as
// Signature::key_id gives them, matched without case and without leading 00 octets against both
// of each certificate's ids (certificate_key_ids); empty ids are ignored.
struct CertificateScanStop {
  // The bundle's signers: stop once each matches a certificate found (as
  // extract_kernel_certificates(vmlinuz, wanted_key_ids)).
  std::vector<std::string> wanted_key_ids;
  // The keys on the running kernel's .builtin_trusted_keys - the hex each key's description
  // ends with (its subject key identifier, else its serial number) - when that keyring was read
  // whole and the image is that kernel's: stop once each matches a certificate found. The kernel
  // loaded its built-in keyring from the image's certificate list, so every key it trusts from
  // the image has then been seen; a certificate further on is none the kernel holds. Empty: not
  // known (then only the signers, or the end, stop the scan).
  std::vector<std::string> kernel_key_ids;
};

// A scan of a kernel image: the certificates found, in image order, and how far it went.
struct KernelCertificates {
  enum class Extent {
    WholeImage,  // read to the end: every certificate of the image
    Signers,     // stopped once every wanted signer was found
    KernelKeys,  // stopped once every key of the kernel's built-in keyring was found
  };
  std::vector<std::string> certificates;
  Extent extent = Extent::WholeImage;
  uint64_t kernel_bytes = 0;  // bytes of the uncompressed kernel produced
};

[[nodiscard]] std::string_view extent_name(KernelCertificates::Extent e) noexcept;

// Scans the open kernel image (a regular file; `name` names it in errors) as far as `stop`
// allows. Fails like extract_kernel_certificates, including when no certificate is found.
[[nodiscard]] Result<KernelCertificates> scan_kernel_image(Fd kernel_image, const std::string& name,
                                                           const CertificateScanStop& stop);

// Pure: whether `scan` (e.g. an earlier one, kept in a cache) answers for `stop` as a new scan
// would: it read the whole image, or every wanted signer is among its certificates, or (with
// kernel key ids given) every kernel key is.
[[nodiscard]] bool certificates_suffice(const KernelCertificates& scan, const CertificateScanStop& stop);

// The signers' key ids of the signed modules of `set` (CertificateScanStop::wanted_key_ids).
[[nodiscard]] std::vector<std::string> signer_key_ids(const std::vector<ModuleInfo>& set);

// Checks the signature of every signed module of `set` against `certs_der`, re-reading those
// modules' bytes from their paths; sets Signature::key_check and Signature::module_sha256.
[[nodiscard]] Result<void> check_module_signatures(std::vector<ModuleInfo>& set, const std::vector<std::string>& certs_der);

namespace detail {

// extract_kernel_certificates with the decompressed kernel scanned `chunk_size` bytes at a time
// (the public functions use 1 MiB; tests use small chunks to put certificates across chunk
// boundaries), reporting how far it read. Fails like the public functions, except that finding
// no certificate is not an error here.
struct KernelCertificateScan {
  std::vector<std::string> certificates;
  uint64_t kernel_bytes = 0;  // bytes of the uncompressed kernel produced (and mostly scanned)
  bool stopped_early = false;  // every wanted key id (or every kernel key) was found before the end
  bool kernel_keys_found = false;  // stopped early because every kernel key id was found
};
[[nodiscard]] Result<KernelCertificateScan> scan_kernel_certificates(const std::filesystem::path& vmlinuz,
                                                                     const CertificateScanStop& stop,
                                                                     size_t chunk_size);

}  // namespace detail

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

// The outcome as Signature::key_check records it (NotChecked for the states the trailer parse
// already tells: unsigned, unsupported, malformed).
[[nodiscard]] Signature::KeyCheck key_check_of(SignatureCheck c) noexcept;

// Checks the signature of every signed module of `set` as the kernel would, against the
// certificates built into `kernel_image` (read only as far as needed: it stops once every
// signer is found), re-reading those modules' bytes from their paths. Sets
// Signature::key_check and returns the certificates read. An unsigned set costs nothing.
[[nodiscard]] Result<std::vector<std::string>> verify_module_signatures(std::vector<ModuleInfo>& set,
                                                                       const std::filesystem::path& kernel_image);
// The same with the image already open (a regular file, e.g. through a host root); `name`
// names it in errors.
[[nodiscard]] Result<std::vector<std::string>> verify_module_signatures(std::vector<ModuleInfo>& set, Fd kernel_image,
                                                                       const std::string& name);

}  // namespace agent::kabi
