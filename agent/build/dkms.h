// Debian's `dkms build`, as `agent build` runs it: the packages of the image's source directory,
// the command line and environment of each run, its log (dkms's own make.log appended to the
// build's), and why it failed, in a line.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "agent/build/build_mounts.h"
#include "agent/build/failure.h"
#include "agent/facts/build_inputs.h"
#include "kabi/result.h"

namespace agent {

// The DKMS packages under `sources`: every <dir>/dkms.conf, sorted by directory, each directory
// named <PACKAGE_NAME>-<PACKAGE_VERSION> as dkms requires. None is an error.
[[nodiscard]] Result<std::vector<std::pair<std::string, DkmsPackage>>> find_packages(const std::filesystem::path& sources,
                                                                                     const std::string& release);

// Where a dkms run happens: <work>/src (--sourcetree, the sources' copy), <work>/dkms
// (--dkmstree), <work>/tmp ($TMPDIR).
struct DkmsTree {
  std::string dkms = "dkms";  // the program
  std::string release;        // -k
  std::string headers;        // --kernelsourcedir, as the build's namespace shows them
  std::string work;
  unsigned jobs = 1;
};

[[nodiscard]] std::vector<std::string> dkms_build_argv(const DkmsTree& tree, const DkmsPackage& pkg);

// The environment of a run, from this process's (`current`, NAME=VALUE): nothing of the builder's
// own kernel (KERNELRELEASE, KDIR, ARCH, MAKEFLAGS, ...), no variable whose text names one of
// `hidden` (the signing key's paths), and MAKEFLAGS=-j<jobs>, TMPDIR=<work>/tmp.
[[nodiscard]] std::vector<std::string> dkms_environment(const std::vector<std::string>& current,
                                                        const std::vector<std::string>& hidden, const DkmsTree& tree);

// dkms's make.log for `pkg` (build/make.log while it runs, <kver>/<arch>/log/make.log after a
// success); empty when there is none.
[[nodiscard]] std::string dkms_make_log(const DkmsTree& tree, const DkmsPackage& pkg);

// The last non-empty line of a log (its last 4 KiB, at most 200 characters), printable.
[[nodiscard]] std::string last_log_line(const std::string& path);
// The first compiler or linker error of a log ("x.c:12:5: error: ...", "ERROR: modpost: ..."),
// which says why a build failed better than its last line (make leaving a directory); else the
// last line.
[[nodiscard]] std::string first_error_line(const std::string& path);

// One package's run: its namespace, who may stop it and when it times out.
struct DkmsRun {
  std::vector<MountSpec> mounts;  // the build's namespace (enter_build_namespace)
  std::string scratch;            // its scratch directory
  std::vector<std::string> hidden;  // paths no variable of its environment may name
  std::string log;                // the build's log, appended to
  int log_fd = -1;                // open on it
  std::chrono::steady_clock::time_point deadline;
  std::chrono::seconds timeout{0};      // the whole build's, for the message
  std::function<std::string()> stop;    // non-empty: interrupted (why)
  std::function<void()> progress;       // every 10 s while it runs
};

// `dkms build` of the package in <sources>/<dir>; nothing when it succeeded. Not started: the
// node's environment (Environment); stopped: Interrupted; timed out: TimedOut; else Failed with
// the log's first error.
[[nodiscard]] tl::expected<void, BuildFailure> run_dkms_build(const DkmsTree& tree, const DkmsRun& run,
                                                              const std::string& dir, const DkmsPackage& pkg);

}  // namespace agent
