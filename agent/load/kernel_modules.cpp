#include "agent/load/kernel_modules.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <libkmod.h>

namespace agent {
namespace {

using ModuleHandle = CHandle<kmod_module, kmod_module_unref>;

std::string err_text(int e) { return std::strerror(e); }

}  // namespace

Result<KernelModules> KernelModules::open() {
  // An empty configuration list: no modprobe.d of the container's filesystem is read.
  const char* no_config[] = {nullptr};
  kmod_ctx* ctx = kmod_new(nullptr, no_config);
  if (!ctx) return fail(ENOMEM, "libkmod: cannot create a context");
  kmod_set_log_priority(ctx, 0);  // libkmod's own messages would repeat what the agent reports
  return KernelModules(ctx);
}

Result<void> KernelModules::insert(const Fd& file, const std::string& name, const std::string& options) const {
  // libkmod opens the module by path: /proc/self/fd/N reopens the very inode whose bytes the
  // agent hashed, so what the kernel gets is what was checked.
  const std::string path = "/proc/self/fd/" + std::to_string(file.get());
  kmod_module* raw = nullptr;
  if (int err = kmod_module_new_from_path(ctx_.get(), path.c_str(), &raw); err < 0)
    return fail(-err, "libkmod cannot open the module: " + err_text(-err), name);
  ModuleHandle mod(raw);
  const int err = kmod_module_insert_module(mod.get(), 0, options.c_str());  // never KMOD_INSERT_FORCE_*
  if (err < 0) return fail(-err, "the kernel refused it: " + err_text(-err), name);
  return {};
}

Result<void> KernelModules::remove(const std::string& name) const {
  kmod_module* raw = nullptr;
  if (int err = kmod_module_new_from_name(ctx_.get(), name.c_str(), &raw); err < 0)
    return fail(-err, "libkmod: " + err_text(-err), name);
  ModuleHandle mod(raw);
  const int err = kmod_module_remove_module(mod.get(), KMOD_REMOVE_NOWAIT);  // never KMOD_REMOVE_FORCE
  if (err < 0) return fail(-err, "cannot remove: " + err_text(-err), name);
  return {};
}

Result<KernelLog> KernelLog::open() {
  Fd fd(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return fail(errno, "cannot read the kernel log: " + err_text(errno), "/dev/kmsg");
  if (::lseek(fd.get(), 0, SEEK_END) < 0) return fail(errno, "cannot seek: " + err_text(errno), "/dev/kmsg");
  return KernelLog(std::move(fd));
}

std::vector<std::string> KernelLog::read_new() {
  std::vector<std::string> out;
  char buf[8192];
  for (int records = 0; records < 4096; ++records) {
    const ssize_t n = ::read(fd_.get(), buf, sizeof buf - 1);
    if (n < 0) {
      if (errno == EPIPE) continue;  // overwritten records: go on with the next one
      break;                         // EAGAIN: nothing more
    }
    // One record per read: "prio,seq,usec,flags;text\n" then " KEY=value" lines.
    std::string_view rec(buf, static_cast<size_t>(n));
    const size_t semi = rec.find(';');
    if (semi == std::string_view::npos) continue;
    std::string_view text = rec.substr(semi + 1);
    text = text.substr(0, text.find('\n'));
    out.emplace_back(text);
  }
  return out;
}

std::vector<std::string> lines_about(const std::vector<std::string>& lines, const std::string& module, size_t fallback) {
  std::string dashed = module;
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  std::vector<std::string> out;
  for (const auto& l : lines)
    if (l.find(module) != std::string::npos || l.find(dashed) != std::string::npos) out.push_back(l);
  if (out.empty()) out.assign(lines.end() - static_cast<std::ptrdiff_t>(std::min(fallback, lines.size())), lines.end());
  return out;
}

}  // namespace agent
