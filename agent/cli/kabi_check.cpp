#include "agent/cli/kabi_check.h"

#include <algorithm>
#include <ostream>

#include "agent/base/terminal.h"
#include "kabi/btf.h"
#include "kabi/kernel_keys.h"
#include "kabi/kernel_source.h"
#include "kabi/load_context.h"
#include "kabi/matrix.h"
#include "kabi/module.h"
#include "kabi/report.h"
#include "kabi/rules.h"
#include "kabi/signature.h"
#include "kabi/text.h"

namespace agent {

std::map<std::string, std::string> kabi_check_hints(const KabiCheckOptions& o, const std::optional<std::filesystem::path>& image) {
  std::map<std::string, std::string> hints;
  if (o.kernel_image.empty() && image)
    hints[kabi::reason::kSignatureNotVerified] =
        "--kernel-image " + image->string() + " (found beside the module tree) gives the kernel's certificates: "
        "the signatures are then verified";
  return hints;
}

int run_kabi_check(const KabiCheckOptions& o, std::ostream& out, std::ostream& err) {
  std::vector<kabi::ModuleInfo> set;
  for (const auto& path : o.modules) {
    auto m = kabi::read_module(path, {.trusted_certs = nullptr, .sha256 = false, .keep_unreadable = true});
    if (!m) {
      err << "agent: " << printable(m.error().what()) << '\n';
      return kExitInputError;
    }
    set.push_back(std::move(*m));
  }
  std::optional<kabi::StablelistCoverage> coverage;
  if (!o.stablelist.empty()) {
    auto list = kabi::read_stablelist(o.stablelist);
    if (!list) {
      err << "agent: " << printable(list.error().what()) << '\n';
      return kExitInputError;
    }
    coverage = kabi::stablelist_coverage(*list, kabi::bundle_imports(set));
  }
  // Malformed input is reported before the kernel's files are read; the model covers what
  // this set needs.
  auto kernel = kabi::load_kernel_model(o.symvers, o.kernel_modules, &set);
  if (!kernel) {
    err << "agent: " << printable(kernel.error().what()) << '\n';
    return kExitInputError;
  }
  kernel->policy = o.policy;
  kernel->sig_enforce = o.sig_enforce;
  kernel->lockdown = o.lockdown;
  kabi::apply_kernel_cmdline(*kernel, o.kernel_cmdline, "--kernel-cmdline");
  for (const auto& name : o.loaded) kernel->live.insert(kabi::owner_module_name(name));
  kernel->modules_disabled = o.modules_disabled;
  kernel->cap_sys_module = !o.no_cap_sys_module;

  // A signature by a key the kernel trusts must verify, or the kernel refuses the module before
  // any other check; the trusted certificates are in the kernel image. Decompressing an image
  // costs far more than the rest of a check, so it is read when asked for (--kernel-image) or
  // when a module is signed with the key the kernel's own modules are signed with (certainly
  // trusted). Otherwise a signature is reported as not verified: a key only a distribution CA in
  // the image trusts (not Debian's case) goes unchecked.
  const bool own_key = std::any_of(set.begin(), set.end(), [&](const kabi::ModuleInfo& m) {
    return m.signature.state == kabi::Signature::State::Present && !kernel->build_key_id.empty() &&
           m.signature.key_id == kernel->build_key_id;
  });
  if (kernel->module_sig && (!o.kernel_image.empty() || own_key)) {
    std::optional<std::filesystem::path> image;
    if (!o.kernel_image.empty()) image = o.kernel_image;
    else image = kabi::find_kernel_image(o.kernel_modules, kernel->release);
    if (image) {
      auto certs = kabi::verify_module_signatures(set, *image);
      if (!certs) {
        err << "agent: " << printable(certs.error().what()) << '\n';
        return kExitInputError;
      }
      kernel->certificates_known = true;
      kernel->kernel_image = image->string();
    }
  }
  // The base of the modules' split .BTF: --kernel-btf, else the vmlinux Debian's linux-headers
  // ship (6.12+), reached by the tree's build link. Read only when a module has .BTF.
  if (std::any_of(set.begin(), set.end(), [](const kabi::ModuleInfo& m) { return !m.btf.empty(); })) {
    auto live = kabi::RootFs::open("/");
    if (!live) {
      err << "agent: " << printable(live.error().what()) << '\n';
      return kExitInputError;
    }
    // A relative build link stays in the tree's root; an absolute one names the target's path.
    const std::filesystem::path build = o.kernel_modules / "build", headers = build / "vmlinux";
    auto link = live->read_link(build.string());
    const bool inside = link && !link->empty() && link->front() != '/';
    if (!o.kernel_btf.empty()) {
      auto btf = kabi::read_kernel_btf(*live, o.kernel_btf.string());
      if (!btf) {
        err << "agent: " << printable(btf.error().what()) << '\n';
        return kExitInputError;
      }
      kernel->btf = std::move(*btf);
    } else if (inside && live->is_regular_file(headers.string())) {
      auto btf = kabi::read_kernel_btf(*live, headers.string());
      if (btf) kernel->btf = std::move(*btf);
      else kernel->btf_unread = btf.error().what();
    } else {
      kernel->btf_unread = "no --kernel-btf, and no " + headers.string() + " (linux-headers' vmlinux" +
                           (link && !inside ? ", the build link is absolute: " + *link : std::string()) + ")";
    }
  }
  const kabi::Evaluation ev = kabi::evaluate(set, *kernel);
  if (o.json) {
    nlohmann::json j = kabi::evaluation_json(ev, *kernel);
    if (coverage) j["stablelist"] = kabi::stablelist_json(*coverage);
    out << safe_dump(j) << '\n';
  } else {
    if (!o.quiet) {
      // The image is looked for only when a warning would point at it.
      std::optional<std::filesystem::path> image;
      const bool unverified = std::any_of(ev.modules.begin(), ev.modules.end(), [](const kabi::ModuleVerdict& m) {
        return std::any_of(m.reasons.begin(), m.reasons.end(),
                           [](const kabi::Reason& r) { return r.code == kabi::reason::kSignatureNotVerified; });
      });
      if (unverified && o.kernel_image.empty()) image = kabi::find_kernel_image(o.kernel_modules, kernel->release);
      const kabi::TextOptions text{.verbose = o.verbose, .width = terminal_width(out), .hints = kabi_check_hints(o, image)};
      out << printable(kabi::evaluation_text(ev, *kernel, text));
      if (coverage) out << '\n' << printable(kabi::stablelist_text(*coverage));
      out << '\n';
    }
    out << printable(kabi::evaluation_summary(ev, *kernel)) << '\n';
  }
  return ev.all_loadable() ? kExitLoadable : kExitRefused;
}

}  // namespace agent
