#include "agent/check.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <tuple>

#include <spdlog/spdlog.h>

#include "kabi/kernel_keys.h"
#include "kabi/text.h"
#include "kabi/report.h"

namespace agent {
namespace fs = std::filesystem;

namespace {

std::string hex(unsigned v, int width) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", width, v);
  return buf;
}

// The bundle directory: --bundle, else the image's bundle for the running kernel, else the
// image's only bundle (a prebuilt set built for another z-stream of the same kABI).
Result<fs::path> find_bundle(const CheckOptions& o, const std::string& release) {
  std::error_code ec;
  if (!o.bundle.empty()) {
    if (!fs::is_directory(o.bundle, ec)) return fail(ENOENT, "bundle directory not found", o.bundle.string());
    return o.bundle;
  }
  if (fs::is_directory(o.bundle_base / release, ec)) return o.bundle_base / release;
  std::vector<fs::path> dirs;
  for (fs::directory_iterator it(o.bundle_base, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) dirs.push_back(it->path());
  if (dirs.size() == 1) return dirs.front();
  if (dirs.empty())
    return fail(ENOENT, "no bundle in the image (expected " + (o.bundle_base / "<kver>").string() + "); use --bundle",
                o.bundle_base.string());
  std::sort(dirs.begin(), dirs.end());
  std::vector<std::string> names;
  for (const auto& d : dirs) names.push_back(d.filename().string());
  return fail(EINVAL, "several bundles (" + join(names) + ") and none for " + release + "; use --bundle",
              o.bundle_base.string());
}

std::vector<fs::path> bundle_files(const fs::path& dir, std::vector<Error>& errors) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) errors.push_back(Error{ec.value(), "cannot list bundle: " + ec.message(), dir.string()});
  for (; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && kabi::is_module_file_name(it->path())) out.push_back(it->path());
  }
  if (ec) errors.push_back(Error{ec.value(), "cannot list bundle: " + ec.message(), dir.string()});
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<CheckReport> diagnose(const CheckOptions& o) {
  CheckReport r;
  auto root = probes::HostRoot::from_cli_or_env(o.root);
  if (!root) return tl::unexpected(root.error());
  r.root = root->root().string();

  auto release = probes::probe_release(*root);
  if (!release) return tl::unexpected(release.error());

  // The bundle first: what it needs steers which of the kernel's own modules are read.
  auto bundle_dir = find_bundle(o, *release);
  if (!bundle_dir) return tl::unexpected(bundle_dir.error());
  r.bundle_dir = bundle_dir->string();
  std::vector<Error> list_errors;
  const auto files = bundle_files(*bundle_dir, list_errors);
  if (!list_errors.empty()) return tl::unexpected(list_errors.front());
  if (files.empty()) return fail(ENOENT, "no kernel modules (.ko, .ko.xz, .ko.zst, .ko.gz) in the bundle", r.bundle_dir);

  for (const auto& f : files) {
    auto m = kabi::read_module(f, {.trusted_certs = nullptr, .sha256 = false});  // nothing reports a hash
    if (!m) return tl::unexpected(m.error());
    r.bundle.push_back(std::move(*m));
  }

  // The kernel image carries the certificates a signature must chain to; it is read only as
  // far as the bundle's signers need (not at all for an unsigned bundle).
  std::string kernel_image;  // host path of the image the certificates came from
  for (const std::string& p : {"/boot/vmlinuz-" + *release, "/lib/modules/" + *release + "/vmlinuz",
                              "/usr/lib/modules/" + *release + "/vmlinuz"}) {
    if (!root->is_regular_file(p)) continue;
    auto image = root->fs().open_file(p);
    auto c = image ? kabi::verify_module_signatures(r.bundle, std::move(*image), root->display(p))
                   : Result<std::vector<std::string>>(tl::unexpected(image.error()));
    if (!c) {
      r.problems.push_back(c.error());
      r.certificates = c.error().what();
      break;
    }
    kernel_image = p;
    r.certificates = p + ": " + std::to_string(c->size()) + " certificate(s) for the bundle's signers";
    break;
  }
  const bool certs_known = !kernel_image.empty();
  if (!certs_known && r.certificates.empty()) {
    r.certificates = "no kernel image for " + *release + " under the root: module signatures are not verified";
  }

  probes::KernelProbeOptions ko;
  ko.symvers_override = o.symvers;
  std::set<std::string> bundle_names, bundle_exports;
  for (const auto& m : r.bundle) {
    bundle_names.insert(m.name);
    for (const auto& e : m.exports) bundle_exports.insert(e.name);
  }
  // The in-tree modules the bundle replaces record the CRCs of almost every symbol it needs, and
  // its in-tree dependencies export the rest: they verify symvers candidates best, and make the
  // in-tree union (no symvers at all) complete after a handful of reads.
  for (const auto& m : r.bundle) ko.prefer_sample.push_back(m.name);
  for (const auto& m : r.bundle) {
    for (const auto& d : m.depends)
      if (!bundle_names.count(d) && std::find(ko.prefer_sample.begin(), ko.prefer_sample.end(), d) == ko.prefer_sample.end())
        ko.prefer_sample.push_back(d);
    for (const auto& u : m.undefined)
      if (!u.weak && !bundle_exports.count(u.name)) ko.needed_symbols.insert(u.name);
    if (const auto* v = m.effective_versions())
      for (const auto& e : *v)
        if (!bundle_exports.count(e.name)) ko.needed_symbols.insert(e.name);
  }
  auto kernel = probes::probe_kernel(*root, ko);
  if (!kernel) return tl::unexpected(kernel.error());
  r.kernel = std::move(*kernel);
  for (const auto& e : r.kernel.tree_problems) r.problems.push_back(e);
  for (const auto& e : r.kernel.symvers_origin.problems) r.problems.push_back(e);

  probes::PciOptions po;
  po.backend = o.pci_backend;
  po.pci_ids = o.pci_ids;
  auto pci = probes::discover_pci(*root, po);
  if (!pci) return tl::unexpected(pci.error());
  r.pci = std::move(*pci);
  for (const auto& e : r.pci.problems) r.problems.push_back(e);

  auto loaded = probes::probe_loaded_modules(*root, r.kernel.module_dir);
  if (!loaded) return tl::unexpected(loaded.error());
  r.loaded = std::move(*loaded);
  for (const auto& e : r.loaded.problems) r.problems.push_back(e);

  r.policy = probes::probe_policy(*root);
  for (const auto& e : r.policy.problems) r.problems.push_back(e);
  r.build = probes::probe_build_env(*root, r.kernel.release);

  // Devices: every one the bundle drives (matched by its aliases, as the kernel matches
  // drivers), and every display device, so an Intel GPU left to the in-tree driver is shown.
  std::vector<probes::ModuleAliases> aliases;
  for (const auto& m : r.bundle) aliases.push_back({m.name, m.aliases});
  for (const auto& d : r.pci.devices) {
    DeviceReport dr{d, probes::matching_modules(d, aliases)};
    for (const auto& p : d.problems) r.problems.push_back(Error{EIO, p, d.sysfs_path});
    if (!dr.bundle_modules.empty() || d.is_display()) r.devices.push_back(std::move(dr));
  }

  // Conflicts: bundle modules whose names are live.
  for (const auto& m : r.bundle) {
    auto it = r.loaded.modules.find(m.name);
    if (it == r.loaded.modules.end()) continue;
    const probes::LoadedModule& l = it->second;
    Conflict c;
    c.name = m.name;
    c.builtin = l.builtin;
    c.refcnt = l.refcnt;
    c.holders = l.holders;
    if (c.holders.empty()) c.holders = l.used_by;
    c.srcversion = l.srcversion;
    c.build_id = l.build_id;
    // Debian's modules carry no srcversion (no MODULE_VERSION): the build id is what tells.
    c.same_as_bundle = (!l.build_id.empty() && l.build_id == m.build_id) ||
                       (!l.srcversion.empty() && l.srcversion == m.srcversion);
    r.conflicts.push_back(std::move(c));
  }
  settle_removability(r.conflicts);

  // The kernel model the rules run against, as the kernel will be when the agent inserts:
  // removable conflicts gone, everything else live.
  kabi::KernelModel& k = r.model;
  k.release = r.kernel.release;
  k.vermagic = r.kernel.vermagic;
  k.modversions = r.kernel.modversions;
  k.symvers_source = r.kernel.symvers_origin.kind == probes::SymversOrigin::Kind::InTreeUnion
                         ? r.kernel.symvers.source
                         : r.kernel.symvers_origin.path;
  k.symvers = r.kernel.symvers;
  k.this_module_size = r.kernel.this_module_size;
  std::tie(k.version_major, k.version_minor) = kabi::parse_release_version(k.release);
  k.in_tree = r.kernel.in_tree;
  for (const auto& [name, l] : r.loaded.modules) k.live.insert(name);
  for (const auto& c : r.conflicts)
    if (c.removable || c.same_as_bundle) k.live.erase(c.name);
  k.policy = o.policy ? *o.policy
                      : (r.kernel.proc_version.find("Debian") != std::string::npos ? kabi::MissingVersionPolicy::Strict
                                                                                   : kabi::MissingVersionPolicy::Upstream);
  k.module_sig = r.policy.module_sig || r.kernel.own_modules_signed;
  k.sig_enforce = r.policy.sig_enforce.value_or(false);
  k.lockdown = r.policy.locked_down() || (r.policy.lockdown.empty() && r.policy.secure_boot.value_or(false));
  k.certificates_known = certs_known;
  k.kernel_image = kernel_image;

  r.evaluation = kabi::evaluate(r.bundle, k);
  auto d = decide(DecisionFacts{.bundle = r.bundle,
                                .devices = r.devices,
                                .pci_functions = r.pci.devices.size(),
                                .conflicts = r.conflicts,
                                .evaluation = r.evaluation,
                                .model = r.model,
                                .symvers = r.kernel.symvers_origin,
                                .build = r.build,
                                .policy = r.policy});
  r.decision = d.decision;
  r.reasons = std::move(d.reasons);
  return r;
}

nlohmann::json check_json(const CheckReport& r) {
  using nlohmann::json;
  auto opt = [](const auto& o) { return o ? json(*o) : json(nullptr); };
  json devices = json::array();
  for (const auto& dr : r.devices) {
    const auto& d = dr.device;
    devices.push_back({
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
    });
  }
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
  for (const auto& c : r.conflicts) {
    conflicts.push_back({{"name", c.name},
                         {"builtin", c.builtin},
                         {"refcnt", opt(c.refcnt)},
                         {"holders", c.holders},
                         {"in_use", !c.removable && !c.builtin},
                         {"removable", c.removable},
                         {"srcversion", c.srcversion.empty() ? json(nullptr) : json(c.srcversion)},
                         {"build_id", c.build_id.empty() ? json(nullptr) : json(c.build_id)},
                         {"same_as_bundle", c.same_as_bundle},
                         {"detail", c.detail}});
  }
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
  for (const auto& x : r.reasons) reasons.push_back({{"code", x.code}, {"message", x.message}});
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
  for (const auto& e : r.problems) problems.push_back({{"errno", e.code}, {"message", e.message}, {"path", e.path}});
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

std::string check_text(const CheckReport& r, bool verbose) {
  std::ostringstream out;
  std::string upper = decision_name(r.decision);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  out << "Decision: " << upper << " (exit " << exit_code(r.decision) << ")\n";
  for (const auto& x : r.reasons) out << "  - " << x.code << ": " << x.message << '\n';

  out << "\nDevices (" << r.pci.devices.size() << " PCI functions via " << r.pci.backend << ")\n";
  if (r.devices.empty()) out << "  no display device and none the bundle drives\n";
  for (const auto& dr : r.devices) {
    const auto& d = dr.device;
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
  }

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
    out << "    " << probes::candidate_state_name(c.state) << "  " << c.path;
    if (!c.detail.empty()) out << ": " << c.detail;
    out << '\n';
  }
  if (!o.uncovered.empty()) out << "  no CRC for  " << join(o.uncovered) << '\n';

  out << "\nBundle " << r.bundle_dir << '\n' << kabi::evaluation_text(r.evaluation, r.model, verbose);

  out << "\nConflicts\n";
  if (r.conflicts.empty()) out << "  none: no bundle module is loaded or built in\n";
  for (const auto& c : r.conflicts) out << "  " << c.name << ": " << c.detail << '\n';

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
    for (const auto& e : r.problems) out << "  " << e.what() << '\n';
  }
  return out.str();
}

int run_check(const CheckOptions& options, std::ostream& out, std::ostream& err) {
  auto report = diagnose(options);
  if (!report) {
    err << "agent: --check: " << printable(report.error().what()) << '\n';
    return kCheckInputError;
  }
  if (options.json)
    out << safe_dump(check_json(*report)) << '\n';
  else
    out << printable(check_text(*report, options.verbose));
  return exit_code(report->decision);
}

}  // namespace agent
