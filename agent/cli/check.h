// `agent --check`: the diagnosis of this node (agent/decision/diagnose.h) and the plan the entrypoint
// would carry out (agent/decision/plan.h), printed as text or JSON. Never loads, writes or builds.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>

#include "agent/decision/plan.h"

namespace agent {


struct CheckOptions : PlanInputs {
  bool json = false;
  bool verbose = false;
  bool quiet = false;  // text: the summary line only (errors still go to `err`)
};

// The whole command: diagnose, plan, print text or JSON to `out`, input errors to `err`;
// returns the exit code (the decision's, or 2). Text ends with check_summary()'s line and is
// wrapped only on a terminal.
int run_check(const CheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace agent
