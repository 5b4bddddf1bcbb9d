// libFuzzer target: the host's text files the entrypoint parses - /proc/modules,
// modules.builtin, modprobe.d's "options" lines, the kernel command line and keyctl's key
// descriptions (probes/loaded_modules.h, probes/module_options.h, probes/keyrings.h). A hostile host tree can at worst give an
// error naming the file: never a crash, a leak or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "probes/keyrings.h"
#include "probes/loaded_modules.h"
#include "probes/module_options.h"

using namespace agent::probes;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto mods = parse_proc_modules(text, "fuzz/proc/modules"); !mods) {
    if (mods.error().path != "fuzz/proc/modules" || mods.error().message.empty()) std::abort();
  } else {
    for (const auto& m : *mods)
      if (m.name.empty()) std::abort();
  }
  (void)parse_modules_builtin(text);
  for (const auto& [name, params] : parse_modprobe_options(text)) {
    if (name.empty() || params.empty() || name.find('-') != std::string::npos) std::abort();
  }
  for (const auto& [name, param] : parse_cmdline_options(text)) {
    if (name.empty() || param.empty() || name.find('-') != std::string::npos) std::abort();
  }
  if (auto key = parse_key_description(text, "fuzz/keyring"); !key) {
    if (key.error().path != "fuzz/keyring" || key.error().message.empty()) std::abort();
  } else if (key->type.empty()) {
    std::abort();
  }
  return 0;
}
