#include "agent/build/cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <tuple>

#include <spdlog/spdlog.h>

#include "agent/base/json_input.h"
#include "agent/facts/node_model.h"
#include "agent/report/log.h"
#include "kabi/file_io.h"
#include "kabi/report.h"
#include "kabi/rules.h"
#include "kabi/text.h"

namespace agent {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxModuleSize = size_t{1} << 30;
constexpr size_t kMaxSourceFile = size_t{1} << 30;

// A cache entry's modules, read through the cache directory and verified against result.json.
Result<std::vector<kabi::ModuleInfo>> read_entry_modules(const WritableDir& entry, const CacheRecord& record,
                                                         std::vector<BuiltModule>& listed) {
  std::vector<kabi::ModuleInfo> set;
  for (const auto& m : record.modules) {
    // A single file name in the entry (WritableDir::read refuses '/', '..'): never a path elsewhere.
    auto bytes = entry.read(m.file, kMaxModuleSize);
    if (!bytes) return tl::unexpected(bytes.error());
    if (kabi::sha256_hex(*bytes) != m.sha256)
      return fail(EINVAL, "changed since it was built (sha256)", entry.path() + "/" + m.file);
    auto info = kabi::parse_module(*bytes, entry.path() + "/" + m.file);
    if (!info) return tl::unexpected(info.error());
    listed.push_back({m.name.empty() ? info->name : m.name, entry.path() + "/" + m.file, m.sha256});
    set.push_back(std::move(*info));
  }
  return set;
}

// The names in a directory of the cache that are entries (not a .tmp-* being written).
Result<std::vector<std::string>> entry_names(const WritableDir& dir) {
  std::vector<std::string> out;
  const int fd = ::openat(dir.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(errno, "cannot list the build cache", dir.path());
  DIR* d = ::fdopendir(fd);
  if (!d) {
    const int e = errno;
    ::close(fd);
    return fail(e, "cannot list the build cache", dir.path());
  }
  errno = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') out.emplace_back(e->d_name);
  const int e = errno;
  ::closedir(d);
  if (e != 0) return fail(e, "cannot list the build cache", dir.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> hash_sources(const fs::path& base,
                                                                      const std::vector<std::string>& dirs) {
  std::vector<std::pair<std::string, std::string>> files;
  std::error_code ec;
  for (const auto& d : dirs) {
    for (fs::recursive_directory_iterator it(base / d, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string rel = it->path().lexically_relative(base).string();
      if (it->is_symlink(ec)) {
        files.emplace_back("link:" + rel, kabi::sha256_hex(fs::read_symlink(it->path(), ec).string()));
      } else if (it->is_regular_file(ec)) {
        auto bytes = kabi::read_file(it->path(), kMaxSourceFile);
        if (!bytes) return tl::unexpected(bytes.error());
        files.emplace_back(rel, kabi::sha256_hex(*bytes));
      }
    }
    if (ec) return fail(ec.value(), "cannot read the sources: " + ec.message(), (base / d).string());
  }
  return files;
}

nlohmann::json recorded_inputs(const CacheKeyInputs& ki, const std::string& compiler) {
  return {{"release", ki.release},
          {"proc_version", ki.proc_version},
          {"symvers_sha256", ki.symvers_sha256},
          {"sources_sha256", sources_digest(ki.sources)},
          {"compiler", compiler},
          {"signing_key_id", ki.signing_key_id}};
}

Result<CacheRecord> parse_cache_record(std::string_view text, const std::string& file, bool failed) {
  auto j = parse_json_object(text, file);
  if (!j) return tl::unexpected(j.error());
  CacheRecord r;
  r.failed = failed;
  const JsonFields top(*j, file);
  auto inputs = top.object("inputs", true);
  if (!inputs) return tl::unexpected(inputs.error());
  const JsonFields in(**inputs, file, "inputs");
  for (auto [field, key] : {std::pair{&r.release, "release"}, {&r.proc_version, "proc_version"},
                            {&r.sources_sha256, "sources_sha256"}}) {
    auto v = in.string_or(key, "");
    if (!v) return tl::unexpected(v.error());
    *field = std::move(*v);
  }
  auto kernel = top.string_or("kernel", "");
  if (!kernel) return tl::unexpected(kernel.error());
  r.kernel = *kernel;
  if (failed) {
    auto reason = top.string_or("reason", reason::kBuildFailed);
    auto detail = top.string_or("detail", "");
    if (!reason) return tl::unexpected(reason.error());
    if (!detail) return tl::unexpected(detail.error());
    r.reason = *reason;
    r.detail = *detail;
    return r;
  }
  auto signer = top.object("signer");
  if (!signer) return tl::unexpected(signer.error());
  const JsonFields sf(**signer, file, "signer");
  auto signer_name = sf.string_or("name", "");
  auto key_id = sf.string_or("key_id", "");
  if (!signer_name) return tl::unexpected(signer_name.error());
  if (!key_id) return tl::unexpected(key_id.error());
  r.signer = *signer_name;
  r.signing_key_id = *key_id;
  auto modules = top.array("modules", true, true);
  if (!modules) return tl::unexpected(modules.error());
  if ((*modules)->empty()) return fail(EINVAL, "no modules listed", file);
  for (size_t k = 0; k < (*modules)->size(); ++k) {
    const JsonFields m((**modules)[k], file, "modules[" + std::to_string(k) + "]");
    auto f = m.string("file");
    auto sha256 = m.string("sha256");
    auto name = m.string_or("name", "");
    if (!f) return tl::unexpected(f.error());
    if (!sha256) return tl::unexpected(sha256.error());
    if (!name) return tl::unexpected(name.error());
    r.modules.push_back({*name, *f, *sha256});
  }
  return r;
}

Result<std::string> kabi_refusal(const probes::HostRoot& root, const std::vector<kabi::ModuleInfo>& set) {
  auto node = node_model_for(root, set);
  if (!node) return tl::unexpected(node.error());
  const kabi::Evaluation ev = kabi::evaluate(set, node->model);
  if (ev.all_loadable()) return std::string();
  std::vector<std::string> why;
  for (const auto& v : ev.modules) {
    if (v.verdict == kabi::Verdict::Loadable) continue;
    std::string s = v.name + ": " + kabi::errno_name(v.err);
    for (const auto& r : v.reasons)
      if (r.fatal) { s += " (" + r.code + (r.symbol.empty() ? "" : " " + r.symbol) + ")"; break; }
    why.push_back(s);
  }
  return "refused by the kABI check against " + node->model.release + ": " + join(why);
}

Result<BuildResult> entry_result(const probes::HostRoot& root, const WritableDir& entry, const std::string& key,
                                 bool check_kabi) {
  BuildResult r;
  r.key = key;
  r.entry = entry.path();
  r.log = entry.path() + "/" + kLogFile;
  const bool failed = entry.exists(kFailedFile);
  const char* name = failed ? kFailedFile : kResultFile;
  auto text = entry.read(name);
  if (!text) return tl::unexpected(text.error());
  auto record = parse_cache_record(*text, entry.path() + "/" + name, failed);
  if (!record) return tl::unexpected(record.error());
  r.kernel = record->kernel;
  if (failed) {
    r.result = BuildOutcome::Failed;
    r.reason = record->reason;
    r.detail = record->detail + " (recorded; not retried until an input changes, or --rebuild)";
    return r;
  }
  r.signer = record->signer;
  r.signing_key_id = record->signing_key_id;
  auto set = read_entry_modules(entry, *record, r.modules);
  if (!set) return tl::unexpected(set.error());
  if (!check_kabi) {
    r.result = BuildOutcome::Cached;
    return r;
  }
  auto refusal = kabi_refusal(root, *set);
  if (!refusal) return tl::unexpected(refusal.error());
  if (refusal->empty()) {
    r.result = BuildOutcome::Cached;
    return r;
  }
  r.result = BuildOutcome::Failed;
  r.reason = reason::kKabiRefused;
  r.detail = "the cached build is " + *refusal;
  r.modules.clear();
  return r;
}


Result<std::optional<BuildResult>> find_entry(const probes::HostRoot& root, const WritableDir& kdir,
                                              const RecordedInputs& want, bool check_kabi, std::vector<Error>* skipped) {
  // Entries whose recorded inputs are `want`, newest first; successes before failures.
  struct Candidate {
    bool failed;
    struct timespec mtime;
    std::string key;
  };
  std::vector<Candidate> found;
  auto names = entry_names(kdir);
  if (!names) return tl::unexpected(names.error());
  for (const auto& key : *names) {
    auto entry = kdir.subdir(key);
    if (!entry) {
      if (skipped) skipped->push_back(entry.error());
      continue;
    }
    const bool failed = entry->exists(kFailedFile);
    const char* name = failed ? kFailedFile : kResultFile;
    auto text = entry->read(name);
    if (!text) {
      if (text.error().code != ENOENT && skipped) skipped->push_back(text.error());
      continue;  // an entry still being written has no result yet
    }
    auto record = parse_cache_record(*text, entry->path() + "/" + name, failed);
    if (!record) {
      if (skipped) skipped->push_back(record.error());
      continue;
    }
    if (record->release != want.release || record->proc_version != want.proc_version ||
        record->sources_sha256 != want.sources_sha256)
      continue;
    struct stat st {};
    if (::fstatat(entry->fd(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    found.push_back({failed, st.st_mtim, key});
  }
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    if (a.failed != b.failed) return !a.failed;
    return std::tie(a.mtime.tv_sec, a.mtime.tv_nsec) > std::tie(b.mtime.tv_sec, b.mtime.tv_nsec);
  });
  for (const auto& c : found) {
    auto entry = kdir.subdir(c.key);
    if (!entry) continue;
    auto r = entry_result(root, *entry, c.key, check_kabi);
    if (!r) {
      log_line(spdlog::level::warn, "building", fmt::format("cache entry {} is not usable: {}", entry->path(), r.error().what()));
      if (skipped) skipped->push_back(r.error());
      continue;
    }
    return std::optional<BuildResult>(std::move(*r));
  }
  return std::optional<BuildResult>();
}

Result<DirInstall> install_entry(const WritableDir& kdir, const std::string& key, const EntryContent& content) {
  return install_dir(kdir, key, IfPresent::Replace, [&](const WritableDir& entry) -> Result<void> {
    for (const auto& [name, from] : content.files) {
      auto bytes = kabi::read_file(from, kMaxModuleSize);
      if (!bytes) return tl::unexpected(bytes.error());
      if (auto w = entry.write(name, *bytes); !w) return w;
    }
    if (auto w = entry.write(kLogFile, content.log); !w) return w;
    return entry.write(content.record_file, safe_dump(content.record) + "\n");
  });
}

}  // namespace agent
