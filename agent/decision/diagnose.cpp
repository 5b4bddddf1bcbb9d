#include "agent/decision/diagnose.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <set>
#include <tuple>

#include "agent/decision/hints.h"
#include "agent/facts/node_model.h"
#include "kabi/btf.h"
#include "kabi/file_io.h"
#include "kabi/kernel_keys.h"
#include "kabi/text.h"
#include "probes/keyrings.h"

namespace agent {
namespace fs = std::filesystem;

namespace {

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The bundle directory: --bundle, else the image's bundle for the running kernel, else the
// image's only bundle (a prebuilt set built for another z-stream of the same kABI).
Result<fs::path> find_bundle(const DiagnoseOptions& o, const std::string& release) {
  std::error_code ec;
  if (!o.bundle.empty()) {
    if (fs::is_regular_file(o.bundle, ec))
      return fail(ENOTDIR, "--bundle takes the directory of the shipped modules, not one module file",
                  o.bundle.string());
    if (!fs::is_directory(o.bundle, ec)) return fail(ENOENT, "--bundle: no such directory", o.bundle.string());
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
    if (!kabi::is_module_file_name(it->path())) continue;
    if (it->is_regular_file(ec)) {
      out.push_back(it->path());
    } else if (!ec && !it->is_directory(ec)) {
      // A FIFO, socket or device named like a module is not skipped: the bundle is not what the
      // image meant to ship (the kernel could not load it either).
      errors.push_back(Error{EINVAL, "named like a module but not a regular file", it->path().string()});
      return out;
    }
  }
  if (ec) errors.push_back(Error{ec.value(), "cannot list bundle: " + ec.message(), dir.string()});
  std::sort(out.begin(), out.end());
  return out;
}

// The bundle: its directory and every module in it, each read and hashed.
Result<void> read_bundle(const DiagnoseOptions& o, const std::string& release, Diagnosis& r) {
  auto bundle_dir = find_bundle(o, release);
  if (!bundle_dir) return tl::unexpected(bundle_dir.error());
  r.bundle_dir = bundle_dir->string();
  std::vector<Error> list_errors;
  const auto files = bundle_files(*bundle_dir, list_errors);
  if (!list_errors.empty()) return tl::unexpected(list_errors.front());
  if (files.empty()) return fail(ENOENT, "no kernel modules (.ko, .ko.xz, .ko.zst, .ko.gz) in the bundle", r.bundle_dir);

  for (const auto& f : files) {
    // The hash is what the entrypoint verifies again right before it hands the file to the kernel.
    auto m = kabi::read_module(f, {.trusted_certs = nullptr, .sha256 = true, .keep_unreadable = true});
    if (!m) return tl::unexpected(m.error());
    r.bundle.push_back(std::move(*m));
  }
  return {};
}

// What is there now: PCI devices, loaded modules and policy; the devices the bundle drives and
// the bundle modules whose names are live.
Result<void> observe(const DiagnoseOptions& o, const probes::HostRoot& root, const std::string& module_dir, Diagnosis& r) {
  probes::PciOptions po;
  po.backend = o.pci_backend;
  po.pci_ids = o.pci_ids;
  auto pci = probes::discover_pci(root, po);
  if (!pci) return tl::unexpected(pci.error());
  r.pci = std::move(*pci);
  for (const auto& e : r.pci.problems) r.problems.push_back(e);

  auto loaded = probes::probe_loaded_modules(root, module_dir);
  if (!loaded) return tl::unexpected(loaded.error());
  r.loaded = std::move(*loaded);
  for (const auto& e : r.loaded.problems) r.problems.push_back(e);

  r.policy = probes::probe_policy(root);
  for (const auto& e : r.policy.problems) r.problems.push_back(e);

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
    if (auto prev = o.previous_build_ids.find(m.name); prev != o.previous_build_ids.end())
      c.ours_previous = !c.same_as_bundle && !l.build_id.empty() && l.build_id == prev->second;
    r.conflicts.push_back(std::move(c));
  }
  settle_removability(r.conflicts);
  return {};
}

// What the rules check a bundle's exports against besides vmlinux (duplicate exports,
// ENOEXEC): a live module's exports are its Module.symvers lines; one the symvers does not
// cover is read from its file in the tree; one not in the tree is named as not read.
void read_live_exports(const probes::HostRoot& root, Diagnosis& r) {
  kabi::KernelModel& k = r.model;
  std::set<std::string> owners, shipped;
  bool bundle_exports = false;
  for (const auto& m : r.bundle) {
    shipped.insert(m.name);
    bundle_exports |= !m.exports.empty();
  }
  if (!bundle_exports) return;
  for (const auto& e : k.symvers.entries)
    if (e.owner != "vmlinux") owners.insert(kabi::owner_module_name(e.owner));
  // A Module.symvers lists every export of the kernel's build: its modules (under kernel/)
  // that have no line export nothing.
  const bool whole_build = r.kernel.symvers_origin.kind != probes::SymversOrigin::Kind::InTreeUnion;
  const std::string build_dir = r.kernel.module_dir + "/kernel/";
  for (const auto& name : k.live) {
    if (shipped.count(name) || owners.count(name)) continue;
    auto it = k.in_tree.find(name);
    if (it == k.in_tree.end()) {
      k.live_exports_unknown.insert(name);
      continue;
    }
    if (whole_build && it->second.path.native().rfind(build_dir, 0) == 0) continue;
    auto m = kabi::read_module(root.fs(), it->second.path.native(), {.trusted_certs = nullptr, .sha256 = false});
    if (!m) {
      r.problems.push_back(m.error());
      k.live_exports_unknown.insert(name);
      continue;
    }
    for (const auto& e : m->exports) k.live_exports.emplace(e.name, name);
  }
}

// The restart fast path (see DiagnoseOptions::fast_path): true, with `r` complete, when every
// bundle module is live with the bundle's own build; false, `r` untouched, otherwise.
Result<bool> diagnose_live_bundle(const DiagnoseOptions& o, const probes::HostRoot& root, const std::string& release,
                                  Diagnosis& r) {
  auto loaded = probes::probe_loaded_modules(root, "");
  if (!loaded) return tl::unexpected(loaded.error());
  for (const auto& m : r.bundle) {
    auto it = loaded->modules.find(m.name);
    if (m.build_id.empty() || it == loaded->modules.end() || it->second.build_id != m.build_id ||
        (!it->second.state.empty() && it->second.state != "Live"))
      return false;
  }
  if (auto seen = observe(o, root, "", r); !seen) return tl::unexpected(seen.error());
  r.kernel.release = release;
  if (auto v = root.read_value("/proc/version")) r.kernel.proc_version = *v;
  r.decision = Decision::Prebuilt;
  r.fast_path = true;
  for (const auto& m : r.bundle) {
    kabi::ModuleVerdict v;
    v.name = m.name;
    v.path = m.path;
    r.evaluation.modules.push_back(std::move(v));
  }
  for (const auto& c : r.conflicts)
    r.reasons.push_back({reason::kBundleAlreadyLoaded,
                         c.name + ": " + c.detail + ": the kernel accepted this very build; not checked again"});
  return true;
}

}  // namespace

Result<Diagnosis> diagnose(const DiagnoseOptions& o) {
  Diagnosis r;
  // A path given explicitly is used or is an error, never quietly passed over for a default.
  if (o.symvers) {
    std::error_code ec;
    if (!fs::is_regular_file(*o.symvers, ec))
      return fail(ENOENT, "--symvers: no such file", o.symvers->string());
  }
  auto root = probes::HostRoot::from_cli_or_env(o.root);
  if (!root) return tl::unexpected(root.error());
  r.root = root->root().string();

  auto release = probes::probe_release(*root);
  if (!release) return tl::unexpected(release.error());

  // The bundle first: what it needs steers which of the kernel's own modules are read.
  if (auto b = read_bundle(o, *release, r); !b) return tl::unexpected(b.error());
  auto manifest = read_bundle_manifest(r.bundle_dir);
  if (!manifest) return tl::unexpected(manifest.error());
  r.manifest = std::move(*manifest);
  if (r.manifest) r.manifest_mismatches = manifest_mismatches(*r.manifest, r.bundle, r.bundle_dir);
  if (o.fast_path && r.manifest_mismatches.empty()) {
    auto live = diagnose_live_bundle(o, *root, *release, r);
    if (!live) return tl::unexpected(live.error());
    if (*live) return r;
  }

  // The kernel image carries the certificates a signature must chain to; it is read only as
  // far as the bundle's signers need (not at all for an unsigned bundle).
  std::string kernel_image;  // host path of the image the certificates came from
  if (auto p = probes::find_kernel_image(*root, *release)) {
    const std::vector<std::string> signers = kabi::signer_key_ids(r.bundle);
    const fs::path cache = o.certificate_cache ? *o.certificate_cache
                           : o.inserting       ? fs::path(kDefaultCertificateCache)
                                               : fs::path();
    auto c = signers.empty() ? Result<KernelImageCertificates>(KernelImageCertificates{})
                             : kernel_image_certificates(*root, *p, signers, cache);
    if (c) {
      for (auto& w : c->warnings) r.problems.push_back(std::move(w));
      if (auto ok = kabi::check_module_signatures(r.bundle, c->scan.certificates); !ok) c = tl::unexpected(ok.error());
    }
    if (!c) {
      r.problems.push_back(c.error());
      r.certificates = c.error().what();
    } else {
      kernel_image = *p;
      using E = kabi::KernelCertificates::Extent;
      const E e = c->scan.extent;
      r.certificates = *p + ": " + std::to_string(c->scan.certificates.size()) + " certificate(s) for the bundle's signers" +
                       (signers.empty()             ? ""
                        : e == E::WholeImage        ? " (the whole image read"
                        : e == E::Signers           ? " (read until every signer was found"
                                                    : " (read until every key of .builtin_trusted_keys was found") +
                       (signers.empty() ? "" : c->from_cache ? "; kept from an earlier start)" : ")");
    }
  }
  // The operator's certificate: trusted by the kernel's keyrings, it verifies what it signed (the
  // image's certificates hold only the built-in keyring, not .secondary/.machine).
  r.signing = probe_signing(*root, *release, o.signing);
  if (r.signing.problem.empty() && r.signing.trust.verdict == SigningTrust::Verdict::Trusted) {
    for (auto& m : r.bundle) {
      const auto& ids = r.signing.identity.key_ids;
      if (m.signature.state != kabi::Signature::State::Present || m.signature.key_check == kabi::Signature::KeyCheck::Verified ||
          std::find(ids.begin(), ids.end(), lowercase(m.signature.key_id)) == ids.end())
        continue;
      auto bytes = kabi::read_decompressed(m.path, kabi::kMaxModuleSize);
      if (!bytes) {
        r.problems.push_back(bytes.error());
        continue;
      }
      m.signature.key_check = kabi::key_check_of(kabi::check_module_signature(*bytes, {r.signing.cert_der}));
      m.signature.module_sha256 = kabi::sha256_hex(*bytes);
    }
  }
  // A signer none of those certificates is may still be on a keyring filled at run time (MOK,
  // an enrolled key): the kernel then verifies with it, which keyctl cannot show.
  if (std::any_of(r.bundle.begin(), r.bundle.end(),
                  [](const auto& m) { return m.signature.key_check == kabi::Signature::KeyCheck::UnknownKey; })) {
    const probes::KernelKeyrings keyrings = probes::probe_keyrings();
    const auto proc_version = root->read_value("/proc/version");
    const bool platform = proc_version && platform_keyring_for_modules(*proc_version);
    for (auto& m : r.bundle) {
      if (m.signature.key_check != kabi::Signature::KeyCheck::UnknownKey) continue;
      const auto& s = m.signature;
      if (auto key = probes::keyring_key_for_signer(keyrings, s.key_id, s.by_key_identifier, s.issuer_key_name, platform)) {
        m.signature.key_check = kabi::Signature::KeyCheck::KeyringKey;
        m.signature.keyring_key = std::move(*key);
      }
    }
  }
  const bool certs_known = !kernel_image.empty();
  if (!certs_known && r.certificates.empty()) {
    r.certificates = "no kernel image for " + *release + " under the root: module signatures are not verified";
  }

  probes::KernelProbeOptions ko = kernel_probe_options_for(r.bundle);
  ko.symvers_override = o.symvers;
  // The headers a build would use: the node's; else the image's, judged by the same sample of
  // the node's own modules the CRC table is.
  probes::HeadersChoice headers = probes::choose_build_headers(*root, *release, o.image_headers);
  ko.also_verify = headers.to_verify;
  auto kernel = probes::probe_kernel(*root, ko);
  if (!kernel) return tl::unexpected(kernel.error());
  r.kernel = std::move(*kernel);
  probes::consider_image_headers(headers.env, headers.image, r.kernel.release, r.kernel.also_verified);
  r.build = std::move(headers.env);
  for (const auto& e : r.kernel.tree_problems) r.problems.push_back(e);
  for (const auto& e : r.kernel.symvers_origin.problems) r.problems.push_back(e);

  if (auto seen = observe(o, *root, r.kernel.module_dir, r); !seen) return tl::unexpected(seen.error());

  // The kernel model the rules run against, as the kernel will be when the agent inserts:
  // removable conflicts gone, everything else live.
  r.model = kernel_model_of(r.kernel, r.policy, o.policy);
  kabi::KernelModel& k = r.model;
  if (!o.inserting && !k.cap_sys_module) {
    k.cap_sys_module = true;
    r.problems.push_back(Error{EPERM,
                               "this process lacks CAP_SYS_MODULE: `agent run` started like this would get EPERM "
                               "on every insert (the diagnosis assumes the entrypoint's privileges)",
                               probes::self_status_path().string()});
  }
  {
    const probes::ModuleOptions options = probes::probe_module_options(*root);
    for (const auto& e : options.problems) r.problems.push_back(e);
    apply_modprobe_config(k, options);
  }
  for (const auto& [name, l] : r.loaded.modules) {
    if (!l.builtin) {
      k.live.insert(name);
      if (l.taint.find('P') != std::string::npos) k.live_proprietary.insert(name);  // inherit_taint()
    } else if (l.sysfs) {
      k.builtin_sysfs.insert(name);  // mod_sysfs_init() refuses its name
    } else {
      k.builtin.insert(name);
    }
  }
  if (!r.loaded.sys_module_read) k.builtins_unread = "/sys/module not read";
  for (const auto& c : r.conflicts)
    if (c.removable || c.same_as_bundle) k.live.erase(c.name);
  read_live_exports(*root, r);
  k.certificates_known = certs_known;
  k.kernel_image = kernel_image;
  // The running kernel's BTF, the base of the bundle's split .BTF (btf_module_notify).
  if (auto btf = kabi::read_kernel_btf(root->fs(), "/sys/kernel/btf/vmlinux")) k.btf = std::move(*btf);
  else k.btf_unread = btf.error().what();
  // .blacklist: hashes a well-signed module must not have (Debian 6.x). Not visible (a user
  // namespace) or not readable is a problem to report, never an empty list.
  const probes::Keyring blacklist = probes::probe_keyring(probes::kBlacklistKeyring);
  if (blacklist.state == probes::Keyring::State::Read) {
    k.blacklisted_hashes = probes::blacklisted_binary_hashes(blacklist);
    k.blacklist_known = true;
  } else if (k.version_major == 6) {
    r.problems.push_back({blacklist.error, std::string(probes::kBlacklistKeyring) + ": " + blacklist.problem +
                                               " (module hashes on it are not predicted)", {}});
  }

  r.evaluation = kabi::evaluate(r.bundle, k);
  auto d = decide(DecisionFacts{.bundle = r.bundle,
                                .devices = r.devices,
                                .pci_functions = r.pci.devices.size(),
                                .conflicts = r.conflicts,
                                .evaluation = r.evaluation,
                                .model = r.model,
                                .symvers = r.kernel.symvers_origin,
                                .build = r.build,
                                .policy = r.policy,
                                .signing = &r.signing});
  r.decision = d.decision;
  r.reasons = std::move(d.reasons);
  // Files that are not what the image's builder made are never handed to the kernel.
  if (!r.manifest_mismatches.empty()) {
    r.decision = Decision::Refuse;
    r.reasons.insert(r.reasons.begin(), {reason::kBundleManifestMismatch,
                                         "the bundle is not what " + r.manifest->path + " lists: " +
                                             join(r.manifest_mismatches)});
  }
  attach_hints(r.reasons, {.release = r.kernel.release, .proc_version = r.kernel.proc_version});
  return r;
}

}  // namespace agent
