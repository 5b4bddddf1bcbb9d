// The entrypoint's acting steps (agent/load/entrypoint.h): the plan carried out, each step
// journaled before it acts, and this attempt's steps undone when one fails.
#include "agent/load/entrypoint.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "agent/base/state_files.h"
#include "agent/decision/plan.h"
#include "agent/load/actions.h"
#include "agent/load/firmware.h"
#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "agent/load/undo.h"
#include "agent/load/watch.h"
#include "agent/report/log.h"
#include "agent/report/status.h"
#include "kabi/text.h"
#include "probes/loaded_modules.h"
#include "probes/module_options.h"

namespace agent {

// Write-ahead: the step is recorded before it acts; one that cannot be is not taken.
Entrypoint::StepFailure Entrypoint::unrecorded(const std::string& what, const Error& e) {
  return {reason::kJournalUnwritable, what, Error{e.code, "not done, since it could not be recorded first: " + e.what(), ""}, {}};
}

// A conflicting module out (holders come first in the plan).
std::optional<Entrypoint::StepFailure> Entrypoint::remove_conflict(const PlannedRemoval& r) {
  if (r.ours_previous) {
    // An older bundle's module is not the kernel's own: it is not restored (its file went with
    // the older image), and no longer ours to unload once it is gone.
    if (auto done = kernel_.remove(r.name); !done) return StepFailure{reason::kRemoveFailed, r.name, done.error(), {}};
    std::erase_if(journal_.inserted, [&](const auto& x) { return x.name == r.name; });
    if (auto w = record(); !w) return unrecorded(r.name, w.error());
  } else {
    journal_.removed.push_back({r.name, r.restore_path, false});
    if (auto w = record(); !w) {
      journal_.removed.pop_back();
      return unrecorded(r.name, w.error());
    }
    if (auto done = kernel_.remove(r.name); !done) {
      journal_.removed.pop_back();
      save_journal_or_log();
      return StepFailure{reason::kRemoveFailed, r.name, done.error(), {}};
    }
    journal_.removed.back().done = true;
    steps_.push_back({ActedStep::Kind::Removal, r.name, {}, {}, {}, false, false});
    if (auto w = record(); !w) return unrecorded(r.name, w.error());
  }
  log_line(spdlog::level::info, "loading", "removed " + r.name + (r.ours_previous ? " (an older bundle)" : ""));
  status_.removed.push_back(r.name);
  return std::nullopt;
}

// The firmware: our copy, and firmware_class.path pointing at it when that is ours to set.
std::optional<Entrypoint::StepFailure> Entrypoint::point_firmware(const FirmwarePlan& fp) {
  if (fp.firmware.files.empty()) return std::nullopt;
  auto dir = install_firmware(root_.fs(), fp.firmware, o_.check.firmware_base);
  if (!dir) return StepFailure{reason::kFirmwareFailed, "firmware", dir.error(), {}};
  switch (fp.action) {
    case FirmwarePathAction::Set:
    case FirmwarePathAction::Ours: {
      const std::string before = fp.current.value_or("");
      if (before != *dir) {
        ActedStep step{ActedStep::Kind::Firmware, {}, before, *dir, journal_.firmware_path,
                       !journal_.firmware_previous_path.has_value(), false};
        if (step.first_change) journal_.firmware_previous_path = before;
        journal_.firmware_path = *dir;
        journal_.firmware_done = false;
        auto forget = [&] {
          if (step.first_change) journal_.firmware_previous_path.reset();
          journal_.firmware_path = step.ours_before;
          journal_.firmware_done = true;
        };
        if (auto w = record(); !w) {
          forget();
          return unrecorded("firmware", w.error());
        }
        if (auto set = set_firmware_path(root_.fs(), *dir); !set) {
          forget();
          save_journal_or_log();
          return StepFailure{reason::kFirmwareFailed, "firmware", set.error(), {}};
        }
        journal_.firmware_done = true;
        steps_.push_back(std::move(step));
        if (auto w = record(); !w) return unrecorded("firmware", w.error());
        log_line(spdlog::level::info, "loading", "firmware_class.path: '" + before + "' -> '" + *dir + "'");
      }
      status_.firmware.path = *dir;
      status_.firmware.previous_path = journal_.firmware_previous_path;
      break;
    }
    case FirmwarePathAction::Foreign:
      status_.firmware.conflict = "firmware_class.path is '" + *fp.current +
                                  "', set by someone else: kept; the bundle's firmware is in " + *dir;
      note(reason::kFirmwarePathForeign, status_.firmware.conflict);
      log_line(spdlog::level::warn, "loading", status_.firmware.conflict);
      break;
    case FirmwarePathAction::Unknown:
      status_.firmware.conflict = std::string(kFirmwarePathParam) + " is not readable: left alone";
      note(reason::kFirmwarePathForeign, status_.firmware.conflict);
      log_line(spdlog::level::warn, "loading", status_.firmware.conflict);
      break;
  }
  return std::nullopt;
}

// One insert, from the bytes that were checked. A bundle module is recorded as intended before
// the insert call: a kill -9 while the kernel runs its init leaves a record the next agent
// reconciles.
std::optional<Entrypoint::StepFailure> Entrypoint::insert_module(const PlannedInsert& i, const probes::ModuleOptions& options,
                                                                 std::optional<KernelLog>& klog, double& insert_ms) {
  if (auto sig = watch_.pending_signal()) {
    interrupted_ = sig;
    if (sig->kind == WatchEvent::Kind::Terminate)
      return StepFailure{reason::kInsertFailed, i.name, Error{EINTR, "interrupted by " + sig->signal, ""}, {}};
  }
  auto file = open_for_insert(i, root_);
  if (!file)
    return StepFailure{file.error().code == EIO ? reason::kNotTheCheckedModule : reason::kInsertFailed, i.name,
                       file.error(), {}};
  if (i.from_bundle) {
    std::erase_if(journal_.inserted, [&](const auto& x) { return x.name == i.name; });  // not live: stale
    journal_.inserted.push_back({i.name, i.build_id, false});
    journal_.source = source_;
    if (auto w = record(); !w) {
      journal_.inserted.pop_back();
      return unrecorded(i.name, w.error());
    }
  }
  if (klog) (void)klog->read_new();
  const auto t = Clock::now();
  auto done = kernel_.insert(*file, i.name, options.of(i.name));
  insert_ms += ms_since(t);
  if (!done) {
    if (i.from_bundle) {
      journal_.inserted.pop_back();
      save_journal_or_log();
    }
    return StepFailure{reason::kInsertFailed, i.name, done.error(),
                       klog ? lines_about(klog->read_new(), i.name) : std::vector<std::string>{}};
  }
  steps_.push_back({i.from_bundle ? ActedStep::Kind::Insert : ActedStep::Kind::Dependency, i.name, {}, {}, {}, false, true});
  if (i.from_bundle) {
    journal_.inserted.back().done = true;
    for (auto& m : status_.modules)
      if (m.verdict.name == i.name) m.inserted = m.live = true;
    if (auto w = record(); !w) return unrecorded(i.name, w.error());
  }
  const std::string opts = options.of(i.name);
  log_line(spdlog::level::info, "loading",
           "inserted " + i.name + (i.from_bundle ? "" : " (in-tree dependency)") + (opts.empty() ? "" : " with " + opts));
  if (i.from_bundle && !i.build_id.empty()) {
    auto live = probes::probe_build_id(root_, i.name);
    if (!live) return StepFailure{reason::kNotTheCheckedModule, i.name, live.error(), {}};
    if (*live != i.build_id)
      return StepFailure{reason::kNotTheCheckedModule, i.name,
                         Error{EIO, "the live module's build id is '" + *live + "', the checked one's " + i.build_id, ""},
                         {}};
  }
  return std::nullopt;
}

// The plan's acting steps in order - conflicts out, the firmware, the inserts - and on the
// first failure this attempt's steps undone.
bool Entrypoint::act(const Plan& plan) {
  steps_.clear();
  const probes::ModuleOptions options = probes::probe_module_options(root_);
  for (const auto& e : options.problems) log_line(spdlog::level::warn, "", "module options: " + e.what());
  std::optional<KernelLog> klog;
  if (auto k = KernelLog::open()) klog.emplace(std::move(*k));
  else log_line(spdlog::level::warn, "", k.error().what() + ": a failed insert will carry no kernel lines");

  std::optional<StepFailure> failure;
  for (const auto& r : plan.remove)
    if ((failure = remove_conflict(r))) break;
  if (!failure) failure = point_firmware(plan.firmware);
  double insert_ms = 0;
  if (!failure)
    for (const auto& i : plan.insert)
      if ((failure = insert_module(i, options, klog, insert_ms))) break;
  if (failure) {
    // The module's name is the error's path when it is about the module itself.
    const Error& e = failure->error;
    const std::string message = e.path == failure->module ? e.message : e.what();
    status_.failure = LoadFailure{failure->module, e.code, message, std::move(failure->kernel_lines)};
    note(failure->code, failure->module + ": " + message);
    rollback();
    return false;
  }
  status_.timings_ms["insert_ms"] = insert_ms;
  write_status();
  return true;
}

// This attempt's steps undone last first, with the same undo `agent unload` uses.
void Entrypoint::rollback() {
  const UndoScope scope = undo_scope();
  const probes::ModuleOptions options = probes::probe_module_options(root_);
  const UndoReport report = undo_steps(UndoContext{root_, kernel_, scope, options}, journal_, steps_,
                                       [this] { save_journal_or_log(); });
  steps_.clear();
  for (const auto& u : report.undone) {
    log_line(spdlog::level::info, "loading", "rollback: " + u.what);
    if (u.step.kind == ActedStep::Kind::Removal) std::erase(status_.removed, u.step.name);
    if (u.step.kind == ActedStep::Kind::Firmware && u.changed) status_.firmware.path = u.step.before;
  }
  for (const auto& n : report.not_undone) log_line(spdlog::level::err, "loading", "rollback: could not " + n);
  for (auto& m : status_.modules) m.inserted = m.live = false;
  if (!report.not_undone.empty()) note(reason::kRollbackIncomplete, join(report.not_undone, "; "));
}

}  // namespace agent
