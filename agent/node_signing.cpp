#include "agent/node_signing.h"

#include <cerrno>

#include "kabi/kernel_keys.h"
#include "kabi/module.h"
#include "probes/keyrings.h"

namespace agent {

SigningFacts probe_signing(const probes::HostRoot& root, const std::string& release, const SigningFiles& files) {
  SigningFacts s;
  if (!files.cert) {
    if (files.key) s.problem = "--signing-key " + files.key->string() + " needs its certificate (--signing-cert)";
    s.configured = files.key.has_value();
    return s;
  }
  s.configured = true;
  if (files.key) {
    auto k = load_signing_key(*files.key, *files.cert);
    if (!k) {
      s.problem = k.error().what();
      return s;
    }
    s.cert_der = k->cert_der;
    s.identity = k->identity;
    s.key.emplace(std::move(*k));
  } else {
    auto c = load_certificate(*files.cert);
    if (!c) {
      s.problem = c.error().what();
      return s;
    }
    s.cert_der = std::move(c->first);
    s.identity = std::move(c->second);
  }
  s.cert_sha256 = kabi::sha256_hex(s.cert_der);

  const probes::KernelKeyrings keyrings = probes::probe_keyrings();
  bool any_read = false;
  for (const auto& k : keyrings.keyrings) any_read = any_read || k.state == probes::Keyring::State::Read;
  std::vector<std::string> image_certs;
  if (!any_read) {
    // The image holds the built-in keyring only; read through the host root, as far as needed.
    for (const std::string& p : {"/boot/vmlinuz-" + release, "/lib/modules/" + release + "/vmlinuz"}) {
      if (!root.is_regular_file(p)) continue;
      auto fd = root.fs().open_file(p);
      if (!fd) continue;
      auto certs = kabi::extract_kernel_certificates("/proc/self/fd/" + std::to_string(fd->get()), s.identity.key_ids);
      if (certs) image_certs = std::move(*certs);
      break;
    }
  }
  s.trust = signing_trust(s.identity, keyrings, image_certs);
  return s;
}

std::string signing_summary(const SigningFacts& s) {
  if (!s.problem.empty()) return s.problem;
  if (!s.configured) return "no signing key";
  std::string id = s.identity.key_ids.empty() ? std::string() : s.identity.key_ids.back();
  return s.identity.signer + " (" + id + "): " + std::string(signing_verdict_name(s.trust.verdict)) +
         (s.trust.where.empty() ? "" : " in " + s.trust.where) + (s.trust.detail.empty() ? "" : ": " + s.trust.detail);
}

}  // namespace agent
