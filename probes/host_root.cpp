#include "probes/host_root.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <algorithm>
#include <system_error>

#include "kabi/file_io.h"

namespace agent::probes {
namespace fs = std::filesystem;

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\0'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

std::optional<unsigned long> parse_number(std::string_view text) {
  text = trim(text);
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;
  }
  if (text.empty()) return std::nullopt;
  unsigned long v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (ec != std::errc{} || p != text.data() + text.size()) return std::nullopt;
  return v;
}

Result<HostRoot> HostRoot::open(const fs::path& root, kabi::RootFs::Resolver resolver) {
  auto rfs = kabi::RootFs::open(root, resolver);
  if (!rfs) return fail(rfs.error().code, "host root (--root or $HOST_ROOT): " + rfs.error().message, root.string());
  if (!rfs->is_directory("/")) return fail(ENOTDIR, "host root is not a directory", root.string());
  fs::path path = rfs->path();
  return HostRoot(std::move(*rfs), std::move(path));
}

Result<HostRoot> HostRoot::from_cli_or_env(const std::optional<fs::path>& cli) {
  if (cli) return open(*cli);
  if (const char* env = std::getenv("HOST_ROOT"); env && *env) return open(env);
  return open("/");
}

Result<std::string> HostRoot::read_text(std::string_view host_path) const {
  return fs_.read(host_path, kabi::kMaxTextSize);
}

Result<std::string> HostRoot::read_value(std::string_view host_path) const {
  auto text = read_text(host_path);
  if (!text) return text;
  return std::string(trim(*text));
}

Result<std::vector<std::string>> HostRoot::list_dir(std::string_view host_path) const {
  auto entries = fs_.list(host_path);
  if (!entries) return tl::unexpected(entries.error());
  std::vector<std::string> names;
  names.reserve(entries->size());
  for (auto& e : *entries) names.push_back(std::move(e.name));
  return names;
}

Result<std::string> HostRoot::link_basename(std::string_view host_path) const {
  auto st = fs_.stat(host_path, /*follow=*/false);
  if (!st) return tl::unexpected(st.error());
  if (!S_ISLNK(st->st_mode)) return fail(EINVAL, "not a symbolic link", display(host_path));
  auto target = canonical(host_path);
  if (!target) return tl::unexpected(target.error());
  return fs::path(*target).filename().string();
}

}  // namespace agent::probes
