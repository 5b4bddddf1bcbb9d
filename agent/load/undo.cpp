#include "agent/load/undo.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "agent/load/actions.h"
#include "agent/load/firmware.h"
#include "agent/load/lifecycle.h"
#include "kabi/text.h"
#include "probes/loaded_modules.h"
#include "probes/policy.h"

namespace agent {
namespace {

bool under(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.size() <= dir.size() + 1) return false;
  const std::string d = dir.back() == '/' ? dir : dir + "/";
  return path.compare(0, d.size(), d) == 0 && path.find("/../") == std::string::npos &&
         path.find("/./") == std::string::npos;
}

std::string module_name_of_file(const std::string& path) {
  std::string base = std::filesystem::path(path).filename().string();
  for (const char* ext : {".ko.xz", ".ko.zst", ".ko.gz", ".ko"})
    if (base.size() > std::string_view(ext).size() && base.ends_with(ext)) {
      base.resize(base.size() - std::string_view(ext).size());
      for (char& c : base)
        if (c == '-') c = '_';
      return base;
    }
  return "";
}

std::string underscores(std::string s) {
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

}  // namespace

Result<bool> undo_insert(const probes::HostRoot& root, const ModuleControl& kernel, const Journal::Inserted& entry) {
  if (entry.build_id.empty())
    return fail(EPERM, "the journal records no build id: not removed (cannot tell it is the one the agent inserted)",
                entry.name);
  auto loaded = probes::probe_loaded_modules(root, "");
  if (!loaded) return tl::unexpected(loaded.error());
  auto m = loaded->modules.find(entry.name);
  if (m == loaded->modules.end()) return false;  // gone already
  const std::string& live_id = m->second.build_id;
  if (live_id != entry.build_id)
    return fail(EPERM, "the live module is " + (live_id.empty() ? std::string("of unknown build") : "another build (" + live_id + ")") +
                           ", the journal's is " + entry.build_id + ": not removed",
                entry.name);
  if (m->second.refcnt.value_or(1) > 0 || !m->second.holders.empty())
    return fail(EBUSY, "in use (refcnt " + (m->second.refcnt ? std::to_string(*m->second.refcnt) : std::string("unknown")) +
                           (m->second.holders.empty() ? "" : ", holders " + join(m->second.holders)) + "), not removed",
                entry.name);
  if (auto r = kernel.remove(entry.name); !r) return tl::unexpected(r.error());
  return true;
}

Result<void> undo_removal(const probes::HostRoot& root, const ModuleControl& kernel, const Journal::Removed& entry,
                          const std::string& options, const UndoScope& scope) {
  if (entry.restore_path.empty()) return fail(ENOENT, "the kernel's tree has no file for it: not inserted again", entry.name);
  const bool in_tree = !scope.release.empty() && (under(entry.restore_path, "/lib/modules/" + scope.release) ||
                                                  under(entry.restore_path, "/usr/lib/modules/" + scope.release));
  if (!in_tree || module_name_of_file(entry.restore_path) != underscores(entry.name))
    return fail(EPERM, "the journal's restore path '" + printable(entry.restore_path) + "' is not " + entry.name +
                           "'s file in the running kernel's module tree: not inserted",
                entry.name);
  auto loaded = probes::probe_loaded_modules(root, "");
  if (loaded && loaded->modules.count(entry.name))
    return fail(EEXIST, "a module of that name is loaded, the removed one was not inserted again", entry.name);
  return restore_module(root, kernel, entry.name, entry.restore_path, options);
}

Result<bool> undo_firmware_path(const probes::HostRoot& root, const std::string& ours, const std::string& previous,
                                const UndoScope& scope) {
  if (!under(ours, scope.firmware_base))
    return fail(EPERM, "the journal's firmware path '" + printable(ours) + "' is not under the agent's firmware directory " +
                           scope.firmware_base + ": not set back",
                kFirmwarePathParam);
  const probes::Policy now = probes::probe_policy(root);
  if (now.firmware_path && *now.firmware_path != ours) return false;
  if (auto r = set_firmware_path(root.fs(), previous); !r) return tl::unexpected(r.error());
  return true;
}

std::vector<ActedStep> journal_steps(const Journal& j) {
  std::vector<ActedStep> steps;
  for (const auto& r : j.removed) steps.push_back({ActedStep::Kind::Removal, r.name, {}, {}, {}, false, false});
  if (j.firmware_previous_path)
    steps.push_back({ActedStep::Kind::Firmware, {}, *j.firmware_previous_path, j.firmware_path, {}, true, false});
  for (const auto& i : j.inserted) steps.push_back({ActedStep::Kind::Insert, i.name, {}, {}, {}, false, false});
  return steps;
}

namespace {

// What undoing `step` does, for the log and for a step left in place.
std::string undo_what(const ActedStep& step) {
  switch (step.kind) {
    case ActedStep::Kind::Insert: return "remove " + step.name;
    case ActedStep::Kind::Dependency: return "remove " + step.name + " (in-tree dependency)";
    case ActedStep::Kind::Removal: return "insert " + step.name + " again";
    case ActedStep::Kind::Firmware: return "set firmware_class.path back to '" + step.before + "'";
  }
  return "undo";
}

// One step undone, `journal` updated when it is.
Result<Undone> undo_one(const UndoContext& ctx, Journal& journal, const ActedStep& step) {
  Undone u{step, true, undo_what(step)};
  switch (step.kind) {
    case ActedStep::Kind::Insert: {
      auto it = std::find_if(journal.inserted.begin(), journal.inserted.end(), [&](const auto& x) { return x.name == step.name; });
      if (it == journal.inserted.end()) {
        u.changed = false;
        return u;
      }
      // A module without a build id cannot be verified later, but this process just inserted it.
      if (step.by_this_process && it->build_id.empty()) {
        if (auto r = ctx.kernel.remove(step.name); !r) return tl::unexpected(r.error());
      } else {
        auto r = undo_insert(ctx.root, ctx.kernel, *it);
        if (!r) return tl::unexpected(r.error());
        u.changed = *r;
      }
      journal.inserted.erase(it);
      return u;
    }
    case ActedStep::Kind::Dependency:
      if (auto r = ctx.kernel.remove(step.name); !r) return tl::unexpected(r.error());
      return u;
    case ActedStep::Kind::Removal: {
      auto it = std::find_if(journal.removed.begin(), journal.removed.end(), [&](const auto& x) { return x.name == step.name; });
      if (it == journal.removed.end()) {
        u.changed = false;
        return u;
      }
      if (auto r = undo_removal(ctx.root, ctx.kernel, *it, ctx.options.of(step.name), ctx.scope); !r)
        return tl::unexpected(r.error());
      journal.removed.erase(it);
      return u;
    }
    case ActedStep::Kind::Firmware: {
      auto back = undo_firmware_path(ctx.root, step.ours, step.before, ctx.scope);
      if (!back) return tl::unexpected(back.error());
      u.changed = *back;
      if (step.first_change) journal.firmware_previous_path.reset();
      journal.firmware_path = step.ours_before;
      return u;
    }
  }
  return u;
}

}  // namespace

UndoReport undo_steps(const UndoContext& ctx, Journal& journal, const std::vector<ActedStep>& steps,
                      const std::function<void()>& save) {
  UndoReport report;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    auto r = undo_one(ctx, journal, *it);
    save();
    if (r) {
      report.undone.push_back(std::move(*r));
    } else {
      // An error about the module itself has the module's name as its path: said once.
      const Error& e = r.error();
      report.not_undone.push_back(undo_what(*it) + ": " + (e.path == it->name ? e.message : e.what()));
    }
  }
  return report;
}

Result<void> check_nfd_file(const std::string& nfd_file, const UndoScope& scope) {
  const std::filesystem::path p(nfd_file);
  if (scope.nfd_dir.empty() || p.filename() != kNfdFile ||
      kabi::normalize_path(p.parent_path().string()) != kabi::normalize_path(scope.nfd_dir))
    return fail(EPERM, "the journal's NFD file is not " + (scope.nfd_dir.empty() ? std::string("<--nfd-dir>") : scope.nfd_dir) + "/" +
                           kNfdFile + ": not removed",
                nfd_file);
  return {};
}

}  // namespace agent
