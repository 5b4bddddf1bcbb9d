// The build cache: <cache>/<kver>/<key>/ holds a build's modules, its build.log and result.json,
// or build.log and failed.json for a failure recorded so the same inputs are not built again.
// An entry is installed by rename (install_dir): a reader sees none or a whole one. The key is
// cache_key() over everything the output depends on (agent/facts/build_inputs.h).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/base/state_files.h"
#include "agent/facts/build_inputs.h"
#include "kabi/module.h"
#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent {

inline constexpr const char* kResultFile = "result.json";
inline constexpr const char* kFailedFile = "failed.json";
inline constexpr const char* kLogFile = "build.log";

// Every file of the packages `dirs` under `base`: path relative to `base`, sha256 of the content
// (of the target text for a link, with a "link:" prefix on the path).
[[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> hash_sources(const std::filesystem::path& base,
                                                                                    const std::vector<std::string>& dirs);

// What a cache entry records of its inputs, for readers that did not build (they match on the
// release, /proc/version and the sources' digest).
[[nodiscard]] nlohmann::json recorded_inputs(const CacheKeyInputs& ki, const std::string& compiler);

// What a cache entry records (<entry>/result.json, or failed.json), read with every field's type
// checked: a wrong shape is an error naming the file and the field.
struct CacheRecord {
  bool failed = false;
  std::string release, proc_version, sources_sha256;  // the recorded inputs a reader matches on
  std::string kernel, reason, detail;                 // reason, detail: failed.json
  std::string signer, signing_key_id;
  struct Module {
    std::string name, file, sha256;  // file: a name in the entry (its reader refuses anything else)
  };
  std::vector<Module> modules;       // result.json: at least one
};
[[nodiscard]] Result<CacheRecord> parse_cache_record(std::string_view text, const std::string& file, bool failed);

// The kABI check of a set of modules against the running kernel: empty when all load, else why not.
[[nodiscard]] Result<std::string> kabi_refusal(const probes::HostRoot& root, const std::vector<kabi::ModuleInfo>& set);

// A cache entry as a result: a recorded failure, or its modules (every sha256 verified against
// result.json) once they pass the kABI check against the running kernel again (`check_kabi`).
[[nodiscard]] Result<BuildResult> entry_result(const probes::HostRoot& root, const WritableDir& entry,
                                               const std::string& key, bool check_kabi);

// What a reader that cannot compute the key matches an entry on.
struct RecordedInputs {
  std::string release, proc_version, sources_sha256;
};
// In <cache>/<kver> (`kdir`), the entry whose recorded inputs are `want`: a success before a
// failure, the newest of each, the first that reads as a result (entry_result). `skipped` gets
// an error for each entry that could not be read.
[[nodiscard]] Result<std::optional<BuildResult>> find_entry(const probes::HostRoot& root, const WritableDir& kdir,
                                                            const RecordedInputs& want, bool check_kabi,
                                                            std::vector<Error>* skipped);

// An entry to install: files copied from this filesystem (name in the entry, path), the build's
// log, and its record (kResultFile or kFailedFile).
struct EntryContent {
  std::vector<std::pair<std::string, std::filesystem::path>> files;
  std::string log;
  const char* record_file = kResultFile;
  nlohmann::json record;
};
// Installs <kdir>/<key> by rename, over what is there (a failure rebuilt, an unusable entry).
// Theirs: another builder installed the same key first, and its entry stays.
[[nodiscard]] Result<DirInstall> install_entry(const WritableDir& kdir, const std::string& key, const EntryContent& content);

}  // namespace agent
