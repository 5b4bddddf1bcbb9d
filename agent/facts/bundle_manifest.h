// The bundle manifest: what the image's builder stage put in /opt/lib/modules/<kver>/ - each
// module's name, file, sha256, vermagic and build id, the kernel it was built for, the DKMS
// sources' name, version and digest. Written by `agent manifest` in the builder stage (the same
// readers the agent uses at run time), read by the entrypoint: a bundle file whose sha256 is not
// the manifest's is refused (bundle_manifest_mismatch), and the sources' identity goes to the
// status and the NFD labels. No manifest: nothing is checked, as before.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/base/vocabulary.h"
#include "kabi/module.h"
#include "kabi/result.h"

namespace CLI {
class App;
}

namespace agent {

inline constexpr const char* kBundleManifestFile = "bundle-manifest.json";
inline constexpr int kBundleManifestSchema = 1;
// Deeper JSON than this is refused while parsing (the manifest is two levels deep).
inline constexpr int kBundleManifestMaxDepth = 32;
inline constexpr size_t kBundleManifestMaxSize = size_t{1} << 20;

struct ManifestModule {
  std::string name;
  std::string file;  // relative to the bundle directory
  std::string sha256, vermagic, build_id;
};

struct BundleManifest {
  std::string path;    // the file it was read from (empty when made, not read)
  std::string kernel;  // the release the bundle was built for
  std::string sources_name, sources_version, sources_digest;
  std::string compiler;  // the build's, as `agent build` recorded it
  std::vector<ManifestModule> modules;
};

// The manifest in `text`; any wrong shape (not JSON, nesting deeper than 32, a missing or
// mistyped field, another schema) is an EINVAL error naming `path`. Never throws.
[[nodiscard]] Result<BundleManifest> parse_bundle_manifest(std::string_view text, const std::string& path);

// <bundle_dir>/bundle-manifest.json; nullopt when there is none, an error when it cannot be
// read or parsed.
[[nodiscard]] Result<std::optional<BundleManifest>> read_bundle_manifest(const std::filesystem::path& bundle_dir);

// Where `bundle` (the modules read from `bundle_dir`) and the manifest disagree, one line each:
// a file whose sha256 differs, a file the manifest does not list, a listed file that is missing.
[[nodiscard]] std::vector<std::string> manifest_mismatches(const BundleManifest& manifest,
                                                           const std::vector<kabi::ModuleInfo>& bundle,
                                                           const std::filesystem::path& bundle_dir);

[[nodiscard]] nlohmann::json to_json(const BundleManifest& m);
// The identity the status and the NFD labels show: kernel, sources name, version and digest.
[[nodiscard]] nlohmann::json manifest_identity_json(const BundleManifest& m);

// `agent manifest`: registered on `app`; run() returns its exit code when it was the command.
class ManifestCli {
 public:
  explicit ManifestCli(CLI::App& app);
  [[nodiscard]] bool parsed() const;
  int run(std::ostream& out, std::ostream& err) const;

 private:
  CLI::App* cmd_;
  std::filesystem::path bundle_, entry_, sources_, out_;
};

}  // namespace agent
