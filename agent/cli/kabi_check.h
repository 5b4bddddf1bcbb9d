// `agent kabi check`: the offline verdict for CI and tests.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/base/vocabulary.h"
#include "kabi/kernel_model.h"

namespace agent {

struct KabiCheckOptions {
  std::filesystem::path symvers;
  std::filesystem::path kernel_modules;  // /lib/modules/<kver> of the target kernel
  std::filesystem::path kernel_image;    // vmlinuz, for its trusted certificates; optional
  std::filesystem::path kernel_btf;      // the kernel's BTF (vmlinux .BTF); optional, else <kernel_modules>/build/vmlinux
  std::vector<std::filesystem::path> modules;
  std::filesystem::path stablelist;      // kABI stablelist: coverage of the modules' imports; optional
  kabi::MissingVersionPolicy policy = kabi::MissingVersionPolicy::Strict;
  bool sig_enforce = false;
  bool lockdown = false;
  std::string kernel_cmdline;  // as /proc/cmdline would read: module_blacklist=, nomodeset, <module>.<param>=
  // What `agent check` reads live, told: module names /proc/modules lists (loaded when the set
  // is inserted), kernel.modules_disabled = 1, the inserting process without CAP_SYS_MODULE.
  std::vector<std::string> loaded;
  bool modules_disabled = false;
  bool no_cap_sys_module = false;
  bool json = false;
  bool verbose = false;
  bool quiet = false;  // text: the summary line only (errors still go to `err`)
};

// The advice for warnings a flag of the check settles: signature_not_verified -> the
// --kernel-image to give, when `image` (one found beside the module tree) is set. Pure.
[[nodiscard]] std::map<std::string, std::string> kabi_check_hints(const KabiCheckOptions& o,
                                                                  const std::optional<std::filesystem::path>& image);

// Runs the check, printing the report to `out` and input errors to `err`. Text ends with a
// summary line ("1/1 refused (ENOEXEC) on 6.1.0-56-amd64"); it is wrapped only on a terminal.
int run_kabi_check(const KabiCheckOptions& o, std::ostream& out, std::ostream& err);

}  // namespace agent
