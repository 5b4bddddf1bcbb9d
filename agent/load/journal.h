// What the entrypoint changed on the node in this boot, so that it can be undone by another
// process later (`agent unload`, a preStop hook): <state>/undo.json.
//
// Write-ahead: every acting step is recorded as *intended* (durably: temp + fsync + rename)
// before it acts, and marked *done* after. A process killed in between (kill -9 while the kernel
// runs a module's init) leaves an intended entry that the next agent reconciles with the kernel
// (reconcile()): what the kernel shows done is adopted, the rest dropped. Nothing is acted on
// that could not be recorded first.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/base/state_files.h"

namespace agent {

inline constexpr int kJournalSchema = 2;

struct Journal {
  std::string boot_id;
  struct Inserted {
    std::string name, build_id;
    bool done = true;  // false: intended (recorded before the insert call)
  };
  std::vector<Inserted> inserted;  // bundle modules this agent inserted, in insertion order
  std::string source;              // where they came from: "prebuilt" (the image) or "built" (the node)
  struct Removed {
    std::string name, restore_path;
    bool done = true;
  };
  std::vector<Removed> removed;    // loaded modules it removed, in removal order
  // firmware_class.path as the agent found it before it first changed it, and its own value.
  std::optional<std::string> firmware_previous_path;
  std::string firmware_path;
  bool firmware_done = true;
  std::string nfd_file;            // the NFD file it wrote (recorded before it is written)

  [[nodiscard]] bool empty() const {
    return inserted.empty() && removed.empty() && !firmware_previous_path && nfd_file.empty();
  }
};

[[nodiscard]] nlohmann::json to_json(const Journal& j);
// A journal of another boot describes a kernel that is gone: an empty one for `boot_id`. Every
// field is checked (types, module names, absolute paths without '..'): a wrong one is an error
// naming `file` and the field.
[[nodiscard]] Result<Journal> journal_from_json(const nlohmann::json& j, const std::string& boot_id,
                                                const std::string& file);
// journal_from_json of `text` (depth-limited parse).
[[nodiscard]] Result<Journal> parse_journal(std::string_view text, const std::string& boot_id, const std::string& file);

// Reads <dir>/undo.json; none (or another boot's) is an empty journal, a corrupt one an error.
[[nodiscard]] Result<Journal> load_journal(const WritableDir& dir, const std::string& boot_id);
[[nodiscard]] Result<void> save_journal(const WritableDir& dir, const Journal& j);

// Read-only (for `agent --check`): the bundle modules the entrypoint inserted in this boot, name
// -> build id, from <state_dir>/undo.json; none when there is no journal; an error when there is
// one that cannot be read.
[[nodiscard]] Result<std::map<std::string, std::string>> inserted_build_ids(const std::filesystem::path& state_dir,
                                                                            const std::string& boot_id);

// What the kernel shows now, for reconcile(): loaded module -> its GNU build id ("" unknown).
struct KernelNow {
  std::map<std::string, std::string> loaded;
  std::optional<std::string> firmware_path;  // firmware_class.path; none when not readable
};

// A restart's view of intended entries: an insert whose module is live with the recorded build id
// is adopted (done), one that is not live dropped; a removal whose module is gone is done, one
// still loaded dropped; a firmware path the kernel has is done, else dropped. Returns what it did,
// one line per entry, for the log (empty: nothing was pending).
[[nodiscard]] std::vector<std::string> reconcile(Journal& j, const KernelNow& now);

// A module name as the kernel has it: 1-55 of [A-Za-z0-9_-].
[[nodiscard]] bool valid_module_name(std::string_view name);

}  // namespace agent
