#include "agent/facts/node_model.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "kabi/load_context.h"
#include "probes/policy.h"

namespace agent {

probes::KernelProbeOptions kernel_probe_options_for(const std::vector<kabi::ModuleInfo>& set) {
  probes::KernelProbeOptions ko;
  std::set<std::string> names, exports;
  for (const auto& m : set) {
    names.insert(m.name);
    for (const auto& e : m.exports) exports.insert(e.name);
  }
  for (const auto& m : set) ko.prefer_sample.push_back(m.name);
  for (const auto& m : set) {
    for (const auto& d : m.depends)
      if (!names.count(d) && std::find(ko.prefer_sample.begin(), ko.prefer_sample.end(), d) == ko.prefer_sample.end())
        ko.prefer_sample.push_back(d);
    for (const auto& u : m.undefined)
      if (!u.weak && !exports.count(u.name)) ko.needed_symbols.insert(u.name);
    if (const auto* v = m.effective_versions())
      for (const auto& e : *v)
        if (!exports.count(e.name)) ko.needed_symbols.insert(e.name);
  }
  return ko;
}

kabi::KernelModel kernel_model_of(const probes::RunningKernel& kernel, const probes::Policy& policy,
                                  std::optional<kabi::MissingVersionPolicy> missing_version) {
  kabi::KernelModel k;
  k.release = kernel.release;
  k.vermagic = kernel.vermagic;
  k.modversions = kernel.modversions;
  k.symvers_source = kernel.symvers_origin.kind == probes::SymversOrigin::Kind::InTreeUnion ? kernel.symvers.source
                                                                                           : kernel.symvers_origin.path;
  k.symvers = kernel.symvers;
  k.this_module_size = kernel.this_module_size;
  std::tie(k.version_major, k.version_minor) = kabi::parse_release_version(k.release);
  k.in_tree = kernel.in_tree;
  k.policy = missing_version ? *missing_version
                             : (kernel.proc_version.find("Debian") != std::string::npos ? kabi::MissingVersionPolicy::Strict
                                                                                        : kabi::MissingVersionPolicy::Upstream);
  k.module_sig = policy.module_sig || kernel.own_modules_signed;
  k.sig_enforce = policy.sig_enforce.value_or(false);
  k.lockdown = policy.locked_down() || (policy.lockdown.empty() && policy.secure_boot.value_or(false));
  // Unknown (unreadable) counts as possible: the problem is reported, the insert shows.
  k.modules_disabled = policy.modules_disabled.value_or(false);
  k.cap_sys_module = policy.cap_sys_module.value_or(true);
  if (policy.cmdline) kabi::apply_kernel_cmdline(k, *policy.cmdline, "/proc/cmdline");
  return k;
}

void apply_modprobe_config(kabi::KernelModel& k, const probes::ModuleOptions& options) {
  std::map<std::string, std::vector<kabi::ModuleParam>> from_files;
  for (const auto& l : options.lines) {
    if (l.kind == "options") {
      auto params = kabi::parse_module_params(l.rest, l.source);
      auto& to = from_files[l.module];
      to.insert(to.end(), params.begin(), params.end());
    } else if (l.kind == "blacklist") {
      k.modprobe_blacklist[l.module].push_back(l.source);
    } else if (l.kind == "install") {
      k.modprobe_install[l.module].push_back(l.rest + "' (" + l.source + ")");
    }
  }
  // modprobe.d's options come first, the command line's after (probes::ModuleOptions::of).
  for (auto& [name, params] : from_files) {
    auto& to = k.params[name];
    to.insert(to.begin(), params.begin(), params.end());
  }
}

Result<NodeModel> node_model_for(const probes::HostRoot& root, const std::vector<kabi::ModuleInfo>& set) {
  NodeModel r;
  auto kernel = probes::probe_kernel(root, kernel_probe_options_for(set));
  if (!kernel) return tl::unexpected(kernel.error());
  r.kernel = std::move(*kernel);
  for (const auto& e : r.kernel.tree_problems) r.problems.push_back(e);
  for (const auto& e : r.kernel.symvers_origin.problems) r.problems.push_back(e);
  const probes::Policy policy = probes::probe_policy(root);
  for (const auto& e : policy.problems) r.problems.push_back(e);
  r.model = kernel_model_of(r.kernel, policy);
  // The build's check is the kABI's. The node's part of a load (this process's capability,
  // modules_disabled, the command line, modprobe.d) is the entrypoint's to judge - decide()
  // refuses before any build - and a builder (an image build, a sidecar) has neither the
  // entrypoint's privileges nor, in an image build, its node.
  r.model.cap_sys_module = true;
  r.model.modules_disabled = false;
  r.model.module_blacklist.clear();
  r.model.nomodeset = false;
  r.model.params.clear();
  return r;
}

}  // namespace agent
