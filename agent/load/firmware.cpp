#include "agent/load/firmware.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "agent/base/state_files.h"
#include "kabi/file_io.h"
#include "kabi/module.h"

namespace agent {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxFirmwareFile = size_t{64} << 20;

}  // namespace

Result<std::string> install_firmware(const kabi::RootFs& root, const BundleFirmware& fw, const std::string& base) {
  if (fw.digest.empty()) return fail(EINVAL, "no firmware to install", fw.dir);
  auto base_dir = WritableDir::open(root, base, "firmware directory");
  if (!base_dir) return tl::unexpected(base_dir.error());
  // A set already there is reused; one another agent renames into place first is as good as ours.
  auto copy = [&](const WritableDir& to) -> Result<void> {
    for (const auto& f : fw.files) {
      auto bytes = kabi::read_file(fs::path(fw.dir) / f.rel, kMaxFirmwareFile);
      if (!bytes) return tl::unexpected(bytes.error());
      if (kabi::sha256_hex(*bytes) != f.sha256)
        return fail(EIO, "changed since it was scanned", (fs::path(fw.dir) / f.rel).string());
      // Subdirectories one component at a time, inside the temporary tree.
      const fs::path rel(f.rel);
      std::optional<WritableDir> parent;
      const WritableDir* at = &to;
      for (const auto& comp : rel.parent_path()) {
        auto sub = at->subdir(comp.string());
        if (!sub) return tl::unexpected(sub.error());
        parent.emplace(std::move(*sub));
        at = &*parent;
      }
      if (auto w = at->write(rel.filename().string(), *bytes); !w) return tl::unexpected(w.error());
    }
    return {};
  };
  auto installed = install_dir(*base_dir, fw.digest, IfPresent::Keep, copy);
  if (!installed) return tl::unexpected(installed.error());
  return kabi::normalize_path(base) + "/" + fw.digest;
}

Result<void> set_firmware_path(const kabi::RootFs& root, const std::string& value) {
  const std::string shown = root.display(kFirmwarePathParam);
  auto p = root.open_at(kFirmwarePathParam, O_PATH);
  if (!p) return tl::unexpected(p.error());
  struct stat st{};
  if (::fstat(p->get(), &st) != 0 || !S_ISREG(st.st_mode)) return fail(EINVAL, "not a sysfs attribute", shown);
  // O_TRUNC as a shell's `>` has it: sysfs replaces the value on any write; a host tree that is
  // a plain file (a test's node) must not keep the tail of a longer previous value.
  Fd f(::open(("/proc/self/fd/" + std::to_string(p->get())).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!f) return fail(errno, std::string("cannot open for writing: ") + std::strerror(errno), shown);
  // A write of zero bytes never reaches the parameter: an empty path is written as a newline,
  // which the parameter strips (kernels >= 6.0; older ones keep a path of "\n", which names no
  // directory and reads back as empty).
  const std::string v = value.empty() ? std::string("\n") : value;
  if (::write(f.get(), v.data(), v.size()) != static_cast<ssize_t>(v.size()))
    return fail(errno, std::string("cannot write: ") + std::strerror(errno), shown);
  return {};
}

}  // namespace agent
