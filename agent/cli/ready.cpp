#include "agent/cli/ready.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "agent/base/json_input.h"
#include "agent/base/state_files.h"
#include "agent/load/lifecycle.h"
#include "kabi/fd.h"
#include "kabi/file_io.h"
#include "kabi/text.h"
#include "probes/host_root.h"
#include "probes/kernel.h"

namespace agent {

std::string why_not_ready(const ReadyOptions& o) {
  const std::string dir = o.state_dir.string();
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) return dir + ": " + std::strerror(errno);
  struct stat st{};
  if (::fstatat(d.get(), kReadyFile, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? "no ready file" : std::string("ready file: ") + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return dir + "/" + kReadyFile + " is not a regular file";

  // A live agent holds the lock: a shared lock we can take means nobody holds it.
  Fd lock(::openat(d.get(), agent::kLockFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!lock) return dir + "/" + kLockFile + ": " + std::strerror(errno) + " (no agent ever ran here this boot?)";
  if (::flock(lock.get(), LOCK_SH | LOCK_NB) == 0) {
    ::flock(lock.get(), LOCK_UN);
    return "no agent holds " + dir + "/" + kLockFile + ": the ready file is stale (its agent is gone)";
  }
  if (errno != EWOULDBLOCK) return dir + "/" + kLockFile + ": " + std::strerror(errno);

  const std::string status_file = dir + "/" + kStatusFile;
  auto text = kabi::read_file(status_file, size_t{4} << 20);
  if (!text) return text.error().what();
  auto status = parse_json_object(*text, status_file);
  if (!status) return status.error().what();
  const JsonFields f(*status, status_file);
  auto phase = f.string("phase");
  if (!phase) return phase.error().what();
  if (*phase != "ready") return "the status says " + printable(*phase);
  auto root = probes::HostRoot::from_cli_or_env(o.root);
  if (!root) return root.error().what();
  auto boot_id = probes::probe_boot_id(*root);
  if (!boot_id) return "boot id: " + boot_id.error().what();
  auto status_boot = f.string("boot_id");
  if (!status_boot) return status_boot.error().what();
  if (*status_boot != *boot_id) return "the status is of another boot (" + printable(*status_boot) + ")";
  return "";
}

int run_ready(const ReadyOptions& o, std::ostream& out) {
  const std::string why = why_not_ready(o);
  if (why.empty()) {
    out << "ready\n";
    return kReadyYes;
  }
  out << "not ready: " << printable(why) << '\n';
  return kReadyNo;
}

}  // namespace agent
