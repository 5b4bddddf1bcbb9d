// What the entrypoint changed on the node in this boot, so that it can be undone by another
// process later (`agent unload`, a preStop hook): <state>/undo.json, rewritten after every step.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/state_files.h"

namespace agent {

struct Journal {
  std::string boot_id;
  struct Inserted {
    std::string name, build_id;
  };
  std::vector<Inserted> inserted;  // bundle modules this agent inserted, in insertion order
  std::string source;              // where they came from: "prebuilt" (the image) or "built" (the node)
  struct Removed {
    std::string name, restore_path;
  };
  std::vector<Removed> removed;    // loaded modules it removed, in removal order
  // firmware_class.path as the agent found it before it first changed it, and its own value.
  std::optional<std::string> firmware_previous_path;
  std::string firmware_path;
  std::string nfd_file;            // the NFD file it wrote

  [[nodiscard]] bool empty() const {
    return inserted.empty() && removed.empty() && !firmware_previous_path && nfd_file.empty();
  }
};

[[nodiscard]] nlohmann::json to_json(const Journal& j);
// A journal of another boot describes a kernel that is gone: an empty one for `boot_id`.
[[nodiscard]] Journal journal_from_json(const nlohmann::json& j, const std::string& boot_id);

// Reads <dir>/undo.json; none (or another boot's) is an empty journal, a corrupt one an error.
[[nodiscard]] Result<Journal> load_journal(const WritableDir& dir, const std::string& boot_id);
[[nodiscard]] Result<void> save_journal(const WritableDir& dir, const Journal& j);

// Read-only (for `agent --check`): the bundle modules the entrypoint inserted in this boot, name
// -> build id, from <state_dir>/undo.json; empty when there is none.
[[nodiscard]] std::map<std::string, std::string> inserted_build_ids(const std::filesystem::path& state_dir,
                                                                    const std::string& boot_id);

}  // namespace agent
