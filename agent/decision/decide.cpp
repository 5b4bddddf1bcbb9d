#include "agent/decision/decide.h"

#include <algorithm>
#include <cstddef>
#include <set>

#include "kabi/text.h"

namespace agent {

// Not built in, and used by nothing but other removable conflicts (each dependent module holds one reference; more references mean
// a user - an open device, fbcon). The greatest set with that property, found by elimination.
void settle_removability(std::vector<Conflict>& conflicts) {
  std::set<std::string> removable;
  for (const auto& c : conflicts)
    if (!c.builtin && c.refcnt) removable.insert(c.name);
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& c : conflicts) {
      if (!removable.count(c.name) || c.same_as_bundle) continue;
      const bool foreign_holder =
          std::any_of(c.holders.begin(), c.holders.end(), [&](const std::string& h) { return !removable.count(h); });
      const int users = *c.refcnt - static_cast<int>(c.holders.size());
      if (foreign_holder || users > 0) {
        removable.erase(c.name);
        changed = true;
      }
    }
  }
  for (auto& c : conflicts) {
    c.removable = removable.count(c.name) > 0;
    if (c.builtin) {
      c.detail = "built into the kernel: cannot be replaced";
    } else if (c.same_as_bundle) {
      c.detail = "the bundle's own module (build id " + (c.build_id.empty() ? "srcversion " + c.srcversion : c.build_id) +
                 ") is already loaded";
    } else if (!c.refcnt) {
      c.detail = "loaded, and the kernel cannot unload modules (no refcount)";
    } else if (c.removable) {
      c.detail = "loaded, not in use: would be removed before loading";
    } else {
      std::vector<std::string> users;
      for (const auto& h : c.holders)
        if (!removable.count(h)) users.push_back(h);
      const int extra = *c.refcnt - static_cast<int>(c.holders.size());
      c.detail = "in use";
      if (!users.empty()) c.detail += " by " + join(users);
      if (extra > 0) c.detail += (users.empty() ? " (" : ", and ") + std::to_string(extra) + " other reference(s)" +
                                 (users.empty() ? ")" : "");
      if (users.empty() && extra <= 0) c.detail += " (a module it depends on stays)";
    }
  }
}

std::vector<std::string> unknown_export_facts(const std::vector<kabi::ModuleInfo>& bundle, const kabi::Symvers& table) {
  std::set<std::string> shipped;
  for (const auto& m : bundle)
    for (const auto& e : m.exports) shipped.insert(e.name);
  std::vector<std::string> out;
  for (const auto& m : bundle) {
    const bool gpl = kabi::license_is_gpl_compatible(m.license);
    for (const auto& u : m.undefined) {
      if (shipped.count(u.name)) continue;
      const kabi::SymversEntry* e = table.find(u.name);
      if (!e) continue;  // missing: the rules say so already
      std::vector<std::string> why;
      if (!e->type_known && !gpl) why.push_back("GPL-only or not, for licence '" + m.license + "'");
      if (!e->ns_known) {
        std::vector<std::string> foreign;
        for (const auto& ns : e->ns_possible)
          if (!ns.empty() && std::find(m.import_ns.begin(), m.import_ns.end(), ns) == m.import_ns.end())
            foreign.push_back(ns);
        if (!foreign.empty() || e->ns_possible.empty())
          why.push_back("its namespace (possibly " + (foreign.empty() ? std::string("any") : join(foreign, " or ")) +
                        ", not imported)");
      }
      if (!why.empty()) out.push_back(m.name + ": " + u.name + " (" + join(why, "; ") + ")");
    }
  }
  return out;
}

DecisionResult decide(const DecisionFacts& f) {
  using namespace reason;
  DecisionResult r;
  auto add = [&](const char* code, std::string message) { r.reasons.push_back({code, std::move(message)}); };
  const auto& origin = f.symvers;
  const std::string& release = f.model.release;

  const bool any_handled =
      std::any_of(f.devices.begin(), f.devices.end(), [](const auto& d) { return !d.bundle_modules.empty(); });
  if (!any_handled) {
    r.decision = Decision::NoDevice;
    size_t display = 0;
    for (const auto& d : f.devices) display += d.device.is_display() ? 1 : 0;
    add(kNoDevice, "no PCI device matches an alias of the " + std::to_string(f.bundle.size()) + " bundle module(s) (" +
                       counted(f.pci_functions, "PCI function") + ", " + counted(display, "display device") + ")");
    return r;
  }

  std::vector<std::string> blockers;
  bool only_ours = true;  // every blocker is an older bundle this agent loaded
  for (const auto& c : f.conflicts) {
    if (c.removable || c.same_as_bundle) continue;
    const bool ours = c.ours_previous && !c.builtin;
    add(c.builtin ? kConflictBuiltin : ours ? kUpgradePending : kConflictInUse,
        c.name + (ours ? " (an older bundle this agent loaded)" : "") + ": " + c.detail);
    blockers.push_back(c.name);
    only_ours = only_ours && ours;
  }

  // Can the prebuilt modules be trusted to load?
  const bool is_union = origin.kind == probes::SymversOrigin::Kind::InTreeUnion;
  const bool table_complete = !is_union || origin.uncovered.empty();
  const std::vector<std::string> unknown = unknown_export_facts(f.bundle, f.model.symvers);
  std::vector<std::string> refused;
  for (const auto& m : f.evaluation.modules) {
    if (m.verdict != kabi::Verdict::Refused) continue;
    std::vector<std::string> codes;
    for (const auto& reason : m.reasons) {
      if (!reason.fatal) continue;
      if (std::find(codes.begin(), codes.end(), reason.code) == codes.end()) codes.push_back(reason.code);
    }
    refused.push_back(m.name + " (" + kabi::errno_name(m.err) + ": " + join(codes) + ")");
  }
  const bool prebuilt_ok = refused.empty() && table_complete && unknown.empty();
  auto add_refused = [&] {
    if (!refused.empty())
      add(kModulesRefused, std::to_string(refused.size()) + " of " + std::to_string(f.evaluation.modules.size()) +
                               " bundle modules would be refused: " + join(refused, "; "));
  };

  if (!blockers.empty()) {
    r.decision = only_ours ? Decision::UpgradePending : Decision::Refuse;
    add_refused();
    return r;
  }

  auto first_few = [](const std::vector<std::string>& v) {
    std::vector<std::string> some(v.begin(), v.begin() + std::min<std::ptrdiff_t>(5, std::ssize(v)));
    return join(some) + (v.size() > some.size() ? ", ..." : "");
  };
  if (is_union) {
    if (table_complete) {
      add(kSymversPartial, "no symvers file for " + release + ": " + origin.verified_with);
    } else {
      add(kSymversIncomplete, "no symvers file for " + release + ", and the kernel's own modules record no CRC for " +
                                  std::to_string(origin.uncovered.size()) +
                                  " symbol(s) the bundle needs: " + first_few(origin.uncovered));
    }
    if (!unknown.empty())
      add(kSymversFactsUnknown, "no symvers file for " + release + ": the kernel's own modules do not show " +
                                    std::to_string(unknown.size()) + " fact(s) the bundle depends on: " +
                                    first_few(unknown));
  } else if (!origin.verified) {
    add(kSymversUnverified, origin.path + ": " + origin.verified_with);
  }

  if (prebuilt_ok) {
    r.decision = Decision::Prebuilt;
    add(kModulesLoadable, "all " + std::to_string(f.evaluation.modules.size()) + " bundle modules would load on " +
                              release);
    for (const auto& c : f.conflicts)
      if (c.same_as_bundle) add(kBundleAlreadyLoaded, c.name + ": " + c.detail);
      else if (c.removable) add(kConflictRemovable, c.name + ": " + c.detail);
    return r;
  }
  add_refused();

  // What a build cannot change: the node loads no module (modules_disabled, no CAP_SYS_MODULE),
  // blacklists this one by name, or its parameters or nomodeset fail it whatever its build.
  std::vector<std::string> node_blocks;
  for (const auto& m : f.evaluation.modules)
    for (const auto& reason : m.reasons) {
      static const std::set<std::string> kNode = {kabi::reason::kModulesDisabled, kabi::reason::kNoCapSysModule,
                                                  kabi::reason::kModuleBlacklisted, kabi::reason::kParameterInvalid,
                                                  kabi::reason::kNomodesetInitFails};
      if (reason.fatal && kNode.count(reason.code)) node_blocks.push_back(m.name + ": " + reason.message);
    }
  if (!node_blocks.empty()) {
    r.decision = Decision::Refuse;
    add(kNodeRefusesLoad, join(node_blocks, "; "));
    return r;
  }

  // A build on the node needs the running kernel's headers, with a Module.symvers that is the
  // kernel's own (a rejected one would build modules with wrong CRCs), and produces unsigned
  // modules, which an enforcing kernel refuses.
  if (!f.build.possible) {
    r.decision = Decision::Refuse;
    if (!f.build.mismatch.empty()) add(kHeadersMismatch, f.build.mismatch + "; " + f.build.detail);
    else add(kNoKernelHeaders, f.build.detail);
    return r;
  }
  for (const auto& c : origin.candidates) {
    if (c.state == probes::SymversCandidate::State::Rejected && c.file_id == f.build.symvers_id) {
      r.decision = Decision::Refuse;
      add(kHeadersMismatch, f.build.dir + " does not match the running kernel: " + c.detail);
      return r;
    }
  }
  // Built modules are signed when the operator gave a certificate (and key); an enforcing kernel
  // takes them only when it trusts that certificate, which must be established, not assumed.
  const SigningFacts* sg = f.signing;
  const bool signing = sg && sg->configured;
  if (signing && !sg->problem.empty()) {
    r.decision = Decision::Refuse;
    add(kSigningKeyUnusable, sg->problem);
    return r;
  }
  if (f.policy.enforced() || f.model.sig_enforce || f.model.lockdown) {
    std::string why = f.policy.sig_enforce.value_or(false) ? "module.sig_enforce=1"
                      : f.policy.locked_down()             ? "lockdown=" + f.policy.lockdown
                      : f.model.sig_enforce                ? "signatures enforced"
                      : f.model.lockdown                   ? "locked down"
                                                           : "Secure Boot with lockdown state unknown";
    if (!signing) {
      r.decision = Decision::Refuse;
      add(kBuildUnsignedEnforced, "a build on this node makes unsigned modules, which this kernel refuses (" + why +
                                      "); give a key the kernel trusts (--signing-key, --signing-cert)");
      return r;
    }
    if (sg->trust.verdict != SigningTrust::Verdict::Trusted) {
      r.decision = Decision::Refuse;
      add(kSigningKeyUntrusted, "this kernel refuses modules whose signer it does not trust (" + why + "): " +
                                    signing_summary(*sg));
      return r;
    }
  }
  r.decision = Decision::Build;
  add(kBuildPossible, f.build.detail);
  if (signing) add(kBuildSigned, "the built modules are signed by " + signing_summary(*sg));
  return r;
}

std::string decision_name(Decision d) {
  switch (d) {
    case Decision::Prebuilt: return "prebuilt";
    case Decision::Build: return "build";
    case Decision::Refuse: return "refuse";
    case Decision::NoDevice: return "no-device";
    case Decision::UpgradePending: return "upgrade-pending";
  }
  return "refuse";
}

int exit_code(Decision d) {
  switch (d) {
    case Decision::Prebuilt: return kCheckPrebuilt;
    case Decision::Build: return kCheckBuild;
    case Decision::Refuse: return kCheckRefuse;
    case Decision::NoDevice: return kCheckNoDevice;
    case Decision::UpgradePending: return kCheckUpgradePending;
  }
  return kCheckRefuse;
}

}  // namespace agent
