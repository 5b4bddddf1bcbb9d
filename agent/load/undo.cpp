#include "agent/load/undo.h"

#include <cerrno>
#include <filesystem>

#include "agent/load/actions.h"
#include "agent/load/firmware.h"
#include "agent/load/lifecycle.h"
#include "kabi/text.h"
#include "probes/loaded_modules.h"
#include "probes/policy.h"

namespace agent {
namespace {

bool under(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.size() <= dir.size() + 1) return false;
  const std::string d = dir.back() == '/' ? dir : dir + "/";
  return path.compare(0, d.size(), d) == 0 && path.find("/../") == std::string::npos &&
         path.find("/./") == std::string::npos;
}

std::string module_name_of_file(const std::string& path) {
  std::string base = std::filesystem::path(path).filename().string();
  for (const char* ext : {".ko.xz", ".ko.zst", ".ko.gz", ".ko"})
    if (base.size() > std::string_view(ext).size() && base.ends_with(ext)) {
      base.resize(base.size() - std::string_view(ext).size());
      for (char& c : base)
        if (c == '-') c = '_';
      return base;
    }
  return "";
}

std::string underscores(std::string s) {
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

}  // namespace

Result<void> undo_insert(const probes::HostRoot& root, const KernelModules& kernel, const Journal::Inserted& entry) {
  if (entry.build_id.empty())
    return fail(EPERM, "the journal records no build id: not removed (cannot tell it is the one the agent inserted)",
                entry.name);
  auto loaded = probes::probe_loaded_modules(root, "");
  if (!loaded) return tl::unexpected(loaded.error());
  auto m = loaded->modules.find(entry.name);
  if (m == loaded->modules.end()) return {};  // gone already
  const std::string& live_id = m->second.build_id;
  if (live_id != entry.build_id)
    return fail(EPERM, "the live module is " + (live_id.empty() ? std::string("of unknown build") : "another build (" + live_id + ")") +
                           ", the journal's is " + entry.build_id + ": not removed",
                entry.name);
  if (m->second.refcnt.value_or(1) > 0 || !m->second.holders.empty())
    return fail(EBUSY, "in use (refcnt " + (m->second.refcnt ? std::to_string(*m->second.refcnt) : std::string("unknown")) +
                           (m->second.holders.empty() ? "" : ", holders " + join(m->second.holders)) + "), not removed",
                entry.name);
  return kernel.remove(entry.name);
}

Result<void> undo_removal(const probes::HostRoot& root, const KernelModules& kernel, const Journal::Removed& entry,
                          const std::string& options, const UndoScope& scope) {
  if (entry.restore_path.empty()) return fail(ENOENT, "the kernel's tree has no file for it: not inserted again", entry.name);
  const bool in_tree = !scope.release.empty() && (under(entry.restore_path, "/lib/modules/" + scope.release) ||
                                                  under(entry.restore_path, "/usr/lib/modules/" + scope.release));
  if (!in_tree || module_name_of_file(entry.restore_path) != underscores(entry.name))
    return fail(EPERM, "the journal's restore path '" + printable(entry.restore_path) + "' is not " + entry.name +
                           "'s file in the running kernel's module tree: not inserted",
                entry.name);
  auto loaded = probes::probe_loaded_modules(root, "");
  if (loaded && loaded->modules.count(entry.name))
    return fail(EEXIST, "a module of that name is loaded, the removed one was not inserted again", entry.name);
  return restore_module(root, kernel, entry.name, entry.restore_path, options);
}

Result<bool> undo_firmware_path(const probes::HostRoot& root, const std::string& ours, const std::string& previous,
                                const UndoScope& scope) {
  if (!under(ours, scope.firmware_base))
    return fail(EPERM, "the journal's firmware path '" + printable(ours) + "' is not under the agent's firmware directory " +
                           scope.firmware_base + ": not set back",
                kFirmwarePathParam);
  const probes::Policy now = probes::probe_policy(root);
  if (now.firmware_path && *now.firmware_path != ours) return false;
  if (auto r = set_firmware_path(root.fs(), previous); !r) return tl::unexpected(r.error());
  return true;
}

Result<void> check_nfd_file(const std::string& nfd_file, const UndoScope& scope) {
  const std::filesystem::path p(nfd_file);
  if (scope.nfd_dir.empty() || p.filename() != kNfdFile ||
      kabi::normalize_path(p.parent_path().string()) != kabi::normalize_path(scope.nfd_dir))
    return fail(EPERM, "the journal's NFD file is not " + (scope.nfd_dir.empty() ? std::string("<--nfd-dir>") : scope.nfd_dir) + "/" +
                           kNfdFile + ": not removed",
                nfd_file);
  return {};
}

}  // namespace agent
