#include "kabi/root_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

namespace agent::kabi {
namespace fs = std::filesystem;

namespace {

// Linux's own limit on symlinks followed in one lookup.
constexpr int kMaxSymlinks = 40;

std::string errno_text(int err) { return std::strerror(err); }

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
  out.insert(front ? out.begin() : out.end(), parts.begin(), parts.end());
}

// The path relative to the root: "" for the root itself.
std::string relative(std::string_view path) {
  std::string n = normalize_path(path);
  return n == "/" ? std::string() : n.substr(1);
}

long sys_openat2(int dirfd, const char* path, open_how* how) {
#ifdef __NR_openat2
  return ::syscall(__NR_openat2, dirfd, path, how, sizeof *how);
#else
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

std::string normalize_path(std::string_view path) {
  std::deque<std::string> parts;
  push_components(path, parts, false);
  std::string out;
  for (const auto& p : parts) {
    if (p == ".") continue;
    out += '/';
    out += p;
  }
  return out.empty() ? "/" : out;
}

Result<RootFs> RootFs::open(const fs::path& dir, Resolver resolver) {
  if (dir.empty()) return fail(EINVAL, "empty root directory");
  std::error_code ec;
  const fs::path canonical = fs::canonical(fs::absolute(dir, ec), ec);
  if (ec) return fail(ec.value(), "cannot open: " + ec.message(), dir.string());
  Fd fd(::open(canonical.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail(errno, "cannot open the root directory: " + errno_text(errno), dir.string());
  if (resolver == Resolver::Auto) {
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    Fd probe(static_cast<int>(sys_openat2(fd.get(), ".", &how)));
    resolver = probe ? Resolver::Openat2 : Resolver::Walk;
  }
  return RootFs(std::move(fd), canonical.string(), resolver);
}

std::string RootFs::display(std::string_view path) const {
  const std::string n = normalize_path(path);
  if (path_ == "/") return n;
  return n == "/" ? path_ : path_ + n;
}

// The walk: each component looked up with O_NOFOLLOW on the descriptor of its directory; a
// symlink's text is pushed back onto the components (an absolute one restarts at the root);
// ".." pops the walk's own stack, so it can never climb out of the root, whatever the tree does
// meanwhile.
Result<Fd> RootFs::walk(std::string_view path, int flags, std::string* canonical) const {
  std::deque<std::string> todo;
  push_components(path, todo, false);
  std::vector<Fd> dirs;             // below the root
  std::vector<std::string> names;   // their names
  auto dir_fd = [&] { return dirs.empty() ? root_.get() : dirs.back().get(); };
  auto here = [&] {
    std::string p;
    for (const auto& n : names) p += "/" + n;
    return p.empty() ? std::string("/") : p;
  };
  int links = 0;
  while (!todo.empty()) {
    std::string comp = std::move(todo.front());
    todo.pop_front();
    if (comp == ".") continue;
    if (comp == "..") {
      if (!dirs.empty()) {
        dirs.pop_back();
        names.pop_back();
      }
      continue;
    }
    Fd fd(::openat(dir_fd(), comp.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return fail(errno, errno_text(errno), display(here() + "/" + comp));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail(errno, "cannot stat: " + errno_text(errno), display(here() + "/" + comp));
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxSymlinks) return fail(ELOOP, "too many levels of symbolic links", display(path));
      std::string target(4096, '\0');
      const ssize_t n = ::readlinkat(fd.get(), "", target.data(), target.size());
      if (n < 0) return fail(errno, "cannot read link: " + errno_text(errno), display(here() + "/" + comp));
      target.resize(static_cast<size_t>(n));
      if (!target.empty() && target.front() == '/') {
        dirs.clear();
        names.clear();
      }
      push_components(target, todo, true);
      continue;
    }
    if (todo.empty() && !S_ISDIR(st.st_mode)) {
      if (canonical) *canonical = here() == "/" ? "/" + comp : here() + "/" + comp;
      if ((flags & O_DIRECTORY) != 0) return fail(ENOTDIR, "not a directory", display(path));
      return fd;  // O_PATH (open_at reopens files by their type only)
    }
    if (!S_ISDIR(st.st_mode)) return fail(ENOTDIR, "not a directory", display(here() + "/" + comp));
    dirs.push_back(std::move(fd));
    names.push_back(std::move(comp));
  }
  if (canonical) *canonical = here();
  Fd out(::openat(dir_fd(), ".", flags | O_CLOEXEC));
  if (!out) return fail(errno, errno_text(errno), display(path));
  return out;
}

Result<Fd> RootFs::open_at(std::string_view path, int flags) const {
  // A file is opened for reading only after its type was seen (see open_regular): opening a
  // device can have effects, a FIFO can block.
  if ((flags & (O_PATH | O_DIRECTORY)) == 0) return open_file(path);
  const std::string rel = relative(path);
  if (resolver_ == Resolver::Openat2) {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0;; ++tries) {
      Fd fd(static_cast<int>(sys_openat2(root_.get(), rel.empty() ? "." : rel.c_str(), &how)));
      if (fd) return fd;
      // EAGAIN: a rename somewhere in the tree raced the lookup; the kernel asks to retry.
      if (errno == EAGAIN && tries < 8) continue;
      return fail(errno, errno_text(errno), display(path));
    }
  }
  return walk(path, flags, nullptr);
}

Result<Fd> RootFs::open_file(std::string_view path) const {
  auto p = open_at(path, O_PATH);
  if (!p) return p;
  return open_regular(*p, display(path));
}

Result<std::string> RootFs::read(std::string_view path, size_t max_size) const {
  auto fd = open_file(path);
  if (!fd) return tl::unexpected(fd.error());
  return read_fd(*fd, display(path), max_size);
}

Result<MappedFile> RootFs::map(std::string_view path, size_t max_size) const {
  auto fd = open_file(path);
  if (!fd) return tl::unexpected(fd.error());
  return map_fd(std::move(*fd), display(path), max_size);
}

Result<struct stat> RootFs::stat(std::string_view path, bool follow) const {
  Result<Fd> fd = tl::unexpected(Error{});
  if (follow) {
    fd = open_at(path, O_PATH);
  } else {
    std::string last;
    auto dir = open_parent(path, last);
    if (!dir) return tl::unexpected(dir.error());
    if (last.empty()) return stat(path, true);  // the root itself
    struct stat st {};
    if (::fstatat(dir->get(), last.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return fail(errno, errno_text(errno), display(path));
    return st;
  }
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fail(errno, "cannot stat: " + errno_text(errno), display(path));
  return st;
}

bool RootFs::is_directory(std::string_view path) const {
  auto st = stat(path);
  return st && S_ISDIR(st->st_mode);
}

bool RootFs::is_regular_file(std::string_view path) const {
  auto st = stat(path);
  return st && S_ISREG(st->st_mode);
}

Result<Fd> RootFs::open_parent(std::string_view path, std::string& last) const {
  const std::string n = normalize_path(path);
  const size_t slash = n.rfind('/');
  const std::string parent = n.substr(0, slash);
  last = n.substr(slash + 1);
  if (last == "..") {  // no last component to look at by itself: the whole path is a directory
    last.clear();
    return open_at(n, O_PATH | O_DIRECTORY);
  }
  return open_at(parent.empty() ? "/" : parent, O_PATH | O_DIRECTORY);
}

Result<std::string> RootFs::read_link(std::string_view path) const {
  std::string last;
  auto dir = open_parent(path, last);
  if (!dir) return tl::unexpected(dir.error());
  if (last.empty()) return fail(EINVAL, "not a symbolic link", display(path));
  std::string target(4096, '\0');
  const ssize_t len = ::readlinkat(dir->get(), last.c_str(), target.data(), target.size());
  if (len < 0) {
    const int err = errno;
    return fail(err, err == EINVAL ? "not a symbolic link" : "cannot read link: " + errno_text(err), display(path));
  }
  target.resize(static_cast<size_t>(len));
  return target;
}

Result<std::string> RootFs::canonical(std::string_view path) const {
  std::string out;
  auto fd = walk(path, O_PATH, &out);
  if (!fd) return tl::unexpected(fd.error());
  return out;
}

Result<std::vector<RootFs::Entry>> RootFs::list(std::string_view dir) const {
  auto fd = open_at(dir, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
  if (!fd) return tl::unexpected(fd.error());
  DIR* d = ::fdopendir(fd->get());
  if (!d) return fail(errno, "cannot list directory: " + errno_text(errno), display(dir));
  (void)fd->release();  // owned by d now
  struct Closer {
    DIR* d;
    ~Closer() { ::closedir(d); }
  } closer{d};
  std::vector<Entry> out;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (!e) {
      if (errno != 0) return fail(errno, "cannot list directory: " + errno_text(errno), display(dir));
      break;
    }
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    Entry entry{std::string(name), 0};
    switch (e->d_type) {
      case DT_REG: entry.type = S_IFREG; break;
      case DT_DIR: entry.type = S_IFDIR; break;
      case DT_LNK: entry.type = S_IFLNK; break;
      default: {
        struct stat st {};
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
          return fail(errno, "cannot stat: " + errno_text(errno), display(std::string(dir) + "/" + entry.name));
        entry.type = st.st_mode & S_IFMT;
      }
    }
    out.push_back(std::move(entry));
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return out;
}

}  // namespace agent::kabi
