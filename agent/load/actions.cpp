#include "agent/load/actions.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "kabi/file_io.h"
#include "kabi/module.h"

namespace agent {

Result<Fd> open_for_insert(const PlannedInsert& insert, const probes::HostRoot& root) {
  if (!insert.from_bundle) return root.fs().open_file(insert.path);
  Fd path_fd(::open(insert.path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!path_fd) return fail(errno, std::string("cannot open: ") + std::strerror(errno), insert.path);
  auto file = kabi::open_regular(path_fd, insert.path);
  if (!file) return tl::unexpected(file.error());
  auto bytes = kabi::read_fd(*file, insert.path, kabi::kMaxModuleSize);
  if (!bytes) return tl::unexpected(bytes.error());
  if (kabi::sha256_hex(*bytes) != insert.sha256)
    return fail(EIO, "changed since it was checked (sha256 " + kabi::sha256_hex(*bytes) + ", checked " + insert.sha256 + ")",
                insert.path);
  return std::move(*file);
}

Result<void> restore_module(const probes::HostRoot& root, const ModuleControl& kernel, const std::string& name,
                            const std::string& restore_path, const std::string& options) {
  if (restore_path.empty()) return fail(ENOENT, "not in the kernel's module tree: cannot be inserted again", name);
  auto file = root.fs().open_file(restore_path);
  if (!file) return tl::unexpected(file.error());
  return kernel.insert(*file, name, options);
}

}  // namespace agent
