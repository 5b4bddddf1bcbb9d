// `agent --check`: a read-only diagnosis of this node - its GPUs, its running kernel and where
// that kernel's CRCs came from, what is loaded, the signing policy - and the decision the agent
// would take with the bundle it carries, with the reasons. Never loads, writes or builds.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "kabi/rules.h"
#include "probes/build_env.h"
#include "probes/host_root.h"
#include "probes/kernel.h"
#include "probes/loaded_modules.h"
#include "probes/pci.h"
#include "probes/policy.h"

namespace agent {

struct CheckOptions {
  std::optional<std::filesystem::path> root;  // --root; else $HOST_ROOT; else "/"
  // --bundle: the shipped modules (every .ko, .ko.xz, .ko.zst, .ko.gz under it). Empty:
  // <bundle_base>/<running kver> if it exists, else the only directory in bundle_base.
  std::filesystem::path bundle;
  // Where the image keeps its bundles: a path in the agent's own filesystem, not under --root.
  std::filesystem::path bundle_base = "/opt/lib/modules";
  std::optional<std::filesystem::path> symvers;  // --symvers: tried first, verified like the others
  // --policy strict|upstream for a symbol missing from __versions; default: strict for Debian
  // kernels (/proc/version says "Debian"), upstream otherwise.
  std::optional<kabi::MissingVersionPolicy> policy;
  std::filesystem::path pci_ids;  // empty: this image's pci.ids
  probes::PciBackend pci_backend = probes::PciBackend::Auto;
  bool json = false;
  bool verbose = false;
};

// Exit codes of `agent --check` (the README lists them).
inline constexpr int kCheckPrebuilt = 0;   // the prebuilt modules would load
inline constexpr int kCheckBuild = 10;     // a build is needed and possible
inline constexpr int kCheckRefuse = 20;    // the agent would refuse
inline constexpr int kCheckNoDevice = 30;  // no device this bundle drives
inline constexpr int kCheckInputError = 2; // usage or input error

inline constexpr int kCheckSchema = 1;

enum class Decision { Prebuilt, Build, Refuse, NoDevice };

[[nodiscard]] std::string decision_name(Decision d);  // "prebuilt", "build", "refuse", "no-device"
[[nodiscard]] int exit_code(Decision d);

// Stable codes of the decision's reasons (the README lists them).
namespace check_reason {
inline constexpr const char* kNoDevice = "no_device";
inline constexpr const char* kModulesLoadable = "modules_loadable";
inline constexpr const char* kModulesRefused = "modules_refused";
inline constexpr const char* kSymversPartial = "symvers_partial";          // union covers all: note
inline constexpr const char* kSymversIncomplete = "symvers_incomplete";    // union misses symbols
inline constexpr const char* kSymversUnverified = "symvers_unverified";    // note
inline constexpr const char* kConflictInUse = "conflict_in_use";
inline constexpr const char* kConflictBuiltin = "conflict_builtin";
inline constexpr const char* kConflictRemovable = "conflict_removable";    // note
inline constexpr const char* kBundleAlreadyLoaded = "bundle_already_loaded";  // note: same build id
inline constexpr const char* kBuildPossible = "build_possible";
inline constexpr const char* kNoKernelHeaders = "no_kernel_headers";
inline constexpr const char* kHeadersMismatch = "kernel_headers_mismatch";
inline constexpr const char* kBuildUnsignedEnforced = "build_unsigned_enforced";
}  // namespace check_reason

struct DecisionReason {
  std::string code;
  std::string message;
};

struct DeviceReport {
  probes::PciDevice device;
  std::vector<std::string> bundle_modules;  // bundle modules whose aliases match; empty: not handled
};

// A bundle module whose name is already live in the kernel.
struct Conflict {
  std::string name;
  bool builtin = false;
  std::optional<int> refcnt;
  std::vector<std::string> holders;
  std::string srcversion;
  std::string build_id;
  // The bundle's own module is loaded: same build id (or, failing that, same srcversion).
  bool same_as_bundle = false;
  bool removable = false;       // unused, or used only by other removable conflicts
  std::string detail;
};

struct CheckReport {
  std::string root;
  std::string bundle_dir;
  std::vector<kabi::ModuleInfo> bundle;
  probes::PciInventory pci;
  std::vector<DeviceReport> devices;  // every device the bundle drives, and every display device
  probes::RunningKernel kernel;
  probes::ModuleInventory loaded;
  probes::Policy policy;
  probes::BuildEnv build;
  std::string certificates;  // where the kernel's module-signing certificates came from, or why not
  kabi::KernelModel model;
  std::vector<Conflict> conflicts;
  kabi::Evaluation evaluation;
  Decision decision = Decision::Refuse;
  std::vector<DecisionReason> reasons;  // the decision's, first the deciding ones
  std::vector<Error> problems;          // what could not be read (never silently empty)
};

// Probes the node and decides. An error is a usage or input error (exit 2): no readable node,
// no bundle, an unreadable module.
[[nodiscard]] Result<CheckReport> diagnose(const CheckOptions& options);

[[nodiscard]] nlohmann::json check_json(const CheckReport& report);
[[nodiscard]] std::string check_text(const CheckReport& report, bool verbose = false);

// The whole command: diagnose, print text or JSON to `out`, input errors to `err`; returns the
// exit code.
int run_check(const CheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace agent
