// The node's module-loading policy: signature enforcement, lockdown, Secure Boot, which module
// compression the kernel takes, and where it looks for firmware.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent::probes {

inline constexpr std::string_view kSecureBootVar = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

struct Policy {
  // /sys/module/module/parameters/sig_enforce: "Y" or "N". The file exists only when the kernel
  // checks signatures at all (CONFIG_MODULE_SIG); nullopt when it is absent.
  std::optional<bool> sig_enforce;
  bool module_sig = false;  // the kernel checks module signatures (the parameter exists)
  // /sys/kernel/security/lockdown: "none", "integrity", "confidentiality"; empty when unknown.
  std::string lockdown;
  // The SecureBoot EFI variable; nullopt when the firmware is not EFI or the variable is unreadable.
  std::optional<bool> secure_boot;
  std::string secure_boot_detail;  // "enabled", "disabled", "not an EFI system", or the error
  // /sys/module/compression (CONFIG_MODULE_DECOMPRESS): what the kernel decompresses itself;
  // empty when it does not (libkmod then decompresses in user space).
  std::string kernel_decompression;
  // /sys/module/firmware_class/parameters/path; nullopt when unreadable.
  std::optional<std::string> firmware_path;
  std::vector<Error> problems;  // files that exist on such kernels but could not be read

  // Unsigned or unknown-key modules are fatal: sig_enforce=Y, or lockdown integrity or
  // confidentiality (Secure Boot with an unknown lockdown state counts too: most distributions
  // lock down under Secure Boot).
  [[nodiscard]] bool enforced() const noexcept;
  [[nodiscard]] bool locked_down() const noexcept;
};

// "none [integrity] confidentiality" -> "integrity"; empty if nothing is selected.
[[nodiscard]] std::string parse_lockdown(std::string_view text);
// An efivarfs file: 4 bytes of attributes, then the value; nullopt when too short.
[[nodiscard]] std::optional<bool> parse_efi_bool(std::string_view bytes);

[[nodiscard]] Policy probe_policy(const HostRoot& root);

}  // namespace agent::probes
