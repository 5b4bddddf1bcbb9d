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

std::string join(const std::string& dir, const std::string& name) {
  return normalize_path(dir + "/" + name);
}

// /lib/modules/<kver>: depmod's index, or at least kernel/ (a kernel build tree has kernel/ too,
// beside its Module.symvers: that one is a symvers).
bool is_module_tree(const RootFs& r, const std::string& d) {
  return r.is_regular_file(join(d, "modules.dep")) ||
         (r.is_directory(join(d, "kernel")) && !r.is_regular_file(join(d, "Module.symvers")));
}

// The entries of `dir` (inside the root) whose `sub` is a file (`want_file`) or which are module
// trees, as canonical paths inside the root, sorted, without duplicates (lib -> usr/lib).
std::vector<std::string> children_with(const RootFs& r, const std::string& dir, const std::string& sub, bool want_file) {
  std::vector<std::string> out;
  auto list = r.list(dir);
  if (!list) return out;
  for (const auto& e : *list) {
    const std::string p = sub.empty() ? join(dir, e.name) : join(join(dir, e.name), sub);
    if (want_file ? !r.is_regular_file(p) : !(r.is_directory(p) && is_module_tree(r, p))) continue;
    auto c = r.canonical(p);
    if (c && std::find(out.begin(), out.end(), *c) == out.end()) out.push_back(*c);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The one candidate of a kind, or an error when a directory holds several kernels.
Result<std::string> only_one(const RootFs& r, const std::vector<std::string>& found, const fs::path& arg, const char* what) {
  if (found.empty()) return std::string();
  if (found.size() > 1)
    return fail(EINVAL, std::string("holds more than one ") + what + " (" + r.display(found[0]) + ", " + r.display(found[1]) +
                            "): name one of them", arg.string());
  return found[0];
}

// A tree's own symvers, inside the root: build/Module.symvers (Debian's headers, by the tree's
// build link) or symvers.* beside it (RHEL). A build link that leads nowhere inside the root is
// a note: it was not followed on this machine.
std::string tree_symvers(const RootFs& r, const std::string& tree, std::vector<std::string>& notes) {
  for (const char* c : {"build/Module.symvers", "symvers.gz", "symvers.xz", "symvers.zst"})
    if (r.is_regular_file(join(tree, c))) {
      auto canonical = r.canonical(join(tree, c));
      if (canonical) return *canonical;
    }
  if (auto link = r.read_link(join(tree, "build")); link && !r.is_directory(join(tree, "build")))
    notes.push_back(r.display(join(tree, "build")) + " -> " + *link + ": not inside " + r.path() +
                    " (links resolve inside the directory given, never on this machine): no Module.symvers from it; "
                    "give the directory holding both the tree and its headers (an unpacked root) to use theirs");
  return {};
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

std::string parse_utsrelease(std::string_view text) {
  constexpr std::string_view kKey = "#define UTS_RELEASE \"";
  const size_t at = text.find(kKey);
  if (at == std::string_view::npos) return {};
  const size_t begin = at + kKey.size();
  const size_t end = text.find('"', begin);
  if (end == std::string_view::npos) return {};
  const std::string_view v = text.substr(begin, end - begin);
  if (v.empty() || v.size() > 64) return {};
  for (const char c : v)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return {};
  return std::string(v);
}

std::string release_of_headers_dir(const fs::path& dir) {
  const std::string name = dir.filename().string();
  std::string release;
  if (name.rfind("linux-headers-", 0) == 0) release = name.substr(std::string_view("linux-headers-").size());
  else if (dir.parent_path().filename() == "kernels") release = name;
  // As parse_utsrelease: a plausible release or none.
  if (release.empty() || release.size() > 64) return {};
  for (unsigned char c : release)
    if (c <= ' ' || c >= 0x7f) return {};
  return release;
}

KernelRelease settle_release(const ReleaseFacts& f) {
  KernelRelease r;
  if (!f.vermagic_release.empty()) {
    r.release = f.vermagic_release;
    r.from = "vermagic";
    if (!f.headers_release.empty() && f.headers_release != r.release)
      r.notes.push_back("its headers' utsrelease.h says " + f.headers_release + ", its modules' vermagic " + r.release +
                        ": the Module.symvers may be another kernel's");
  } else if (!f.headers_release.empty()) {
    r.release = f.headers_release;
    r.from = "utsrelease.h";
  } else if (const std::string named = release_of_headers_dir(f.headers_dir); !named.empty()) {
    r.release = named;
    r.from = "headers directory";
  } else {
    r.notes.push_back(
        "kernel release not established: no module tree and no include/generated/utsrelease.h beside the "
        "Module.symvers; named by its path");
  }
  const fs::path dir(f.tree_dir);
  if (!r.release.empty() && dir.has_parent_path() && dir.parent_path().filename() == "modules" &&
      dir.filename() != r.release)
    r.notes.push_back("its module tree's directory is " + dir.string() + ", not named after its release " + r.release);
  return r;
}

Result<KernelSource> locate_kernel(const fs::path& arg) {
  KernelSource k;
  k.arg = arg.string();
  std::error_code ec;
  const auto st = fs::status(arg, ec);
  if (ec || !fs::exists(st)) return fail(ENOENT, "no such file or directory", arg.string());
  const bool given_file = fs::is_regular_file(st);
  if (!given_file && !fs::is_directory(st)) return fail(EINVAL, "neither a Module.symvers nor a directory", arg.string());
  const fs::path where = fs::canonical(arg, ec);
  if (ec) return fail(ec.value(), ec.message(), arg.string());
  auto root = RootFs::open(given_file ? where.parent_path() : where);
  if (!root) return tl::unexpected(root.error());
  k.fs = std::make_shared<const RootFs>(std::move(*root));
  const RootFs& r = *k.fs;
  if (given_file) {
    k.arg_is_symvers = true;
    k.symvers = "/" + where.filename().string();
  } else if (is_module_tree(r, "/")) {
    k.module_dir = "/";
    k.symvers = tree_symvers(r, "/", k.notes);
  } else {
    std::vector<std::string> trees;
    if (r.is_directory("/modules") && is_module_tree(r, "/modules")) {
      auto c = r.canonical("/modules");
      if (c) trees.push_back(*c);
    }
    if (trees.empty())
      for (const char* base : {"/lib/modules", "/usr/lib/modules"})
        for (const auto& p : children_with(r, base, {}, false))
          if (std::find(trees.begin(), trees.end(), p) == trees.end()) trees.push_back(p);
    auto tree = only_one(r, trees, arg, "module tree");
    if (!tree) return tl::unexpected(tree.error());
    k.module_dir = *tree;
    for (const char* c : {"Module.symvers", "Module.symvers.gz", "Module.symvers.xz", "Module.symvers.zst", "symvers.gz"})
      if (r.is_regular_file(join("/", c))) {
        k.symvers = join("/", c);
        break;
      }
    std::vector<std::string> tree_notes;
    if (k.symvers.empty() && !k.module_dir.empty()) k.symvers = tree_symvers(r, k.module_dir, tree_notes);
    if (k.symvers.empty()) {
      std::vector<std::string> found = children_with(r, "/usr/src", "Module.symvers", true);
      for (const auto& p : children_with(r, "/usr/src/kernels", "Module.symvers", true)) found.push_back(p);
      // usr/src/linux-headers-<kver>-common has no Module.symvers: only the arch package counts.
      auto one = only_one(r, found, arg, "Module.symvers");
      if (!one) return tl::unexpected(one.error());
      k.symvers = *one;
    }
    if (k.symvers.empty()) k.notes.insert(k.notes.end(), tree_notes.begin(), tree_notes.end());
    if (k.symvers.empty() && k.module_dir.empty())
      return fail(ENOENT, "no Module.symvers and no module tree found in this directory", arg.string());
  }
  if (!k.symvers.empty()) {
    const std::string uts = join(fs::path(k.symvers).parent_path().string(), "include/generated/utsrelease.h");
    if (r.is_regular_file(uts)) {
      auto text = r.read(uts, kMaxIndexSize);
      if (text) k.headers_release = parse_utsrelease(*text);
      if (k.headers_release.empty())
        k.notes.push_back(r.display(uts) + ": " + (text ? "no UTS_RELEASE in it" : text.error().message));
    }
  }
  return k;
}

ReleaseFacts source_release_facts(const KernelSource& k) {
  ReleaseFacts f;
  f.headers_release = k.headers_release;
  if (!k.symvers.empty()) f.headers_dir = fs::path(k.display(k.symvers)).parent_path().string();
  return f;
}

Result<KernelRelease> kernel_release(const KernelSource& k) {
  ReleaseFacts f = source_release_facts(k);
  if (!k.module_dir.empty()) {
    auto tree = scan_module_tree(*k.fs, k.module_dir);
    if (!tree) return tl::unexpected(tree.error());
    auto facts = read_tree_facts(*k.fs, tree->modules);
    if (!facts) return tl::unexpected(Error{facts.error().code, facts.error().message, k.display(k.module_dir)});
    f.vermagic_release = facts->vermagic.substr(0, facts->vermagic.find(' '));
    f.tree_dir = k.display(k.module_dir);
  }
  return settle_release(f);
}

Result<Symvers> read_tree_symvers(const RootFs& root, const std::string& module_dir, const SymbolSet* only,
                                  size_t max_modules) {
  auto tree = scan_module_tree(root, module_dir);
  if (!tree) return tl::unexpected(tree.error());
  if (tree->modules.size() > max_modules)
    return fail(EFBIG, "more than " + std::to_string(max_modules) + " modules", root.display(module_dir));
  const fs::path base = normalize_path(module_dir);
  Symvers sv;
  sv.source = root.display(module_dir) + " (its modules' exports and __versions)";
  std::unordered_map<std::string, uint32_t> used;  // __versions: symbol -> CRC, first seen
  bool any_nonzero = false;
  for (const auto& [name, m] : tree->modules) {
    auto info = read_module(root, m.path.string(), {.trusted_certs = nullptr, .sha256 = false});
    if (!info) return tl::unexpected(info.error());
    for (const auto& e : info->exports) {
      if (only && !only->count(e.name)) continue;
      SymversEntry s;
      s.name = e.name;
      s.crc = e.crc.value_or(0);
      s.owner = owner_of(base, fs::path(normalize_path(m.path.string())));
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

Result<Symvers> read_tree_symvers(const fs::path& module_dir, const SymbolSet* only, size_t max_modules) {
  auto root = RootFs::open("/");
  if (!root) return tl::unexpected(root.error());
  return read_tree_symvers(*root, fs::absolute(module_dir).string(), only, max_modules);
}

Result<Symvers> read_kernel_symvers(const KernelSource& k, const SymbolSet* only) {
  if (!k.fs) return fail(EINVAL, "kernel not located", k.arg);
  if (k.symvers.empty()) return read_tree_symvers(*k.fs, k.module_dir, only);
  auto file = k.fs->map(k.symvers, kMaxSymversSize);
  if (!file) return tl::unexpected(file.error());
  return read_symvers(*file, k.display(k.symvers), only);
}

Result<LoadedKernel> load_kernel(const KernelSource& k, const std::vector<ModuleInfo>& set) {
  if (!k.fs) return fail(EINVAL, "kernel not located", k.arg);
  const RootFs& root = *k.fs;
  LoadedKernel out;
  ReleaseFacts facts_of_release = source_release_facts(k);
  KernelModel& model = out.model;
  if (!k.symvers.empty() && !k.module_dir.empty()) {
    auto loaded = load_kernel_model(root, k.symvers, k.module_dir, &set);
    if (!loaded) return tl::unexpected(loaded.error());
    model = std::move(*loaded);
  } else {
    SymbolSet wanted{"module_layout"};
    for (const auto& m : set)
      for (const auto& u : m.undefined) wanted.insert(u.name);
    if (k.module_dir.empty()) {
      // A Module.symvers alone: the CRCs, exports and namespaces, nothing about the build's
      // vermagic or its modules.
      auto sv = read_kernel_symvers(k, &wanted);
      if (!sv) return tl::unexpected(sv.error());
      model.symvers = std::move(*sv);
      model.symvers_source = k.display(k.symvers);
      out.vermagic_known = false;
      out.tree_known = false;
      if (!set.empty()) model.vermagic = set.front().vermagic;
      // The version rules take the headers' release when they name it, else the set's.
      model.release = !k.headers_release.empty() ? k.headers_release : model.vermagic.substr(0, model.vermagic.find(' '));
      model.modversions = model.symvers.modversions;
    } else {
      auto sv = read_tree_symvers(root, k.module_dir, &wanted);
      if (!sv) return tl::unexpected(sv.error());
      model.symvers = std::move(*sv);
      model.symvers_source = model.symvers.source;
      out.symvers_partial = true;
      auto tree = scan_module_tree(root, k.module_dir);
      if (!tree) return tl::unexpected(tree.error());
      model.problems = std::move(tree->problems);
      model.in_tree = std::move(tree->modules);
      auto facts = read_tree_facts(root, model.in_tree);
      if (!facts) return tl::unexpected(Error{facts.error().code, facts.error().message, k.display(k.module_dir)});
      model.vermagic = facts->vermagic;
      model.this_module_size = facts->this_module_size;
      model.module_sig = facts->signed_modules;
      model.build_key_id = facts->signer_key_id;
      model.release = model.vermagic.substr(0, model.vermagic.find(' '));
      model.modversions = model.symvers.modversions && vermagic_has_modversions(model.vermagic);
    }
    std::tie(model.version_major, model.version_minor) = parse_release_version(model.release);
  }
  if (out.vermagic_known) {
    facts_of_release.vermagic_release = model.release;
    facts_of_release.tree_dir = k.display(k.module_dir);
  }
  out.release = settle_release(facts_of_release);
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
    auto m = read_module(f, {.trusted_certs = nullptr, .sha256 = false, .keep_unreadable = true});
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
