// A kernel as a release pipeline names it - a Module.symvers, a module tree, or a directory
// holding both (an unpacked kernel image + headers / kernel-devel package) - and a bundle of
// modules as a directory. The readers of `agent kabi diff` and `agent kabi matrix`.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "kabi/root_fs.h"
#include "kabi/symvers.h"

namespace agent::kabi {

struct KernelSource {
  std::string arg;  // as given on the command line
  bool arg_is_symvers = false;  // ARG is the Module.symvers itself
  // What ARG holds is read through `fs`, a root at ARG (a directory) or at the directory holding
  // ARG (a file): every link in it resolves inside it, as under chroot, never on this machine.
  std::shared_ptr<const RootFs> fs;
  std::string symvers;     // a Module.symvers (any compression), a path inside fs; or empty
  std::string module_dir;  // a module tree (/lib/modules/<kver>), a path inside fs; or empty
  std::string headers_release;  // UTS_RELEASE of the headers holding the symvers, "" if not there
  std::vector<std::string> notes;  // links not followed, files not understood

  // The path as messages show it (on this machine): "<root>/lib/modules/<kver>".
  [[nodiscard]] std::string display(const std::string& inner) const { return fs ? fs->display(inner) : inner; }
};

// Finds what ARG holds (ARG itself is resolved as any path given; what is found in it, inside
// it). A regular file is a Module.symvers. A directory is a module tree when it has
// modules.dep, or kernel/ and no Module.symvers (a kernel build tree); its symvers is then
// <tree>/build/Module.symvers, or <tree>/symvers.{gz,xz,zst}, when present inside the tree (a
// `build` link leading out of it is not followed: a note says so). Any other directory is
// searched for a tree: modules/, lib/modules/*/, usr/lib/modules/*/; and for a symvers:
// Module.symvers[.gz|.xz|.zst], symvers.gz, the tree's own (as above),
// usr/src/linux-headers-*/Module.symvers, usr/src/kernels/*/Module.symvers.
// Two candidates of one kind (two kernels in one directory) are an error naming both.
// The headers' release is read from include/generated/utsrelease.h beside the symvers.
[[nodiscard]] Result<KernelSource> locate_kernel(const std::filesystem::path& arg);

// "#define UTS_RELEASE \"6.1.0-56-amd64\"" -> "6.1.0-56-amd64"; "" when the text has no such
// line or the value is not a plausible release (empty, spaces, control characters, > 64 bytes).
[[nodiscard]] std::string parse_utsrelease(std::string_view text);

// What a kernel's own files say its release is (uname -r).
struct ReleaseFacts {
  std::string vermagic_release;  // first word of its modules' vermagic ("" without a tree)
  std::string headers_release;   // its headers' UTS_RELEASE ("" without them)
  std::string tree_dir;          // the module tree's directory on this machine ("" without a tree)
  std::string headers_dir;       // the directory holding its Module.symvers ("" without one)
};
struct KernelRelease {
  std::string release;             // "" when not established
  std::string from;                // "vermagic", "utsrelease.h", "headers directory"; "" when not established
  std::vector<std::string> notes;  // disagreements, or why it is not established
};
// The release: its modules' vermagic (what the kernel checks), else its headers' UTS_RELEASE,
// else the name of its headers' directory (release_of_headers_dir); any other source that
// disagrees is a note, and none is a note saying so, never a guess.
// A tree directory is compared only when it sits in a "modules" directory (lib/modules/<kver>).
[[nodiscard]] KernelRelease settle_release(const ReleaseFacts& f);

// The release a headers directory is named after, as packages name it: Debian's
// .../linux-headers-<kver>, RHEL's .../kernels/<kver>; "" for any other name.
[[nodiscard]] std::string release_of_headers_dir(const std::filesystem::path& dir);

// What a located kernel shows of its release without reading its modules: its headers'
// UTS_RELEASE and the directory its Module.symvers is in.
[[nodiscard]] ReleaseFacts source_release_facts(const KernelSource& k);

// The release of a located kernel: its tree's vermagic read from a few of its modules.
[[nodiscard]] Result<KernelRelease> kernel_release(const KernelSource& k);

// A kernel's CRC table as a diff or matrix sees it: its Module.symvers (only `only` kept when
// given), or, for a tree without one, the table its own modules imply (read_tree_symvers).
[[nodiscard]] Result<Symvers> read_kernel_symvers(const KernelSource& k, const SymbolSet* only = nullptr);

// The CRC table a module tree implies without a Module.symvers: every module's exports (owner,
// CRC, GPL-only, namespace: all known) and the __versions entries of all of them for the
// symbols no module exports (taken as vmlinux's; export type and namespace unknown). Partial:
// a vmlinux export no module uses is absent. At most `max_modules` modules are read.
[[nodiscard]] Result<Symvers> read_tree_symvers(const RootFs& root, const std::string& module_dir,
                                                const SymbolSet* only = nullptr, size_t max_modules = 20000);
[[nodiscard]] Result<Symvers> read_tree_symvers(const std::filesystem::path& module_dir, const SymbolSet* only = nullptr,
                                                size_t max_modules = 20000);

// The model `kabi check` builds, for a kernel given any of the three ways; `set` scopes it.
// Without a tree, vermagic, struct module size and in-tree dependencies are unknown: the model
// then takes the vermagic of the set's first module (`vermagic_known` false), the headers'
// release for its version when known, and has no tree.
struct LoadedKernel {
  KernelModel model;
  bool vermagic_known = true;
  bool tree_known = true;
  bool symvers_partial = false;  // the CRCs come from the tree's own modules
  KernelRelease release;         // the kernel's release as its own files say it (settle_release)
};
[[nodiscard]] Result<LoadedKernel> load_kernel(const KernelSource& k, const std::vector<ModuleInfo>& set);

// The modules of a bundle: DIR walked (at most 16 levels, 10,000 files) for .ko[.xz|.zst|.gz]
// files in path order, or a single module file. No module at all is an error naming DIR.
[[nodiscard]] Result<std::vector<ModuleInfo>> read_bundle(const std::filesystem::path& dir);

// What the bundle takes from the kernel: every undefined symbol of its modules that no module
// of the bundle exports, sorted.
[[nodiscard]] std::vector<std::string> bundle_imports(const std::vector<ModuleInfo>& bundle);

}  // namespace agent::kabi
