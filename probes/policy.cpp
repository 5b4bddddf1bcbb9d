#include "probes/policy.h"

#include <cerrno>

namespace agent::probes {

bool Policy::locked_down() const noexcept { return lockdown == "integrity" || lockdown == "confidentiality"; }

bool Policy::enforced() const noexcept {
  if (sig_enforce.value_or(false) || locked_down()) return true;
  return lockdown.empty() && secure_boot.value_or(false);
}

std::string parse_lockdown(std::string_view text) {
  const size_t open = text.find('[');
  const size_t close = text.find(']', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos) return {};
  return std::string(text.substr(open + 1, close - open - 1));
}

std::optional<bool> parse_efi_bool(std::string_view bytes) {
  if (bytes.size() < 5) return std::nullopt;
  return bytes[4] != 0;
}

Policy probe_policy(const HostRoot& root) {
  Policy p;
  auto real = [&](std::string_view host) { return root.display(host); };
  // A missing file is a fact about the kernel's configuration; an unreadable one is a problem.
  auto note = [&](const Error& e) {
    if (e.code != ENOENT) p.problems.push_back(e);
  };

  if (auto v = root.read_value("/sys/module/module/parameters/sig_enforce")) {
    p.module_sig = true;
    if (*v == "Y" || *v == "1") p.sig_enforce = true;
    else if (*v == "N" || *v == "0") p.sig_enforce = false;
    else p.problems.push_back(Error{EINVAL, "unexpected value '" + *v + "'", real("/sys/module/module/parameters/sig_enforce")});
  } else {
    note(v.error());
  }

  if (auto v = root.read_text("/sys/kernel/security/lockdown")) {
    p.lockdown = parse_lockdown(*v);
    if (p.lockdown.empty()) p.problems.push_back(Error{EINVAL, "no selected lockdown mode in '" + *v + "'", real("/sys/kernel/security/lockdown")});
  } else if (v.error().code == ENOENT && !root.exists("/sys/kernel/security")) {
    // securityfs not mounted (or no LSM): lockdown unknown, not "none".
    p.problems.push_back(Error{ENOENT, "securityfs not mounted: lockdown state unknown", v.error().path});
  } else if (v.error().code == ENOENT) {
    // securityfs is there but has no lockdown file: the kernel has no lockdown LSM.
    p.lockdown = "none";
  } else {
    p.problems.push_back(v.error());
  }

  if (!root.exists("/sys/firmware/efi")) {
    p.secure_boot = false;
    p.secure_boot_detail = "not an EFI system";
  } else if (auto v = root.read_text("/sys/firmware/efi/efivars/" + std::string(kSecureBootVar))) {
    p.secure_boot = parse_efi_bool(*v);
    if (!p.secure_boot) {
      p.secure_boot_detail = "malformed SecureBoot variable";
      p.problems.push_back(Error{EINVAL, p.secure_boot_detail, real("/sys/firmware/efi/efivars/" + std::string(kSecureBootVar))});
    } else {
      p.secure_boot_detail = *p.secure_boot ? "enabled" : "disabled";
    }
  } else {
    // EFI without the variable (or efivarfs not mounted): say so, do not guess.
    p.secure_boot_detail = v.error().what();
    p.problems.push_back(v.error());
  }

  if (auto v = root.read_value("/sys/module/compression")) p.kernel_decompression = *v;
  else note(v.error());

  if (auto v = root.read_value("/sys/module/firmware_class/parameters/path")) p.firmware_path = *v;
  else p.problems.push_back(v.error());
  return p;
}

}  // namespace agent::probes
