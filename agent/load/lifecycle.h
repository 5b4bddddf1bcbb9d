// The entrypoint (`agent`, `agent run`) and `agent unload`: the driver container's lifecycle.
//
//   lock -> detect (diagnose: probes + the pure decision) -> plan -> act -> ready -> watch
//
// Acting is an ordered list of steps (remove conflicts, firmware, inserts), each of which leaves
// its undo on a stack: when a later step fails, the stack runs backwards, so the node is left as
// it was found. What was done is also kept in <state>/undo.json, from which `agent unload`
// (or --unload-on-exit) undoes it in another process, later in the same boot.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>

#include "agent/base/vocabulary.h"
#include "agent/build/build.h"
#include "agent/decision/plan.h"
#include "agent/load/kernel_modules.h"
#include "agent/load/watch.h"

namespace agent {

inline constexpr const char* kNfdFile = "intel-gpu-driver";
// The directory NFD reads local features from (a hostPath in the DaemonSet).
inline constexpr const char* kDefaultNfdDir = "/etc/kubernetes/node-feature-discovery/features.d";

// When the prebuilt modules would be refused and a build is possible: the agent builds them
// (node), waits for a Driver Toolkit sidecar's `agent build` to leave them in the shared cache
// (sidecar), or refuses (off).
enum class BuildMode { Node, Sidecar, Off };
[[nodiscard]] const char* build_mode_name(BuildMode m);  // "node", "sidecar", "off"

struct RunOptions {
  PlanInputs check;  // host root, bundle, firmware, PCI
  BuildMode build_mode = BuildMode::Node;
  // The build step's sources, cache, timeout (node: the build's; sidecar: the wait's), signing.
  // Its root is check.root.
  BuildOptions build;
  std::filesystem::path state_dir = kDefaultStateDir;
  std::optional<std::filesystem::path> nfd_dir;  // Node Feature Discovery features.d; none: no file
  bool exit_on_refuse = false;
  bool unload_on_exit = false;
  std::chrono::seconds bind_timeout{60};     // for the devices to bind after the inserts
  std::chrono::seconds retry_interval{60};   // upgrade-pending, waiting-for-build: decide again
  std::chrono::seconds recheck_interval{30}; // while ready: check even without a uevent
  std::string agent_version;
};

int run_entrypoint(const RunOptions& options);

// What the entrypoint acts through and waits on, opened once the state directory is locked
// (a failure is then a refused status, not a bare exit). The real ones: libkmod and the
// signal/uevent watch; the unit tests give fakes.
struct EntrypointSeams {
  std::function<Result<std::unique_ptr<ModuleControl>>()> kernel;
  std::function<Result<std::unique_ptr<Events>>()> events;
};
int run_entrypoint(const RunOptions& options, const EntrypointSeams& seams);

struct UnloadOptions {
  std::optional<std::filesystem::path> root;
  std::filesystem::path state_dir = kDefaultStateDir;  // the journal names the NFD file to remove
  // What is the agent's own: a journal naming anything outside them is not acted on.
  std::string firmware_base = kDefaultFirmwareBase;
  std::optional<std::filesystem::path> nfd_dir;
  bool json = false;
};

int run_unload(const UnloadOptions& options, std::ostream& out, std::ostream& err);
// The same, acting through `kernel` (the unit tests' fake).
int run_unload(const UnloadOptions& options, const ModuleControl& kernel, std::ostream& out, std::ostream& err);

}  // namespace agent
