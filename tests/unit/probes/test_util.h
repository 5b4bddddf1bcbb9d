// Helpers shared by the probes and agent tests: temporary trees and the fixture hosts.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>

#include "../temp_dir.h"

namespace agent::test {

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

inline void make_link(const std::filesystem::path& link, const std::filesystem::path& target) {
  std::filesystem::create_directories(link.parent_path());
  std::error_code ec;
  std::filesystem::remove(link, ec);
  std::filesystem::create_symlink(target, link);
}

// Copies a tree, keeping symlinks as symlinks (sysfs is made of them).
inline void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  std::filesystem::copy(from, to,
                        std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks |
                            std::filesystem::copy_options::overwrite_existing);
}

// A copy of a host tree the test may change: directories and small files real, module files
// hard links (never written to: put() replaces a file instead).
struct HostCopy {
  TempDir t;
  std::filesystem::path root;
  explicit HostCopy(const std::filesystem::path& from) : root(t / "host") {
    std::filesystem::create_directories(root);
    std::filesystem::copy(from, root,
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks |
                              std::filesystem::copy_options::create_hard_links);
  }
  // Replaces a (possibly hard-linked) file with new content without touching the shared inode.
  void put(const std::string& rel, const std::string& text) const {
    std::error_code ec;
    std::filesystem::remove(root / rel, ec);
    write_file(root / rel, text);
  }
};

// The committed base tree: sysfs/procfs of a GPU node, no kernel binaries.
inline std::filesystem::path base_host() { return std::filesystem::path(AGENT_FIXTURE_HOSTS) / "base"; }

// A fixture node built from the kernel cache (make-host.sh, run by ctest as a fixture), or
// nullopt when it was not built - the caller WARNs and returns.
inline std::optional<std::filesystem::path> cache_host(const std::string& kind) {
  const std::filesystem::path p = std::filesystem::path(AGENT_TEST_HOSTS) / kind;
  std::error_code ec;
  if (!std::filesystem::exists(p / ".fixture-kernel", ec)) return std::nullopt;
  return p;
}

inline std::string skip_message(const std::string& kind) {
  return "fixture host '" + kind + "' not built (needs the kernel cache: tests/e2e/fetch-kernels.sh, then ctest, " +
         "or tests/fixtures/hosts/make-host.sh all " + AGENT_TEST_HOSTS + "); skipping";
}

// The kernel cache tests/e2e/fetch-kernels.sh fills: <cache>/<abi>/{modules,Module.symvers}.
inline std::optional<std::filesystem::path> kernel_abi(const std::string& abi) {
  std::filesystem::path cache;
  if (const char* c = std::getenv("AGENT_KERNEL_CACHE"); c && *c) {
    cache = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    cache = std::filesystem::path(x) / "intel-gpu-agent/kernels";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    cache = std::filesystem::path(h) / ".cache/intel-gpu-agent/kernels";
  }
  std::error_code ec;
  if (cache.empty() || !std::filesystem::exists(cache / abi / ".done", ec)) return std::nullopt;
  return cache / abi;
}

}  // namespace agent::test
