// The bundle's firmware as the image carries it (its files and their digest), and what to do
// with the kernel's firmware_class.path: pointed at our copy only when it is empty or already
// one of ours; a path someone else set is kept and reported. Installing is the loading room's
// (agent/load/firmware.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kabi/result.h"
#include "kabi/root_fs.h"

namespace agent {

inline constexpr const char* kFirmwarePathParam = "/sys/module/firmware_class/parameters/path";

struct FirmwareFile {
  std::string rel;  // path under the firmware directory ("i915/adlp_guc_70.bin")
  uint64_t size = 0;
  std::string sha256;
};

struct BundleFirmware {
  std::string dir;                  // the image's firmware directory (in the agent's filesystem)
  std::vector<FirmwareFile> files;  // sorted by rel
  std::string digest;               // sha256 over every (rel, sha256); empty without files
};

// Every regular file under `dir` (no links followed). A directory that is not there is an
// empty set, not an error: a bundle may need no firmware.
[[nodiscard]] Result<BundleFirmware> scan_bundle_firmware(const std::filesystem::path& dir);

enum class FirmwarePathAction {
  Set,      // empty: point it at our copy
  Ours,     // already one of our copies (this bundle's or an older one): point it at this one
  Foreign,  // someone else's path: keep it, report a conflict
  Unknown,  // not readable (no firmware_class parameters): leave it alone, report it
};
[[nodiscard]] const char* firmware_path_action_name(FirmwarePathAction a);

// What to do with firmware_class.path, from its current value and our base directory.
[[nodiscard]] FirmwarePathAction firmware_path_action(const std::optional<std::string>& current,
                                                      const std::string& base);

}  // namespace agent
