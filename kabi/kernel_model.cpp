#include "kabi/kernel_model.h"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "kabi/file_io.h"

namespace agent::kabi {
namespace fs = std::filesystem;
namespace {

bool is_module_file(const fs::path& p) {
  const std::string n = p.filename().string();
  for (std::string_view ext : {".ko", ".ko.xz", ".ko.zst", ".ko.gz"})
    if (n.size() > ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0) return true;
  return false;
}

// modules.dep: "kernel/drivers/gpu/drm/i915/i915.ko: kernel/drivers/gpu/drm/drm.ko ..."
void apply_modules_dep(const std::string& text, std::map<std::string, InTreeModule>& tree) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = module_name_from_path(line.substr(0, colon));
    auto it = tree.find(name);
    if (it == tree.end()) continue;
    std::istringstream deps(line.substr(colon + 1));
    std::string dep;
    it->second.depends.clear();
    while (deps >> dep) it->second.depends.push_back(module_name_from_path(dep));
  }
}

}  // namespace

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

Result<std::map<std::string, InTreeModule>> scan_module_tree(const fs::path& module_dir) {
  std::error_code ec;
  if (!fs::is_directory(module_dir, ec))
    return fail(ENOENT, "not a module directory (expected /lib/modules/<kver>)", module_dir.string());
  std::map<std::string, InTreeModule> tree;
  // build/ and source/ are symlinks into kernel headers: never followed (the default).
  fs::recursive_directory_iterator it(module_dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) return fail(ec.value(), "cannot list: " + ec.message(), module_dir.string());
  for (; it != end; it.increment(ec)) {
    if (ec) return fail(ec.value(), "cannot list: " + ec.message(), it->path().string());
    if (!it->is_regular_file(ec) || !is_module_file(it->path())) continue;
    InTreeModule m;
    m.name = module_name_from_path(it->path());
    m.path = it->path();
    // updates/ and extra/ override kernel/, as depmod's search order does.
    const std::string& full = it->path().native();
    const bool in_kernel_dir = full.compare(module_dir.native().size(), 8, "/kernel/") == 0 ||
                               full.compare(module_dir.native().size(), 7, "kernel/") == 0;
    auto [pos, inserted] = tree.emplace(m.name, m);
    if (!inserted && !in_kernel_dir) pos->second = m;
  }
  if (tree.empty()) return fail(ENOENT, "no kernel modules found", module_dir.string());
  if (auto dep = read_file(module_dir / "modules.dep")) apply_modules_dep(*dep, tree);
  return tree;
}

Result<TreeFacts> read_tree_facts(const std::map<std::string, InTreeModule>& tree) {
  // A few ordinary in-tree modules carry the kernel's vermagic and sizeof(struct module);
  // try well-known small ones first, then any.
  std::vector<const InTreeModule*> order;
  for (const char* pref : {"crc32_generic", "dummy", "loop", "fat", "ext4", "e1000"})
    if (auto it = tree.find(pref); it != tree.end()) order.push_back(&it->second);
  for (const auto& [name, m] : tree) order.push_back(&m);
  std::string last_error = "no readable module";
  size_t tried = 0;
  for (const InTreeModule* m : order) {
    if (++tried > 32) break;
    auto info = read_module(m->path);
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

Result<KernelModel> load_kernel_model(const fs::path& symvers_file, const fs::path& module_dir) {
  KernelModel k;
  auto sv = read_symvers(symvers_file);
  if (!sv) return tl::unexpected(sv.error());
  k.symvers = std::move(*sv);
  k.symvers_source = symvers_file.string();
  auto tree = scan_module_tree(module_dir);
  if (!tree) return tl::unexpected(tree.error());
  k.in_tree = std::move(*tree);
  auto facts = read_tree_facts(k.in_tree);
  if (!facts) return tl::unexpected(Error{facts.error().code, facts.error().message, module_dir.string()});
  k.vermagic = facts->vermagic;
  k.this_module_size = facts->this_module_size;
  k.module_sig = facts->signed_modules;
  k.release = k.vermagic.substr(0, k.vermagic.find(' '));
  std::tie(k.version_major, k.version_minor) = parse_release_version(k.release);
  // Both must agree: a kernel without CONFIG_MODVERSIONS writes all-zero CRCs and leaves
  // "modversions" out of its vermagic.
  k.modversions = k.symvers.modversions && k.vermagic.find(" modversions") != std::string::npos;
  return k;
}

}  // namespace agent::kabi
