// `agent kabi check`: the offline verdict for CI and tests.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "kabi/kernel_model.h"

namespace agent {

struct KabiCheckOptions {
  std::filesystem::path symvers;
  std::filesystem::path kernel_modules;  // /lib/modules/<kver> of the target kernel
  std::filesystem::path kernel_image;    // vmlinuz, for its trusted certificates; optional
  std::vector<std::filesystem::path> modules;
  std::filesystem::path stablelist;      // kABI stablelist: coverage of the modules' imports; optional
  kabi::MissingVersionPolicy policy = kabi::MissingVersionPolicy::Strict;
  bool sig_enforce = false;
  bool lockdown = false;
  bool json = false;
  bool verbose = false;
};

// Exit codes of the contract.
inline constexpr int kExitLoadable = 0;
inline constexpr int kExitRefused = 1;
inline constexpr int kExitInputError = 2;

// Runs the check, printing the report to `out` and input errors to `err`.
int run_kabi_check(const KabiCheckOptions& o, std::ostream& out, std::ostream& err);

}  // namespace agent
