// The running kernel: its release, its own module tree and vermagic, and where its CRCs can be
// trusted from (every symvers layout distributions use, each verified against the kernel's own
// modules, with the in-tree __versions union as the last resort).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "kabi/symvers.h"
#include "probes/host_root.h"

namespace agent::probes {

struct SymversCandidate {
  enum class State {
    Absent,        // no such file
    Unreadable,    // exists but could not be read or parsed (detail says why)
    Rejected,      // read, but the kernel's own modules disagree with its CRCs
    Verified,      // the kernel's own modules agree with it
    Unverifiable,  // read, nothing to compare (kernel without MODVERSIONS, or no own modules)
    NotTried,      // an earlier candidate already won
  };
  std::string path;       // host path ("/usr/src/kernels/<kver>/Module.symvers"), or --symvers as given
  std::string real_path;  // where it is read, for messages ("/host/usr/src/...")
  std::pair<dev_t, ino_t> file_id{};  // which file it is (the same file by two paths is tried once)
  State state = State::NotTried;
  std::string detail;
  size_t compared = 0, mismatched = 0, missing = 0;
  std::vector<std::string> mismatched_symbols;  // the first few, for the report
};

[[nodiscard]] std::string_view candidate_state_name(SymversCandidate::State s) noexcept;

// Where the CRC table came from and why it is trusted.
struct SymversOrigin {
  enum class Kind { File, InTreeUnion, None };
  Kind kind = Kind::None;
  std::string path;           // host path of the chosen file (File)
  bool verified = false;      // File: a sample of own modules agreed with it
  std::string verified_with;  // one line for people: what was compared
  std::vector<std::string> sample;  // own modules the candidates were compared with
  size_t union_modules = 0;         // InTreeUnion: own modules read
  std::vector<std::string> uncovered;  // InTreeUnion: needed symbols no own module records
  std::vector<SymversCandidate> candidates;  // in discovery order
  std::vector<Error> problems;               // own modules that could not be read, CRC conflicts
};

struct RunningKernel {
  std::string release;        // /proc/sys/kernel/osrelease
  std::string proc_version;   // /proc/version
  std::string module_dir;     // host path of its module tree ("/lib/modules/<kver>")
  std::map<std::string, kabi::InTreeModule> in_tree;  // paths are host paths
  std::vector<Error> tree_problems;  // modules.dep not usable, stale entries
  std::string vermagic;       // full, from its own modules
  std::string vermagic_from;  // the module it was read from
  uint64_t this_module_size = 0;
  bool modversions = true;    // "modversions" in the vermagic, and CRCs not all 0
  std::string tree_compression;  // of its own modules: "none", "xz", "zstd", "gzip", or "mixed"
  bool own_modules_signed = false;  // the sample of own modules carries signatures
  kabi::Symvers symvers;
  SymversOrigin symvers_origin;
  // KernelProbeOptions::also_verify, judged against the same sample (never the CRC table).
  std::optional<SymversCandidate> also_verified;
};

struct KernelProbeOptions {
  std::optional<std::filesystem::path> symvers_override;  // --symvers, a path on this filesystem
  std::vector<std::string> prefer_sample;  // own modules to verify with first (the bundle's dependencies)
  std::set<std::string> needed_symbols;    // the bundle's imports: the union may stop once they are covered
  size_t sample_size = 12;
  // A symvers file on this filesystem to judge as the candidates are (Verified, Rejected,
  // Unverifiable, Unreadable) without taking it as the CRC table: a Driver Toolkit image's
  // headers, usable only when they are proven the running kernel's.
  std::optional<std::filesystem::path> also_verify;
};

// /proc/sys/kernel/osrelease (trimmed).
[[nodiscard]] Result<std::string> probe_release(const HostRoot& root);

// /proc/sys/kernel/random/boot_id (trimmed): which boot the journal and the status belong to.
// Unreadable or empty is an error.
[[nodiscard]] Result<std::string> probe_boot_id(const HostRoot& root);

// The host path of the running kernel's image (the first of kabi::kernel_image_paths that is a
// regular file), or nothing.
[[nodiscard]] std::optional<std::string> find_kernel_image(const HostRoot& root, const std::string& release);

// Host paths of the module tree, in the order they are tried.
[[nodiscard]] std::vector<std::string> module_dir_candidates(const std::string& release);
// Host paths of symvers files for a release, in DESIGN.md's order (the override comes first and
// is not listed here).
[[nodiscard]] std::vector<std::string> symvers_candidates(const std::string& release);

// Compares a CRC table with the __versions of modules of the same kernel.
struct CrcAgreement {
  size_t compared = 0, mismatched = 0, missing = 0;
  std::vector<std::string> mismatched_symbols;
  std::vector<std::string> missing_symbols;
};
[[nodiscard]] CrcAgreement compare_with_modules(const kabi::Symvers& table, const std::vector<kabi::ModuleInfo>& sample);

// Builds a (partial) CRC table from a kernel's own modules: their __versions entries (the CRCs
// they were linked against) and their exports that carry CRCs. `owner_of` names the module that
// exports a symbol (modules.symbols); unnamed symbols are taken as vmlinux's.
[[nodiscard]] Result<kabi::Symvers> union_of_modules(const std::vector<kabi::ModuleInfo>& modules,
                                                     const std::map<std::string, std::string>& owner_of,
                                                     const std::string& source);

// modules.symbols text ("alias symbol:NAME MODULE") -> symbol -> module.
[[nodiscard]] std::map<std::string, std::string> parse_modules_symbols(std::string_view text);

// Release, module tree, vermagic, symvers (discovered and verified, or the union fallback).
[[nodiscard]] Result<RunningKernel> probe_kernel(const HostRoot& root, const KernelProbeOptions& options = {});

}  // namespace agent::probes
