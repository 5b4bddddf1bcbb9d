// A kernel as a release pipeline names it - a Module.symvers, a module tree, or a directory
// holding both (an unpacked kernel image + headers / kernel-devel package) - and a bundle of
// modules as a directory. The readers of `agent kabi diff` and `agent kabi matrix`.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "kabi/symvers.h"

namespace agent::kabi {

struct KernelSource {
  std::string arg;         // as given on the command line
  std::string symvers;     // a Module.symvers (any compression), or empty
  std::string module_dir;  // a module tree (/lib/modules/<kver>), or empty
};

// Finds what ARG holds. A regular file is a Module.symvers. A directory is a module tree when it
// has modules.dep, or kernel/ and no Module.symvers (a kernel build tree); its symvers is then <tree>/build/Module.symvers or
// <tree>/symvers.gz when present. Any other directory is searched for both, in this order:
// symvers: Module.symvers[.gz|.xz|.zst], symvers.gz, usr/src/linux-headers-*/Module.symvers,
// usr/src/kernels/*/Module.symvers; tree: modules/, lib/modules/*/, usr/lib/modules/*/.
// Two candidates of one kind (two kernels in one directory) are an error naming both.
[[nodiscard]] Result<KernelSource> locate_kernel(const std::filesystem::path& arg);

// A kernel's CRC table as a diff or matrix sees it: its Module.symvers (only `only` kept when
// given), or, for a tree without one, the table its own modules imply (read_tree_symvers).
[[nodiscard]] Result<Symvers> read_kernel_symvers(const KernelSource& k, const SymbolSet* only = nullptr);

// The CRC table a module tree implies without a Module.symvers: every module's exports (owner,
// CRC, GPL-only, namespace: all known) and the __versions entries of all of them for the
// symbols no module exports (taken as vmlinux's; export type and namespace unknown). Partial:
// a vmlinux export no module uses is absent. At most `max_modules` modules are read.
[[nodiscard]] Result<Symvers> read_tree_symvers(const std::filesystem::path& module_dir, const SymbolSet* only = nullptr,
                                                size_t max_modules = 20000);

// The model `kabi check` builds, for a kernel given any of the three ways; `set` scopes it.
// Without a tree, vermagic, struct module size and in-tree dependencies are unknown: the model
// then takes the vermagic of the set's first module (`vermagic_known` false) and has no tree.
struct LoadedKernel {
  KernelModel model;
  bool vermagic_known = true;
  bool tree_known = true;
  bool symvers_partial = false;  // the CRCs come from the tree's own modules
};
[[nodiscard]] Result<LoadedKernel> load_kernel(const KernelSource& k, const std::vector<ModuleInfo>& set);

// The modules of a bundle: DIR walked (at most 16 levels, 10,000 files) for .ko[.xz|.zst|.gz]
// files in path order, or a single module file. No module at all is an error naming DIR.
[[nodiscard]] Result<std::vector<ModuleInfo>> read_bundle(const std::filesystem::path& dir);

// What the bundle takes from the kernel: every undefined symbol of its modules that no module
// of the bundle exports, sorted.
[[nodiscard]] std::vector<std::string> bundle_imports(const std::vector<ModuleInfo>& bundle);

}  // namespace agent::kabi
