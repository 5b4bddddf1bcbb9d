#include "kabi/kernel_model.h"


#include <algorithm>
#include <cerrno>
#include <fstream>

#include "kabi/file_io.h"

namespace agent::kabi {
namespace fs = std::filesystem;
namespace {

// Directories a module tree has that are no part of it: links into the kernel's headers.
bool skipped_dir(std::string_view name) { return name == "build" || name == "source"; }

// A walk is bounded: real trees are ~6 levels deep with ~6,000 modules.
constexpr int kMaxDepth = 16;
constexpr size_t kMaxEntries = 500000;

std::string child(const std::string& dir, std::string_view name) {
  return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
}

// modules.dep: "kernel/drivers/gpu/drm/i915/i915.ko: kernel/drivers/gpu/drm/drm.ko ...", one
// line per module depmod chose (updates/ and extra/ already preferred over kernel/), with the
// module's whole dependency closure.
void parse_modules_dep(std::string_view text, const RootFs& root, const std::string& module_dir,
                       const SymbolSet* only, ModuleTree& tree) {
  auto next_word = [](std::string_view& s) {
    size_t b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) {
      s = {};
      return std::string_view();
    }
    size_t e = s.find_first_of(" \t", b);
    std::string_view w = s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b);
    s.remove_prefix(e == std::string_view::npos ? s.size() : e);
    return w;
  };
  size_t gone = 0;
  std::string first_gone;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    std::string_view file = line.substr(0, colon);
    std::string name = module_name_from_path(file);
    // With a filter, the first module is kept too: the kernel's facts need one to read.
    if (only && !only->count(name) && !tree.modules.empty()) continue;
    InTreeModule m;
    m.name = std::move(name);
    // An absolute name is the host's own path: inside the root, like everything else.
    m.path = file.front() == '/' ? normalize_path(file) : normalize_path(module_dir + "/" + std::string(file));
    // A stale modules.dep (a module removed without depmod) names files that are gone: a
    // module modprobe cannot load is not part of the tree.
    if (!root.is_regular_file(m.path.native())) {
      if (gone++ == 0) first_gone = m.path.native();
      continue;
    }
    std::string_view deps = line.substr(colon + 1);
    for (std::string_view w = next_word(deps); !w.empty(); w = next_word(deps))
      m.depends.push_back(module_name_from_path(w));
    tree.modules.emplace(m.name, std::move(m));
  }
  if (gone)
    tree.problems.push_back(Error{ENOENT,
                                  std::to_string(gone) + " module(s) named in modules.dep are not in the tree (stale "
                                                         "modules.dep; the first: " + first_gone + ")",
                                  root.display(module_dir + "/modules.dep")});
}

Result<void> walk_tree(const RootFs& root, const std::string& module_dir, const std::string& dir, int depth,
                       const SymbolSet* only, ModuleTree& tree, size_t& entries) {
  if (depth > kMaxDepth) return fail(ELOOP, "module tree nested deeper than " + std::to_string(kMaxDepth) + " levels", root.display(dir));
  auto list = root.list(dir);
  if (!list) return tl::unexpected(list.error());
  for (const auto& e : *list) {
    if ((entries += 1) > kMaxEntries)
      return fail(EFBIG, "more than " + std::to_string(kMaxEntries) + " entries in the module tree", root.display(module_dir));
    const std::string path = child(dir, e.name);
    if (S_ISDIR(e.type)) {
      if (depth == 0 && skipped_dir(e.name)) continue;
      if (auto r = walk_tree(root, module_dir, path, depth + 1, only, tree, entries); !r) return r;
      continue;
    }
    // Links to directories are never followed (build/, source/ point into the headers); a
    // module that is a link is read where it leads inside the root.
    if (!is_module_file_name(e.name)) continue;
    if (S_ISLNK(e.type) && !root.is_regular_file(path)) continue;
    if (!S_ISLNK(e.type) && !S_ISREG(e.type)) continue;
    InTreeModule m;
    m.name = module_name_from_path(e.name);
    if (only && !only->count(m.name) && !tree.modules.empty()) continue;
    m.path = path;
    // updates/ and extra/ override kernel/, as depmod's search order does.
    const bool in_kernel_dir = path.compare(0, module_dir.size() + 8, module_dir + "/kernel/") == 0;
    auto [pos, inserted] = tree.modules.emplace(m.name, m);
    if (!inserted && !in_kernel_dir) pos->second = m;
  }
  return {};
}

}  // namespace

bool vermagic_has_modversions(std::string_view vermagic) {
  for (size_t pos = 0; pos < vermagic.size();) {
    const size_t end = std::min(vermagic.find(' ', pos), vermagic.size());
    if (vermagic.substr(pos, end - pos) == "modversions") return true;
    pos = end + 1;
  }
  return false;
}

void parse_builtins(std::string_view builtin, std::string_view modinfo, std::set<std::string>& sysfs,
                    std::set<std::string>& plain) {
  // modules.builtin.modinfo: NUL-separated "<name>.<key>=<value>" (kernel names, underscores).
  for (size_t pos = 0; pos < modinfo.size();) {
    const size_t end = std::min(modinfo.find('\0', pos), modinfo.size());
    const std::string_view entry = modinfo.substr(pos, end - pos);
    pos = end + 1;
    const size_t dot = entry.find('.'), eq = entry.find('=');
    if (dot == std::string_view::npos || eq == std::string_view::npos || dot > eq) continue;
    const std::string_view key = entry.substr(dot + 1, eq - dot - 1);
    if (key == "parm" || key == "parmtype" || key == "version") sysfs.insert(std::string(entry.substr(0, dot)));
  }
  // modules.builtin: "kernel/drivers/.../foo.ko" a line.
  for (size_t pos = 0; pos < builtin.size();) {
    const size_t end = std::min(builtin.find('\n', pos), builtin.size());
    std::string_view line = builtin.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    if (line.empty()) continue;
    std::string name = module_name_from_path(line);
    if (!sysfs.count(name)) plain.insert(std::move(name));
  }
}

std::pair<int, int> parse_release_version(const std::string& release) {
  int major = 0, minor = 0;
  size_t i = 0;
  auto number = [&](int& out) {
    size_t start = i;
    while (i < release.size() && std::isdigit(static_cast<unsigned char>(release[i]))) out = out * 10 + (release[i++] - '0');
    return i > start;
  };
  if (!number(major)) return {0, 0};
  if (i < release.size() && release[i] == '.') {
    ++i;
    number(minor);
  }
  return {major, minor};
}

Result<ModuleTree> scan_module_tree(const RootFs& root, const std::string& module_dir_in, const SymbolSet* only) {
  const std::string module_dir = normalize_path(module_dir_in);
  if (!root.is_directory(module_dir))
    return fail(ENOENT, "not a module directory (expected /lib/modules/<kver>)", root.display(module_dir));
  ModuleTree tree;
  // depmod's index lists every module with its dependencies: no need to walk the tree.
  const std::string dep_path = module_dir + "/modules.dep";
  auto dep = root.read(dep_path, kMaxIndexSize);
  if (dep && !dep->empty()) {
    parse_modules_dep(*dep, root, module_dir, only, tree);
    if (!tree.modules.empty()) {
      tree.indexed = true;
      return tree;
    }
    tree.problems.push_back(Error{EINVAL, "names no module of the tree: walked instead", root.display(dep_path)});
  } else if (!dep) {
    Error e = dep.error();
    e.message = "modules.dep not usable (" + e.message + "): the tree is walked and in-tree dependencies are read from each module's depends=";
    tree.problems.push_back(std::move(e));
  } else {
    tree.problems.push_back(Error{EINVAL, "empty: the tree is walked instead", root.display(dep_path)});
  }
  size_t entries = 0;
  if (auto r = walk_tree(root, module_dir, module_dir, 0, only, tree, entries); !r) return tl::unexpected(r.error());
  if (tree.modules.empty()) return fail(ENOENT, "no kernel modules found", root.display(module_dir));
  return tree;
}

Result<ModuleTree> scan_module_tree(const fs::path& module_dir, const SymbolSet* only) {
  auto root = RootFs::open("/");
  if (!root) return tl::unexpected(root.error());
  return scan_module_tree(*root, fs::absolute(module_dir).string(), only);
}

void complete_dependencies(const RootFs& root, ModuleTree& tree, const std::vector<std::string>& names) {
  if (tree.indexed) return;
  std::map<std::string, std::vector<std::string>> direct;  // read so far
  std::vector<std::string> queue(names.begin(), names.end());
  while (!queue.empty()) {
    const std::string name = std::move(queue.back());
    queue.pop_back();
    auto it = tree.modules.find(name);
    if (it == tree.modules.end() || direct.count(name)) continue;
    auto m = read_module(root, it->second.path.native(), {.trusted_certs = nullptr, .sha256 = false});
    if (!m) {
      tree.problems.push_back(m.error());
      direct[name] = {};
      continue;
    }
    direct[name] = m->depends;
    for (const auto& d : m->depends) queue.push_back(d);
  }
  for (const auto& [name, deps] : direct) {
    std::set<std::string> closure;
    std::vector<std::string> todo(deps.begin(), deps.end());
    while (!todo.empty()) {
      std::string d = std::move(todo.back());
      todo.pop_back();
      if (d == name || !tree.modules.count(d) || !closure.insert(d).second) continue;
      if (auto n = direct.find(d); n != direct.end()) todo.insert(todo.end(), n->second.begin(), n->second.end());
    }
    tree.modules.at(name).depends.assign(closure.begin(), closure.end());
  }
}

Result<ModuleInfo> read_module(const RootFs& root, const std::string& path, const ReadOptions& options) {
  auto file = root.map(path, kMaxModuleSize);
  if (!file) return tl::unexpected(file.error());
  return parse_module(file->bytes(), root.display(path), options);
}

namespace {
// Small, ordinary in-tree modules every distribution kernel builds: they carry the kernel's
// vermagic and sizeof(struct module).
constexpr const char* kSampleModules[] = {"crc32_generic", "dummy", "loop", "fat", "ext4", "e1000"};
}  // namespace

Result<TreeFacts> read_tree_facts(const std::map<std::string, InTreeModule>& tree) {
  auto root = RootFs::open("/");
  if (!root) return tl::unexpected(root.error());
  return read_tree_facts(*root, tree);
}

Result<TreeFacts> read_tree_facts(const RootFs& root, const std::map<std::string, InTreeModule>& tree) {
  // Well-known small modules first, then any.
  std::vector<const InTreeModule*> order;
  for (const char* pref : kSampleModules)
    if (auto it = tree.find(pref); it != tree.end()) order.push_back(&it->second);
  for (const auto& [name, m] : tree) order.push_back(&m);
  std::string last_error = "no readable module";
  size_t tried = 0;
  for (const InTreeModule* m : order) {
    if (++tried > 32) break;
    auto info = read_module(root, m->path.native(), {.trusted_certs = nullptr, .sha256 = false});
    if (!info) {
      last_error = info.error().what();
      continue;
    }
    if (info->vermagic.empty()) continue;
    const bool is_signed = info->signature.state == Signature::State::Present;
    return TreeFacts{info->vermagic, info->this_module_size, is_signed, is_signed ? info->signature.key_id : "",
                     m->path.string()};
  }
  return fail(EINVAL, "cannot read the kernel's vermagic from its own modules: " + last_error);
}

std::vector<std::string> kernel_image_paths(const std::string& release) {
  return {"/boot/vmlinuz-" + release, "/lib/modules/" + release + "/vmlinuz", "/usr/lib/modules/" + release + "/vmlinuz"};
}

std::optional<fs::path> find_kernel_image(const fs::path& module_dir, const std::string& release) {
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(module_dir, ec);
  if (ec) dir = module_dir;
  std::vector<fs::path> candidates = {dir / "vmlinuz"};
  // <root>/lib/modules/<kver> or <root>/usr/lib/modules/<kver>
  fs::path root = dir.parent_path().parent_path().parent_path();
  if (root.filename() == "usr") root = root.parent_path();
  for (const auto& p : kernel_image_paths(release)) candidates.push_back(root / fs::path(p).relative_path());
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return c;
  return std::nullopt;
}

Result<KernelModel> load_kernel_model(const fs::path& symvers_file, const fs::path& module_dir,
                                      const std::vector<ModuleInfo>* for_set) {
  auto root = RootFs::open("/");
  if (!root) return tl::unexpected(root.error());
  return load_kernel_model(*root, fs::absolute(symvers_file).string(), fs::absolute(module_dir).string(), for_set);
}

Result<KernelModel> load_kernel_model(const RootFs& root, const std::string& symvers_file, const std::string& module_dir,
                                      const std::vector<ModuleInfo>* for_set) {
  KernelModel k;
  SymbolSet wanted;
  if (for_set) {
    wanted.insert("module_layout");
    for (const auto& m : *for_set) {
      for (const auto& u : m.undefined) wanted.insert(u.name);
      for (const auto& e : m.exports) wanted.insert(e.name);  // duplicate exports
    }
  }
  auto file = root.map(symvers_file, kMaxSymversSize);
  if (!file) return tl::unexpected(file.error());
  auto sv = read_symvers(*file, root.display(symvers_file), for_set ? &wanted : nullptr);
  if (!sv) return tl::unexpected(sv.error());
  k.symvers = std::move(*sv);
  k.symvers_source = root.display(symvers_file);
  SymbolSet owners;
  if (for_set) {
    for (const auto& e : k.symvers.entries)
      if (e.owner != "vmlinux") owners.insert(owner_module_name(e.owner));
    for (const char* sample : kSampleModules) owners.insert(sample);
  }
  auto tree = scan_module_tree(root, module_dir, for_set ? &owners : nullptr);
  if (!tree) return tl::unexpected(tree.error());
  if (for_set && !tree->indexed) {
    std::vector<std::string> names(owners.begin(), owners.end());
    for (const auto& m : *for_set) names.insert(names.end(), m.depends.begin(), m.depends.end());
    complete_dependencies(root, *tree, names);
  }
  k.problems = std::move(tree->problems);
  k.in_tree = std::move(tree->modules);
  // Built-ins: without modules.builtin.modinfo a built-in's /sys/module is not known.
  auto builtin = root.read(module_dir + "/modules.builtin", kMaxIndexSize);
  auto builtin_modinfo = root.read(module_dir + "/modules.builtin.modinfo", kMaxIndexSize);
  for (const auto* r : {&builtin, &builtin_modinfo}) {
    if (*r) continue;
    k.problems.push_back(r->error());
    if (k.builtins_unread.empty()) k.builtins_unread = r->error().what();
  }
  parse_builtins(builtin ? std::string_view(*builtin) : std::string_view(),
                 builtin_modinfo ? std::string_view(*builtin_modinfo) : std::string_view(), k.builtin_sysfs,
                 k.builtin);
  auto facts = read_tree_facts(root, k.in_tree);
  if (!facts) return tl::unexpected(Error{facts.error().code, facts.error().message, root.display(module_dir)});
  k.vermagic = facts->vermagic;
  k.this_module_size = facts->this_module_size;
  k.module_sig = facts->signed_modules;
  k.build_key_id = facts->signer_key_id;
  k.release = k.vermagic.substr(0, k.vermagic.find(' '));
  std::tie(k.version_major, k.version_minor) = parse_release_version(k.release);
  // Both must agree: a kernel without CONFIG_MODVERSIONS writes all-zero CRCs and leaves
  // "modversions" out of its vermagic.
  k.modversions = k.symvers.modversions && vermagic_has_modversions(k.vermagic);
  return k;
}

}  // namespace agent::kabi
