// The decision: from the node's facts (devices, kernel, conflicts, verdicts, symvers origin,
// build environment, policy) to prebuilt | build | refuse | no-device with its reasons. A pure
// function: no I/O, so every branch is a unit test.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/base/vocabulary.h"
#include "agent/facts/node_signing.h"
#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/rules.h"
#include "probes/build_env.h"
#include "probes/kernel.h"
#include "probes/pci.h"
#include "probes/policy.h"

namespace agent {

inline constexpr int kCheckSchema = 1;

// UpgradePending: an older bundle this agent loaded is in use; the new one waits until it is not.
enum class Decision { Prebuilt, Build, Refuse, NoDevice, UpgradePending };

[[nodiscard]] std::string decision_name(Decision d);  // "prebuilt", "build", "refuse", "no-device", "upgrade-pending"
[[nodiscard]] int exit_code(Decision d);


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
