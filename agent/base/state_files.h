// The agent's writes: directories it creates and files it replaces, each file written whole
// (a temporary in the same directory, fsync, rename, fsync of the directory) so a reader - the
// readiness probe, `kubectl exec ... cat`, the next agent - sees the old file or the new one,
// never a part. Directories are reached through a root (kabi::RootFs): a host path is written
// where the host has it, and a link planted in the host tree cannot send a write elsewhere.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "kabi/fd.h"
#include "kabi/result.h"
#include "kabi/root_fs.h"

namespace agent {

// The entrypoint's files in its state directory.
inline constexpr const char* kStatusFile = "status.json";
inline constexpr const char* kReadyFile = "ready";
inline constexpr const char* kJournalFile = "undo.json";

// An open directory to write in. Names given to its methods are single path components.
class WritableDir {
 public:
  // Opens `path` under `root`, creating what is missing (mode 0755), never following a link
  // out of the root. `what` names the directory in errors ("state directory").
  [[nodiscard]] static Result<WritableDir> open(const kabi::RootFs& root, std::string_view path, std::string what);

  [[nodiscard]] const std::string& path() const noexcept { return display_; }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }

  // Replaces `name` with `content` atomically.
  [[nodiscard]] Result<void> write(std::string_view name, std::string_view content, mode_t mode = 0644) const;
  // Removes `name` (a file); one that is not there is success.
  [[nodiscard]] Result<void> remove(std::string_view name) const;
  // Removes `name` whatever it is: a file, a link (not followed), a directory with all in it;
  // an error when something is still there afterwards.
  [[nodiscard]] Result<void> remove_any(std::string_view name) const;
  [[nodiscard]] bool exists(std::string_view name) const;
  // Reads `name` (a regular file, at most `max_size` bytes); ENOENT when it is not there.
  [[nodiscard]] Result<std::string> read(std::string_view name, size_t max_size = size_t{1} << 20) const;
  // Opens (creating) the subdirectory `name`.
  [[nodiscard]] Result<WritableDir> subdir(std::string_view name) const;

 private:
  WritableDir(Fd fd, std::string display) : fd_(std::move(fd)), display_(std::move(display)) {}
  Fd fd_;  // O_RDONLY|O_DIRECTORY (fsync needs a real descriptor)
  std::string display_;
};

// The single-instance lock: flock(2) on <dir>/agent.lock, which then holds the owner's pid.
class InstanceLock {
 public:
  // EWOULDBLOCK with a message naming the holder's pid when another agent has it.
  [[nodiscard]] static Result<InstanceLock> acquire(const WritableDir& dir);

 private:
  explicit InstanceLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

inline constexpr const char* kLockFile = "agent.lock";

// A directory of the agent's own in its own filesystem ($TMPDIR, else /tmp; mode 0700), removed
// with everything in it when this object goes: a build's work tree, the built modules staged
// for loading.
class ScratchDir {
 public:
  // `prefix`: the directory's name before the random part ("agent-build").
  [[nodiscard]] static Result<ScratchDir> make(const std::string& prefix);
  ScratchDir(ScratchDir&& o) noexcept;
  ScratchDir& operator=(ScratchDir&& o) noexcept;
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir();
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  explicit ScratchDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

// How install_dir ended: `name` is the directory this call wrote, or another writer's (already
// there, or renamed into place first) - whole either way.
enum class DirInstall { Ours, Theirs };
// What install_dir does with a `name` already there: keeps it (a directory: Theirs; anything
// else: an error), or replaces it.
enum class IfPresent { Keep, Replace };

// Installs the directory `name` in `dir` whole: `fill` writes into a temporary directory beside
// it (.tmp-<name>-<pid>, a name readers skip), which is renamed to `name` and `dir` fsynced, so
// a reader sees no `name` or a complete one. When another writer renames its `name` into place
// between the fill and the rename, theirs stays (Theirs). Whatever fails, no temporary is left.
[[nodiscard]] Result<DirInstall> install_dir(const WritableDir& dir, const std::string& name, IfPresent present,
                                             const std::function<Result<void>(const WritableDir&)>& fill);

// Removes the directory tree `name` under the directory `dir_fd` (one of the agent's own making:
// a temporary copy, a cache entry), never following a link; what cannot be removed stays.
void remove_tree(int dir_fd, const std::string& name);

}  // namespace agent
