// What the node adds to a load besides the module: the kernel command line (module_blacklist=,
// nomodeset, <module>.<param>= words) and the parameters the agent passes (modprobe.d
// options), judged as the kernel's parse_args() would judge them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"

namespace agent::kabi {

// The words of a parameter string as the kernel's next_arg() splits them: "name", "name=value",
// double quotes grouping (and dropped around the value).
[[nodiscard]] std::vector<ModuleParam> parse_module_params(std::string_view params, const std::string& source);

// Applies a kernel command line to the model: module_blacklist=a,b (repeatable), nomodeset, and
// <module>.<param>[=value] words (added to `params` of that module, after what is there, as
// modprobe appends them). Words after "--" are init's, not the kernel's.
void apply_kernel_cmdline(KernelModel& kernel, std::string_view cmdline, const std::string& source);

// The errno the kernel's setter for a `parmtype=` type gives `value` (none: the word had no
// '='): 0 accepted, EINVAL/ERANGE/ENOSPC, or nullopt when the type is not a standard one (its
// own ops decide). Arrays ("array of int") check every comma-separated element.
[[nodiscard]] std::optional<int> param_value_errno(std::string_view type, const std::optional<std::string>& value);

// "name" -> type of every parmtype=name:type of the module.
[[nodiscard]] std::optional<std::string> param_type(const ModuleInfo& m, std::string_view name);

}  // namespace agent::kabi
