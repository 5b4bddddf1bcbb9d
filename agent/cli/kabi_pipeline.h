// The release pipeline's commands: `agent kabi diff`, `agent kabi matrix`, `agent kabi explain`
// (and the stablelist coverage `agent kabi check --stablelist` prints).
#pragma once

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "kabi/kernel_model.h"

namespace agent {

struct KabiDiffOptions {
  std::filesystem::path old_kernel, new_kernel;  // Module.symvers, module tree, or both in a directory
  std::filesystem::path bundle;                  // optional
  std::filesystem::path stablelist;              // optional
  bool json = false;
  bool verbose = false;
};
// Exit 0: nothing changed (among the bundle's imports, with --bundle); 1: something did; 2: input error.
int run_kabi_diff(const KabiDiffOptions& o, std::ostream& out, std::ostream& err);

struct KabiMatrixOptions {
  std::filesystem::path bundle;
  std::vector<std::filesystem::path> kernels;
  std::filesystem::path stablelist;  // optional
  kabi::MissingVersionPolicy policy = kabi::MissingVersionPolicy::Strict;
  bool json = false;
};
// Exit 0: every kernel can reuse the bundle; 1: some kernel needs a rebuild or cannot have one;
// 2: input error.
int run_kabi_matrix(const KabiMatrixOptions& o, std::ostream& out, std::ostream& err);

struct KabiExplainOptions {
  std::string symbol;
  std::filesystem::path old_debug, new_debug;  // objects with DWARF (.o, .ko, .debug, vmlinux)
  bool json = false;
};
// Exit 0: the symbol's type expansion is the same in both; 1: it differs (the first difference
// named); 2: input error (no DWARF, symbol not found).
int run_kabi_explain(const KabiExplainOptions& o, std::ostream& out, std::ostream& err);

}  // namespace agent
