// What the running kernel has loaded: /proc/modules and /sys/module, plus what is built in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent::probes {

struct LoadedModule {
  std::string name;
  bool builtin = false;         // compiled into the kernel: can never be removed
  bool sysfs = false;           // /sys/module/<name> exists (a built-in of that name: EINVAL)
  uint64_t size = 0;            // /proc/modules
  std::optional<int> refcnt;    // /proc/modules (or /sys/module/<m>/refcnt)
  std::vector<std::string> used_by;  // /proc/modules column 4
  std::vector<std::string> holders;  // /sys/module/<m>/holders/
  std::string state;            // /proc/modules: Live, Loading, Unloading
  std::string initstate;        // /sys/module/<m>/initstate: live, coming, going
  std::string srcversion;       // /sys/module/<m>/srcversion (absent without a MODULE_VERSION)
  std::string build_id;         // /sys/module/<m>/notes/.note.gnu.build-id, hex
  std::string version;          // /sys/module/<m>/version
  std::string taint;            // /proc/modules flags, "(OE)"
};

struct ModuleInventory {
  std::map<std::string, LoadedModule> modules;  // loaded and built-in, by name
  std::vector<Error> problems;                  // parts that could not be read
  bool sys_module_read = false;                 // /sys/module was listed
  bool builtin_read = false;                    // modules.builtin was read
};

// Parses /proc/modules text ("name size refcnt deps state address [taint]"). A line that does
// not have that shape is an error naming `source` and the line.
[[nodiscard]] Result<std::vector<LoadedModule>> parse_proc_modules(std::string_view text, const std::string& source);

// Module names from modules.builtin text ("kernel/drivers/.../foo.ko" per line).
[[nodiscard]] std::vector<std::string> parse_modules_builtin(std::string_view text);

// A live module's build id (hex) from /sys/module/<name>/notes/.note.gnu.build-id: empty for a
// module built without one (no such note), an error when the note cannot be read.
[[nodiscard]] Result<std::string> probe_build_id(const HostRoot& root, const std::string& name);

// /proc/modules is required (an error if unreadable); /sys/module details and modules.builtin
// (under `module_dir`, a host path; may be empty) are added when readable, else recorded in
// problems.
[[nodiscard]] Result<ModuleInventory> probe_loaded_modules(const HostRoot& root, const std::string& module_dir);

}  // namespace agent::probes
