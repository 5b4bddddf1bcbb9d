// Module parameters as modprobe applies them, so a module the agent inserts gets what the
// operator configured for it (i915.enable_guc=3 in /etc/modprobe.d, or on the kernel command
// line): "options NAME PARAMS" lines of the host's modprobe.d, then NAME.PARAM=VALUE words of
// /proc/cmdline. Only options: install/remove commands are never run, softdeps not followed.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent::probes {

// An "options", "blacklist" or "install" line of a modprobe.d file.
struct ModprobeLine {
  std::string kind;    // "options", "blacklist", "install"
  std::string module;  // underscores
  std::string rest;    // the parameters, the command; "" for blacklist
  std::string source;  // "path:line"
};

struct ModuleOptions {
  std::map<std::string, std::string> by_module;  // module name (underscores) -> "p1=v1 p2=v2"
  std::vector<ModprobeLine> lines;               // of the files read, in order
  std::vector<std::string> sources;              // files read, in order, and "/proc/cmdline"
  std::vector<Error> problems;                   // files that could not be read
  [[nodiscard]] std::string of(std::string_view module) const;  // "" when none
};

// "options NAME PARAMS..." lines (comments, '\' continuations); names normalized.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> parse_modprobe_options(std::string_view text);
// The options, blacklist and install lines of one file, numbered from 1 (a continued line
// counts where it starts).
[[nodiscard]] std::vector<ModprobeLine> parse_modprobe_conf(std::string_view text, const std::string& path);
// NAME.PARAM[=VALUE] words of a kernel command line (quotes honoured, nothing after "--").
[[nodiscard]] std::vector<std::pair<std::string, std::string>> parse_cmdline_options(std::string_view cmdline);

// The host's configuration as kmod reads it: *.conf in /etc/modprobe.d, /run/modprobe.d,
// /usr/local/lib/modprobe.d, /lib/modprobe.d and /usr/lib/modprobe.d, sorted by file name, a
// name in an earlier directory hiding the same name in a later one; then /proc/cmdline.
[[nodiscard]] ModuleOptions probe_module_options(const HostRoot& root);

}  // namespace agent::probes
