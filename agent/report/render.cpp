#include "agent/report/render.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>

#include "kabi/report.h"
#include "kabi/text.h"

namespace agent {
namespace {

using nlohmann::json;

std::string hex(unsigned v, int width) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", width, v);
  return buf;
}

json opt(const auto& o) { return o ? json(*o) : json(nullptr); }

}  // namespace

std::string to_text(const DeviceReport& dr) {
  const auto& d = dr.device;
  std::ostringstream out;
  char ids[32];
  std::snprintf(ids, sizeof ids, "%04x:%04x", unsigned{d.vendor}, unsigned{d.device});
  out << "  " << d.bdf << "  " << ids << "  " << d.name() << "\n      driver " << (d.driver.empty() ? "-" : d.driver)
      << ", NUMA node " << (d.numa_node ? std::to_string(*d.numa_node) : "-") << ", ";
  if (!dr.bundle_modules.empty())
    out << "driven by bundle module " << join(dr.bundle_modules) << '\n';
  else if (d.vendor == 0x8086)
    out << "not handled by this bundle (left to the in-tree driver)\n";
  else
    out << "not handled (not an Intel device of this bundle)\n";
  return out.str();
}

std::string to_text(const Conflict& c) { return "  " + c.name + ": " + c.detail + "\n"; }

nlohmann::json to_json(const FirmwarePlan& f) {
  json files = json::array();
  for (const auto& x : f.firmware.files) files.push_back({{"path", x.rel}, {"size", x.size}, {"sha256", x.sha256}});
  return {{"source_dir", f.firmware.dir},
          {"files", files},
          {"digest", f.firmware.digest.empty() ? json(nullptr) : json(f.firmware.digest)},
          {"dir", f.dir.empty() ? json(nullptr) : json(f.dir)},
          {"current_path", opt(f.current)},
          {"path_action", f.firmware.files.empty() ? json(nullptr) : json(firmware_path_action_name(f.action))}};
}

nlohmann::json to_json(const Plan& p) {
  json remove = json::array(), insert = json::array();
  for (const auto& r : p.remove)
    remove.push_back({{"name", r.name},
                      {"restore_path", r.restore_path.empty() ? json(nullptr) : json(r.restore_path)},
                      {"ours_previous", r.ours_previous}});
  for (const auto& i : p.insert)
    insert.push_back({{"name", i.name},
                      {"path", i.path},
                      {"source", i.from_bundle ? "bundle" : "in-tree"},
                      {"sha256", i.sha256.empty() ? json(nullptr) : json(i.sha256)},
                      {"build_id", i.build_id.empty() ? json(nullptr) : json(i.build_id)}});
  return {{"decision", decision_name(p.decision)},
          {"fast_path", p.fast_path},
          {"remove", remove},
          {"insert", insert},
          {"keep", p.keep},
          {"build", p.build},
          {"firmware", to_json(p.firmware)}};
}

std::string to_text(const Plan& p) {
  std::ostringstream out;
  out << "\nPlan\n";
  if (p.build)
    out << "  build the bundle's sources against the running kernel's headers, then check and load "
        << (p.insert.empty() ? "the built modules\n" : "as below\n");
  if (p.decision != Decision::Prebuilt && !p.build) {
    switch (p.decision) {
      case Decision::NoDevice: out << "  nothing to load: no device here is one the bundle drives\n"; break;
      case Decision::UpgradePending:
        out << "  nothing yet: the new bundle waits until the older one is no longer in use (see the reasons)\n";
        break;
      default: out << "  nothing is loaded or built: refused (the reasons and hints above say what is missing)\n"; break;
    }
    return out.str();
  }
  if (p.fast_path) out << "  nothing to load: every bundle module is already live with the bundle's build\n";
  int step = 1;
  for (const auto& r : p.remove)
    out << "  " << step++ << ". remove " << r.name
        << (r.restore_path.empty() ? " (no file in the kernel's tree: it cannot be restored)" : "") << '\n';
  if (!p.firmware.firmware.files.empty()) {
    out << "  " << step++ << ". firmware: " << p.firmware.firmware.files.size() << " file(s) to " << p.firmware.dir;
    switch (p.firmware.action) {
      case FirmwarePathAction::Set: out << ", firmware_class.path set there\n"; break;
      case FirmwarePathAction::Ours: out << ", firmware_class.path moved there from '" << *p.firmware.current << "'\n"; break;
      case FirmwarePathAction::Foreign:
        out << ", firmware_class.path kept: '" << *p.firmware.current << "' is not ours (conflict)\n";
        break;
      case FirmwarePathAction::Unknown: out << ", firmware_class.path unreadable: left alone\n"; break;
    }
  }
  for (const auto& i : p.insert)
    out << "  " << step++ << ". insert " << i.name << (i.from_bundle ? " from the bundle" : " (in-tree dependency)")
        << ": " << i.path << '\n';
  for (const auto& k : p.keep) out << "     keep " << k << " (live, the bundle's build)\n";
  return out.str();
}

nlohmann::json to_json(const DeviceReport& dr) {
  const auto& d = dr.device;
  return {
      {"bdf", d.bdf},
        {"vendor", hex(d.vendor, 4)},
        {"device", hex(d.device, 4)},
        {"subsystem_vendor", hex(d.subsystem_vendor, 4)},
        {"subsystem_device", hex(d.subsystem_device, 4)},
        {"class", hex(d.class_code, 6)},
        {"revision", hex(d.revision, 2)},
        {"modalias", d.modalias},
        {"numa_node", opt(d.numa_node)},
        {"name", d.name()},
        {"driver", d.driver.empty() ? json(nullptr) : json(d.driver)},
        {"sysfs_path", d.sysfs_path},
        {"handled", !dr.bundle_modules.empty()},
        {"bundle_module", dr.bundle_modules.empty() ? json(nullptr) : json(dr.bundle_modules.front())},
        {"bundle_modules", dr.bundle_modules},
  };
}

nlohmann::json to_json(const Conflict& c) {
  return {{"name", c.name},
          {"builtin", c.builtin},
          {"refcnt", opt(c.refcnt)},
          {"holders", c.holders},
          {"in_use", !c.removable && !c.builtin},
          {"removable", c.removable},
          {"srcversion", c.srcversion.empty() ? json(nullptr) : json(c.srcversion)},
          {"build_id", c.build_id.empty() ? json(nullptr) : json(c.build_id)},
          {"same_as_bundle", c.same_as_bundle},
          {"ours_previous", c.ours_previous},
          {"detail", c.detail}};
}

nlohmann::json to_json(const DecisionReason& x) {
  return {{"code", x.code}, {"message", x.message}, {"hint", x.hint.empty() ? json(nullptr) : json(x.hint)}};
}

nlohmann::json to_json(const Error& e) { return {{"errno", e.code}, {"message", e.message}, {"path", e.path}}; }

nlohmann::json diagnosis_json(const Diagnosis& r) {
  json devices = json::array();
  for (const auto& dr : r.devices) devices.push_back(to_json(dr));
  const auto& o = r.kernel.symvers_origin;
  json candidates = json::array();
  for (const auto& c : o.candidates) {
    candidates.push_back({{"path", c.path},
                          {"state", std::string(probes::candidate_state_name(c.state))},
                          {"detail", c.detail}});
  }
  json symvers = {
      {"path", o.kind == probes::SymversOrigin::Kind::File ? json(o.path) : json(nullptr)},
      {"source", o.kind == probes::SymversOrigin::Kind::File          ? "file"
                 : o.kind == probes::SymversOrigin::Kind::InTreeUnion ? "in-tree-union"
                                                                      : "none"},
      {"verified", o.verified},
      {"verified_with", o.verified_with},
      {"sample", o.sample},
      {"partial", o.kind == probes::SymversOrigin::Kind::InTreeUnion},
      {"uncovered", o.uncovered},
      {"candidates", candidates},
  };
  json kernel = {
      {"release", r.kernel.release},
      {"version", r.kernel.proc_version},
      {"vermagic", r.kernel.vermagic},
      {"vermagic_from", r.kernel.vermagic_from},
      {"modversions", r.kernel.modversions},
      {"module_dir", r.kernel.module_dir},
      {"symvers", symvers},
  };
  json modules = json::array();
  for (const auto& m : r.evaluation.modules) modules.push_back(kabi::module_verdict_json(m));
  json conflicts = json::array();
  for (const auto& c : r.conflicts) conflicts.push_back(to_json(c));
  std::vector<std::string> accepted = {"none"};
  if (!r.policy.kernel_decompression.empty()) accepted.push_back(r.policy.kernel_decompression);
  json policy = {
      {"module_sig", r.model.module_sig},
      {"sig_enforce", opt(r.policy.sig_enforce)},
      {"lockdown", r.policy.lockdown.empty() ? json(nullptr) : json(r.policy.lockdown)},
      {"secure_boot", opt(r.policy.secure_boot)},
      {"secure_boot_detail", r.policy.secure_boot_detail},
      {"enforced", r.model.sig_enforce || r.model.lockdown},
      {"certificates", r.certificates},
      {"missing_version", r.model.policy == kabi::MissingVersionPolicy::Strict ? "strict" : "upstream"},
      {"tree_compression", r.kernel.tree_compression},
      {"kernel_decompression", r.policy.kernel_decompression.empty() ? json(nullptr) : json(r.policy.kernel_decompression)},
      {"init_module_accepts", accepted},
      {"firmware_path", opt(r.policy.firmware_path)},
  };
  json reasons = json::array();
  for (const auto& x : r.reasons) reasons.push_back(to_json(x));
  json build_candidates = json::array();
  for (const auto& h : r.build.candidates) {
    build_candidates.push_back({{"path", h.path},
                                {"exists", h.exists},
                                {"makefile", h.makefile},
                                {"module_symvers", h.module_symvers},
                                {"config", h.config},
                                {"autoconf", h.autoconf},
                                {"scripts", h.scripts}});
  }
  json problems = json::array();
  for (const auto& e : r.problems)
    problems.push_back(to_json(Error{e.code, root_relative(r.root, e.message), root_relative(r.root, e.path)}));
  json bundle_names = json::array();
  for (const auto& m : r.bundle) bundle_names.push_back(m.name);
  return {
      {"schema", kCheckSchema},
      {"decision", decision_name(r.decision)},
      {"exit_code", exit_code(r.decision)},
      {"reasons", reasons},
      {"root", r.root},
      {"bundle", {{"dir", r.bundle_dir}, {"modules", bundle_names}}},
      {"devices", devices},
      {"pci", {{"backend", r.pci.backend}, {"pci_ids", r.pci.pci_ids}, {"functions", r.pci.devices.size()}}},
      {"kernel", kernel},
      {"modules", modules},
      {"conflicts", conflicts},
      {"policy", policy},
      {"build", {{"possible", r.build.possible}, {"dir", r.build.dir}, {"detail", r.build.detail},
                 {"candidates", build_candidates}}},
      {"problems", problems},
  };
}

std::string root_relative(const std::string& root, std::string text) {
  if (root.empty() || root == "/") return text;
  const std::string prefix = root.back() == '/' ? root : root + "/";
  for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at + 1)) text.replace(at, prefix.size(), "/");
  return text;
}

std::string check_summary(const Diagnosis& r) {
  std::string s = decision_name(r.decision) + " (exit " + std::to_string(exit_code(r.decision)) + ") on " +
                  r.kernel.release + ": ";
  if (r.decision != Decision::NoDevice && !r.fast_path && !r.evaluation.modules.empty()) {
    s += kabi::evaluation_counts(r.evaluation);
    if (const size_t w = kabi::warning_count(r.evaluation)) s += ", " + counted(w, "warning");
    s += "; ";
  }
  std::vector<std::string> codes;
  for (const auto& x : r.reasons)
    if (std::find(codes.begin(), codes.end(), x.code) == codes.end()) codes.push_back(x.code);
  return s + join(codes);
}

std::string diagnosis_text(const Diagnosis& r, bool verbose, size_t width) {
  std::ostringstream out;
  std::string upper = decision_name(r.decision);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  out << "Decision: " << upper << " (exit " << exit_code(r.decision) << ")\n";
  for (const auto& x : r.reasons) {
    out << "  - " << x.code << ": " << root_relative(r.root, x.message) << '\n';
    if (!x.hint.empty()) out << "    hint: " << x.hint << '\n';
  }

  out << "\nDevices (" << counted(r.pci.devices.size(), "PCI function") << " via " << r.pci.backend << ")\n";
  if (r.devices.empty()) out << "  no display device and none the bundle drives\n";
  for (const auto& dr : r.devices) out << to_text(dr);

  const auto& o = r.kernel.symvers_origin;
  out << "\nKernel\n"
      << "  release      " << r.kernel.release << '\n'
      << "  version      " << r.kernel.proc_version << '\n'
      << "  vermagic     " << r.kernel.vermagic << "(from " << r.kernel.vermagic_from << ")\n"
      << "  modversions  " << (r.kernel.modversions ? "yes" : "no") << '\n'
      << "  modules      " << r.kernel.module_dir << " (" << r.kernel.in_tree.size() << ", compression "
      << r.kernel.tree_compression << ")\n"
      << "  symvers      "
      << (o.kind == probes::SymversOrigin::Kind::File ? o.path : r.kernel.symvers.source) << '\n'
      << "               " << (o.verified ? "verified: " : "") << o.verified_with << '\n';
  for (const auto& c : o.candidates) {
    if (!verbose && c.state == probes::SymversCandidate::State::Absent) continue;
    // The one chosen is shown above, with its verdict.
    if (o.kind == probes::SymversOrigin::Kind::File && c.path == o.path) continue;
    out << "    " << probes::candidate_state_name(c.state) << "  " << c.path;
    if (!c.detail.empty()) out << ": " << c.detail;
    out << '\n';
  }
  if (!o.uncovered.empty()) out << "  no CRC for  " << join(o.uncovered) << '\n';

  out << "\nBundle " << r.bundle_dir << '\n' << kabi::evaluation_text(r.evaluation, r.model, {.verbose = verbose, .width = width, .hints = {}, .header = false});

  out << "\nConflicts\n";
  if (r.conflicts.empty()) out << "  none: no bundle module is loaded or built in\n";
  for (const auto& c : r.conflicts) out << to_text(c);

  out << "\nPolicy\n"
      << "  signatures   " << (r.model.module_sig ? "checked" : "not checked") << ", sig_enforce "
      << (r.policy.sig_enforce ? (*r.policy.sig_enforce ? "Y" : "N") : "unknown") << ", lockdown "
      << (r.policy.lockdown.empty() ? "unknown" : r.policy.lockdown) << ", Secure Boot " << r.policy.secure_boot_detail
      << '\n'
      << "  certificates " << r.certificates << '\n'
      << "  compression  own modules " << r.kernel.tree_compression << "; kernel decompresses "
      << (r.policy.kernel_decompression.empty() ? "nothing (libkmod does)" : r.policy.kernel_decompression) << '\n'
      << "  firmware     firmware_class.path "
      << (r.policy.firmware_path ? "'" + *r.policy.firmware_path + "'" : std::string("unknown")) << '\n'
      << "  no __versions entry: "
      << (r.model.policy == kabi::MissingVersionPolicy::Strict ? "refused (strict)" : "warned (upstream)") << '\n';

  out << "\nBuild\n  " << r.build.detail << '\n';

  if (!r.problems.empty()) {
    out << "\nProblems (" << r.problems.size() << ")\n";
    for (const auto& e : r.problems) out << "  " << root_relative(r.root, e.what()) << '\n';
  }
  return out.str();
}

}  // namespace agent
