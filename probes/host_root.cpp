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

namespace {

// Linux's own limit on symlinks followed in one lookup.
constexpr int kMaxSymlinks = 40;
// No sysfs, procfs or text file the probes read is anywhere near this.
constexpr size_t kMaxFile = size_t{64} << 20;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

void push_components(std::string_view path, std::deque<std::string>& out, bool front) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = i;
    while (j < path.size() && path[j] != '/') ++j;
    if (j > i) parts.emplace_back(path.substr(i, j - i));
    i = j;
  }
  if (front)
    out.insert(out.begin(), parts.begin(), parts.end());
  else
    out.insert(out.end(), parts.begin(), parts.end());
}

}  // namespace

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

Result<HostRoot> HostRoot::open(const fs::path& root) {
  if (root.empty()) return fail(EINVAL, "empty host root");
  std::error_code ec;
  const fs::path canonical = fs::canonical(fs::absolute(root, ec), ec);
  if (ec) return fail(ec.value(), "host root: " + ec.message(), root.string());
  if (!fs::is_directory(canonical, ec)) return fail(ENOTDIR, "host root is not a directory", root.string());
  return HostRoot(canonical);
}

Result<HostRoot> HostRoot::from_cli_or_env(const std::optional<fs::path>& cli) {
  if (cli) return open(*cli);
  if (const char* env = std::getenv("HOST_ROOT"); env && *env) return open(env);
  return open("/");
}

Result<fs::path> HostRoot::resolve(std::string_view host_path) const {
  std::deque<std::string> todo;
  push_components(host_path, todo, false);
  std::vector<std::string> done;  // resolved components below the root
  int links = 0;
  bool missing = false;           // past a component that does not exist: no more lookups
  auto current = [&] {
    fs::path p = root_;
    for (const auto& c : done) p /= c;
    return p;
  };
  while (!todo.empty()) {
    std::string comp = std::move(todo.front());
    todo.pop_front();
    if (comp == ".") continue;
    if (comp == "..") {
      // As under chroot: ".." at the root stays at the root.
      if (!done.empty()) done.pop_back();
      continue;
    }
    if (missing) {
      done.push_back(std::move(comp));
      continue;
    }
    const fs::path candidate = current() / comp;
    struct stat st{};
    if (::lstat(candidate.c_str(), &st) != 0) {
      missing = true;
      done.push_back(std::move(comp));
      continue;
    }
    if (!S_ISLNK(st.st_mode)) {
      done.push_back(std::move(comp));
      continue;
    }
    if (++links > kMaxSymlinks) return fail(ELOOP, "too many levels of symbolic links", candidate.string());
    std::string target(4096, '\0');
    const ssize_t n = ::readlink(candidate.c_str(), target.data(), target.size());
    if (n < 0) {
      missing = true;
      done.push_back(std::move(comp));
      continue;
    }
    target.resize(static_cast<size_t>(n));
    if (!target.empty() && target.front() == '/') done.clear();  // re-rooted, never the live "/"
    push_components(target, todo, true);
  }
  return current();
}

std::string HostRoot::host_path_of(const fs::path& real) const {
  const std::string r = root_.string();
  const std::string s = real.lexically_normal().string();
  if (r == "/") return s;
  if (s == r) return "/";
  if (s.size() > r.size() && s.compare(0, r.size(), r) == 0 && s[r.size()] == '/') return s.substr(r.size());
  return s;
}

Result<std::string> HostRoot::read_text(std::string_view host_path) const {
  auto real = resolve(host_path);
  if (!real) return tl::unexpected(real.error());
  return kabi::read_file(*real, kMaxFile);
}

Result<std::string> HostRoot::read_value(std::string_view host_path) const {
  auto text = read_text(host_path);
  if (!text) return text;
  return std::string(trim(*text));
}

Result<std::vector<std::string>> HostRoot::list_dir(std::string_view host_path) const {
  auto real = resolve(host_path);
  if (!real) return tl::unexpected(real.error());
  std::error_code ec;
  fs::directory_iterator it(*real, ec);
  if (ec) return fail(ec.value(), "cannot list directory: " + ec.message(), real->string());
  std::vector<std::string> names;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return fail(ec.value(), "cannot list directory: " + ec.message(), real->string());
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::string> HostRoot::link_basename(std::string_view host_path) const {
  auto unresolved = resolve(fs::path(host_path).parent_path().string());
  if (!unresolved) return tl::unexpected(unresolved.error());
  const fs::path link = *unresolved / fs::path(host_path).filename();
  struct stat st{};
  if (::lstat(link.c_str(), &st) != 0) {
    const int err = errno;
    return fail(err, "cannot stat link: " + errno_text(err), link.string());
  }
  if (!S_ISLNK(st.st_mode)) return fail(EINVAL, "not a symbolic link", link.string());
  auto target = resolve(host_path);
  if (!target) return tl::unexpected(target.error());
  return target->filename().string();
}

bool HostRoot::exists(std::string_view host_path) const {
  auto real = resolve(host_path);
  std::error_code ec;
  return real && fs::exists(*real, ec);
}

bool HostRoot::is_directory(std::string_view host_path) const {
  auto real = resolve(host_path);
  std::error_code ec;
  return real && fs::is_directory(*real, ec);
}

bool HostRoot::is_regular_file(std::string_view host_path) const {
  auto real = resolve(host_path);
  std::error_code ec;
  return real && fs::is_regular_file(*real, ec);
}

}  // namespace agent::probes
