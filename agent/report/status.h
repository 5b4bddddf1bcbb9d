// The entrypoint's status: what phase it is in, what it decided and why, what it did. Written
// to <state>/status.json (schema 1, atomically) at every change; the README lists its fields.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/decision/decide.h"
#include "agent/facts/build_inputs.h"
#include "agent/facts/bundle_manifest.h"
#include "kabi/rules.h"

namespace agent {

inline constexpr int kStatusSchema = 1;

enum class Phase { Detecting, Building, WaitingForBuild, Loading, Ready, Refused, UpgradePending, Stopping };
[[nodiscard]] const char* phase_name(Phase p);  // "detecting", "waiting-for-build", ...

struct DeviceState {
  DeviceReport report;
  std::string driver_module;       // the module behind the bound driver ("" unbound)
  bool bound = false;              // bound to a driver of the bundle module that matches it
  std::vector<std::string> drm;    // DRM nodes (card0, renderD128) of a display device
};

struct ModuleState {
  kabi::ModuleVerdict verdict;     // path, name, verdict, errno, reasons (symbols, CRCs)
  std::string sha256, build_id;
  bool inserted = false;           // by this run
  bool live = false;
};

struct LoadFailure {
  std::string module;
  int err = 0;
  std::string message;
  std::vector<std::string> kernel_log;  // the kernel's lines about it since the insert
};

struct FirmwareState {
  std::string source_dir, dir, digest;
  size_t files = 0;
  std::optional<std::string> previous_path;  // firmware_class.path before the agent changed it
  std::optional<std::string> path;           // what it is now
  std::string conflict;                      // why it was left alone, if it was
};

// The build branch: how the modules were (or are being) obtained.
struct BuildState {
  std::string mode;                   // "node" (the agent builds), "sidecar" (it waits for one)
  std::optional<BuildResult> result;  // none while building or waiting
  std::string progress;               // while building: "<elapsed> s: <the log's last line>"
};

// The operator's signing certificate (--signing-cert), as the diagnosis judged it.
struct SigningState {
  std::string signer, key_id, trust;  // trust: signing_verdict_name()
  std::string problem;                // the files could not be used: why
  // Not errors: the certificate's validity; a key file its group or others have access to.
  std::vector<std::string> warnings;
};

struct Status {
  std::string agent_version, boot_id, release, kernel_version;
  Phase phase = Phase::Detecting;
  std::string decision;                 // decision_name(), "" before one
  std::string source;                   // "prebuilt", "built", "" when nothing is loaded
  std::string since;                    // when this phase began (set by the writer)
  std::vector<DeviceState> devices;
  std::vector<ModuleState> modules;
  std::vector<DecisionReason> reasons;
  std::vector<Conflict> conflicts;
  std::vector<std::string> removed;     // loaded modules the agent removed (this boot)
  FirmwareState firmware;
  std::optional<LoadFailure> failure;
  std::optional<BuildState> build;      // when the decision was build
  std::optional<SigningState> signing;  // when a signing certificate (or key) is given
  std::string event;                    // the last thing that happened behind the agent's back
  bool fast_path = false;               // ready without a reload: the bundle was live already
  std::optional<BundleManifest> manifest;  // the bundle's, when the image has one (JSON "bundle_manifest")
  std::map<std::string, double> timings_ms;  // "detect_ms", "insert_ms", ... (JSON "timings")
};

[[nodiscard]] nlohmann::json to_json(const Status& s, const std::string& updated);
[[nodiscard]] nlohmann::json to_json(const LoadFailure& f);
[[nodiscard]] nlohmann::json to_json(const BuildState& b);
[[nodiscard]] nlohmann::json to_json(const SigningState& s);

}  // namespace agent
