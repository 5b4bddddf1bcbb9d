// Whether modules can be built on this node for the running kernel: its kernel headers
// (kernel-devel / linux-headers) under the host root.
#pragma once

#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "probes/host_root.h"

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
};

// Host paths of kernel header directories for a release, in the order they are tried.
[[nodiscard]] std::vector<std::string> headers_candidates(const std::string& release);

[[nodiscard]] BuildEnv probe_build_env(const HostRoot& root, const std::string& release);

}  // namespace agent::probes
