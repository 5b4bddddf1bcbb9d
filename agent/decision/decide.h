// The decision: from the node's facts (devices, kernel, conflicts, verdicts, symvers origin,
// build environment, policy) to prebuilt | build | refuse | no-device with its reasons. A pure
// function: no I/O, so every branch is a unit test.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/facts/node_signing.h"
#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/rules.h"
#include "probes/build_env.h"
#include "probes/kernel.h"
#include "probes/pci.h"
#include "probes/policy.h"

namespace agent {

// Exit codes of `agent --check` (the README lists them).
inline constexpr int kCheckPrebuilt = 0;   // the prebuilt modules would load
inline constexpr int kCheckBuild = 10;     // a build is needed and possible
inline constexpr int kCheckRefuse = 20;    // the agent would refuse
inline constexpr int kCheckUpgradePending = 21;  // it would wait: its older bundle is in use
inline constexpr int kCheckNoDevice = 30;  // no device this bundle drives
inline constexpr int kCheckInputError = 2; // usage or input error

inline constexpr int kCheckSchema = 1;

// UpgradePending: an older bundle this agent loaded is in use; the new one waits until it is not.
enum class Decision { Prebuilt, Build, Refuse, NoDevice, UpgradePending };

[[nodiscard]] std::string decision_name(Decision d);  // "prebuilt", "build", "refuse", "no-device", "upgrade-pending"
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
inline constexpr const char* kUpgradePending = "upgrade_pending";  // our older bundle, in use
inline constexpr const char* kConflictRemovable = "conflict_removable";    // note
inline constexpr const char* kBundleAlreadyLoaded = "bundle_already_loaded";  // note: same build id
inline constexpr const char* kNodeRefusesLoad = "node_refuses_load";  // no build helps (modules_disabled, ...)
inline constexpr const char* kBuildPossible = "build_possible";
inline constexpr const char* kNoKernelHeaders = "no_kernel_headers";
inline constexpr const char* kHeadersMismatch = "kernel_headers_mismatch";
inline constexpr const char* kBuildUnsignedEnforced = "build_unsigned_enforced";
inline constexpr const char* kSigningKeyUnusable = "signing_key_unusable";    // the files given cannot be used
inline constexpr const char* kSigningKeyUntrusted = "signing_key_untrusted";  // enforcing, not trusted (or unknown)
inline constexpr const char* kBuildSigned = "build_signed";                   // note: who signs, how trusted
// No symvers file: the kernel's own modules show a symbol's CRC, not whether it is GPL-only or
// in which namespace, and a bundle module needs to know.
inline constexpr const char* kSymversFactsUnknown = "symvers_facts_unknown";
}  // namespace check_reason

struct DecisionReason {
  std::string code;
  std::string message;
  std::string hint = {};  // what to do about it (agent/decision/hints.h); "" for a note
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
  // Not the bundle's, but the build this agent inserted earlier in this boot (an older bundle).
  bool ours_previous = false;
  bool removable = false;       // unused, or used only by other removable conflicts
  std::string detail;
};

// Which conflicts may be removed before loading: not built in, and used by nothing but other
// removable conflicts. Sets Conflict::removable and ::detail.
void settle_removability(std::vector<Conflict>& conflicts);

// What the decision is taken from: the node's facts as the probes found them.
struct DecisionFacts {
  const std::vector<kabi::ModuleInfo>& bundle;
  const std::vector<DeviceReport>& devices;
  size_t pci_functions = 0;
  const std::vector<Conflict>& conflicts;
  const kabi::Evaluation& evaluation;
  const kabi::KernelModel& model;        // the CRC table and signing policy the rules used
  const probes::SymversOrigin& symvers;  // where that table came from
  const probes::BuildEnv& build;
  const probes::Policy& policy;
  const SigningFacts* signing = nullptr;  // the operator's signing certificate; none: unsigned builds
};

struct DecisionResult {
  Decision decision = Decision::Refuse;
  std::vector<DecisionReason> reasons;  // the deciding ones first
};

[[nodiscard]] DecisionResult decide(const DecisionFacts& facts);

// The bundle's needs that a table without export records cannot vouch for: for each bundle
// module, "module: symbol (why)" for every symbol whose licence (the module is not GPL) or
// namespace (it may be one the module does not import) the table has not seen.
[[nodiscard]] std::vector<std::string> unknown_export_facts(const std::vector<kabi::ModuleInfo>& bundle,
                                                            const kabi::Symvers& table);

}  // namespace agent
