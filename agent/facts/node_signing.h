// The node's signing facts: the operator's module signing key and certificate (files of the
// agent's own filesystem, a mounted Secret) and whether the running kernel trusts that
// certificate for modules - its keyrings (probes/keyrings), else the certificates built into its
// image under the host root. Shared by the diagnosis (the decision: a build on a kernel that
// enforces signatures needs a trusted certificate) and the build (which signs).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "agent/facts/signing.h"
#include "kabi/kernel_keys.h"
#include "probes/host_root.h"

namespace agent {

struct SigningFiles {
  std::optional<std::filesystem::path> key;   // --signing-key: the agent (or its sidecar) signs
  std::optional<std::filesystem::path> cert;  // --signing-cert: enough to judge the trust
};

struct SigningFacts {
  bool configured = false;          // a certificate was given
  // The key's file, when one was given: only checked here (a regular file; its mode), never
  // read. The build reads it right before it signs (load_signing_key).
  std::optional<std::filesystem::path> key_file;
  std::filesystem::path cert_file;
  std::string cert_der;
  std::string cert_sha256;
  SigningIdentity identity;
  std::string problem;              // the files could not be used: why, naming the file
  SigningTrust trust;               // when configured and no problem
  // Not errors, for the log and the status: the certificate's validity, a key file that others
  // than its owner may read.
  std::string validity_warning;
  std::string key_mode_warning;
};

// The warning for a key file of mode `mode` (st_mode) at `path`: empty unless the group or
// others may read, write or execute it (mode & 077).
[[nodiscard]] std::string key_file_mode_warning(mode_t mode, const std::filesystem::path& path);

// Loads the certificate (a key without one is a problem) and judges it: the keyrings the
// kernel verifies modules with, and only when none is readable the kernel image's built-in
// certificates (probes::find_kernel_image under `root`). The key
// file is stat()ed (followed through links, as a Secret's are), never opened: a missing file or
// not a regular file is a problem, a mode that lets others read it a warning.
[[nodiscard]] SigningFacts probe_signing(const probes::HostRoot& root, const std::string& release,
                                         const SigningFiles& files);

// Where the entrypoint keeps kernel images' certificates between starts (a host path).
inline constexpr const char* kDefaultCertificateCache = "/var/lib/intel-gpu-driver/kernel-certificates";

// The certificates built into the kernel image at `image` (a host path under `root`), read only
// as far as the bundle's `signers` need - or, when the image is the running kernel's (the
// root's boot id is this process's) and its .builtin_trusted_keys was read whole, until every
// key on it has been seen. With a `cache_dir` (a host directory, written through the root), a
// scan is kept there as <sha256 of the image>.certs and used again when it answers for the same
// image (kabi::certificates_suffice); a cache file that cannot be read or written is a warning,
// and the image is scanned.
struct KernelImageCertificates {
  kabi::KernelCertificates scan;
  bool from_cache = false;
  std::vector<Error> warnings;  // the cache could not be used: not fatal
};
[[nodiscard]] Result<KernelImageCertificates> kernel_image_certificates(const probes::HostRoot& root,
                                                                        const std::string& image,
                                                                        const std::vector<std::string>& signers,
                                                                        const std::filesystem::path& cache_dir);

// The warnings, in order (validity, key file mode); none empty.
[[nodiscard]] std::vector<std::string> signing_warnings(const SigningFacts& s);

// For a person: "signer (key id): verdict in where" (and the warnings), or the problem.
[[nodiscard]] std::string signing_summary(const SigningFacts& s);

}  // namespace agent
