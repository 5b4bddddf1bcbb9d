#include "agent/base/state_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "kabi/file_io.h"
#include "kabi/text.h"
#include "probes/host_root.h"

namespace agent {
namespace {

std::string err_text(int e) { return std::strerror(e); }

bool single_component(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

Result<void> write_all(int fd, std::string_view content, const std::string& what) {
  while (!content.empty()) {
    const ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "cannot write: " + err_text(errno), what);
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

void remove_tree(int dir_fd, const std::string& name) {
  Fd d(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (d) {
    if (DIR* dp = ::fdopendir(::dup(d.get()))) {
      std::vector<std::string> names;
      while (const dirent* e = ::readdir(dp))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
      ::closedir(dp);
      for (const auto& n : names)
        if (::unlinkat(d.get(), n.c_str(), 0) != 0 && errno == EISDIR) remove_tree(d.get(), n);
    }
  }
  ::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);
}

Result<DirInstall> install_dir(const WritableDir& dir, const std::string& name, IfPresent present,
                               const std::function<Result<void>(const WritableDir&)>& fill) {
  const std::string shown = dir.path() + "/" + name;
  if (!single_component(name)) return fail(EINVAL, "not a file name", shown);
  const auto is_dir = [&] {
    struct stat st{};
    return ::fstatat(dir.fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
  };
  if (present == IfPresent::Keep && dir.exists(name)) {
    if (is_dir()) return DirInstall::Theirs;  // renamed into place only when complete
    return fail(EEXIST, "in the way: not a directory", shown);
  }
  const std::string tmp = ".tmp-" + name + "-" + std::to_string(::getpid());
  remove_tree(dir.fd(), tmp);  // a leftover of a crashed agent with this pid
  auto abandon = [&](Error e) {
    remove_tree(dir.fd(), tmp);
    return tl::unexpected(std::move(e));
  };
  auto sub = dir.subdir(tmp);
  if (!sub) return abandon(sub.error());
  if (auto f = fill(*sub); !f) return abandon(f.error());
  if (present == IfPresent::Replace && dir.exists(name)) {
    if (auto r = dir.remove_any(name); !r) return abandon(r.error());
  }
  if (::renameat(dir.fd(), tmp.c_str(), dir.fd(), name.c_str()) != 0) {
    const int e = errno;
    // Another writer renamed its whole `name` into place first: as good as ours.
    if ((e == EEXIST || e == ENOTEMPTY) && is_dir()) {
      remove_tree(dir.fd(), tmp);
      return DirInstall::Theirs;
    }
    return abandon(Error{e, "cannot rename into place: " + err_text(e), shown});
  }
  // The rename is durable once the directory is; a failure here leaves the new entry in place.
  if (::fsync(dir.fd()) != 0 && errno != EINVAL) return fail(errno, "cannot fsync the directory: " + err_text(errno), dir.path());
  return DirInstall::Ours;
}

Result<ScratchDir> ScratchDir::make(const std::string& prefix) {
  const char* t = std::getenv("TMPDIR");
  std::string tmpl = std::string(t && *t ? t : "/tmp") + "/" + prefix + ".XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    return fail(errno, "cannot create a temporary directory: " + err_text(errno), tmpl);
  return ScratchDir(tmpl);
}

ScratchDir::ScratchDir(ScratchDir&& o) noexcept : path_(std::exchange(o.path_, {})) {}

ScratchDir& ScratchDir::operator=(ScratchDir&& o) noexcept {
  if (this != &o) {
    ScratchDir gone(std::move(*this));
    path_ = std::exchange(o.path_, {});
  }
  return *this;
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  const size_t slash = path_.find_last_of('/');
  const std::string parent = slash == 0 ? "/" : path_.substr(0, slash);
  Fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) remove_tree(dir.get(), path_.substr(slash + 1));
}


Result<WritableDir> WritableDir::open(const kabi::RootFs& root, std::string_view path, std::string what) {
  const std::string norm = kabi::normalize_path(path);
  const std::string shown = root.display(norm);
  auto fail_here = [&](int e, const std::string& msg) { return fail(e, what + ": " + msg, shown); };
  // One policy for every directory the agent writes in: no component is a link, whether the
  // directory exists already or is made now (a firmware directory planted as a link to /etc is
  // refused, never written through).
  // Component by component: each is opened (made first when missing) relative to its parent's
  // descriptor without following links.
  Fd dir;
  if (auto r = root.open_at("/", O_RDONLY | O_DIRECTORY)) dir = std::move(*r);
  else return fail_here(r.error().code, "cannot open the root: " + r.error().message);
  std::string walked;
  for (size_t pos = 0; pos < norm.size();) {
    const size_t next = norm.find('/', pos);
    const std::string comp = norm.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    pos = next == std::string::npos ? norm.size() : next + 1;
    if (comp.empty()) continue;
    walked += "/" + comp;
    Fd sub(::openat(dir.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub && errno == ENOENT) {
      if (::mkdirat(dir.get(), comp.c_str(), 0755) != 0 && errno != EEXIST)
        return fail_here(errno, "cannot create " + walked + ": " + err_text(errno));
      sub = Fd(::openat(dir.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!sub) {
      const int e = errno;
      struct stat st{};
      const bool link = ::fstatat(dir.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
      return fail_here(e, "cannot open " + walked + ": " + (link ? std::string("a symbolic link (not followed)") : err_text(e)));
    }
    dir = std::move(sub);
  }
  return WritableDir(std::move(dir), shown);
}

Result<WritableDir> WritableDir::subdir(std::string_view name) const {
  const std::string shown = display_ + "/" + std::string(name);
  if (!single_component(name)) return fail(EINVAL, "not a file name", shown);
  const std::string n(name);
  if (::mkdirat(fd(), n.c_str(), 0755) != 0 && errno != EEXIST) return fail(errno, "cannot create: " + err_text(errno), shown);
  Fd sub(::openat(fd(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sub) return fail(errno, "cannot open: " + err_text(errno), shown);
  return WritableDir(std::move(sub), shown);
}

Result<void> WritableDir::write(std::string_view name, std::string_view content, mode_t mode) const {
  const std::string shown = display_ + "/" + std::string(name);
  if (!single_component(name)) return fail(EINVAL, "not a file name", shown);
  const std::string tmp = "." + std::string(name) + ".tmp." + std::to_string(::getpid());
  ::unlinkat(fd(), tmp.c_str(), 0);  // a leftover of a crashed agent with this pid
  Fd f(::openat(fd(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!f) return fail(errno, "cannot create " + tmp + ": " + err_text(errno), shown);
  auto undo = [&](Error e) {
    ::unlinkat(fd(), tmp.c_str(), 0);
    return tl::unexpected(std::move(e));
  };
  if (auto w = write_all(f.get(), content, shown); !w) return undo(w.error());
  if (::fchmod(f.get(), mode) != 0) return undo(Error{errno, "cannot chmod: " + err_text(errno), shown});
  if (::fsync(f.get()) != 0) return undo(Error{errno, "cannot fsync: " + err_text(errno), shown});
  f.reset();
  if (::renameat(fd(), tmp.c_str(), fd(), std::string(name).c_str()) != 0)
    return undo(Error{errno, "cannot rename into place: " + err_text(errno), shown});
  // The rename is durable once the directory is; a failure here leaves the new file in place.
  if (::fsync(fd()) != 0 && errno != EINVAL) return fail(errno, "cannot fsync the directory: " + err_text(errno), display_);
  return {};
}

Result<void> WritableDir::remove(std::string_view name) const {
  const std::string shown = display_ + "/" + std::string(name);
  if (!single_component(name)) return fail(EINVAL, "not a file name", shown);
  if (::unlinkat(fd(), std::string(name).c_str(), 0) != 0 && errno != ENOENT)
    return fail(errno, "cannot remove: " + err_text(errno), shown);
  return {};
}

Result<void> WritableDir::remove_any(std::string_view name) const {
  const std::string shown = display_ + "/" + std::string(name);
  if (!single_component(name)) return fail(EINVAL, "not a file name", shown);
  const std::string n(name);
  if (::unlinkat(fd(), n.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR && errno != EPERM) return fail(errno, "cannot remove: " + err_text(errno), shown);
  remove_tree(fd(), n);
  struct stat st{};
  if (::fstatat(fd(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
    return fail(ENOTEMPTY, "cannot remove: a directory whose contents would not all go", shown);
  return {};
}

bool WritableDir::exists(std::string_view name) const {
  struct stat st{};
  return single_component(name) && ::fstatat(fd(), std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<std::string> WritableDir::read(std::string_view name, size_t max_size) const {
  const std::string shown = display_ + "/" + std::string(name);
  if (!single_component(name)) return fail(EINVAL, "not a file name", shown);
  Fd p(::openat(fd(), std::string(name).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!p) return fail(errno, err_text(errno), shown);
  auto f = kabi::open_regular(p, shown);
  if (!f) return tl::unexpected(f.error());
  return kabi::read_fd(*f, shown, max_size);
}

Result<InstanceLock> InstanceLock::acquire(const WritableDir& dir) {
  const std::string shown = dir.path() + "/" + kLockFile;
  Fd f(::openat(dir.fd(), kLockFile, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!f) return fail(errno, "cannot open the lock: " + err_text(errno), shown);
  // `agent ready` takes a shared lock for an instant to see whether an agent holds it: a few
  // tries before another agent is assumed.
  int rc = 0;
  for (int tries = 20;; ::usleep(50 * 1000)) {
    rc = ::flock(f.get(), LOCK_EX | LOCK_NB);
    if (rc == 0 || errno != EWOULDBLOCK || --tries == 0) break;
  }
  if (rc != 0) {
    const int e = errno;
    if (e != EWOULDBLOCK) return fail(e, "cannot lock: " + err_text(e), shown);
    char buf[32] = {};
    const ssize_t n = ::pread(f.get(), buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(probes::trim(std::string_view(buf, static_cast<size_t>(n)))) : "";
    return fail(e, "another agent runs on this state directory" + (pid.empty() ? std::string() : " (pid " + printable(pid) + ")"),
                shown);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(f.get(), 0) != 0) return fail(errno, "cannot write the lock: " + err_text(errno), shown);
  if (::pwrite(f.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    return fail(errno, "cannot write the lock: " + err_text(errno), shown);
  return InstanceLock(std::move(f));
}

}  // namespace agent
