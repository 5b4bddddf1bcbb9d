// `agent --check`: the diagnosis of this node (agent/diagnose.h) and the plan the entrypoint
// would carry out (agent/plan.h), printed as text or JSON. Never loads, writes or builds.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>

#include "agent/diagnose.h"

namespace agent {

// Where the entrypoint keeps what it did (agent/lifecycle.h uses the same defaults).
inline constexpr const char* kDefaultStateDir = "/run/intel-gpu-driver";
inline constexpr const char* kDefaultBundleFirmware = "/opt/lib/firmware";
inline constexpr const char* kDefaultFirmwareBase = "/var/lib/intel-gpu-driver/firmware";

struct CheckOptions : DiagnoseOptions {
  std::filesystem::path bundle_firmware = kDefaultBundleFirmware;  // the image's firmware
  std::string firmware_base = kDefaultFirmwareBase;                // host path of the copies
  // The entrypoint's state: which modules it inserted in this boot (an older bundle in use is
  // then "upgrade-pending" rather than someone else's driver). Only read.
  std::filesystem::path state_dir = kDefaultStateDir;
  bool json = false;
  bool verbose = false;
  bool quiet = false;  // text: the summary line only (errors still go to `err`)
};

// The whole command: diagnose, plan, print text or JSON to `out`, input errors to `err`;
// returns the exit code (the decision's, or 2). Text ends with check_summary()'s line and is
// wrapped only on a terminal.
int run_check(const CheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace agent
