// A directory tree read as if it were the root of the filesystem, as under chroot, without
// chroot: every symlink (absolute or relative) and every ".." resolves inside it, magic links
// (/proc/<pid>/root, /proc/self/fd/N) are refused, and what is opened is typed and bounded
// before it is read. The node's root ("/host" in a container, "/" on a plain host, a fixture in
// a test) is read only through one of these, so a hostile host tree can at worst produce an
// error, never a read of the agent's own files.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/fd.h"
#include "kabi/file_io.h"
#include "kabi/result.h"

namespace agent::kabi {

class RootFs {
 public:
  // How paths are resolved: openat2(2) with RESOLVE_IN_ROOT (Linux 5.6+), or an equivalent walk
  // one component at a time over directory descriptors. Auto takes openat2 where the kernel
  // has it.
  enum class Resolver { Auto, Openat2, Walk };

  // The root must be an existing directory; it is made absolute and canonical.
  [[nodiscard]] static Result<RootFs> open(const std::filesystem::path& dir, Resolver resolver = Resolver::Auto);

  // The root's path on this filesystem ("/host"), for messages.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] bool is_live() const noexcept { return path_ == "/"; }
  [[nodiscard]] Resolver resolver() const noexcept { return resolver_; }

  // Opens `path` (taken from the root, leading "/" or not) with `flags` added to O_CLOEXEC.
  // O_PATH opens anything without side effects; to read a file use open_file.
  [[nodiscard]] Result<Fd> open_at(std::string_view path, int flags) const;
  // A regular file opened for reading (a FIFO, socket or device is an error, never opened).
  [[nodiscard]] Result<Fd> open_file(std::string_view path) const;

  // Whole files, typed and bounded (see file_io.h).
  [[nodiscard]] Result<std::string> read(std::string_view path, size_t max_size) const;
  [[nodiscard]] Result<MappedFile> map(std::string_view path, size_t max_size) const;

  // stat(2) of what `path` leads to (follow) or of its last component itself.
  [[nodiscard]] Result<struct stat> stat(std::string_view path, bool follow = true) const;
  [[nodiscard]] bool exists(std::string_view path) const { return stat(path).has_value(); }
  [[nodiscard]] bool is_directory(std::string_view path) const;
  [[nodiscard]] bool is_regular_file(std::string_view path) const;

  // The text of the symlink `path` (its last component is not followed).
  [[nodiscard]] Result<std::string> read_link(std::string_view path) const;
  // Where `path` leads, as a path inside the root ("/lib/modules/6.1/build" ->
  // "/usr/src/linux-headers-6.1"): links followed inside the root. ENOENT when it does not exist.
  [[nodiscard]] Result<std::string> canonical(std::string_view path) const;

  struct Entry {
    std::string name;
    mode_t type = 0;  // S_IFREG, S_IFDIR, S_IFLNK ... of the entry itself (links not followed)
  };
  // The entries of a directory, sorted by name, without "." and "..". An error while listing is
  // an error, never a short list.
  [[nodiscard]] Result<std::vector<Entry>> list(std::string_view dir) const;

  // The path as messages show it: "/host/lib/modules/x" for "/lib/modules/x" under "/host".
  [[nodiscard]] std::string display(std::string_view path) const;

 private:
  RootFs(Fd root, std::string path, Resolver resolver)
      : root_(std::move(root)), path_(std::move(path)), resolver_(resolver) {}
  Result<Fd> walk(std::string_view path, int flags, std::string* canonical) const;
  // The directory holding the last component of `path` (resolved inside the root), and that
  // component's name in `last`; empty `last` when the path names the root or ends in "..".
  Result<Fd> open_parent(std::string_view path, std::string& last) const;

  Fd root_;            // O_PATH descriptor of the root directory
  std::string path_;
  Resolver resolver_;
};

// "/a//b/./c" -> "/a/b/c" (lexical: no symlinks, ".." kept); always absolute.
[[nodiscard]] std::string normalize_path(std::string_view path);

}  // namespace agent::kabi
