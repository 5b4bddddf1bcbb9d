// The running kernel as the kABI rules see it, for a set of modules the agent did not ship
// (modules it built on the node): the same probes and the same model as the diagnosis
// (agent/diagnose.cpp), without the devices, the loaded modules and the decision.
#pragma once

#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "probes/host_root.h"
#include "probes/kernel.h"

namespace agent {

struct NodeModel {
  probes::RunningKernel kernel;
  kabi::KernelModel model;
  std::vector<Error> problems;  // what could not be read without making the model wrong
};

// Probes the running kernel under `root` for what `set` needs and builds the model the rules
// run against. Nothing counts as live: the caller decides what to do about loaded modules.
[[nodiscard]] Result<NodeModel> node_model_for(const probes::HostRoot& root, const std::vector<kabi::ModuleInfo>& set);

}  // namespace agent
