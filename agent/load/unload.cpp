// `agent unload`: undoes what the entrypoint did in this boot, from its journal: the bundle's
// modules removed in reverse order when unused, the modules it removed inserted again,
// firmware_class.path set back, the NFD file and the ready file removed. What cannot be undone
// is listed (exit 1), never skipped silently.
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/base/state_files.h"
#include "agent/load/actions.h"
#include "agent/load/firmware.h"
#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "agent/load/lifecycle.h"
#include "agent/load/undo.h"
#include "kabi/text.h"
#include "probes/kernel.h"
#include "probes/loaded_modules.h"
#include "probes/module_options.h"
#include "probes/policy.h"

namespace agent {

int run_unload(const UnloadOptions& o, std::ostream& out, std::ostream& err) {
  auto kernel = KernelModules::open();
  if (!kernel) {
    err << "agent: unload: " << printable(kernel.error().what()) << '\n';
    return kExitInputError;
  }
  return run_unload(o, *kernel, out, err);
}

int run_unload(const UnloadOptions& o, const ModuleControl& kernel, std::ostream& out, std::ostream& err) {
  auto input_error = [&](const std::string& what) {
    err << "agent: unload: " << printable(what) << '\n';
    return kExitInputError;
  };
  auto root = probes::HostRoot::from_cli_or_env(o.root);
  if (!root) return input_error(root.error().what());
  auto live = kabi::RootFs::open("/");
  if (!live) return input_error(live.error().what());
  auto state = WritableDir::open(*live, o.state_dir.string(), "state directory");
  if (!state) return input_error(state.error().what());
  // The entrypoint may be running (a preStop hook runs before its SIGTERM): it holds the lock,
  // and will see the modules go. Without it, the lock keeps a starting agent out meanwhile.
  auto lock = InstanceLock::acquire(*state);
  auto boot_id = probes::probe_boot_id(*root);
  if (!boot_id) return input_error(boot_id.error().what());
  auto journal = load_journal(*state, *boot_id);
  if (!journal) return input_error(journal.error().what());

  auto release = root->read_value("/proc/sys/kernel/osrelease");
  const UndoScope scope{release ? *release : std::string(), o.firmware_base, o.nfd_dir ? o.nfd_dir->string() : std::string()};

  std::vector<std::string> removed, restored, not_undone;
  std::string firmware_note;
  if (auto r = state->remove_any(kReadyFile); !r) not_undone.push_back(r.error().what());
  // Intended steps of an agent that died between recording and marking them: what the kernel
  // shows done is undone below like the rest.
  {
    KernelNow now;
    if (auto loaded = probes::probe_loaded_modules(*root, "")) {
      for (const auto& [name, m] : loaded->modules) now.loaded[name] = m.build_id;
    } else {
      return input_error(loaded.error().what());
    }
    now.firmware_path = probes::probe_policy(*root).firmware_path;
    for (const auto& line : reconcile(*journal, now)) out << "journal: " << printable(line) << '\n';
  }

  // The journal's steps, last first, with the entrypoint's own undo: each module only when it is
  // the recorded build and unused, each removed one once its name is free again, the firmware
  // path unless someone changed it since.
  const probes::ModuleOptions options = probes::probe_module_options(*root);
  const UndoReport report = undo_steps(UndoContext{*root, kernel, scope, options}, *journal, journal_steps(*journal),
                                       [&] { (void)save_journal(*state, *journal); });
  for (const auto& u : report.undone) {
    switch (u.step.kind) {
      case ActedStep::Kind::Insert:
      case ActedStep::Kind::Dependency:
        if (u.changed) removed.push_back(u.step.name);
        break;
      case ActedStep::Kind::Removal: restored.push_back(u.step.name); break;
      case ActedStep::Kind::Firmware:
        firmware_note = u.changed ? "firmware_class.path set back to '" + u.step.before + "'"
                                  : "firmware_class.path was changed by someone else since: kept";
        break;
    }
  }
  not_undone.insert(not_undone.end(), report.not_undone.begin(), report.not_undone.end());

  if (!journal->nfd_file.empty()) {
    const std::filesystem::path nfd(journal->nfd_file);
    auto ok = check_nfd_file(journal->nfd_file, scope);
    auto dir = ok ? WritableDir::open(*live, nfd.parent_path().string(), "NFD features directory")
                  : Result<WritableDir>(tl::unexpected(ok.error()));
    auto r = dir ? dir->remove(nfd.filename().string()) : Result<void>(tl::unexpected(dir.error()));
    if (r) journal->nfd_file.clear();
    else not_undone.push_back(r.error().what());
  }
  if (auto w = save_journal(*state, *journal); !w) not_undone.push_back(w.error().what());

  if (o.json) {
    out << safe_dump(nlohmann::json{{"schema", 1},
                                    {"removed", removed},
                                    {"restored", restored},
                                    {"firmware", firmware_note.empty() ? nlohmann::json(nullptr) : nlohmann::json(firmware_note)},
                                    {"not_undone", not_undone}})
        << '\n';
  } else {
    out << "removed: " << (removed.empty() ? "nothing" : join(removed)) << '\n'
        << "restored: " << (restored.empty() ? "nothing" : join(restored)) << '\n';
    if (!firmware_note.empty()) out << firmware_note << '\n';
    for (const auto& n : not_undone) out << "not undone: " << printable(n) << '\n';
  }
  return not_undone.empty() ? kUnloadDone : kUnloadIncomplete;
}

}  // namespace agent
