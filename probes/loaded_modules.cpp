#include "probes/loaded_modules.h"

#include <cerrno>

#include "kabi/module.h"

namespace agent::probes {

namespace {

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string_view::npos) j = text.size();
    out.push_back(text.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

Result<std::vector<LoadedModule>> parse_proc_modules(std::string_view text, const std::string& source) {
  std::vector<LoadedModule> out;
  size_t lineno = 0;
  for (std::string_view line : lines_of(text)) {
    ++lineno;
    if (trim(line).empty()) continue;
    const auto f = split_ws(line);
    auto bad = [&](const std::string& why) {
      return fail(EINVAL, "line " + std::to_string(lineno) + ": " + why + ": '" + std::string(line) + "'", source);
    };
    if (f.size() < 6) return bad("expected 'name size refcnt deps state address'");
    LoadedModule m;
    m.name = std::string(f[0]);
    auto size = parse_number(f[1]);
    if (!size) return bad("size is not a number");
    m.size = *size;
    // Modules built without CONFIG_MODULE_UNLOAD print "-" for the count.
    // A module on its way out (Unloading) shows -1.
    if (f[2] == "-1") {
      m.refcnt = -1;
    } else if (f[2] != "-") {
      auto ref = parse_number(f[2]);
      if (!ref) return bad("refcount is not a number");
      m.refcnt = static_cast<int>(*ref);
    }
    std::string_view deps = f[3];
    if (deps != "-") {
      while (!deps.empty()) {
        size_t c = deps.find(',');
        std::string_view d = deps.substr(0, c);
        if (!d.empty()) m.used_by.emplace_back(d);
        if (c == std::string_view::npos) break;
        deps.remove_prefix(c + 1);
      }
    }
    m.state = std::string(f[4]);
    if (f.size() > 6) m.taint = std::string(f[6]);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> parse_modules_builtin(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view line : lines_of(text)) {
    line = trim(line);
    if (line.empty()) continue;
    out.push_back(kabi::module_name_from_path(std::string(line)));
  }
  return out;
}

Result<std::string> probe_build_id(const HostRoot& root, const std::string& name) {
  auto notes = root.read_text("/sys/module/" + name + "/notes/.note.gnu.build-id");
  if (!notes) {
    if (notes.error().code == ENOENT) return std::string();
    return tl::unexpected(notes.error());
  }
  return kabi::parse_build_id_note(*notes);
}

Result<ModuleInventory> probe_loaded_modules(const HostRoot& root, const std::string& module_dir) {
  ModuleInventory inv;
  auto proc = root.read_text("/proc/modules");
  if (!proc) return tl::unexpected(proc.error());
  auto parsed = parse_proc_modules(*proc, root.display("/proc/modules"));
  if (!parsed) return tl::unexpected(parsed.error());
  for (auto& m : *parsed) inv.modules[m.name] = std::move(m);

  if (!module_dir.empty()) {
    if (auto builtin = root.read_text(module_dir + "/modules.builtin")) {
      inv.builtin_read = true;
      for (auto& name : parse_modules_builtin(*builtin)) {
        // A name in /proc/modules is loadable whatever the index says.
        if (inv.modules.count(name)) continue;
        LoadedModule m;
        m.name = name;
        m.builtin = true;
        inv.modules.emplace(name, std::move(m));
      }
    } else {
      inv.problems.push_back(builtin.error());
    }
  }

  auto sys = root.list_dir("/sys/module");
  if (!sys) {
    inv.problems.push_back(sys.error());
    return inv;
  }
  inv.sys_module_read = true;
  for (const auto& name : *sys) {
    const std::string dir = "/sys/module/" + name;
    if (!root.is_directory(dir)) continue;  // /sys/module/compression is a file
    const bool has_initstate = root.exists(dir + "/initstate");
    auto it = inv.modules.find(name);
    if (it == inv.modules.end()) {
      // A loadable module shows up in /proc/modules; one with no initstate in /sys/module is
      // built in (it is there for its parameters or version).
      if (has_initstate) {
        inv.problems.push_back(Error{ENOENT, "in /sys/module but not in /proc/modules", root.root().string() + dir});
      }
      LoadedModule m;
      m.name = name;
      m.builtin = !has_initstate;
      it = inv.modules.emplace(name, std::move(m)).first;
    }
    LoadedModule& m = it->second;
    m.sysfs = true;
    if (!has_initstate) continue;
    if (auto v = root.read_value(dir + "/initstate")) m.initstate = *v; else inv.problems.push_back(v.error());
    if (auto v = root.read_value(dir + "/refcnt")) {
      if (auto n = parse_number(*v)) m.refcnt = static_cast<int>(*n);
    } else if (v.error().code != ENOENT) {
      inv.problems.push_back(v.error());
    }
    if (auto v = root.read_value(dir + "/srcversion")) m.srcversion = *v;
    if (auto v = probe_build_id(root, name)) m.build_id = *v; else inv.problems.push_back(v.error());
    if (auto v = root.read_value(dir + "/version")) m.version = *v;
    if (auto holders = root.list_dir(dir + "/holders")) m.holders = *holders;
    else if (holders.error().code != ENOENT) inv.problems.push_back(holders.error());
  }
  return inv;
}

}  // namespace agent::probes
