// Helpers shared by the probes and agent tests: temporary trees and the fixture hosts.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>

#include "../../kernel_roles.h"
#include "../temp_dir.h"

namespace agent::test {

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

// A whole file as bytes; empty when it cannot be read.
inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
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

// A fixture node built from the kernel cache by make-host.sh (ctest runs it as the fixture
// agent_test_hosts) for the kernel roles as they are now: its path, or nullopt when it was not
// built or was built for another ABI of its role.
inline std::optional<std::filesystem::path> cache_host(const std::string& kind) {
  const std::filesystem::path p = std::filesystem::path(AGENT_TEST_HOSTS) / kind;
  std::ifstream in(p / ".fixture-role");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  const auto eq = line.find('=');
  if (eq == std::string::npos || role_abi(line.substr(0, eq)) != line.substr(eq + 1)) return std::nullopt;
  return p;
}

// For main(): true when every node KIND is built for the current roles; else says which is not
// on stderr and the executable exits 77 (ctest's SKIP_RETURN_CODE).
inline bool require_hosts(std::initializer_list<const char*> kinds) {
  bool ok = true;
  for (const char* kind : kinds) {
    if (cache_host(kind)) continue;
    std::cerr << "SKIP: fixture host '" << kind << "' not built for the kernel roles of " << kernel_cache()
              << " (tests/e2e/fetch-kernels.sh, then ctest, or tests/fixtures/hosts/make-host.sh all "
              << AGENT_TEST_HOSTS << ")\n";
    ok = false;
  }
  return ok;
}

// A node main() checked with require_hosts.
inline std::filesystem::path fixture_host(const std::string& kind) {
  auto p = cache_host(kind);
  if (!p) {
    std::cerr << "fixture host '" << kind << "' not built\n";
    std::abort();
  }
  return *p;
}

// The release (kver) of a fixture node's kernel, e.g. 6.1.0-56-amd64.
inline std::string fixture_kver(const std::filesystem::path& host) {
  std::ifstream in(host / ".fixture-kernel");
  std::string kver;
  in >> kver;
  return kver;
}

}  // namespace agent::test
