// The bundle's firmware on the host: the image's firmware files are copied to a directory of the
// host named by their digest (so a node that changes bundle never mixes two sets, and a restart
// finds its copy done), and the kernel's firmware_class.path is pointed there.
#pragma once

#include <string>

#include "agent/facts/bundle_firmware.h"
#include "kabi/result.h"
#include "kabi/root_fs.h"

namespace agent {

// Copies the set to <base>/<digest>/ under `root` (a host path), written under a temporary name
// and renamed into place, so the directory is complete or absent. An existing <base>/<digest>
// is reused. Returns the host path of the directory.
[[nodiscard]] Result<std::string> install_firmware(const kabi::RootFs& root, const BundleFirmware& firmware,
                                                   const std::string& base);

// Writes firmware_class.path (an empty value clears it).
[[nodiscard]] Result<void> set_firmware_path(const kabi::RootFs& root, const std::string& value);

}  // namespace agent
