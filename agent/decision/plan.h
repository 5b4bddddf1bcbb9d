// The plan: what the decision implies the agent does, as data - which loaded modules it removes
// and in which order, which modules it inserts and in which order, where the firmware goes,
// whether a build is needed. `agent --check` prints it; the entrypoint carries it out. A pure
// function of the diagnosis.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "agent/decision/decide.h"
#include "agent/decision/diagnose.h"
#include "agent/facts/bundle_firmware.h"

namespace agent {

// Where the entrypoint keeps what it did, and the image's firmware and its copies on the host.
inline constexpr const char* kDefaultStateDir = "/run/intel-gpu-driver";
inline constexpr const char* kDefaultBundleFirmware = "/opt/lib/firmware";
inline constexpr const char* kDefaultFirmwareBase = "/var/lib/intel-gpu-driver/firmware";

// What a diagnosis and its plan read, for `agent --check` and the entrypoint alike: the node
// (DiagnoseOptions), the image's firmware, and the entrypoint's state (which modules it inserted
// in this boot: an older bundle in use is then "upgrade-pending" rather than someone else's
// driver; only read here).
struct PlanInputs : DiagnoseOptions {
  std::filesystem::path bundle_firmware = kDefaultBundleFirmware;  // the image's firmware
  std::string firmware_base = kDefaultFirmwareBase;                // host path of the copies
  std::filesystem::path state_dir = kDefaultStateDir;
};

struct PlannedRemoval {
  std::string name;
  // Host path of the kernel's own module file of that name, to restore it if the load fails or
  // on `agent unload`; empty when the tree has none (then it cannot be restored).
  std::string restore_path;
  bool ours_previous = false;  // an older bundle this agent loaded
};

struct PlannedInsert {
  std::string name;
  std::string path;          // bundle: in the agent's filesystem; in-tree: a host path
  bool from_bundle = true;   // false: an in-tree dependency that is not loaded yet
  std::string sha256;        // bundle modules: taken when checked, verified again before the insert
  std::string build_id;      // bundle modules: the live module must show it afterwards
};

struct FirmwarePlan {
  BundleFirmware firmware;           // what the image carries (maybe nothing)
  std::string dir;                   // host path of our copy: <base>/<digest>; empty without files
  std::optional<std::string> current;  // firmware_class.path now (unknown: not readable)
  FirmwarePathAction action = FirmwarePathAction::Unknown;
};

struct Plan {
  Decision decision = Decision::Refuse;
  // Every bundle module is live with the bundle's own build: nothing to remove or insert.
  bool fast_path = false;
  std::vector<PlannedRemoval> remove;  // holders before what they hold
  std::vector<PlannedInsert> insert;   // dependencies first
  std::vector<std::string> keep;       // bundle modules already live with the bundle's build
  FirmwarePlan firmware;
  bool build = false;                  // the modules must be built on the node first
};

// How the entrypoint goes on from a diagnosis: load the set, build (or wait for) the modules
// first, refuse, or wait (an older bundle of its own is in use) and decide again later.
enum class Course { Load, Build, Refuse, Wait };
[[nodiscard]] const char* course_name(Course c);  // "load", "build", "refuse", "wait"

// `loaded_built`: the journal says this agent loaded built modules in this boot; `is_built`: the
// diagnosed set is such a build already (its own Build decision is then a refusal). A build is
// also due when an upgrade looks pending only because the modules in use are a build this agent
// loaded, while the image's bundle would still be refused.
[[nodiscard]] Course course_of(const Diagnosis& d, bool loaded_built, bool is_built);

// The bundle modules live with the bundle's build that `journaled` (the modules this agent's
// journal says it inserted) does not name: loaded by hand, or the journal was lost.
[[nodiscard]] std::vector<Conflict> unjournaled_live(const Diagnosis& d, const std::vector<std::string>& journaled);

// `firmware`: the image's firmware set; `firmware_base`: host directory the copies go under.
[[nodiscard]] Plan make_plan(const Diagnosis& d, const BundleFirmware& firmware, const std::string& firmware_base);

}  // namespace agent
