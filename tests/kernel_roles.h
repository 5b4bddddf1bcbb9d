// The real kernels of the tests, by role: tests/e2e/fetch-kernels.sh resolves each role
// (k61, k61_same, k61_old, k612, k612_old, nomodversions) to an ABI the archive serves and
// writes <cache>/roles.env (ROLE=ABI lines); the kernels are fetched into <cache>/<abi>/.
// Read at run time: the cache is fetched after the build.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>

namespace agent::test {

// AGENT_KERNEL_CACHE, else $XDG_CACHE_HOME or ~/.cache + intel-gpu-agent/kernels (as the scripts).
inline std::filesystem::path kernel_cache() {
  if (const char* c = std::getenv("AGENT_KERNEL_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "intel-gpu-agent/kernels";
  const char* h = std::getenv("HOME");
  return std::filesystem::path(h && *h ? h : "/root") / ".cache/intel-gpu-agent/kernels";
}

// The ABI roles.env gives ROLE, or nullopt.
inline std::optional<std::string> role_abi(const std::string& role) {
  std::ifstream in(kernel_cache() / "roles.env");
  std::optional<std::string> abi;
  for (std::string line; std::getline(in, line);)
    if (line.rfind(role + "=", 0) == 0 && line.size() > role.size() + 1) abi = line.substr(role.size() + 1);
  return abi;
}

// <cache>/<abi> of ROLE once fetched (its .done written), or nullopt.
inline std::optional<std::filesystem::path> role_kernel(const std::string& role) {
  auto abi = role_abi(role);
  std::error_code ec;
  if (!abi || !std::filesystem::exists(kernel_cache() / *abi / ".done", ec)) return std::nullopt;
  return kernel_cache() / *abi;
}

// The ABI of a role the test executable's main() checked (require_roles): never empty.
inline std::string abi_of(const std::string& role) {
  auto abi = role_abi(role);
  if (!abi) {
    std::cerr << "kernel role " << role << " not resolved (tests/e2e/fetch-kernels.sh)\n";
    std::abort();
  }
  return *abi;
}
inline std::filesystem::path kernel_of(const std::string& role) { return kernel_cache() / abi_of(role); }

// For the main() of a test executable on real kernels: true when every role is resolved and
// fetched; else says which is not on stderr ("SKIP: ...") and the executable exits 77, ctest's
// SKIP_RETURN_CODE.
inline bool require_roles(std::initializer_list<const char*> roles) {
  bool ok = true;
  for (const char* role : roles) {
    if (role_kernel(role)) {
      std::cerr << "kernel role " << role << ": " << *role_abi(role) << '\n';
      continue;
    }
    auto abi = role_abi(role);
    std::cerr << "SKIP: kernel role " << role << (abi ? " (" + *abi + ")" : std::string(" (no roles.env entry)"))
              << " not in " << kernel_cache() << " (run tests/e2e/fetch-kernels.sh)\n";
    ok = false;
  }
  return ok;
}

}  // namespace agent::test
