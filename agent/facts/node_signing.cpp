#include "agent/facts/node_signing.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

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
