// The undo of each journaled step, one implementation used both by the entrypoint's rollback
// (a later step failed) and by `agent unload` (another process, later in the boot). Each undoes
// only what it can verify is the agent's own: a module live with the recorded build id, a
// restore path in the running kernel's own module tree, a firmware path under the agent's
// firmware directory, the NFD file of the agent's name in its features directory. A journal
// that names anything else (edited by hand, written by something else) gets an error naming
// the entry, never an action.
#pragma once

#include <string>

#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent {

// Where the agent's own things are: what `agent unload` may touch.
struct UndoScope {
  std::string release;        // the running kernel's: restore paths are in its module tree
  std::string firmware_base;  // host directory of the firmware copies
  std::string nfd_dir;        // the NFD features directory ("" none configured)
};

// Removes a bundle module the agent inserted: nothing when it is not loaded; an error when the
// journal has no build id for it, the live module is another build, or it is in use.
[[nodiscard]] Result<void> undo_insert(const probes::HostRoot& root, const KernelModules& kernel,
                                       const Journal::Inserted& entry);

// Inserts again a module the agent removed, from the kernel's own tree; an error when the path
// is not a module file of that name in /lib/modules/<release>/ (or /usr/lib/modules/<release>/),
// or a module of that name is loaded.
[[nodiscard]] Result<void> undo_removal(const probes::HostRoot& root, const KernelModules& kernel,
                                        const Journal::Removed& entry, const std::string& options,
                                        const UndoScope& scope);

// firmware_class.path back to `previous` when it is still `ours` (then true); false when someone
// changed it since (kept: theirs); an error when `ours` is not under the agent's firmware
// directory or the write fails.
[[nodiscard]] Result<bool> undo_firmware_path(const probes::HostRoot& root, const std::string& ours,
                                              const std::string& previous, const UndoScope& scope);

// Whether `nfd_file` is the agent's own NFD file: <scope.nfd_dir>/intel-gpu-driver.
[[nodiscard]] Result<void> check_nfd_file(const std::string& nfd_file, const UndoScope& scope);

}  // namespace agent
