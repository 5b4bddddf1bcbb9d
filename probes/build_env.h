// Whether modules can be built on this node for the running kernel: its kernel headers
// (kernel-devel / linux-headers) under the host root.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "probes/host_root.h"
#include "probes/kernel.h"

namespace agent::probes {

struct HeadersDir {
  std::string path;       // host path tried ("/lib/modules/<kver>/build")
  std::string real_path;  // where it resolved ("/usr/src/kernels/<kver>" under the root)
  bool exists = false;
  bool makefile = false;        // Makefile: kbuild can be entered
  bool module_symvers = false;  // Module.symvers: a build gets the kernel's CRCs
  bool config = false;          // .config
  bool autoconf = false;        // include/generated/autoconf.h
  bool scripts = false;         // scripts/ (Debian: a link into linux-kbuild-<ver>)
  std::pair<dev_t, ino_t> symvers_id{};  // which file its Module.symvers is
  [[nodiscard]] bool usable() const noexcept { return makefile && module_symvers; }
};

struct BuildEnv {
  bool possible = false;        // some candidate is usable
  std::string dir;              // host path of the first usable one
  std::pair<dev_t, ino_t> symvers_id{};  // its Module.symvers (compared with the symvers candidates)
  std::string detail;           // one line for people
  std::vector<HeadersDir> candidates;  // in the order tried, one per distinct directory
  // dir is the image's own (a Driver Toolkit's /usr/src/kernels/<kver>, on the agent's
  // filesystem, not the host's), proven the running kernel's.
  bool in_image = false;
  // Headers that are there but are not the running kernel's, or cannot be shown to be: why. A
  // build against them would make modules with another kernel's CRCs.
  std::string mismatch;
};

// A Driver Toolkit image's kernel headers: <base>/<kver> on the agent's own filesystem.
struct ImageHeaders {
  std::string base;
  std::string dir;                    // <base>/<release> when it has a Makefile and Module.symvers
  std::vector<std::string> releases;  // every <base>/<kver> with a Makefile, sorted
};
[[nodiscard]] ImageHeaders find_image_headers(const std::filesystem::path& base, const std::string& release);

// When the node has no usable headers, the image's - only when they are proven the running
// kernel's: the same release, and their Module.symvers agreeing with the CRCs the node's own
// modules were linked against (`verdict`, from KernelProbeOptions::also_verify). Otherwise
// env.mismatch says why not (headers for other kernels only; rejected; not verifiable). Pure.
void consider_image_headers(BuildEnv& env, const ImageHeaders& image, const std::string& release,
                            const std::optional<SymversCandidate>& verdict);

// The headers a build would use, chosen in two steps: the node's (probe_build_env); when they
// are not usable and `image_base` is given, the image's (find_image_headers). `to_verify` is the
// image's Module.symvers to judge with the node's own modules (KernelProbeOptions::also_verify);
// consider_image_headers(env, image, release, that verdict) then settles `env`.
struct HeadersChoice {
  BuildEnv env;
  ImageHeaders image;
  std::optional<std::filesystem::path> to_verify;
};
[[nodiscard]] HeadersChoice choose_build_headers(const HostRoot& root, const std::string& release,
                                                 const std::filesystem::path& image_base);

// Host paths of kernel header directories for a release, in the order they are tried.
[[nodiscard]] std::vector<std::string> headers_candidates(const std::string& release);

[[nodiscard]] BuildEnv probe_build_env(const HostRoot& root, const std::string& release);

}  // namespace agent::probes
