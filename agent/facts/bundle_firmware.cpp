#include "agent/facts/bundle_firmware.h"

#include <algorithm>
#include <cerrno>

#include "kabi/file_io.h"
#include "kabi/module.h"

namespace agent {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxFirmwareFile = size_t{64} << 20;

}  // namespace

Result<BundleFirmware> scan_bundle_firmware(const fs::path& dir) {
  BundleFirmware out;
  out.dir = dir.string();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return out;
  if (!fs::is_directory(dir, ec)) return fail(ENOTDIR, "the bundle's firmware directory is not a directory", out.dir);
  fs::recursive_directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
    auto bytes = kabi::read_file(it->path(), kMaxFirmwareFile);
    if (!bytes) return tl::unexpected(bytes.error());
    out.files.push_back({fs::relative(it->path(), dir).string(), bytes->size(), kabi::sha256_hex(*bytes)});
  }
  if (ec) return fail(ec.value(), "cannot list the bundle's firmware: " + ec.message(), out.dir);
  std::sort(out.files.begin(), out.files.end(), [](const auto& a, const auto& b) { return a.rel < b.rel; });
  if (!out.files.empty()) {
    std::string all;
    for (const auto& f : out.files) all += f.rel + '\0' + f.sha256 + '\n';
    out.digest = kabi::sha256_hex(all);
  }
  return out;
}

const char* firmware_path_action_name(FirmwarePathAction a) {
  switch (a) {
    case FirmwarePathAction::Set: return "set";
    case FirmwarePathAction::Ours: return "ours";
    case FirmwarePathAction::Foreign: return "foreign";
    case FirmwarePathAction::Unknown: return "unknown";
  }
  return "unknown";
}

FirmwarePathAction firmware_path_action(const std::optional<std::string>& current, const std::string& base) {
  if (!current) return FirmwarePathAction::Unknown;
  if (current->empty()) return FirmwarePathAction::Set;
  std::string b = base;
  while (b.size() > 1 && b.back() == '/') b.pop_back();
  if (current->size() > b.size() && current->compare(0, b.size(), b) == 0 && (*current)[b.size()] == '/')
    return FirmwarePathAction::Ours;
  return FirmwarePathAction::Foreign;
}

}  // namespace agent
