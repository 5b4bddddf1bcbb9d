#include "agent/journal.h"

#include <cerrno>

#include "agent/lifecycle.h"
#include "kabi/file_io.h"
#include "kabi/text.h"

namespace agent {

using nlohmann::json;

json to_json(const Journal& j) {
  json inserted = json::array(), removed = json::array();
  for (const auto& i : j.inserted) inserted.push_back({{"name", i.name}, {"build_id", i.build_id}});
  for (const auto& r : j.removed) removed.push_back({{"name", r.name}, {"restore_path", r.restore_path}});
  return {{"schema", 1},
          {"boot_id", j.boot_id},
          {"inserted", inserted},
          {"source", j.source},
          {"removed", removed},
          {"firmware_previous_path", j.firmware_previous_path ? json(*j.firmware_previous_path) : json(nullptr)},
          {"firmware_path", j.firmware_path},
          {"nfd_file", j.nfd_file}};
}

Journal journal_from_json(const json& in, const std::string& boot_id) {
  Journal j;
  j.boot_id = boot_id;
  if (!in.is_object() || in.value("boot_id", std::string()) != boot_id) return j;
  for (const auto& i : in.value("inserted", json::array()))
    j.inserted.push_back({i.value("name", std::string()), i.value("build_id", std::string())});
  for (const auto& r : in.value("removed", json::array()))
    j.removed.push_back({r.value("name", std::string()), r.value("restore_path", std::string())});
  j.source = in.value("source", std::string());
  if (auto p = in.find("firmware_previous_path"); p != in.end() && p->is_string()) j.firmware_previous_path = p->get<std::string>();
  j.firmware_path = in.value("firmware_path", std::string());
  j.nfd_file = in.value("nfd_file", std::string());
  return j;
}

Result<Journal> load_journal(const WritableDir& dir, const std::string& boot_id) {
  auto text = dir.read(kJournalFile);
  if (!text) {
    if (text.error().code == ENOENT) return Journal{boot_id, {}, {}, {}, std::nullopt, {}, {}};
    return tl::unexpected(text.error());
  }
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return fail(EINVAL, "not JSON (delete it if nothing needs undoing)", dir.path() + "/" + kJournalFile);
  try {
    return journal_from_json(j, boot_id);
  } catch (const json::exception& e) {
    return fail(EINVAL, std::string("unexpected content: ") + e.what(), dir.path() + "/" + kJournalFile);
  }
}

std::map<std::string, std::string> inserted_build_ids(const std::filesystem::path& state_dir, const std::string& boot_id) {
  std::map<std::string, std::string> out;
  auto text = kabi::read_file(state_dir / kJournalFile, size_t{1} << 20);
  if (!text) return out;
  const json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return out;
  try {
    for (const auto& i : journal_from_json(j, boot_id).inserted) out[i.name] = i.build_id;
  } catch (const json::exception&) {
  }
  return out;
}

Result<void> save_journal(const WritableDir& dir, const Journal& j) {
  if (j.empty()) return dir.remove(kJournalFile);
  return dir.write(kJournalFile, safe_dump(to_json(j)) + "\n");
}

}  // namespace agent
