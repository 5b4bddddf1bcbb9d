// Every host path the agent reads goes through one HostRoot: "/" on a plain host, "/host" in a
// container, a fixture tree in a test. Symlinks resolve inside the root as under chroot.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"

namespace agent::probes {

class HostRoot {
 public:
  // The root must be an existing directory; it is made absolute and canonical.
  [[nodiscard]] static Result<HostRoot> open(const std::filesystem::path& root);
  // `cli` (--root) if given, else $HOST_ROOT if set and non-empty, else "/".
  [[nodiscard]] static Result<HostRoot> from_cli_or_env(const std::optional<std::filesystem::path>& cli);

  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }
  // True when the root is "/": the live system as this process sees it.
  [[nodiscard]] bool is_live() const noexcept { return root_ == "/"; }

  // Maps a host path ("/lib/modules/6.1.0/build") to a path on this filesystem, following
  // symlinks inside the root: an absolute link target is re-rooted, ".." stops at the root.
  // Components that do not exist are appended unresolved, so opening the result reports the
  // missing file. Fails only on a symlink loop (ELOOP).
  [[nodiscard]] Result<std::filesystem::path> resolve(std::string_view host_path) const;
  // The host path of a path under the root: "/host/usr/src/x" -> "/usr/src/x".
  [[nodiscard]] std::string host_path_of(const std::filesystem::path& real) const;

  // Whole file (sysfs and procfs files included: read to EOF, not by st_size).
  [[nodiscard]] Result<std::string> read_text(std::string_view host_path) const;
  // read_text without the trailing newline/whitespace: a sysfs attribute value.
  [[nodiscard]] Result<std::string> read_value(std::string_view host_path) const;
  // Entry names of a directory, sorted, without "." and "..".
  [[nodiscard]] Result<std::vector<std::string>> list_dir(std::string_view host_path) const;
  // The last component of where a symlink points, resolved inside the root ("driver" -> "i915").
  [[nodiscard]] Result<std::string> link_basename(std::string_view host_path) const;

  [[nodiscard]] bool exists(std::string_view host_path) const;
  [[nodiscard]] bool is_directory(std::string_view host_path) const;
  [[nodiscard]] bool is_regular_file(std::string_view host_path) const;

 private:
  explicit HostRoot(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path root_;
};

// "0x8086\n" -> 0x8086; nullopt if not a number.
[[nodiscard]] std::optional<unsigned long> parse_number(std::string_view text);

// Strips trailing whitespace and newlines.
[[nodiscard]] std::string_view trim(std::string_view s) noexcept;

}  // namespace agent::probes
