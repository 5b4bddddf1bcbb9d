// The node's module-loading policy: signature enforcement, lockdown, Secure Boot, which module
// compression the kernel takes, and where it looks for firmware.
#pragma once

#include <cstdint>
#include <filesystem>
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
  // may_init_module(): /proc/sys/kernel/modules_disabled of the host, and CAP_SYS_MODULE in
  // the CapEff of the agent's own process (/proc/self/status, not the host root's); nullopt
  // when unreadable (a problem).
  std::optional<bool> modules_disabled;
  std::optional<bool> cap_sys_module;
  std::optional<std::string> cmdline;  // /proc/cmdline of the host
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

// The CapEff mask of a /proc/<pid>/status text; nullopt when it has none.
[[nodiscard]] std::optional<uint64_t> parse_cap_eff(std::string_view status);
inline constexpr int kCapSysModule = 16;

// The agent's own status file: $AGENT_SELF_STATUS when set (tests: a fixture, as the test
// runner's capabilities are not the node's), else /proc/self/status.
[[nodiscard]] std::filesystem::path self_status_path();

// `self_status`: the agent's own status (read as is, not through the root).
[[nodiscard]] Policy probe_policy(const HostRoot& root, const std::filesystem::path& self_status = self_status_path());

}  // namespace agent::probes
