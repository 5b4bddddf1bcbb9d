#include "agent/facts/signing.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <utility>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "kabi/fd.h"
#include "kabi/file_io.h"
#include "kabi/module.h"
#include "kabi/module_signing.h"
#include "kabi/signature.h"

namespace agent {
namespace {

using Bio = CHandle<BIO, BIO_free>;
using kabi::openssl_error;

bool looks_pem(std::string_view bytes) { return bytes.find("-----BEGIN ") != std::string_view::npos; }

// PEM_read_* prompts on the terminal for an encrypted key when given no callback; a node agent
// has nobody to answer. This one refuses, so an encrypted key fails like any unreadable one.
int no_passphrase(char*, int, int, void*) { return -1; }

Bio memory_bio(std::string_view bytes) {
  return Bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

Result<CHandle<EVP_PKEY, EVP_PKEY_free>> parse_key_bytes(std::string_view bytes, const std::string& name) {
  CHandle<EVP_PKEY, EVP_PKEY_free> key;
  if (looks_pem(bytes)) {
    Bio bio = memory_bio(bytes);
    if (bio) key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
      const std::string why = openssl_error();
      if (bytes.find("ENCRYPTED") != std::string_view::npos)
        return fail(EINVAL, "the private key is encrypted; the agent needs it unencrypted (a Secret is the protection)",
                    name);
      return fail(EINVAL, "no private key in this PEM file (" + why + ")", name);
    }
  } else {
    // DER: PKCS#8 PrivateKeyInfo or a traditional RSAPrivateKey / ECPrivateKey.
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    key.reset(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(bytes.size())));
    if (!key) return fail(EINVAL, "not a private key, PEM or DER (" + openssl_error() + ")", name);
  }
  ERR_clear_error();
  const int type = EVP_PKEY_get_base_id(key.get());
  if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC)
    return fail(EINVAL,
                std::string("is a ") + (OBJ_nid2sn(type) ? OBJ_nid2sn(type) : "unknown") +
                    " key; the kernel verifies module signatures made with RSA or ECDSA keys",
                name);
  return key;
}

Result<CHandle<X509, X509_free>> parse_certificate(std::string_view bytes, const std::string& name) {
  CHandle<X509, X509_free> cert;
  if (looks_pem(bytes)) {
    Bio bio = memory_bio(bytes);
    if (bio) cert.reset(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    cert.reset(d2i_X509(nullptr, &p, static_cast<long>(bytes.size())));
  }
  if (!cert) return fail(EINVAL, "not an X.509 certificate, PEM or DER (" + openssl_error() + ")", name);
  ERR_clear_error();
  return cert;
}

std::string der_of(X509* cert) {
  unsigned char* buf = nullptr;
  const int len = i2d_X509(cert, &buf);
  if (len <= 0) return {};
  std::string der(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return der;
}

std::string asn1_time_text(const ASN1_TIME* t) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return data && len > 0 ? std::string(data, static_cast<size_t>(len)) : "?";
}

}  // namespace

Result<SigningCertificate> load_certificate(const std::filesystem::path& cert) {
  kabi::init_crypto();
  auto bytes = kabi::read_file(cert, kMaxSigningFileSize);
  if (!bytes) return tl::unexpected(bytes.error());
  auto x509 = parse_certificate(*bytes, cert.string());
  if (!x509) return tl::unexpected(x509.error());
  X509* x = x509->get();
  // The kernel does not look at keyUsage for module signatures, but a certificate that says
  // it must not sign is a mistake of whoever issued it; OpenSSL's own verifiers refuse it too.
  if ((X509_get_extension_flags(x) & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE) == 0)
    return fail(EKEYREJECTED, "the certificate's keyUsage extension does not allow digitalSignature", cert.string());
  SigningCertificate c;
  c.path = cert;
  if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
    c.validity_warning = "certificate expired on " + asn1_time_text(X509_get0_notAfter(x));
  else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
    c.validity_warning = "certificate not valid before " + asn1_time_text(X509_get0_notBefore(x));
  c.der = der_of(x);
  if (c.der.empty()) return fail(EIO, "cannot encode the certificate (" + openssl_error() + ")", cert.string());
  c.sha256 = kabi::sha256_hex(c.der);
  auto identity = certificate_identity(c.der, cert.string());
  if (!identity) return tl::unexpected(identity.error());
  c.identity = std::move(*identity);
  return c;
}

SecretBytes::SecretBytes(size_t capacity) : data_(new char[capacity]), capacity_(capacity) {}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::move(o.data_)), size_(std::exchange(o.size_, 0)), capacity_(std::exchange(o.capacity_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    cleanse();
    data_ = std::move(o.data_);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
  }
  return *this;
}

void SecretBytes::cleanse() noexcept {
  if (data_) OPENSSL_cleanse(data_.get(), capacity_);
  data_.reset();
  size_ = capacity_ = 0;
}

Result<SecretBytes> read_secret_file(const std::filesystem::path& path, mode_t* mode) {
  const Fd opath(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!opath) return fail(errno, std::string("cannot open: ") + std::strerror(errno), path.string());
  auto fd = kabi::open_regular(opath, path.string());
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fail(errno, std::string("cannot stat: ") + std::strerror(errno), path.string());
  if (static_cast<uint64_t>(st.st_size) > kMaxSigningFileSize)
    return fail(EFBIG, "is larger than the " + std::to_string(kMaxSigningFileSize >> 20) + " MiB allowed", path.string());
  if (mode) *mode = st.st_mode;
  // Read straight into the buffer: no stack copy, no reallocation. One byte more than the size
  // tells a file that grew since the fstat.
  SecretBytes out(static_cast<size_t>(st.st_size) + 1);
  size_t got = 0;
  while (got < out.capacity()) {
    const ssize_t n = ::read(fd->get(), out.data() + got, out.capacity() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, std::string("read error: ") + std::strerror(errno), path.string());
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == out.capacity()) return fail(EAGAIN, "changed while it was being read", path.string());
  out.set_size(got);
  return out;
}

namespace {
std::mutex g_mutex;
int g_no_dump = 0;        // NotDumpable guards (a held key is one)
int g_dumpable_before = 1;
int g_held = 0;           // HeldKeys holding a key

void no_dump_acquire() noexcept {
  const std::lock_guard<std::mutex> lock(g_mutex);
  if (g_no_dump++ == 0) {
    const int d = ::prctl(PR_GET_DUMPABLE);
    g_dumpable_before = d < 0 ? 1 : d;
    ::prctl(PR_SET_DUMPABLE, 0);
  }
}

void no_dump_release() noexcept {
  const std::lock_guard<std::mutex> lock(g_mutex);
  if (--g_no_dump == 0 && g_dumpable_before != 0) ::prctl(PR_SET_DUMPABLE, g_dumpable_before);
}

void hold_one() noexcept {
  no_dump_acquire();
  const std::lock_guard<std::mutex> lock(g_mutex);
  ++g_held;
}

void release_one() noexcept {
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    --g_held;
  }
  no_dump_release();
}
}  // namespace

NotDumpable::NotDumpable() noexcept { no_dump_acquire(); }
NotDumpable::~NotDumpable() { no_dump_release(); }

int signing_keys_held() noexcept {
  const std::lock_guard<std::mutex> lock(g_mutex);
  return g_held;
}

HeldKey::HeldKey(CHandle<EVP_PKEY, EVP_PKEY_free> key) : key_(std::move(key)) {
  if (key_) hold_one();
}

HeldKey::HeldKey(HeldKey&& o) noexcept : key_(std::move(o.key_)) {}

HeldKey& HeldKey::operator=(HeldKey&& o) noexcept {
  if (this != &o) {
    release();
    key_ = std::move(o.key_);
  }
  return *this;
}

void HeldKey::release() noexcept {
  if (!key_) return;
  key_.reset();
  release_one();
}

Result<HeldKey> parse_private_key(SecretBytes& key_bytes, const std::string& name) {
  kabi::init_crypto();
  auto key = parse_key_bytes(key_bytes.view(), name);
  // The key's bytes are secret: gone from this process's heap as soon as they are parsed.
  key_bytes.cleanse();
  if (!key) return tl::unexpected(key.error());
  return HeldKey(std::move(*key));
}

Result<SigningKey> load_signing_key(const std::filesystem::path& key, const std::filesystem::path& cert) {
  // The certificate first: when it is not usable, the key is never read.
  auto c = load_certificate(cert);
  if (!c) return tl::unexpected(c.error());
  SigningKey k;
  k.key_path = key;
  k.cert_path = cert;
  k.identity = std::move(c->identity);
  k.cert_der = std::move(c->der);
  k.cert_sha256 = std::move(c->sha256);
  k.validity_warning = std::move(c->validity_warning);
  const auto* p = reinterpret_cast<const unsigned char*>(k.cert_der.data());
  k.cert.reset(d2i_X509(nullptr, &p, static_cast<long>(k.cert_der.size())));
  if (!k.cert) return fail(EIO, "cannot decode the certificate again (" + openssl_error() + ")", cert.string());

  auto bytes = read_secret_file(key);
  if (!bytes) return tl::unexpected(bytes.error());
  auto held = parse_private_key(*bytes, key.string());
  if (!held) return tl::unexpected(held.error());
  k.key = std::move(*held);
  if (X509_check_private_key(k.cert.get(), k.key.get()) != 1) {
    ERR_clear_error();
    return fail(EKEYREJECTED, "the private key is not the key of the certificate " + cert.string(), key.string());
  }
  return k;
}

void mask_option_values(int argc, char** argv, std::string_view option) noexcept {
  for (int i = 1; i < argc; ++i) {
    if (!argv[i]) continue;
    const std::string_view a(argv[i]);
    char* value = nullptr;
    if (a == option && i + 1 < argc) value = argv[++i];
    else if (a.size() > option.size() && a.substr(0, option.size()) == option && a[option.size()] == '=')
      value = argv[i] + option.size() + 1;
    for (; value && *value; ++value) *value = '*';
  }
}

Result<std::string> sign_module(std::string_view module_bytes, const SigningKey& key, const std::string& path_for_errors,
                                std::string_view hash) {
  if (!key.key || !key.cert) return fail(EINVAL, "no signing key loaded", path_for_errors);
  return kabi::sign_module(module_bytes, key.key.get(), key.cert.get(), path_for_errors, hash);
}

// ---- trust -----------------------------------------------------------------------------------
namespace {

bool same_key(const SigningIdentity& id, const probes::KeyDescription& k) {
  if (k.type != "asymmetric") return false;
  if (k.description == id.description) return true;
  // Same key under another subject name: the kernel finds a signer by id
  // (pkcs7_validate_trust -> find_asymmetric_key), not by name. A description ends with the
  // SKID, or the serial number without one - the last of key_ids either way.
  return !id.key_ids.empty() && probes::description_has_key_id(k.description, id.key_ids.back());
}

bool holds(const probes::Keyring* k, const SigningIdentity& id) {
  return k && k->state == probes::Keyring::State::Read &&
         std::any_of(k->keys.begin(), k->keys.end(), [&](const probes::KeyDescription& d) { return same_key(id, d); });
}

bool is_read(const probes::Keyring* k) { return k && k->state == probes::Keyring::State::Read; }
// Read, or known to be absent from this kernel (not found while .builtin_trusted_keys, which
// every signing kernel has, was found: so this is not a namespace that hides them all).
bool is_known(const probes::Keyring* k, bool builtin_read) {
  return is_read(k) || (builtin_read && k && k->state == probes::Keyring::State::NotFound && k->error == ENOKEY);
}

std::string state_text(const probes::Keyring* k, std::string_view name) {
  if (!k) return std::string(name) + " not probed";
  if (k->state == probes::Keyring::State::Read) return std::string(name) + " read";
  return std::string(name) + ": " + (k->problem.empty() ? std::string(probes::keyring_state_name(k->state)) : k->problem);
}

}  // namespace

std::string_view signing_verdict_name(SigningTrust::Verdict v) noexcept {
  switch (v) {
    case SigningTrust::Verdict::Trusted: return "trusted";
    case SigningTrust::Verdict::Untrusted: return "untrusted";
    case SigningTrust::Verdict::Unknown: return "unknown";
  }
  return "?";
}

bool platform_keyring_for_modules(std::string_view proc_version) {
  return proc_version.find("Debian") != std::string_view::npos;
}

SigningTrust signing_trust(const SigningIdentity& id, const probes::KernelKeyrings& keyrings,
                           const std::vector<std::string>& image_certs_der, bool platform_for_modules) {
  using V = SigningTrust::Verdict;
  const probes::Keyring* builtin = keyrings.find(probes::kBuiltinKeyring);
  const probes::Keyring* secondary = keyrings.find(probes::kSecondaryKeyring);
  const probes::Keyring* machine = keyrings.find(probes::kMachineKeyring);
  const probes::Keyring* platform = keyrings.find(probes::kPlatformKeyring);
  const std::string who = "\"" + id.description + "\"";

  // kernel/module/signing.c mod_verify_sig() -> verify_pkcs7_signature(...,
  // VERIFY_USE_SECONDARY_KEYRING, VERIFYING_MODULE_SIGNATURE): certs/system_keyring.c resolves
  // that to .secondary_trusted_keys (or .builtin_trusted_keys without
  // CONFIG_SECONDARY_TRUSTED_KEYRING). system_trusted_keyring_init() links .builtin_trusted_keys
  // into the secondary, set_machine_trusted_keys() links .machine into it. .platform is reached
  // through VERIFY_USE_PLATFORM_KEYRING: upstream for kexec and IMA only; Debian's
  // mod_verify_sig() tries it for a module too when the secondary keyring gave ENOKEY.
  if (holds(builtin, id))
    return {V::Trusted, std::string(probes::kBuiltinKeyring), who + " is in " + std::string(probes::kBuiltinKeyring)};
  if (holds(secondary, id))
    return {V::Trusted, std::string(probes::kSecondaryKeyring), who + " is in " + std::string(probes::kSecondaryKeyring)};
  if (holds(machine, id))
    return {V::Trusted, std::string(probes::kMachineKeyring),
            who + " is in " + std::string(probes::kMachineKeyring) + ", which the kernel links into " +
                std::string(probes::kSecondaryKeyring)};

  const bool in_platform = holds(platform, id);
  if (platform_for_modules && in_platform)
    return {V::Trusted, std::string(probes::kPlatformKeyring),
            who + " is in " + std::string(probes::kPlatformKeyring) +
                ", which this kernel (Debian's) verifies modules with when no other key matches"};

  const bool builtin_read = is_read(builtin);
  const bool complete = builtin_read && is_known(secondary, true) && is_known(machine, true) &&
                        (!platform_for_modules || is_known(platform, true));
  const std::string platform_note =
      in_platform ? "; it is in " + std::string(probes::kPlatformKeyring) +
                        ", which this kernel uses for kexec and IMA, not for modules"
                  : std::string();
  if (complete)
    return {V::Untrusted, in_platform ? std::string(probes::kPlatformKeyring) : std::string(),
            who + " is in none of the keyrings the kernel verifies modules with (" +
                std::string(probes::kBuiltinKeyring) + ", " + std::string(probes::kSecondaryKeyring) + ", " +
                std::string(probes::kMachineKeyring) + ")" + platform_note};

  const std::string unread = state_text(builtin, probes::kBuiltinKeyring) + "; " +
                             state_text(secondary, probes::kSecondaryKeyring) + "; " +
                             state_text(machine, probes::kMachineKeyring);
  if (!builtin_read) {
    // No keyring to go by: the built-in keyring is what the image holds.
    for (const std::string& der : image_certs_der) {
      auto image_id = certificate_identity(der, "kernel image certificate");
      if (!image_id) continue;
      const bool same = image_id->description == id.description ||
                        (!id.key_ids.empty() && !image_id->key_ids.empty() && image_id->key_ids == id.key_ids);
      if (same)
        return {V::Trusted, std::string(kImageCertificates),
                who + " is among " + std::string(kImageCertificates) + " (the keyrings could not be read: " + unread + ")"};
    }
    if (!image_certs_der.empty())
      return {V::Unknown, in_platform ? std::string(probes::kPlatformKeyring) : std::string(),
              who + " is not among the " + std::to_string(image_certs_der.size()) + " certificates built into the "
                  "kernel image, and keys added at run time (" + std::string(probes::kSecondaryKeyring) + ", " +
                  std::string(probes::kMachineKeyring) + ": MOK) can't be known from it; the keyrings could not be "
                  "read (" + unread + ")" + platform_note};
  }
  return {V::Unknown, in_platform ? std::string(probes::kPlatformKeyring) : std::string(),
          who + " was not found in the keyrings that could be read, and some could not (" + unread + ")" + platform_note};
}

}  // namespace agent
