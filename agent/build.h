// `agent build`: the image's DKMS source trees built with Debian's `dkms` against the running
// kernel's headers (found under the host root), in a private mount namespace, supervised
// (process group, timeout, progress, SIGTERM), each result kABI-checked against the running
// kernel and kept in a cache keyed by everything the output depends on.
#pragma once

#include <chrono>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>

namespace agent {

inline constexpr const char* kDefaultBuildCache = "/var/lib/intel-gpu-driver/builds";

struct BuildOptions {
  std::optional<std::filesystem::path> root;  // --root; else $HOST_ROOT; else "/"
  std::filesystem::path sources = "/usr/src";  // the image's DKMS trees (<name>-<version>/dkms.conf)
  std::string cache = kDefaultBuildCache;      // a host path, written through the root
  bool json = false;
  bool rebuild = false;  // build even when a failure is recorded for these inputs
  std::chrono::seconds timeout{3600};
  std::string dkms = "dkms";  // the program (PATH lookup)
};

int run_build(const BuildOptions& options, std::ostream& out, std::ostream& err);

}  // namespace agent
