#include "kabi/kernel_source.h"

#include <algorithm>
#include <cerrno>
#include <map>
#include <system_error>
#include <unordered_map>

#include "kabi/file_io.h"

namespace agent::kabi {
namespace fs = std::filesystem;
namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// /lib/modules/<kver>: depmod's index, or at least kernel/ (a kernel build tree has kernel/ too,
// beside its Module.symvers: that one is a symvers).
bool is_module_tree(const fs::path& d) {
  return is_file(d / "modules.dep") || (is_dir(d / "kernel") && !is_file(d / "Module.symvers"));
}

// The sorted entries of `dir` whose `sub` exists (a file when `want_file`, else a directory).
std::vector<fs::path> children_with(const fs::path& dir, const fs::path& sub, bool want_file) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path p = sub.empty() ? it->path() : it->path() / sub;
    if (want_file ? is_file(p) : (is_dir(p) && is_module_tree(p))) out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The one candidate of a kind, or an error when a directory holds several kernels.
Result<std::string> only_one(const std::vector<fs::path>& found, const fs::path& arg, const char* what) {
  if (found.empty()) return std::string();
  if (found.size() > 1)
    return fail(EINVAL, std::string("holds more than one ") + what + " (" + found[0].string() + ", " + found[1].string() +
                            "): name one of them", arg.string());
  return found[0].string();
}

// "kernel/drivers/gpu/drm/drm.ko.xz" -> "drivers/gpu/drm/drm", as Module.symvers names owners.
std::string owner_of(const fs::path& tree, const fs::path& module) {
  std::string rel = module.lexically_relative(tree).string();
  if (rel.empty() || rel.rfind("..", 0) == 0) rel = module.filename().string();
  if (rel.rfind("kernel/", 0) == 0) rel.erase(0, 7);
  for (const char* ext : {".xz", ".zst", ".gz"})
    if (rel.size() > 3 && rel.ends_with(ext)) rel.erase(rel.size() - std::char_traits<char>::length(ext));
  if (rel.ends_with(".ko")) rel.erase(rel.size() - 3);
  return rel;
}

}  // namespace

Result<KernelSource> locate_kernel(const fs::path& arg) {
  KernelSource k;
  k.arg = arg.string();
  std::error_code ec;
  const auto st = fs::status(arg, ec);
  if (ec || !fs::exists(st)) return fail(ENOENT, "no such file or directory", arg.string());
  if (fs::is_regular_file(st)) {
    k.symvers = arg.string();
    return k;
  }
  if (!fs::is_directory(st)) return fail(EINVAL, "neither a Module.symvers nor a directory", arg.string());
  if (is_module_tree(arg)) {
    k.module_dir = arg.string();
    for (const char* c : {"build/Module.symvers", "symvers.gz", "symvers.xz", "symvers.zst"})
      if (is_file(arg / c)) {
        k.symvers = (arg / c).string();
        break;
      }
    return k;
  }
  for (const char* c : {"Module.symvers", "Module.symvers.gz", "Module.symvers.xz", "Module.symvers.zst", "symvers.gz"})
    if (is_file(arg / c)) {
      k.symvers = (arg / c).string();
      break;
    }
  if (k.symvers.empty()) {
    std::vector<fs::path> found = children_with(arg / "usr/src", "Module.symvers", true);
    for (const auto& p : children_with(arg / "usr/src/kernels", "Module.symvers", true)) found.push_back(p);
    // usr/src/linux-headers-<kver>-common has no Module.symvers: only the arch package counts.
    auto one = only_one(found, arg, "Module.symvers");
    if (!one) return tl::unexpected(one.error());
    k.symvers = *one;
  }
  std::vector<fs::path> trees;
  if (is_dir(arg / "modules") && is_module_tree(arg / "modules")) trees.push_back(arg / "modules");
  if (trees.empty())
    for (const char* base : {"lib/modules", "usr/lib/modules"})
      for (const auto& p : children_with(arg / base, {}, false))
        if (std::find_if(trees.begin(), trees.end(), [&](const fs::path& t) {
              return fs::equivalent(t, p, ec);
            }) == trees.end())
          trees.push_back(p);
  auto tree = only_one(trees, arg, "module tree");
  if (!tree) return tl::unexpected(tree.error());
  k.module_dir = *tree;
  if (k.symvers.empty() && k.module_dir.empty())
    return fail(ENOENT, "no Module.symvers and no module tree found in this directory", arg.string());
  return k;
}

Result<Symvers> read_tree_symvers(const fs::path& module_dir, const SymbolSet* only, size_t max_modules) {
  auto tree = scan_module_tree(module_dir);
  if (!tree) return tl::unexpected(tree.error());
  if (tree->modules.size() > max_modules)
    return fail(EFBIG, "more than " + std::to_string(max_modules) + " modules", module_dir.string());
  const fs::path base = fs::absolute(module_dir).lexically_normal();
  Symvers sv;
  sv.source = module_dir.string() + " (its modules' exports and __versions)";
  std::unordered_map<std::string, uint32_t> used;  // __versions: symbol -> CRC, first seen
  bool any_nonzero = false;
  for (const auto& [name, m] : tree->modules) {
    auto info = read_module(m.path, {.trusted_certs = nullptr, .sha256 = false});
    if (!info) return tl::unexpected(info.error());
    for (const auto& e : info->exports) {
      if (only && !only->count(e.name)) continue;
      SymversEntry s;
      s.name = e.name;
      s.crc = e.crc.value_or(0);
      s.owner = owner_of(base, m.path);
      s.type = e.gpl_only ? ExportType::Gpl : ExportType::Plain;
      s.ns = e.ns;
      any_nonzero |= s.crc != 0;
      sv.add(std::move(s));
    }
    if (const auto* versions = info->effective_versions())
      for (const auto& v : *versions)
        if (!only || only->count(v.name)) used.emplace(v.name, v.crc);
  }
  for (const auto& [name, crc] : used) {
    if (sv.find(name)) continue;
    SymversEntry s;
    s.name = name;
    s.crc = crc;
    s.owner = "vmlinux";
    s.type_known = false;
    s.ns_known = false;
    any_nonzero |= crc != 0;
    sv.add(std::move(s));
  }
  // Sorted as a diff prints it: the map and hash orders mean nothing.
  std::vector<SymversEntry> entries = std::move(sv.entries);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  sv.entries.clear();
  sv.index.clear();
  for (auto& e : entries) sv.add(std::move(e));
  sv.modversions = any_nonzero;
  return sv;
}

Result<Symvers> read_kernel_symvers(const KernelSource& k, const SymbolSet* only) {
  if (!k.symvers.empty()) return read_symvers(fs::path(k.symvers), only);
  return read_tree_symvers(k.module_dir, only);
}

Result<LoadedKernel> load_kernel(const KernelSource& k, const std::vector<ModuleInfo>& set) {
  LoadedKernel out;
  if (!k.symvers.empty() && !k.module_dir.empty()) {
    auto model = load_kernel_model(k.symvers, k.module_dir, &set);
    if (!model) return tl::unexpected(model.error());
    out.model = std::move(*model);
    return out;
  }
  SymbolSet wanted{"module_layout"};
  for (const auto& m : set)
    for (const auto& u : m.undefined) wanted.insert(u.name);
  KernelModel& model = out.model;
  if (k.module_dir.empty()) {
    // A Module.symvers alone: the CRCs, exports and namespaces, nothing about the build's
    // vermagic or its modules.
    auto sv = read_symvers(fs::path(k.symvers), &wanted);
    if (!sv) return tl::unexpected(sv.error());
    model.symvers = std::move(*sv);
    model.symvers_source = k.symvers;
    out.vermagic_known = false;
    out.tree_known = false;
    if (!set.empty()) model.vermagic = set.front().vermagic;
    model.release = model.vermagic.substr(0, model.vermagic.find(' '));
    model.modversions = model.symvers.modversions;
  } else {
    auto sv = read_tree_symvers(k.module_dir, &wanted);
    if (!sv) return tl::unexpected(sv.error());
    model.symvers = std::move(*sv);
    model.symvers_source = model.symvers.source;
    out.symvers_partial = true;
    auto tree = scan_module_tree(k.module_dir);
    if (!tree) return tl::unexpected(tree.error());
    model.problems = std::move(tree->problems);
    model.in_tree = std::move(tree->modules);
    auto facts = read_tree_facts(model.in_tree);
    if (!facts) return tl::unexpected(Error{facts.error().code, facts.error().message, k.module_dir});
    model.vermagic = facts->vermagic;
    model.this_module_size = facts->this_module_size;
    model.module_sig = facts->signed_modules;
    model.build_key_id = facts->signer_key_id;
    model.release = model.vermagic.substr(0, model.vermagic.find(' '));
    model.modversions = model.symvers.modversions && vermagic_has_modversions(model.vermagic);
  }
  std::tie(model.version_major, model.version_minor) = parse_release_version(model.release);
  return out;
}

Result<std::vector<ModuleInfo>> read_bundle(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (is_file(dir)) {
    files.push_back(dir);
  } else if (!is_dir(dir)) {
    return fail(ENOENT, "no such bundle directory or module", dir.string());
  } else {
    constexpr size_t kMaxFiles = 10000;
    fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
    size_t seen = 0;
    for (; !ec && it != end; it.increment(ec)) {
      if (++seen > kMaxFiles) return fail(EFBIG, "more than " + std::to_string(kMaxFiles) + " entries", dir.string());
      if (it.depth() > 16) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec) && is_module_file_name(it->path())) files.push_back(it->path());
    }
    if (ec) return fail(ec.value(), "cannot walk the bundle: " + ec.message(), dir.string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) return fail(ENOENT, "no kernel module (.ko, .ko.xz, .ko.zst, .ko.gz) in the bundle", dir.string());
  std::vector<ModuleInfo> out;
  for (const auto& f : files) {
    auto m = read_module(f, {.trusted_certs = nullptr, .sha256 = false});
    if (!m) return tl::unexpected(m.error());
    out.push_back(std::move(*m));
  }
  return out;
}

std::vector<std::string> bundle_imports(const std::vector<ModuleInfo>& bundle) {
  SymbolSet exported;
  for (const auto& m : bundle)
    for (const auto& e : m.exports) exported.insert(e.name);
  std::vector<std::string> out;
  SymbolSet seen;
  for (const auto& m : bundle)
    for (const auto& u : m.undefined)
      if (!exported.count(u.name) && seen.insert(u.name).second) out.push_back(u.name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace agent::kabi
