#include "agent/facts/bundle_manifest.h"

#include <algorithm>
#include <cerrno>
#include <map>
#include <ostream>
#include <set>
#include <system_error>

#include <CLI/CLI.hpp>

#include "agent/base/json_input.h"
#include "agent/base/state_files.h"
#include "agent/facts/build_inputs.h"
#include "kabi/file_io.h"

namespace agent {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool is_hex(std::string_view s, size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A bundle module's file relative to the bundle directory ("" when it is not inside it).
std::string relative_file(const fs::path& file, const fs::path& dir) {
  const fs::path rel = file.lexically_normal().lexically_relative(dir.lexically_normal());
  if (rel.empty() || *rel.begin() == "..") return {};
  return rel.generic_string();
}

}  // namespace

Result<BundleManifest> parse_bundle_manifest(std::string_view text, const std::string& path) {
  // json_input: the nesting limit while parsing, typed reads naming the field.
  auto doc = parse_json_object(text, path, kBundleManifestMaxDepth);
  if (!doc) return tl::unexpected(doc.error());
  const JsonFields top(*doc, path);
  const auto schema = doc->find("schema");
  if (schema == doc->end() || !schema->is_number_integer()) return tl::unexpected(top.error("schema", "is not an integer"));
  if (schema->get<long long>() != kBundleManifestSchema)
    return tl::unexpected(top.error("schema", "is " + schema->dump() + " (this agent reads " +
                                                  std::to_string(kBundleManifestSchema) + ")"));
  BundleManifest m;
  m.path = path;
  auto kernel = top.object("kernel", /*required=*/true);
  if (!kernel) return tl::unexpected(kernel.error());
  const JsonFields k(**kernel, path, "kernel");
  auto release = k.string("release");
  if (!release) return tl::unexpected(release.error());
  m.kernel = *release;
  auto compiler = k.string_or("compiler", "");
  if (!compiler) return tl::unexpected(compiler.error());
  m.compiler = *compiler;

  auto sources = top.object("sources", /*required=*/true);
  if (!sources) return tl::unexpected(sources.error());
  const JsonFields src(**sources, path, "sources");
  for (auto [key, field] : {std::pair{"name", &m.sources_name}, std::pair{"version", &m.sources_version},
                            std::pair{"digest", &m.sources_digest}}) {
    auto v = src.string(key);
    if (!v) return tl::unexpected(v.error());
    *field = *v;
  }
  if (!is_hex(m.sources_digest, 64)) return tl::unexpected(src.error("digest", "is not a sha256 (64 hex digits)"));

  auto modules = top.array("modules", /*of_objects=*/true, /*required=*/true);
  if (!modules) return tl::unexpected(modules.error());
  if ((*modules)->empty()) return tl::unexpected(top.error("modules", "is empty"));
  std::set<std::string> files;
  for (size_t i = 0; i < (*modules)->size(); ++i) {
    const JsonFields e((**modules)[i], path, "modules[" + std::to_string(i) + "]");
    ManifestModule mm;
    for (auto [key, field] : {std::pair{"name", &mm.name}, std::pair{"file", &mm.file}, std::pair{"sha256", &mm.sha256},
                              std::pair{"vermagic", &mm.vermagic}, std::pair{"build_id", &mm.build_id}}) {
      auto v = e.string(key);
      if (!v) return tl::unexpected(v.error());
      *field = *v;
    }
    if (!is_hex(mm.sha256, 64)) return tl::unexpected(e.error("sha256", "is not 64 lower-case hex digits"));
    const fs::path f(mm.file);
    if (mm.file.empty() || f.is_absolute() || std::any_of(f.begin(), f.end(), [](const fs::path& p) { return p == ".."; }))
      return tl::unexpected(e.error("file", "must be a path inside the bundle directory"));
    if (!files.insert(f.lexically_normal().generic_string()).second)
      return tl::unexpected(e.error("file", "'" + mm.file + "' is listed twice"));
    m.modules.push_back(std::move(mm));
  }
  return m;
}

Result<std::optional<BundleManifest>> read_bundle_manifest(const fs::path& bundle_dir) {
  const fs::path p = bundle_dir / kBundleManifestFile;
  std::error_code ec;
  const auto st = fs::symlink_status(p, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) return fail(ec.value(), "cannot read: " + ec.message(), p.string());
  if (!fs::exists(st)) return std::optional<BundleManifest>();
  auto text = kabi::read_file(p, kBundleManifestMaxSize);
  if (!text) return tl::unexpected(text.error());
  auto m = parse_bundle_manifest(*text, p.string());
  if (!m) return tl::unexpected(m.error());
  return std::optional<BundleManifest>(std::move(*m));
}

std::vector<std::string> manifest_mismatches(const BundleManifest& manifest, const std::vector<kabi::ModuleInfo>& bundle,
                                             const fs::path& bundle_dir) {
  std::map<std::string, const ManifestModule*> listed;
  for (const auto& m : manifest.modules) listed[fs::path(m.file).lexically_normal().generic_string()] = &m;
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& b : bundle) {
    const std::string rel = relative_file(b.path, bundle_dir);
    const auto it = listed.find(rel);
    if (rel.empty() || it == listed.end()) {
      out.push_back(b.path + ": not in the manifest");
      continue;
    }
    seen.insert(rel);
    if (b.sha256 != it->second->sha256)
      out.push_back(b.path + ": sha256 " + b.sha256 + ", the manifest says " + it->second->sha256);
  }
  for (const auto& [rel, m] : listed)
    if (!seen.count(rel)) out.push_back((bundle_dir / rel).string() + ": in the manifest, not in the bundle");
  return out;
}

json manifest_identity_json(const BundleManifest& m) {
  return {{"kernel", m.kernel},
          {"sources", {{"name", m.sources_name}, {"version", m.sources_version}, {"digest", m.sources_digest}}}};
}

json to_json(const BundleManifest& m) {
  json modules = json::array();
  for (const auto& mm : m.modules)
    modules.push_back(
        {{"name", mm.name}, {"file", mm.file}, {"sha256", mm.sha256}, {"vermagic", mm.vermagic}, {"build_id", mm.build_id}});
  json kernel{{"release", m.kernel}};
  if (!m.compiler.empty()) kernel["compiler"] = m.compiler;
  return {{"schema", kBundleManifestSchema},
          {"kernel", kernel},
          {"sources", {{"name", m.sources_name}, {"version", m.sources_version}, {"digest", m.sources_digest}}},
          {"modules", modules}};
}

ManifestCli::ManifestCli(CLI::App& app) {
  cmd_ = app.add_subcommand("manifest",
                            "Write the bundle manifest (the image's builder stage): the modules in --bundle, the "
                            "build --entry of `agent build` they came from, the DKMS --sources");
  cmd_->add_option("--bundle", bundle_, "The bundle directory, /opt/lib/modules/<kver>")->required();
  cmd_->add_option("--entry", entry_, "The build cache entry (<cache>/<kver>/<key>, its result.json)")->required();
  cmd_->add_option("--sources", sources_, "The DKMS source trees built, <name>-<version>/dkms.conf")->required();
  cmd_->add_option("--out", out_, "Where to write it (default <bundle>/bundle-manifest.json)");
}

bool ManifestCli::parsed() const { return cmd_->parsed(); }

int ManifestCli::run(std::ostream& out, std::ostream& err) const {
  auto bad = [&](const Error& e) {
    err << "agent manifest: " << e.what() << '\n';
    return kExitInputError;
  };
  // The build's own record: the kernel, the compiler and the digest of the sources it built.
  const fs::path result_path = entry_ / "result.json";
  auto result_text = kabi::read_file(result_path, kBundleManifestMaxSize);
  if (!result_text) return bad(result_text.error());
  const json result = json::parse(*result_text, nullptr, false);
  if (!result.is_object() || !result.contains("inputs") || !result["inputs"].is_object())
    return bad({EINVAL, "not a build result (no \"inputs\" object)", result_path.string()});
  const json& inputs = result["inputs"];
  BundleManifest m;
  m.kernel = inputs.value("release", "");
  m.compiler = inputs.value("compiler", "");
  m.sources_digest = inputs.value("sources_sha256", "");
  if (m.kernel.empty() || m.sources_digest.empty())
    return bad({EINVAL, "no release or sources_sha256 in \"inputs\"", result_path.string()});

  // The sources' name and version, from their dkms.conf (one package, as the image ships one).
  std::vector<std::string> names, versions;
  std::error_code ec;
  for (fs::directory_iterator it(sources_, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path conf = it->path() / "dkms.conf";
    if (!fs::is_regular_file(conf, ec)) continue;
    auto text = kabi::read_file(conf);
    if (!text) return bad(text.error());
    auto pkg = parse_dkms_conf(*text, m.kernel, conf.string());
    if (!pkg) return bad(pkg.error());
    names.push_back(pkg->name);
    versions.push_back(pkg->version);
  }
  if (ec) return bad({ec.value(), "cannot list: " + ec.message(), sources_.string()});
  if (names.size() != 1)
    return bad({EINVAL, std::to_string(names.size()) + " DKMS packages (one expected)", sources_.string()});
  m.sources_name = names.front();
  m.sources_version = versions.front();

  // Every module of the bundle, read as the entrypoint reads it.
  std::vector<fs::path> files;
  for (fs::recursive_directory_iterator it(bundle_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (it->is_regular_file(ec) && (n.ends_with(".ko") || n.ends_with(".ko.xz") || n.ends_with(".ko.zst") ||
                                    n.ends_with(".ko.gz")))
      files.push_back(it->path());
  }
  if (ec) return bad({ec.value(), "cannot list: " + ec.message(), bundle_.string()});
  if (files.empty()) return bad({ENOENT, "no kernel modules", bundle_.string()});
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto info = kabi::read_module(f, {.trusted_certs = nullptr, .sha256 = true});
    if (!info) return bad(info.error());
    m.modules.push_back({info->name, relative_file(f, bundle_), info->sha256, info->vermagic, info->build_id});
  }

  const json j = to_json(m);
  const fs::path dest = out_.empty() ? bundle_ / kBundleManifestFile : out_;
  // Read back through the parser the entrypoint uses: what is written is what it accepts.
  if (auto back = parse_bundle_manifest(j.dump(), dest.string()); !back) return bad(back.error());
  auto dir = kabi::RootFs::open("/");
  if (!dir) return bad(dir.error());
  auto w = WritableDir::open(*dir, fs::absolute(dest).parent_path().string(), "bundle directory");
  if (!w) return bad(w.error());
  if (auto r = w->write(dest.filename().string(), j.dump(2) + "\n"); !r) return bad(r.error());
  out << "agent manifest: " << dest.string() << ": " << m.modules.size() << " module(s) for " << m.kernel << ", "
      << m.sources_name << " " << m.sources_version << " (sources " << m.sources_digest.substr(0, 16) << ")\n";
  return kBuildOk;
}

}  // namespace agent
