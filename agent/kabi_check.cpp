#include "agent/kabi_check.h"

#include <ostream>

#include "kabi/module.h"
#include "kabi/report.h"
#include "kabi/rules.h"

namespace agent {

int run_kabi_check(const KabiCheckOptions& o, std::ostream& out, std::ostream& err) {
  auto kernel = kabi::load_kernel_model(o.symvers, o.kernel_modules);
  if (!kernel) {
    err << "agent: " << kernel.error().what() << '\n';
    return kExitInputError;
  }
  kernel->policy = o.policy;
  kernel->sig_enforce = o.sig_enforce;

  std::vector<kabi::ModuleInfo> set;
  for (const auto& path : o.modules) {
    auto m = kabi::read_module(path);
    if (!m) {
      err << "agent: " << m.error().what() << '\n';
      return kExitInputError;
    }
    set.push_back(std::move(*m));
  }
  const kabi::Evaluation ev = kabi::evaluate(set, *kernel);
  if (o.json)
    out << kabi::evaluation_json(ev, *kernel).dump(2) << '\n';
  else
    out << kabi::evaluation_text(ev, *kernel, o.verbose);
  return ev.all_loadable() ? kExitLoadable : kExitRefused;
}

}  // namespace agent
