// The node's signing facts: the operator's module signing key and certificate (files of the
// agent's own filesystem, a mounted Secret) and whether the running kernel trusts that
// certificate for modules - its keyrings (probes/keyrings), else the certificates built into its
// image under the host root. Shared by the diagnosis (the decision: a build on a kernel that
// enforces signatures needs a trusted certificate) and the build (which signs).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "agent/signing.h"
#include "probes/host_root.h"

namespace agent {

struct SigningFiles {
  std::optional<std::filesystem::path> key;   // --signing-key: the agent (or its sidecar) signs
  std::optional<std::filesystem::path> cert;  // --signing-cert: enough to judge the trust
};

struct SigningFacts {
  bool configured = false;          // a certificate was given
  std::optional<SigningKey> key;    // loaded and matching the certificate, when a key was given
  std::string cert_der;
  std::string cert_sha256;
  SigningIdentity identity;
  std::string problem;              // the files could not be used: why, naming the file
  SigningTrust trust;               // when configured and no problem
};

// Loads the files (a key without a certificate is a problem) and judges the certificate: the
// keyrings the kernel verifies modules with, and only when none is readable the kernel image's
// built-in certificates (/boot/vmlinuz-<release>, /lib/modules/<release>/vmlinuz under `root`).
[[nodiscard]] SigningFacts probe_signing(const probes::HostRoot& root, const std::string& release,
                                         const SigningFiles& files);

// For a person: "signer (key id): verdict in where" or the problem.
[[nodiscard]] std::string signing_summary(const SigningFacts& s);

}  // namespace agent
