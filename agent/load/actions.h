// Steps the entrypoint and `agent unload` share: opening a module for the kernel (verified),
// restoring a module the agent removed, and reading what the live kernel shows of a module.
#pragma once

#include <string>

#include "agent/decision/plan.h"
#include "agent/load/kernel_modules.h"
#include "kabi/fd.h"
#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent {

// Opens the file of a planned insert: a bundle module from the agent's own filesystem, its
// bytes hashed again and compared with the sha256 taken when it was checked (EIO when they
// differ); an in-tree module through the host root.
[[nodiscard]] Result<Fd> open_for_insert(const PlannedInsert& insert, const probes::HostRoot& root);

// Inserts again a module the agent removed, from the kernel's own tree (a host path).
[[nodiscard]] Result<void> restore_module(const probes::HostRoot& root, const ModuleControl& kernel,
                                          const std::string& name, const std::string& restore_path,
                                          const std::string& options);

}  // namespace agent
