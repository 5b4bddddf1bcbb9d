#include "agent/decision/plan.h"

#include <algorithm>
#include <functional>
#include <set>

#include "kabi/root_fs.h"

namespace agent {

Plan make_plan(const Diagnosis& d, const BundleFirmware& firmware, const std::string& firmware_base) {
  Plan p;
  p.decision = d.decision;
  p.firmware.firmware = firmware;
  p.firmware.current = d.policy.firmware_path;
  if (!firmware.digest.empty()) {
    p.firmware.dir = kabi::normalize_path(firmware_base) + "/" + firmware.digest;
    p.firmware.action = firmware_path_action(d.policy.firmware_path, firmware_base);
  }
  if (d.decision == Decision::Build) p.build = true;
  if (d.decision != Decision::Prebuilt) return p;

  std::set<std::string> bundle_names, keep;
  for (const auto& m : d.bundle) bundle_names.insert(m.name);
  for (const auto& c : d.conflicts)
    if (c.same_as_bundle) keep.insert(c.name);

  // Removals: the removable conflicts, each after every one of them that holds it.
  std::vector<const Conflict*> pending;
  for (const auto& c : d.conflicts)
    if (c.removable && !c.same_as_bundle) pending.push_back(&c);
  std::set<std::string> to_remove, removed;
  for (const auto* c : pending) to_remove.insert(c->name);
  while (!pending.empty()) {
    auto ready = std::find_if(pending.begin(), pending.end(), [&](const Conflict* c) {
      return std::all_of(c->holders.begin(), c->holders.end(),
                         [&](const std::string& h) { return !to_remove.count(h) || removed.count(h); });
    });
    if (ready == pending.end()) ready = pending.begin();  // a cycle the kernel cannot have: keep going
    const Conflict* c = *ready;
    pending.erase(ready);
    removed.insert(c->name);
    PlannedRemoval r{c->name, {}, c->ours_previous};
    if (auto it = d.kernel.in_tree.find(c->name); it != d.kernel.in_tree.end()) r.restore_path = it->second.path.string();
    p.remove.push_back(std::move(r));
  }

  // Inserts, in the evaluation's load order; in-tree dependencies not yet loaded go first, each
  // after its own.
  std::set<std::string> live, planned;
  for (const auto& [name, l] : d.loaded.modules)
    if (!to_remove.count(name)) live.insert(name);
  std::function<void(const std::string&)> need_in_tree = [&](const std::string& name) {
    if (planned.count(name) || live.count(name) || bundle_names.count(name)) return;
    auto it = d.kernel.in_tree.find(name);
    if (it == d.kernel.in_tree.end()) return;  // the verdict already names what is missing
    planned.insert(name);
    for (const auto& dep : it->second.depends) need_in_tree(dep);
    p.insert.push_back({name, it->second.path.string(), false, {}, {}});
  };
  for (const auto& v : d.evaluation.modules) {
    if (keep.count(v.name)) {
      p.keep.push_back(v.name);
      continue;
    }
    for (const auto& dep : v.load_after) need_in_tree(dep);
    auto m = std::find_if(d.bundle.begin(), d.bundle.end(), [&](const auto& b) { return b.name == v.name; });
    if (m == d.bundle.end()) continue;
    planned.insert(m->name);
    p.insert.push_back({m->name, m->path, true, m->sha256, m->build_id});
  }
  p.fast_path = p.remove.empty() && std::none_of(p.insert.begin(), p.insert.end(), [](const auto& i) { return i.from_bundle; });
  return p;
}

const char* course_name(Course c) {
  switch (c) {
    case Course::Load: return "load";
    case Course::Build: return "build";
    case Course::Refuse: return "refuse";
    case Course::Wait: return "wait";
  }
  return "refuse";
}

Course course_of(const Diagnosis& d, bool loaded_built, bool is_built) {
  const bool refused = std::any_of(d.evaluation.modules.begin(), d.evaluation.modules.end(),
                                   [](const auto& m) { return m.verdict == kabi::Verdict::Refused; });
  switch (d.decision) {
    case Decision::Prebuilt: return Course::Load;
    case Decision::Build: return is_built ? Course::Refuse : Course::Build;
    case Decision::UpgradePending:
      return !is_built && loaded_built && refused && d.build.possible ? Course::Build : Course::Wait;
    case Decision::NoDevice:
    case Decision::Refuse: return Course::Refuse;
  }
  return Course::Refuse;
}

std::vector<Conflict> unjournaled_live(const Diagnosis& d, const std::vector<std::string>& journaled) {
  std::vector<Conflict> out;
  for (const auto& c : d.conflicts)
    if (c.same_as_bundle && std::find(journaled.begin(), journaled.end(), c.name) == journaled.end())
      out.push_back(c);
  return out;
}

}  // namespace agent
