// The running kernel as the kABI rules see it, for a set of modules the agent did not ship
// (modules it built on the node): the same probes and the same model as the diagnosis
// (agent/decision/diagnose.cpp), without the devices, the loaded modules and the decision.
#pragma once

#include <optional>
#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "probes/host_root.h"
#include "probes/kernel.h"
#include "probes/module_options.h"
#include "probes/policy.h"

namespace agent {

struct NodeModel {
  probes::RunningKernel kernel;
  kabi::KernelModel model;
  std::vector<Error> problems;  // what could not be read without making the model wrong
};

// What probe_kernel should read for `set`: the in-tree modules the set replaces and its in-tree
// dependencies first (they record the CRCs of almost every symbol it needs: they verify symvers
// candidates best and complete the in-tree union after a handful of reads), and the symbols the
// set imports from outside itself.
[[nodiscard]] probes::KernelProbeOptions kernel_probe_options_for(const std::vector<kabi::ModuleInfo>& set);

// The model the rules run against, from the probed kernel and policy; `missing_version`
// overrides the policy for a symbol without a __versions entry (default: strict on Debian
// kernels, upstream otherwise). Nothing is live yet, no certificates known.
[[nodiscard]] kabi::KernelModel kernel_model_of(const probes::RunningKernel& kernel, const probes::Policy& policy,
                                                std::optional<kabi::MissingVersionPolicy> missing_version = std::nullopt);

// modprobe.d's part of a load: "options" lines as the parameters each module gets (before the
// command line's), "blacklist" and "install" lines the insert by file bypasses.
void apply_modprobe_config(kabi::KernelModel& k, const probes::ModuleOptions& options);

// Probes the running kernel under `root` for what `set` needs and builds the model the build's
// kABI check runs against. Nothing counts as live: the caller decides what to do about loaded
// modules; the node's part of a load (capability, modules_disabled, command line, modprobe.d)
// is left out: the entrypoint judges it.
[[nodiscard]] Result<NodeModel> node_model_for(const probes::HostRoot& root, const std::vector<kabi::ModuleInfo>& set);

}  // namespace agent
