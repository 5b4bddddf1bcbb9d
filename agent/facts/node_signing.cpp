#include "agent/facts/node_signing.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agent/base/state_files.h"
#include "kabi/certificate_cache.h"
#include "kabi/kernel_keys.h"
#include "kabi/module.h"
#include "kabi/text.h"
#include "probes/kernel.h"
#include "probes/keyrings.h"

namespace agent {

std::string key_file_mode_warning(mode_t mode, const std::filesystem::path& path) {
  if ((mode & 077) == 0) return {};
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode & 07777));
  return "the signing key " + path.string() + " has mode " + octal +
         ": its group or others have access to it (the Secret's defaultMode should be 0400)";
}

SigningFacts probe_signing(const probes::HostRoot& root, const std::string& release, const SigningFiles& files) {
  SigningFacts s;
  s.key_file = files.key;
  if (!files.cert) {
    if (files.key) s.problem = "--signing-key " + files.key->string() + " needs its certificate (--signing-cert)";
    s.configured = files.key.has_value();
    return s;
  }
  s.configured = true;
  s.cert_file = *files.cert;
  auto c = load_certificate(*files.cert);
  if (!c) {
    s.problem = c.error().what();
    return s;
  }
  s.cert_der = std::move(c->der);
  s.identity = std::move(c->identity);
  s.validity_warning = std::move(c->validity_warning);
  if (files.key) {
    // Through the Secret's links to the file itself: its mode is the Secret's defaultMode.
    struct stat st {};
    if (::stat(files.key->c_str(), &st) != 0) {
      const int e = errno;
      s.problem = Error{e, std::string("cannot stat the signing key: ") + std::strerror(e), files.key->string()}.what();
      return s;
    }
    if (!S_ISREG(st.st_mode)) {
      s.problem = Error{EINVAL, "the signing key is not a regular file", files.key->string()}.what();
      return s;
    }
    s.key_mode_warning = key_file_mode_warning(st.st_mode, *files.key);
  }
  s.cert_sha256 = kabi::sha256_hex(s.cert_der);

  const probes::KernelKeyrings keyrings = probes::probe_keyrings();
  bool any_read = false;
  for (const auto& k : keyrings.keyrings) any_read = any_read || k.state == probes::Keyring::State::Read;
  std::vector<std::string> image_certs;
  if (!any_read) {
    // The image holds the built-in keyring only; read through the host root, as far as needed.
    if (auto p = probes::find_kernel_image(root, release))
      if (auto fd = root.fs().open_file(*p)) {
        auto certs = kabi::extract_kernel_certificates("/proc/self/fd/" + std::to_string(fd->get()), s.identity.key_ids);
        if (certs) image_certs = std::move(*certs);
      }
  }
  const auto proc_version = root.read_value("/proc/version");
  s.trust = signing_trust(s.identity, keyrings, image_certs,
                          proc_version && platform_keyring_for_modules(*proc_version));
  return s;
}

namespace {

Error with_note(Error e, const std::string& note) {
  e.message += note;
  return e;
}

// The keyrings this process sees are the root's kernel's: the same boot.
bool keyrings_are_the_roots(const probes::HostRoot& root) {
  if (root.is_live()) return true;
  auto here = probes::HostRoot::open("/");
  if (!here) return false;
  auto mine = probes::probe_boot_id(*here);
  auto theirs = probes::probe_boot_id(root);
  return mine && theirs && *mine == *theirs;
}

}  // namespace

Result<KernelImageCertificates> kernel_image_certificates(const probes::HostRoot& root, const std::string& image,
                                                          const std::vector<std::string>& signers,
                                                          const std::filesystem::path& cache_dir) {
  KernelImageCertificates r;
  kabi::CertificateScanStop stop{.wanted_key_ids = signers, .kernel_key_ids = {}};
  if (keyrings_are_the_roots(root))
    stop.kernel_key_ids = probes::builtin_key_ids(probes::probe_keyring(probes::kBuiltinKeyring));
  auto fd = root.fs().open_file(image);
  if (!fd) return tl::unexpected(fd.error());
  const std::string name = root.display(image);

  std::optional<WritableDir> dir;
  std::string entry;
  if (!cache_dir.empty()) {
    auto sum = kabi::file_sha256(*fd, name);
    if (!sum) return tl::unexpected(sum.error());
    entry = *sum + ".certs";
    if (auto d = WritableDir::open(root.fs(), cache_dir.native(), "certificate cache")) {
      dir = std::move(*d);
      if (auto text = dir->read(entry)) {
        auto cached = kabi::parse_certificate_cache(*text, *sum, dir->path() + "/" + entry);
        if (!cached) {
          r.warnings.push_back(with_note(cached.error(), "; scanning the image again"));
        } else if (kabi::certificates_suffice(*cached, stop)) {
          r.scan = std::move(*cached);
          r.from_cache = true;
          return r;
        }
      } else if (text.error().code != ENOENT) {
        r.warnings.push_back(with_note(text.error(), "; scanning the image again"));
      }
    } else {
      r.warnings.push_back(with_note(d.error(), ": the image's certificates are not kept"));
    }
  }

  auto scan = kabi::scan_kernel_image(std::move(*fd), name, stop);
  if (!scan) return tl::unexpected(scan.error());
  r.scan = std::move(*scan);
  if (dir) {
    if (auto ok = dir->write(entry, kabi::format_certificate_cache(r.scan, entry.substr(0, entry.size() - 6))); !ok)
      r.warnings.push_back(with_note(ok.error(), ": the image's certificates are not kept"));
  }
  return r;
}

std::vector<std::string> signing_warnings(const SigningFacts& s) {
  std::vector<std::string> out;
  for (const std::string* w : {&s.validity_warning, &s.key_mode_warning})
    if (!w->empty()) out.push_back(*w);
  return out;
}

std::string signing_summary(const SigningFacts& s) {
  if (!s.problem.empty()) return s.problem;
  if (!s.configured) return "no signing key";
  std::string id = s.identity.key_ids.empty() ? std::string() : s.identity.key_ids.back();
  const std::vector<std::string> warnings = signing_warnings(s);
  return s.identity.signer + " (" + id + "): " + std::string(signing_verdict_name(s.trust.verdict)) +
         (s.trust.where.empty() ? "" : " in " + s.trust.where) + (s.trust.detail.empty() ? "" : ": " + s.trust.detail) +
         (warnings.empty() ? "" : " (" + join(warnings, "; ") + ")");
}

}  // namespace agent
