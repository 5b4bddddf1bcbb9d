// The pure parts of `agent build`: what a dkms.conf says it builds, how many jobs the build may
// run, the cache key over everything the build's output depends on, and the result as JSON and
// text. No file system, no processes: tests feed them strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/base/vocabulary.h"
#include "kabi/result.h"

namespace agent {

// A module a DKMS package builds: BUILT_MODULE_NAME[i] in BUILT_MODULE_LOCATION[i], installed
// as DEST_MODULE_NAME[i] (default: the built name).
struct DkmsModule {
  std::string name;
  std::string location;
  std::string dest_name;
};

struct DkmsPackage {
  std::string name;     // PACKAGE_NAME
  std::string version;  // PACKAGE_VERSION
  std::vector<DkmsModule> modules;
};

// What a dkms.conf declares, read without running it: assignments at the start of a line, their
// values unquoted and $VAR / ${VAR} expanded from earlier assignments and from `kernelver`.
// DKMS itself sources the file and runs MAKE; this only names the modules the build must
// produce. An error (EINVAL) when PACKAGE_NAME, PACKAGE_VERSION or a BUILT_MODULE_NAME is
// missing or not a plain value once expanded (a command substitution, an unknown variable).
[[nodiscard]] Result<DkmsPackage> parse_dkms_conf(std::string_view text, const std::string& kernelver,
                                                  const std::string& path);

// make's -j: the CPUs this process may run on (sched_getaffinity), lowered to the cgroup's CPU
// quota (cpu.max "QUOTA PERIOD" of this cgroup and its ancestors, rounded up; "max" is no
// limit); at least 1.
[[nodiscard]] unsigned build_jobs(unsigned affinity_cpus, const std::vector<std::string>& cpu_max_values);
// "200000 100000" -> 2; "max 100000" -> nullopt; malformed -> nullopt.
[[nodiscard]] std::optional<unsigned> cpu_max_limit(std::string_view cpu_max);

// Everything a built module depends on, as the cache key sees it.
struct CacheKeyInputs {
  std::string release;           // /proc/sys/kernel/osrelease
  std::string proc_version;      // /proc/version
  std::string symvers_sha256;    // the headers' Module.symvers the build links against
  std::string compiler_version;  // `<cc> --version`, whole
  std::string signing_key_id;    // empty: unsigned
  // Every file of the sources: path relative to the sources directory, and sha256 of its
  // content (a symlink: of its target text, with a "link:" prefix on the path).
  std::vector<std::pair<std::string, std::string>> sources;
};

// Lower-case hex sha256 over the inputs, each length-prefixed (no two inputs run together), the
// sources in path order whatever their order in `in`.
[[nodiscard]] std::string cache_key(const CacheKeyInputs& in);
// The same over the sources alone: what a cache entry records of them, so that a reader with
// the same sources recognises the entry without the builder's compiler.
[[nodiscard]] std::string sources_digest(const std::vector<std::pair<std::string, std::string>>& sources);

struct BuiltModule {
  std::string name;
  std::string path;
  std::string sha256;
};

// What `agent build` did: its JSON's `result`.
enum class BuildOutcome { Built, Cached, Failed };
[[nodiscard]] const char* build_outcome_name(BuildOutcome o) noexcept;  // "built", "cached", "failed"

struct BuildResult {
  BuildOutcome result = BuildOutcome::Failed;
  std::string kernel;
  std::string key;
  std::string log;     // the build's full log, where it is kept
  std::string reason;  // failed: a build reason of agent/base/vocabulary.h
  std::string detail;  // one line for people
  std::vector<BuiltModule> modules;
  std::string entry;            // the cache entry's directory (host path), when there is one
  std::string signer;           // who signed the modules ("" unsigned), and the key's id
  std::string signing_key_id;
  std::string headers;          // host path of the headers built against
  std::string compiler;         // first line of the compiler's --version
  std::string kernel_compiler;  // what the kernel was built with (CONFIG_CC_VERSION_TEXT / /proc/version)
  std::vector<std::string> packages;  // "<name>-<version>"
  unsigned jobs = 0;
  double build_seconds = 0;  // the dkms run alone
  double total_seconds = 0;  // the whole command
};


[[nodiscard]] nlohmann::json build_result_json(const BuildResult& r);
[[nodiscard]] std::string build_result_text(const BuildResult& r);

// The compiler named in /proc/version: "Linux version 6.1.0 (debian-kernel@...) (gcc-12 (Debian
// 12.2.0-14) 12.2.0, GNU ld ...) #1 ..." -> "gcc-12 (Debian 12.2.0-14) 12.2.0"; empty if none.
[[nodiscard]] std::string compiler_from_proc_version(std::string_view proc_version);
// CONFIG_CC_VERSION_TEXT="..." of a .config; empty if absent.
[[nodiscard]] std::string cc_version_text(std::string_view config);
// The compiler a Debian headers package names (.kernelvariables "CC = ... gcc-12" -> "gcc-12");
// empty when it names none.
[[nodiscard]] std::string compiler_from_kernelvariables(std::string_view text);

}  // namespace agent
