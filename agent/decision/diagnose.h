// The diagnosis of this node: its GPUs, its running kernel and where that kernel's CRCs came
// from, what is loaded, the signing policy - and the decision the agent takes with the bundle it
// carries, with the reasons. Reads only; shared by `agent --check` (which prints it with the
// plan) and the entrypoint (which carries the plan out).
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/decision/decide.h"
#include "agent/facts/bundle_manifest.h"
#include "agent/facts/node_signing.h"
#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "kabi/rules.h"
#include "probes/build_env.h"
#include "probes/host_root.h"
#include "probes/kernel.h"
#include "probes/loaded_modules.h"
#include "probes/pci.h"
#include "probes/policy.h"

namespace agent {

struct DiagnoseOptions {
  std::optional<std::filesystem::path> root;  // --root; else $HOST_ROOT; else "/"
  // --bundle: the shipped modules (every .ko, .ko.xz, .ko.zst, .ko.gz under it). Empty:
  // <bundle_base>/<running kver> if it exists, else the only directory in bundle_base.
  std::filesystem::path bundle;
  // Where the image keeps its bundles: a path in the agent's own filesystem, not under --root.
  std::filesystem::path bundle_base = "/opt/lib/modules";
  std::optional<std::filesystem::path> symvers;  // --symvers: tried first, verified like the others
  // A Driver Toolkit image's headers (<image_headers>/<kver>, the agent's own filesystem): a
  // build may use them when the node has none and they are proven the running kernel's.
  std::filesystem::path image_headers = "/usr/src/kernels";
  // --policy strict|upstream for a symbol missing from __versions; default: strict for Debian
  // kernels (/proc/version says "Debian"), upstream otherwise.
  std::optional<kabi::MissingVersionPolicy> policy;
  std::filesystem::path pci_ids;  // empty: this image's pci.ids
  probes::PciBackend pci_backend = probes::PciBackend::Auto;
  // Modules this agent inserted earlier in this boot (name -> build id, from its state
  // directory): a live one of another build than the bundle's is "ours, older" (an upgrade is
  // pending while it is in use) rather than someone else's driver.
  std::map<std::string, std::string> previous_build_ids;
  // The restart fast path: when every bundle module is already live with the bundle's own build
  // id, the kernel has accepted these very modules and nothing needs deciding again - only the
  // bundle, the loaded modules, the devices and the policy are read (not the kernel's CRCs and
  // module tree). Decision prebuilt, reasons bundle_already_loaded. Otherwise the full
  // diagnosis, with the bundle read once.
  bool fast_path = false;
  // The process that will insert: the entrypoint (`agent run`) itself. `agent check` may run
  // without CAP_SYS_MODULE (an operator's shell): there a missing capability is a problem to
  // report, not the node refusing every module.
  bool inserting = false;
  // The operator's module signing certificate: judged against the kernel's keyrings; a bundle
  // module it signed is verified with it when the kernel trusts it. The key's file is only
  // stat()ed (there, a regular file; its mode): the decision never reads a private key.
  SigningFiles signing;
  // A host directory that keeps the kernel image's certificates between starts
  // (kernel_image_certificates). Unset: the entrypoint (inserting) uses kDefaultCertificateCache,
  // `agent check` keeps none (it writes nothing); empty: none.
  std::optional<std::filesystem::path> certificate_cache;
};

struct Diagnosis {
  std::string root;
  std::string bundle_dir;
  std::vector<kabi::ModuleInfo> bundle;
  // <bundle_dir>/bundle-manifest.json, when the image has one, and where the bundle disagrees
  // with it (non-empty: refused, bundle_manifest_mismatch).
  std::optional<BundleManifest> manifest;
  std::vector<std::string> manifest_mismatches;
  probes::PciInventory pci;
  std::vector<DeviceReport> devices;  // every device the bundle drives, and every display device
  probes::RunningKernel kernel;
  probes::ModuleInventory loaded;
  probes::Policy policy;
  probes::BuildEnv build;
  std::string certificates;  // where the kernel's module-signing certificates came from, or why not
  SigningFacts signing;      // the operator's signing certificate, and the kernel's trust in it
  kabi::KernelModel model;
  std::vector<Conflict> conflicts;
  kabi::Evaluation evaluation;
  Decision decision = Decision::Refuse;
  bool fast_path = false;  // decided by the restart fast path (DiagnoseOptions::fast_path)
  std::vector<DecisionReason> reasons;  // the decision's, first the deciding ones
  std::vector<Error> problems;          // what could not be read (never silently empty)
};

// Probes the node and decides. An error is a usage or input error (exit 2): no readable node,
// no bundle, an unreadable module.
[[nodiscard]] Result<Diagnosis> diagnose(const DiagnoseOptions& options);

}  // namespace agent
