// The acting half of module handling, on the running kernel: inserts and removals through
// libkmod (never forced), and the kernel's log since an insert (/dev/kmsg), which says why a
// module's init failed. Reads of what is loaded stay in probes/loaded_modules.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <libkmod.h>

#include "kabi/fd.h"
#include "kabi/handles.h"
#include "kabi/result.h"


namespace agent {

// What the entrypoint and `agent unload` ask of the running kernel's module loader: the one
// seam between the load path and the kernel (the unit tests give a fake that edits a fixture
// node's /proc/modules and /sys the way the kernel would).
class ModuleControl {
 public:
  virtual ~ModuleControl() = default;
  // Inserts the module in the open file `file` (its bytes already verified) with `options`.
  // The error carries the kernel's errno (init_module/finit_module, or the module's init).
  [[nodiscard]] virtual Result<void> insert(const Fd& file, const std::string& name, const std::string& options) const = 0;
  // Removes a loaded module; never forced, never waits: EBUSY/EAGAIN while it is in use.
  [[nodiscard]] virtual Result<void> remove(const std::string& name) const = 0;
};

class KernelModules final : public ModuleControl {
 public:
  // A libkmod context that reads no configuration of the agent's own filesystem: options are
  // passed explicitly (probes/module_options reads the host's).
  [[nodiscard]] static Result<KernelModules> open();

  [[nodiscard]] Result<void> insert(const Fd& file, const std::string& name, const std::string& options) const override;
  [[nodiscard]] Result<void> remove(const std::string& name) const override;

 private:
  explicit KernelModules(kmod_ctx* c) : ctx_(c) {}
  CHandle<kmod_ctx, kmod_unref> ctx_;
};

// The kernel's log from the moment it is opened (/dev/kmsg, positioned at its end).
class KernelLog {
 public:
  // An error when /dev/kmsg cannot be read (then failures carry no kernel lines).
  [[nodiscard]] static Result<KernelLog> open();
  // The messages logged since open() (or the last call), text only.
  [[nodiscard]] std::vector<std::string> read_new();

 private:
  explicit KernelLog(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

// Of `lines`, those about `module` (naming it, with '-' or '_'); the last `fallback` lines when
// none does.
[[nodiscard]] std::vector<std::string> lines_about(const std::vector<std::string>& lines, const std::string& module,
                                                   size_t fallback = 5);

}  // namespace agent
