// `agent build`: the image's DKMS source trees built with Debian's `dkms` against the running
// kernel's headers (found under the host root), in a private mount namespace, supervised
// (process group, timeout, progress, SIGTERM), each result kABI-checked against the running
// kernel and kept in a cache keyed by everything the output depends on. The parts: process.h
// (the supervised process), dkms.h (the dkms runs), cache.h (the cache's entries), failure.h
// (why a build failed); this file's build.cpp puts them in order.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

#include "agent/facts/build_inputs.h"
#include "agent/facts/node_signing.h"
#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent {

inline constexpr const char* kDefaultBuildCache = "/var/lib/intel-gpu-driver/builds";

struct BuildOptions {
  std::optional<std::filesystem::path> root;  // --root; else $HOST_ROOT; else "/"
  std::filesystem::path sources = "/usr/src";  // the image's DKMS trees (<name>-<version>/dkms.conf)
  std::string cache = kDefaultBuildCache;      // a host path, written through the root
  // A Driver Toolkit image's headers, <image_headers>/<kver> on the agent's own filesystem: used
  // when the node has none, and only when proven the running kernel's. Empty: never.
  std::filesystem::path image_headers = "/usr/src/kernels";
  bool json = false;
  bool rebuild = false;  // build even when a failure is recorded for these inputs
  std::chrono::seconds timeout{3600};
  std::string dkms = "dkms";  // the program (PATH lookup)
  // Asked between steps and every 200 ms while dkms runs: a non-empty answer (why) stops the
  // build - its processes killed, its temporary directory removed, nothing recorded.
  std::function<std::string()> stop;
  // Every 10 s while dkms runs: seconds since it started, and the last line of its log.
  std::function<void(double, const std::string&)> progress;
  // Whether a cache entry's modules pass the kABI check again before they are returned. The
  // entrypoint turns it off: it diagnoses the returned set (the kABI check included) at once.
  bool check_cached = true;
  // The module signing key and certificate (--signing-key, --signing-cert): the built modules
  // are signed with them. On a kernel that enforces signatures a build needs them, and the
  // kernel must trust the certificate (checked before building).
  SigningFiles signing;
};

// The build step for the node's running kernel, as `agent build` and the entrypoint's `build`
// branch share it: the cache entry for these inputs (reused after its kABI check passes again;
// a recorded failure is returned, not retried unless `rebuild`), else a build. An error is an
// input error (no sources, no headers, no compiler, an unusable cache), never a build failure.
[[nodiscard]] Result<BuildResult> build_for_node(const probes::HostRoot& root, const BuildOptions& options);

// For a reader that does not build (the entrypoint in sidecar mode): the result some builder
// left in the cache for these sources and the node's running kernel, matched on what the entry
// records of its inputs - the kernel release and version and the sources, not the compiler
// (the builder's image has one, the reader's may not) nor the headers' path - then verified
// (every module's sha256) and kABI-checked against the running kernel. A success is preferred
// to a recorded failure, the newest of each; nullopt when there is none yet.
// `skipped`, when given, gets an error for each entry of this kernel that could not be read
// (a result.json or failed.json that is not what `agent build` writes): named, never a crash.
[[nodiscard]] Result<std::optional<BuildResult>> find_build(const probes::HostRoot& root, const BuildOptions& options,
                                                            std::vector<Error>* skipped = nullptr);

// `agent build`: build_for_node, printed (text or --json); exit kBuildOk, kBuildFailed or
// kExitInputError.
int run_build(const BuildOptions& options, std::ostream& out, std::ostream& err);

}  // namespace agent
