// Signing the modules the agent builds on a node, and whether the node's kernel will trust the
// signature.
//
// When the kernel enforces module signatures (module.sig_enforce, CONFIG_MODULE_SIG_FORCE or
// lockdown), a module built on the node loads only if it is signed by a key the kernel trusts
// for modules. The operator gives the key and its certificate as files (a mounted Secret); the
// agent checks the certificate against the kernel's keyrings before building, and appends the
// signature the way scripts/sign-file does. See docs/signing.md.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kabi/handles.h"
#include "kabi/module_signing.h"
#include "kabi/result.h"
#include "probes/keyrings.h"

namespace agent {

// A certificate's identity as the kernel names it, and module signing itself: kabi/module_signing.
using kabi::certificate_identity;
using kabi::is_module_signature_hash;
using kabi::SigningIdentity;

// A certificate, loaded and checked: all the decision, `agent --check` and the cache key need.
struct SigningCertificate {
  std::filesystem::path path;
  SigningIdentity identity;
  std::string der;
  std::string sha256;  // lowercase hex, of der
  // Not an error: the kernel checks no validity dates on module signatures. Empty, or e.g.
  // "certificate expired on Jan  1 00:00:00 2025 GMT".
  std::string validity_warning;
};

// The largest key or certificate file read (a PEM certificate chain is a few KiB).
inline constexpr size_t kMaxSigningFileSize = size_t{1} << 20;

// An X.509 certificate (PEM or DER; the first one of a PEM file), a regular file followed
// through symlinks (a mounted Secret's files are symlinks), at most kMaxSigningFileSize. Errors
// name the file: unreadable, not a certificate; EKEYREJECTED when it has a keyUsage extension
// without digitalSignature.
[[nodiscard]] Result<SigningCertificate> load_certificate(const std::filesystem::path& cert);

// A secret file's bytes, read into one buffer (never reallocated, never copied) and cleansed
// (OPENSSL_cleanse) when the holder goes or cleanse() is called.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t capacity);
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes() { cleanse(); }
  // Zeroes the bytes and frees the buffer; empty afterwards.
  void cleanse() noexcept;
  [[nodiscard]] std::string_view view() const noexcept { return {data_.get(), size_}; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] char* data() noexcept { return data_.get(); }
  [[nodiscard]] size_t capacity() const noexcept { return capacity_; }
  void set_size(size_t n) noexcept { size_ = n < capacity_ ? n : capacity_; }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_ = 0, capacity_ = 0;
};

// A regular file (followed through symlinks) of at most kMaxSigningFileSize, read into a
// SecretBytes; `mode`, when given, gets its st_mode. Errors name the file.
[[nodiscard]] Result<SecretBytes> read_secret_file(const std::filesystem::path& path, mode_t* mode = nullptr);

// While one lives the process is not dumpable (PR_SET_DUMPABLE 0: no core dump; no ptrace, nor
// /proc/<pid>/mem, root, environ or fd, by another process without CAP_SYS_PTRACE). Nested and
// counted: when the last one goes the flag is put back as it was.
class NotDumpable {
 public:
  NotDumpable() noexcept;
  ~NotDumpable();
  NotDumpable(const NotDumpable&) = delete;
  NotDumpable& operator=(const NotDumpable&) = delete;
};

// How many private keys this process holds now (HeldKey); while any is, it is not dumpable.
[[nodiscard]] int signing_keys_held() noexcept;

// A private key in this process, counted by signing_keys_held(); freed by release() or when the
// holder goes (OpenSSL clears an RSA or EC key's private numbers when it frees them).
class HeldKey {
 public:
  HeldKey() = default;
  explicit HeldKey(CHandle<EVP_PKEY, EVP_PKEY_free> key);
  HeldKey(HeldKey&& o) noexcept;
  HeldKey& operator=(HeldKey&& o) noexcept;
  HeldKey(const HeldKey&) = delete;
  HeldKey& operator=(const HeldKey&) = delete;
  ~HeldKey() { release(); }
  void release() noexcept;
  [[nodiscard]] EVP_PKEY* get() const noexcept { return key_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(key_); }

 private:
  CHandle<EVP_PKEY, EVP_PKEY_free> key_;
};

// Parses a private key (PEM or DER; PKCS#8 or traditional; RSA or EC; not encrypted: it comes
// from a Secret, and nobody is there to type a passphrase). `key_bytes` are cleansed before it
// returns, whatever it returns. Errors name `name`: not a key, encrypted, neither RSA nor EC.
[[nodiscard]] Result<HeldKey> parse_private_key(SecretBytes& key_bytes, const std::string& name);

// A module signing key and its certificate, for signing: loaded right before the signing and
// released (key.release(), or the holder going) right after. The decision needs only the
// certificate (load_certificate).
struct SigningKey {
  std::filesystem::path key_path;
  std::filesystem::path cert_path;
  SigningIdentity identity;
  std::string cert_der;
  std::string cert_sha256;       // lowercase hex, of cert_der
  std::string validity_warning;  // as SigningCertificate's
  HeldKey key;
  CHandle<X509, X509_free> cert;
};

// The certificate (load_certificate), then the key (read_secret_file, parse_private_key).
// Errors name the file: as theirs, and EKEYREJECTED when the key is not the certificate's.
[[nodiscard]] Result<SigningKey> load_signing_key(const std::filesystem::path& key, const std::filesystem::path& cert);

// Overwrites with '*' the value of `option` (`option VALUE`, `option=VALUE`) in this process's
// own arguments, which /proc/<pid>/cmdline shows to every process (a build's included): where
// the key is is nobody's business. The values already parsed are the caller's copies.
void mask_option_values(int argc, char** argv, std::string_view option) noexcept;

// kabi::sign_module with a loaded key (EINVAL when it was released).
[[nodiscard]] Result<std::string> sign_module(std::string_view module_bytes, const SigningKey& key,
                                              const std::string& path_for_errors, std::string_view hash = "sha256");

// Whether the running kernel will accept module signatures made with a certificate.
struct SigningTrust {
  enum class Verdict { Trusted, Untrusted, Unknown };
  Verdict verdict = Verdict::Unknown;
  // Where the certificate was found: a keyring's name, or "the kernel image's built-in
  // certificates"; empty when not found.
  std::string where;
  std::string detail;  // for a person: why
};

[[nodiscard]] std::string_view signing_verdict_name(SigningTrust::Verdict v) noexcept;

inline constexpr std::string_view kImageCertificates = "the kernel image's built-in certificates";

// Pure. The kernel verifies module signatures against .secondary_trusted_keys, which links
// .builtin_trusted_keys and (CONFIG_INTEGRITY_MACHINE_KEYRING) .machine, or against
// .builtin_trusted_keys alone without CONFIG_SECONDARY_TRUSTED_KEYRING; never against .platform
// (kexec and IMA only). A key is found in a keyring by its description or, failing that, by the
// key id its description ends with.
//   Trusted   - in a readable module keyring, or (no keyring readable) among `image_certs_der`,
//               the certificates built into the running kernel's image (kabi::extract_kernel_certificates).
//   Untrusted - every module keyring was read (or is absent from this kernel) and it is in none;
//               the detail says when it is only in .platform.
//   Unknown   - not found, and some keyring that counts could not be read. The image holds only
//               the built-in keyring: keys added at run time (.secondary_trusted_keys, .machine:
//               MOK) can't be known from it.
//
// `platform_for_modules`: the kernel verifies a module with .platform (UEFI db, MOK without a
// machine keyring) when no key of the secondary keyring matches. Debian's kernels do (their
// kernel/module/signing.c retries verify_pkcs7_signature with VERIFY_USE_PLATFORM_KEYRING on
// ENOKEY; read in linux-source 6.1.192, 6.12.118, 7.2.13); upstream's never do.
[[nodiscard]] SigningTrust signing_trust(const SigningIdentity& identity, const probes::KernelKeyrings& keyrings,
                                         const std::vector<std::string>& image_certs_der,
                                         bool platform_for_modules = false);

// Whether the running kernel verifies modules with .platform too (see signing_trust), from its
// /proc/version: Debian's kernels carry that change.
[[nodiscard]] bool platform_keyring_for_modules(std::string_view proc_version);

}  // namespace agent
