#include "probes/policy.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

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

std::filesystem::path self_status_path() {
  if (const char* env = std::getenv("AGENT_SELF_STATUS"); env && *env) return env;
  return "/proc/self/status";
}

std::optional<uint64_t> parse_cap_eff(std::string_view status) {
  const size_t at = status.find("CapEff:");
  if (at == std::string_view::npos || (at != 0 && status[at - 1] != '\n')) return std::nullopt;
  std::string_view v = status.substr(at + 7);
  v = v.substr(0, v.find('\n'));
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  if (v.empty() || v.size() > 16) return std::nullopt;
  uint64_t mask = 0;
  for (char c : v) {
    const int d = std::isxdigit(static_cast<unsigned char>(c)) ? (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (c | 0x20) - 'a' + 10) : -1;
    if (d < 0) return std::nullopt;
    mask = mask << 4 | static_cast<uint64_t>(d);
  }
  return mask;
}

Policy probe_policy(const HostRoot& root, const std::filesystem::path& self_status) {
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

  if (auto v = root.read_value("/proc/sys/kernel/modules_disabled")) {
    if (*v == "0" || *v == "1") p.modules_disabled = *v == "1";
    else p.problems.push_back(Error{EINVAL, "unexpected value '" + *v + "'", real("/proc/sys/kernel/modules_disabled")});
  } else if (v.error().code != ENOENT) {  // absent: a kernel without modules (no such check)
    p.problems.push_back(v.error());
  } else {
    p.modules_disabled = false;
  }
  // No /proc/cmdline: a root without /proc, which /proc/modules' probe reports.
  if (auto v = root.read_text("/proc/cmdline")) p.cmdline = *v;
  else note(v.error());
  {
    std::ifstream in(self_status);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      p.problems.push_back(Error{EIO, "cannot read the agent's own capabilities", self_status.string()});
    } else if (auto mask = parse_cap_eff(text.str())) {
      p.cap_sys_module = (*mask >> kCapSysModule & 1) != 0;
    } else {
      p.problems.push_back(Error{EINVAL, "no CapEff line", self_status.string()});
    }
  }
  return p;
}

}  // namespace agent::probes
