// The entrypoint's acting steps as data, and their undo: one implementation used both by the
// entrypoint's rollback (a later step failed: this attempt's steps) and by `agent unload`
// (another process, later in the boot: the journal's steps). Each undoes
// only what it can verify is the agent's own: a module live with the recorded build id, a
// restore path in the running kernel's own module tree, a firmware path under the agent's
// firmware directory, the NFD file of the agent's name in its features directory. A journal
// that names anything else (edited by hand, written by something else) gets an error naming
// the entry, never an action.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "kabi/result.h"
#include "probes/host_root.h"
#include "probes/module_options.h"

namespace agent {

// Where the agent's own things are: what `agent unload` may touch.
struct UndoScope {
  std::string release;        // the running kernel's: restore paths are in its module tree
  std::string firmware_base;  // host directory of the firmware copies
  std::string nfd_dir;        // the NFD features directory ("" none configured)
};

// One change the entrypoint made, enough to undo it. The entrypoint acts in this order: removals
// (conflicting modules), the firmware path, inserts (in-tree dependencies and bundle modules).
struct ActedStep {
  enum class Kind { Removal, Firmware, Insert, Dependency };
  Kind kind = Kind::Insert;
  std::string name;             // the module (Removal, Insert, Dependency)
  std::string before, ours;     // Firmware: firmware_class.path before the step, and the one it set
  std::string ours_before;      // Firmware: the journal's own path before this step ("" none)
  bool first_change = false;    // Firmware: the journal had no previous path before this step
  bool by_this_process = false; // Insert: this very process inserted it (removable without a build id)
};

// The steps a journal records (all done), in the order they were taken. In-tree dependencies
// are not journaled: `agent unload` leaves them, as modprobe -r of the bundle would not know them.
[[nodiscard]] std::vector<ActedStep> journal_steps(const Journal& j);

// The node and the kernel the undo acts on.
struct UndoContext {
  const probes::HostRoot& root;
  const ModuleControl& kernel;
  const UndoScope& scope;
  const probes::ModuleOptions& options;  // a restored module gets the node's options for it
};

struct Undone {
  ActedStep step;
  bool changed = false;  // false: nothing to do (the module gone already, the path someone else's since)
  std::string what;      // "remove i915", "insert i915 again", "set firmware_class.path back to '...'"
};

struct UndoReport {
  std::vector<Undone> undone;
  std::vector<std::string> not_undone;  // "<what>: <error>", one per step left in place
};

// Undoes `steps` last first. Each undone step leaves `journal` (its entry removed, the firmware
// fields set back), and `save` is called after each step, done or not; a step that cannot be
// undone keeps its entry.
[[nodiscard]] UndoReport undo_steps(const UndoContext& ctx, Journal& journal, const std::vector<ActedStep>& steps,
                                    const std::function<void()>& save);

// Removes a bundle module the agent inserted: true when it was removed, false when it is not
// loaded; an error when the journal has no build id for it, the live module is another build, or
// it is in use.
[[nodiscard]] Result<bool> undo_insert(const probes::HostRoot& root, const ModuleControl& kernel,
                                       const Journal::Inserted& entry);

// Inserts again a module the agent removed, from the kernel's own tree; an error when the path
// is not a module file of that name in /lib/modules/<release>/ (or /usr/lib/modules/<release>/),
// or a module of that name is loaded.
[[nodiscard]] Result<void> undo_removal(const probes::HostRoot& root, const ModuleControl& kernel,
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
