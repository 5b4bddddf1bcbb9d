#include "agent/build/build_mounts.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>

namespace agent {
namespace fs = std::filesystem;

namespace {

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

std::string parent_of(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
}

// Absolute `include` lines of a Makefile: "include /usr/src/linux-headers-X-common/Makefile".
std::vector<std::string> absolute_includes(std::string_view text) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    for (std::string_view kw : {"include ", "-include ", "sinclude "}) {
      if (line.rfind(kw, 0) != 0) continue;
      std::string_view rest = line.substr(kw.size());
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\r')) rest.remove_suffix(1);
      if (!rest.empty() && rest.front() == '/' && rest.find_first_of(" $") == std::string_view::npos)
        out.emplace_back(rest);
    }
  }
  return out;
}

std::string err_text(int e) { return std::strerror(e); }

}  // namespace

Result<std::vector<BindMount>> plan_header_mounts(const probes::HostRoot& root, const std::string& headers,
                                                  const std::string& release) {
  std::vector<BindMount> out;
  auto add = [&](const std::string& p, std::string why) {
    for (const auto& m : out)
      if (under(p, m.host_path)) return false;  // already visible through a mount
    out.push_back({p, p, std::move(why)});
    return true;
  };
  std::deque<std::string> queue;
  std::set<std::string> seen;
  if (!headers.empty()) {
    auto h = root.canonical(headers);
    if (!h) return tl::unexpected(h.error());
    add(*h, "headers");
    queue.push_back(*h);
    seen.insert(*h);
  }
  while (!queue.empty()) {
    const std::string dir = queue.front();
    queue.pop_front();
    if (root.is_regular_file(dir + "/Makefile")) {
      auto text = root.read_text(dir + "/Makefile");
      if (!text) return tl::unexpected(text.error());
      for (const auto& inc : absolute_includes(*text)) {
        auto c = root.canonical(parent_of(inc));
        if (!c) return fail(c.error().code, "the headers' Makefile includes " + inc + ", which is not there",
                            root.display(dir + "/Makefile"));
        if (seen.insert(*c).second && add(*c, "included by " + dir + "/Makefile")) queue.push_back(*c);
      }
    }
    auto entries = root.fs().list(dir);
    if (!entries) return tl::unexpected(entries.error());
    for (const auto& e : *entries) {
      if (e.type != S_IFLNK) continue;
      auto target = root.canonical(dir + "/" + e.name);
      if (!target) continue;  // a dangling link kbuild does not need (it would fail there too)
      // Debian: scripts -> ../../lib/linux-kbuild-6.1/scripts: the kbuild directory itself.
      const std::string base = target->substr(target->rfind('/') + 1);
      const std::string mount = base == e.name ? parent_of(*target) : *target;
      if (mount == "/" || !root.is_directory(mount)) continue;
      add(mount, "linked from " + dir + "/" + e.name);
    }
  }
  const std::string tree = "/lib/modules/" + release;
  auto t = root.canonical(tree);
  if (!t) return fail(t.error().code, "no module tree for " + release, root.display(tree));
  // At /lib/modules/<kver> whatever the host calls it (/usr/lib/modules on a usr-merged host):
  // dkms.conf files name it so.
  out.push_back({*t, tree, "module tree"});
  std::stable_sort(out.begin(), out.end(), [](const BindMount& a, const BindMount& b) {
    return std::count(a.target.begin(), a.target.end(), '/') < std::count(b.target.begin(), b.target.end(), '/');
  });
  return out;
}

std::vector<MountSpec> key_hiding_mounts(const fs::path& key, const std::string& also, const std::string& keep) {
  std::vector<MountSpec> out;
  std::error_code ec;
  const fs::path given = fs::absolute(key, ec).lexically_normal();
  if (ec) return out;
  fs::path real = fs::canonical(given, ec);
  if (ec) real = given;
  auto hidden = [&](const std::string& p) {
    return std::any_of(out.begin(), out.end(), [&](const MountSpec& m) { return under(p, m.target); });
  };
  for (const fs::path& file : {given, real}) {
    if (hidden(file.string())) continue;
    const std::string dir = file.parent_path().string();
    bool own = dir != "/" && !dir.empty() && !under(keep, dir) && !under(dir, keep);
    for (fs::directory_iterator it(dir, ec), end; own && !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      own = name == file.filename().string() || name == also || name.rfind("..", 0) == 0;
    }
    if (own && !ec) out.push_back({"", dir, false, true});
    ec.clear();
  }
  if (!hidden(real.string())) out.push_back({"", real.string(), true, true});
  return out;
}

Result<void> enter_build_namespace(const std::vector<MountSpec>& mounts, const std::string& scratch) {
  if (::unshare(CLONE_NEWNS) != 0) return fail(errno, "unshare(CLONE_NEWNS): " + err_text(errno));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return fail(errno, "mount --make-rprivate /: " + err_text(errno));
  if (::mount("agent-build", scratch.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0)
    return fail(errno, "tmpfs on " + scratch + ": " + err_text(errno));
  std::set<std::string> overlaid;
  int n = 0;
  // A writable view of `dir` (an existing directory of the agent's filesystem) in this namespace.
  auto overlay = [&](const std::string& dir) -> Result<void> {
    if (overlaid.count(dir)) return {};
    if (dir == "/" || dir.find_first_of(",:\\") != std::string::npos)
      return fail(EINVAL, "cannot make a mount point under " + dir);
    const std::string base = scratch + "/ovl" + std::to_string(n++);
    for (const auto& d : {base, base + "/upper", base + "/work"})
      if (::mkdir(d.c_str(), 0755) != 0) return fail(errno, "mkdir " + d + ": " + err_text(errno));
    const std::string opts = "lowerdir=" + dir + ",upperdir=" + base + "/upper,workdir=" + base + "/work";
    if (::mount("agent-build", dir.c_str(), "overlay", 0, opts.c_str()) != 0)
      return fail(errno, "overlay on " + dir + ": " + err_text(errno));
    overlaid.insert(dir);
    return {};
  };
  std::vector<const MountSpec*> ordered;
  for (const auto& m : mounts)
    if (!m.hide) ordered.push_back(&m);
  for (const auto& m : mounts)
    if (m.hide) ordered.push_back(&m);
  for (const MountSpec* mp : ordered) {
    const MountSpec& m = *mp;
    std::error_code ec;
    if (m.hide) {
      struct stat st {};
      // What is not there needs no hiding; the target itself is canonical (key_hiding_mounts).
      if (::lstat(m.target.c_str(), &st) != 0) continue;
      if (m.file) {
        const std::string empty = scratch + "/hidden-" + std::to_string(n++);
        const int made = ::open(empty.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0400);
        if (made < 0) return fail(errno, "cannot create " + empty + ": " + err_text(errno));
        ::close(made);
        if (::mount(empty.c_str(), m.target.c_str(), nullptr, MS_BIND, nullptr) != 0)
          return fail(errno, "cannot hide " + m.target + ": " + err_text(errno));
        if (::mount(nullptr, m.target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    nullptr) != 0)
          return fail(errno, "read-only " + m.target + ": " + err_text(errno));
      } else if (::mount("agent-hidden", m.target.c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                         "mode=0555,size=4k") != 0) {
        return fail(errno, "cannot hide " + m.target + ": " + err_text(errno));
      }
      continue;
    }
    // Through the agent's own links (/lib -> usr/lib): the real place the target is.
    const std::string target = fs::weakly_canonical(m.target, ec).string();
    if (ec) return fail(ec.value(), "cannot resolve " + m.target + ": " + ec.message());
    struct stat st {};
    if (::lstat(target.c_str(), &st) != 0) {
      std::string ancestor = parent_of(target);
      while (::lstat(ancestor.c_str(), &st) != 0) ancestor = parent_of(ancestor);
      if (!S_ISDIR(st.st_mode)) return fail(ENOTDIR, "cannot make a mount point under " + ancestor);
      // Inside an overlay made for an earlier mount point it is writable already.
      const bool writable = std::any_of(overlaid.begin(), overlaid.end(), [&](const std::string& o) { return under(ancestor, o); });
      if (!writable)
        if (auto o = overlay(ancestor); !o) return o;
      fs::create_directories(parent_of(target), ec);
      if (ec) return fail(ec.value(), "cannot create " + parent_of(target) + ": " + ec.message());
      const int made = m.file ? ::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644) : ::mkdir(target.c_str(), 0755);
      if (made < 0) return fail(errno, "cannot create " + target + ": " + err_text(errno));
      if (m.file) ::close(made);
    }
    // Opened without following any link: a link planted in the host tree since the plan was
    // made fails here instead of mounting something else.
    struct open_how how {};
    how.flags = O_PATH | O_CLOEXEC | (m.file ? 0 : O_DIRECTORY);
    how.resolve = RESOLVE_NO_SYMLINKS;
    Fd src(static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, m.source.c_str(), &how, sizeof how)));
    if (!src && errno == ENOSYS) src = Fd(::open(m.source.c_str(), static_cast<int>(how.flags) | O_NOFOLLOW));
    if (!src) return fail(errno, "cannot open " + m.source + ": " + err_text(errno));
    const std::string source = "/proc/self/fd/" + std::to_string(src.get());
    if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return fail(errno, "bind " + m.source + " on " + target + ": " + err_text(errno));
    if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0)
      return fail(errno, "read-only " + target + ": " + err_text(errno));
  }
  return {};
}

Result<void> drop_build_capabilities() {
  static constexpr unsigned kCaps[] = {CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_DAC_READ_SEARCH,
                                       CAP_MKNOD,     CAP_SYS_BOOT,   CAP_BPF,        CAP_PERFMON};
  for (const unsigned cap : kCaps)
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      return fail(errno, "cannot drop capability " + std::to_string(cap) + ": " + err_text(errno));
  // Root's exec keeps its inheritable set: cleared of the same.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] {};
  if (::syscall(SYS_capget, &header, data) != 0) return fail(errno, "capget: " + err_text(errno));
  for (const unsigned cap : kCaps) data[cap / 32].inheritable &= ~(1u << (cap % 32));
  if (::syscall(SYS_capset, &header, data) != 0) return fail(errno, "capset: " + err_text(errno));
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return fail(errno, "cannot clear the ambient capabilities: " + err_text(errno));
  return {};
}

}  // namespace agent
