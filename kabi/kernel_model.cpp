#include "kabi/kernel_model.h"

#include <algorithm>
#include <cerrno>
#include <fstream>

#include "kabi/file_io.h"

namespace agent::kabi {
namespace fs = std::filesystem;
namespace {

// modules.dep: "kernel/drivers/gpu/drm/i915/i915.ko: kernel/drivers/gpu/drm/drm.ko ...", one
// line per module depmod chose (updates/ and extra/ already preferred over kernel/), with the
// module's whole dependency closure.
std::map<std::string, InTreeModule> parse_modules_dep(std::string_view text, const fs::path& module_dir,
                                                      const SymbolSet* only) {
  std::map<std::string, InTreeModule> tree;
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
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view file = line.substr(0, colon);
    std::string name = module_name_from_path(file);
    // With a filter, the first module is kept too: the kernel's facts need one to read.
    if (only && !only->count(name) && !tree.empty()) continue;
    InTreeModule m;
    m.name = std::move(name);
    m.path = file.front() == '/' ? fs::path(file) : module_dir / file;
    // A stale modules.dep (a module removed without depmod) names files that are gone: a
    // module modprobe cannot load is not part of the tree.
    std::error_code ec;
    if (!fs::exists(m.path, ec)) continue;
    std::string_view deps = line.substr(colon + 1);
    for (std::string_view w = next_word(deps); !w.empty(); w = next_word(deps))
      m.depends.push_back(module_name_from_path(w));
    tree.emplace(m.name, std::move(m));
  }
  return tree;
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

Result<std::map<std::string, InTreeModule>> scan_module_tree(const fs::path& module_dir, const SymbolSet* only) {
  std::error_code ec;
  if (!fs::is_directory(module_dir, ec))
    return fail(ENOENT, "not a module directory (expected /lib/modules/<kver>)", module_dir.string());
  // depmod's index lists every module with its dependencies: no need to walk the tree.
  if (auto dep = read_file(module_dir / "modules.dep"); dep && !dep->empty()) {
    auto tree = parse_modules_dep(*dep, module_dir, only);
    if (!tree.empty()) return tree;
  }
  std::map<std::string, InTreeModule> tree;
  // build/ and source/ are symlinks into kernel headers: never followed (the default).
  fs::recursive_directory_iterator it(module_dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) return fail(ec.value(), "cannot list: " + ec.message(), module_dir.string());
  for (; it != end; it.increment(ec)) {
    if (ec) return fail(ec.value(), "cannot list: " + ec.message(), it->path().string());
    if (!it->is_regular_file(ec) || !is_module_file_name(it->path())) continue;
    InTreeModule m;
    m.name = module_name_from_path(it->path().native());
    if (only && !only->count(m.name) && !tree.empty()) continue;
    m.path = it->path();
    // updates/ and extra/ override kernel/, as depmod's search order does.
    const std::string& full = it->path().native();
    const bool in_kernel_dir = full.compare(module_dir.native().size(), 8, "/kernel/") == 0 ||
                               full.compare(module_dir.native().size(), 7, "kernel/") == 0;
    auto [pos, inserted] = tree.emplace(m.name, m);
    if (!inserted && !in_kernel_dir) pos->second = m;
  }
  if (tree.empty()) return fail(ENOENT, "no kernel modules found", module_dir.string());
  // Without modules.dep, dependencies come from each module's depends= when it is read.
  return tree;
}

namespace {
// Small, ordinary in-tree modules every distribution kernel builds: they carry the kernel's
// vermagic and sizeof(struct module).
constexpr const char* kSampleModules[] = {"crc32_generic", "dummy", "loop", "fat", "ext4", "e1000"};
}  // namespace

Result<TreeFacts> read_tree_facts(const std::map<std::string, InTreeModule>& tree) {
  // Well-known small modules first, then any.
  std::vector<const InTreeModule*> order;
  for (const char* pref : kSampleModules)
    if (auto it = tree.find(pref); it != tree.end()) order.push_back(&it->second);
  for (const auto& [name, m] : tree) order.push_back(&m);
  std::string last_error = "no readable module";
  size_t tried = 0;
  for (const InTreeModule* m : order) {
    if (++tried > 32) break;
    auto info = read_module(m->path, {.trusted_certs = nullptr, .sha256 = false});
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

std::optional<fs::path> find_kernel_image(const fs::path& module_dir, const std::string& release) {
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(module_dir, ec);
  if (ec) dir = module_dir;
  std::vector<fs::path> candidates = {dir / "vmlinuz"};
  // <root>/lib/modules/<kver> or <root>/usr/lib/modules/<kver>
  fs::path root = dir.parent_path().parent_path().parent_path();
  candidates.push_back(root / "boot" / ("vmlinuz-" + release));
  if (root.filename() == "usr") candidates.push_back(root.parent_path() / "boot" / ("vmlinuz-" + release));
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return c;
  return std::nullopt;
}

Result<KernelModel> load_kernel_model(const fs::path& symvers_file, const fs::path& module_dir,
                                      const std::vector<ModuleInfo>* for_set) {
  KernelModel k;
  SymbolSet wanted;
  if (for_set) {
    wanted.insert("module_layout");
    for (const auto& m : *for_set)
      for (const auto& u : m.undefined) wanted.insert(u.name);
  }
  auto sv = read_symvers(symvers_file, for_set ? &wanted : nullptr);
  if (!sv) return tl::unexpected(sv.error());
  k.symvers = std::move(*sv);
  k.symvers_source = symvers_file.string();
  SymbolSet owners;
  if (for_set) {
    for (const auto& e : k.symvers.entries)
      if (e.owner != "vmlinux") owners.insert(owner_module_name(e.owner));
    for (const char* sample : kSampleModules) owners.insert(sample);
  }
  auto tree = scan_module_tree(module_dir, for_set ? &owners : nullptr);
  if (!tree) return tl::unexpected(tree.error());
  k.in_tree = std::move(*tree);
  auto facts = read_tree_facts(k.in_tree);
  if (!facts) return tl::unexpected(Error{facts.error().code, facts.error().message, module_dir.string()});
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
