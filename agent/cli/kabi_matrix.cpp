// `agent kabi matrix --bundle DIR [--stablelist FILE] [--json] KERNEL...`
#include <filesystem>
#include <ostream>

#include "agent/cli/kabi_check.h"
#include "agent/cli/kabi_pipeline.h"
#include "kabi/kernel_source.h"
#include "kabi/matrix.h"
#include "kabi/rules.h"
#include "kabi/text.h"

namespace agent {

namespace fs = std::filesystem;

int run_kabi_matrix(const KabiMatrixOptions& o, std::ostream& out, std::ostream& err) {
  auto error = [&](const Error& e) {
    err << "agent: " << printable(e.what()) << '\n';
    return kExitInputError;
  };
  auto bundle = kabi::read_bundle(o.bundle);
  if (!bundle) return error(bundle.error());
  const std::vector<std::string> imports = kabi::bundle_imports(*bundle);

  kabi::MatrixReport report;
  report.bundle = o.bundle.string();
  report.bundle_modules = bundle->size();
  report.imports = imports.size();
  if (!o.stablelist.empty()) {
    auto s = kabi::read_stablelist(o.stablelist);
    if (!s) return error(s.error());
    report.stablelist = kabi::stablelist_coverage(*s, imports);
  }
  // Each kernel's symvers is read once and only the bundle's imports are kept (load_kernel).
  for (const auto& given : o.kernels) {
    // A path that exists is a path, even with a '=' in it; else NAME=PATH names the kernel.
    std::error_code ec;
    const kabi::KernelArg arg = fs::exists(given, ec) ? kabi::KernelArg{"", given.string()} : kabi::parse_kernel_arg(given);
    auto src = kabi::locate_kernel(arg.path);
    if (!src) return error(src.error());
    auto loaded = kabi::load_kernel(*src, *bundle);
    if (!loaded) return error(loaded.error());
    kabi::KernelModel& k = loaded->model;
    k.policy = o.policy;
    const kabi::Evaluation ev = kabi::evaluate(*bundle, k);
    kabi::KernelPlan plan = kabi::plan_kernel(ev);
    plan.kernel = arg.path;
    plan.name = arg.name;
    plan.release = loaded->release.release;
    plan.release_from = loaded->release.from;
    plan.symvers = k.symvers_source;
    plan.kernel_is_symvers = src->arg_is_symvers;
    plan.fingerprint = kabi::bundle_fingerprint(imports, k);
    for (const auto& n : src->notes) plan.notes.push_back(n);
    if (!loaded->vermagic_known)
      plan.notes.push_back("no module tree: vermagic, struct module size and in-tree dependencies not checked "
                           "(give the directory that holds both)");
    if (loaded->symvers_partial)
      plan.notes.push_back("no Module.symvers: CRCs taken from the tree's own modules; a vmlinux export none of "
                           "them uses looks missing");
    for (const auto& n : loaded->release.notes) plan.notes.push_back(n);
    for (const auto& p : k.problems) plan.notes.push_back(p.what());
    report.kernels.push_back(std::move(plan));
  }
  kabi::group_kernels(report);
  if (o.json)
    out << safe_dump(kabi::matrix_json(report)) << '\n';
  else
    out << printable(kabi::matrix_text(report));
  for (const auto& k : report.kernels)
    if (k.verdict != kabi::Plan::Reuse) return kExitRefused;
  return kExitLoadable;
}

}  // namespace agent
