// What a target kernel offers a module: its exported symbols with CRCs, its vermagic, its
// own in-tree modules (for dependencies), what is live, and its signing policy.
#pragma once

#include <cstdint>
#include <filesystem>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kabi/btf.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "kabi/root_fs.h"
#include "kabi/symvers.h"

namespace agent::kabi {

// What the kernel does with an undefined symbol that has no entry in a present __versions.
enum class MissingVersionPolicy {
  // Refuse with EINVAL: Debian carries "module: Disable matching missing version CRC" (fail
  // closed, as accepting could subvert module signing); proven on 6.1 and 6.12 under qemu.
  Strict,
  Upstream,  // "no symbol version for X": warn once and accept
};

struct InTreeModule {
  std::string name;                  // kernel name (underscores)
  std::filesystem::path path;        // the .ko[.xz|.zst|.gz], a path inside the tree's root
  std::vector<std::string> depends;  // its whole dependency closure (modules.dep), as names
};

// A kernel's module tree (/lib/modules/<kver>) as read through a root.
struct ModuleTree {
  std::map<std::string, InTreeModule> modules;  // by name
  // From modules.dep (dependencies complete); else walked, and dependencies are known only
  // where complete_dependencies read them.
  bool indexed = false;
  std::vector<Error> problems;  // why modules.dep was not used, modules it names that are gone
};

// One module parameter the agent passes, and where it came from ("/etc/modprobe.d/x.conf:3",
// "/proc/cmdline", "--kernel-cmdline").
struct ModuleParam {
  std::string name;
  std::optional<std::string> value;  // none: the word had no '='
  std::string source;
};

struct KernelModel {
  std::string release;    // "6.1.0-56-amd64"
  std::string vermagic;   // full vermagic of its own modules: "6.1.0-56-amd64 SMP preempt mod_unload modversions "
  bool modversions = true;
  std::string symvers_source;  // where the CRCs came from (a path, or "in-tree __versions union")
  Symvers symvers;
  // sizeof(struct module) as the kernel's own modules record it; 0 if unknown.
  uint64_t this_module_size = 0;
  // major.minor of the release, for rules that exist only in some kernels.
  int version_major = 0, version_minor = 0;

  std::map<std::string, InTreeModule> in_tree;  // by name
  std::set<std::string> live;                   // names of loaded modules
  std::set<std::string> live_proprietary;       // loaded modules tainted P (/proc/modules flags)
  // Built-ins (modules.builtin, modules.builtin.modinfo). A module named like one of
  // builtin_sysfs is refused at mod_sysfs_init() (EINVAL): /sys/module/<name> exists, because
  // the built-in has parameters or a version, or (live) it was seen there. The other built-ins
  // are no name conflict for the kernel: their exports (vmlinux's) decide.
  std::set<std::string> builtin_sysfs;
  std::set<std::string> builtin;
  std::string builtins_unread;  // why the built-ins are not known ("" = read)
  // Exports of live modules that are no owner in the symvers, read from their files: symbol
  // -> module; and live modules whose exports could not be read (a duplicate export with
  // them is not ruled out).
  std::map<std::string, std::string> live_exports;
  std::set<std::string> live_exports_unknown;
  MissingVersionPolicy policy = MissingVersionPolicy::Strict;
  // Signature policy. module_sig: the kernel checks signatures at all (CONFIG_MODULE_SIG;
  // its own modules are signed). sig_enforce: module.sig_enforce=1 or CONFIG_MODULE_SIG_FORCE.
  // lockdown: integrity/confidentiality lockdown refuses what sig_enforce would let taint.
  bool module_sig = false;
  bool sig_enforce = false;
  bool lockdown = false;
  // Whether the kernel's built-in certificates were read: without them a signature by a
  // trusted key cannot be verified.
  bool certificates_known = false;
  // The live .blacklist keyring's "bin:" hashes (lowercase hex; Debian's 6.1 and 6.12 refuse a
  // well-signed module whose whole-file SHA-256 is one): blacklist_known once it was read.
  std::set<std::string> blacklisted_hashes;
  bool blacklist_known = false;
  // The key id the kernel's own modules are signed with: a key it certainly trusts.
  std::string build_key_id;
  std::string kernel_image;  // where they were read from
  // The running kernel's BTF, the base of every module's split .BTF (live:
  // /sys/kernel/btf/vmlinux; offline: the vmlinux Debian's linux-headers ship, --kernel-btf);
  // none: not known, and btf_unread says why.
  std::optional<BaseBtf> btf;
  std::string btf_unread;
  // The node's part of a load (live: /proc/cmdline, modprobe.d, /proc/sys, the agent's own
  // capabilities; offline: --kernel-cmdline): module_blacklist= names, nomodeset, the
  // parameters each module gets (by module name), whether inserting is possible at all, and
  // modprobe.d lines an insert by file bypasses, by module name: where a "blacklist" line is,
  // and "install" commands with where each is.
  std::set<std::string> module_blacklist;
  bool nomodeset = false;
  std::map<std::string, std::vector<ModuleParam>> params;
  bool modules_disabled = false;  // kernel.modules_disabled = 1
  bool cap_sys_module = true;     // CAP_SYS_MODULE in the inserting process's effective set
  std::map<std::string, std::vector<std::string>> modprobe_blacklist, modprobe_install;
  // What could not be read of the tree without making the model wrong (modules.dep unusable).
  std::vector<Error> problems;
};

// Builds a model from a symvers file and a module tree (/lib/modules/<kver>), both read through
// `root` (paths inside it; RootFs of "/" for paths as given): the full
// vermagic (and so the release) and struct module size come from the tree's own modules,
// dependencies from its modules.dep (or the modules' depends= if it has none).
// With `for_set`, the model covers what those modules need: the symbols they import (and
// module_layout) and the in-tree modules that export them, not the whole kernel. Every symvers
// line is still validated.
[[nodiscard]] Result<KernelModel> load_kernel_model(const RootFs& root, const std::string& symvers_file,
                                                    const std::string& module_dir,
                                                    const std::vector<ModuleInfo>* for_set = nullptr);
// The same for paths on this filesystem.
[[nodiscard]] Result<KernelModel> load_kernel_model(const std::filesystem::path& symvers_file,
                                                    const std::filesystem::path& module_dir,
                                                    const std::vector<ModuleInfo>* for_set = nullptr);

// Where packages put a kernel's image, relative to the system root, in the order tried:
// /boot/vmlinuz-<kver> (most distributions), /lib/modules/<kver>/vmlinuz (Fedora) and
// /usr/lib/modules/<kver>/vmlinuz (Debian's 7.x kernels, usr-merged without a /lib link).
[[nodiscard]] std::vector<std::string> kernel_image_paths(const std::string& release);

// The kernel image of a module tree: <tree>/vmlinuz, or kernel_image_paths() below <root> for
// <root>/[usr/]lib/modules/<kver>.
[[nodiscard]] std::optional<std::filesystem::path> find_kernel_image(const std::filesystem::path& module_dir,
                                                                     const std::string& release);

// Scans a module tree (kernel/, updates/, extra/ ...) into name -> InTreeModule; with `only`,
// just those names and the first module found (modules.dep lines carry each module's full
// dependency closure). Paths in modules.dep, absolute ones included, resolve inside `root`.
// Without a usable modules.dep (missing, unreadable, over its size cap: a problem recorded in
// the result) the tree is walked; a walk that fails is an error.
[[nodiscard]] Result<ModuleTree> scan_module_tree(const RootFs& root, const std::string& module_dir,
                                                  const SymbolSet* only = nullptr);
[[nodiscard]] Result<ModuleTree> scan_module_tree(const std::filesystem::path& module_dir,
                                                  const SymbolSet* only = nullptr);

// For a walked tree: reads the depends= of `names` and of what they depend on, and gives each
// of them its whole closure, as modules.dep would. Unreadable modules are problems of the tree.
void complete_dependencies(const RootFs& root, ModuleTree& tree, const std::vector<std::string>& names);

// The vermagic and struct module size of a kernel, read from a few of its own modules.
struct TreeFacts {
  std::string vermagic;
  uint64_t this_module_size = 0;
  bool signed_modules = false;  // its modules carry signatures: CONFIG_MODULE_SIG
  std::string signer_key_id;    // the build key's id, from that signature
  std::string sample;  // the module they were read from
};
[[nodiscard]] Result<TreeFacts> read_tree_facts(const RootFs& root, const std::map<std::string, InTreeModule>& tree);
[[nodiscard]] Result<TreeFacts> read_tree_facts(const std::map<std::string, InTreeModule>& tree);

// An in-tree module read through the root.
[[nodiscard]] Result<ModuleInfo> read_module(const RootFs& root, const std::string& path, const ReadOptions& options = {});

// Whether a vermagic string has the "modversions" word (the kernel was built with
// CONFIG_MODVERSIONS).
[[nodiscard]] bool vermagic_has_modversions(std::string_view vermagic);

// Built-ins of a module tree from modules.builtin and modules.builtin.modinfo texts: names
// with parm=, parmtype= or version= (they have /sys/module/<name>) into `sysfs`, the rest of
// modules.builtin into `plain`.
void parse_builtins(std::string_view builtin, std::string_view modinfo, std::set<std::string>& sysfs,
                    std::set<std::string>& plain);

// Parses "6.12.94+deb13-amd64" into {6, 12}; {0, 0} if it does not start with digits.
[[nodiscard]] std::pair<int, int> parse_release_version(const std::string& release);

}  // namespace agent::kabi
