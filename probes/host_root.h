// Every host path the agent reads goes through one HostRoot: "/" on a plain host, "/host" in a
// container, a fixture tree in a test. Symlinks resolve inside the root as under chroot.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"
#include "kabi/root_fs.h"

namespace agent::probes {

class HostRoot {
 public:
  // The root must be an existing directory; it is made absolute and canonical.
  [[nodiscard]] static Result<HostRoot> open(const std::filesystem::path& root,
                                             kabi::RootFs::Resolver resolver = kabi::RootFs::Resolver::Auto);
  // `cli` (--root) if given, else $HOST_ROOT if set and non-empty, else "/".
  [[nodiscard]] static Result<HostRoot> from_cli_or_env(const std::optional<std::filesystem::path>& cli);

  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }
  // True when the root is "/": the live system as this process sees it.
  [[nodiscard]] bool is_live() const noexcept { return fs_.is_live(); }
  // The one handle every read of the host goes through.
  [[nodiscard]] const kabi::RootFs& fs() const noexcept { return fs_; }

  // Where a host path leads, as a host path ("/lib/modules/6.1.0/build" ->
  // "/usr/src/linux-headers-6.1.0"), symlinks resolved inside the root. ENOENT if it does not
  // exist, ELOOP on a symlink loop.
  [[nodiscard]] Result<std::string> canonical(std::string_view host_path) const { return fs_.canonical(host_path); }
  // "/host/usr/src/x" for "/usr/src/x": how messages name a host path.
  [[nodiscard]] std::string display(std::string_view host_path) const { return fs_.display(host_path); }

  // Whole file (sysfs and procfs files included: read to EOF, not by st_size), at most
  // kabi::kMaxTextSize; a FIFO, socket or device is an error.
  [[nodiscard]] Result<std::string> read_text(std::string_view host_path) const;
  // read_text without the trailing newline/whitespace: a sysfs attribute value.
  [[nodiscard]] Result<std::string> read_value(std::string_view host_path) const;
  // Entry names of a directory, sorted, without "." and "..".
  [[nodiscard]] Result<std::vector<std::string>> list_dir(std::string_view host_path) const;
  // The last component of where a symlink points, resolved inside the root ("driver" -> "i915").
  [[nodiscard]] Result<std::string> link_basename(std::string_view host_path) const;

  [[nodiscard]] bool exists(std::string_view host_path) const { return fs_.exists(host_path); }
  [[nodiscard]] bool is_directory(std::string_view host_path) const { return fs_.is_directory(host_path); }
  [[nodiscard]] bool is_regular_file(std::string_view host_path) const { return fs_.is_regular_file(host_path); }

 private:
  HostRoot(kabi::RootFs fs, std::filesystem::path root) : fs_(std::move(fs)), root_(std::move(root)) {}
  kabi::RootFs fs_;
  std::filesystem::path root_;
};

// "0x8086\n" -> 0x8086; nullopt if not a number.
[[nodiscard]] std::optional<unsigned long> parse_number(std::string_view text);

// Strips trailing whitespace and newlines.
[[nodiscard]] std::string_view trim(std::string_view s) noexcept;

}  // namespace agent::probes
