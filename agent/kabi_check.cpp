#include "agent/kabi_check.h"

#include <algorithm>
#include <ostream>

#include "kabi/kernel_keys.h"
#include "kabi/module.h"
#include "kabi/report.h"
#include "kabi/rules.h"
#include "kabi/signature.h"

namespace agent {

int run_kabi_check(const KabiCheckOptions& o, std::ostream& out, std::ostream& err) {
  auto kernel = kabi::load_kernel_model(o.symvers, o.kernel_modules);
  if (!kernel) {
    err << "agent: " << kernel.error().what() << '\n';
    return kExitInputError;
  }
  kernel->policy = o.policy;
  kernel->sig_enforce = o.sig_enforce;

  // The kernel's certificates decide whether a signature is by a trusted key, which must then
  // verify. Decompressing a kernel image costs ~0.1-0.8 s, so it is read only when the kernel
  // checks signatures at all.
  if (kernel->module_sig) {
    std::optional<std::filesystem::path> image;
    if (!o.kernel_image.empty()) image = o.kernel_image;
    else image = kabi::find_kernel_image(o.kernel_modules, kernel->release);
    if (image) {
      auto certs = kabi::extract_kernel_certificates(*image);
      if (!certs) {
        err << "agent: " << certs.error().what() << '\n';
        return kExitInputError;
      }
      kernel->certificates = std::move(*certs);
      kernel->certificates_known = true;
      kernel->kernel_image = image->string();
    }
  }

  std::vector<kabi::ModuleInfo> set;
  for (const auto& path : o.modules) {
    auto m = kabi::read_module(path, kernel->certificates_known ? &kernel->certificates : nullptr);
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
