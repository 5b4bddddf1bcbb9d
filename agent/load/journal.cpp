#include "agent/load/journal.h"

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "agent/base/json_input.h"
#include "kabi/file_io.h"
#include "kabi/text.h"

namespace agent {

using nlohmann::json;

namespace {

const char* state_name(bool done) { return done ? "done" : "intended"; }

Result<bool> read_state(const JsonFields& f) {
  auto s = f.string_or("state", "done");  // schema 1 had no states: everything in it was done
  if (!s) return tl::unexpected(s.error());
  if (*s == "done") return true;
  if (*s == "intended") return false;
  return tl::unexpected(f.error("state", "is '" + printable(*s) + "', not done or intended"));
}

bool hex_or_empty(const std::string& s) {
  return s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// An absolute path with no '.', '..' or empty component ("" allowed when `may_be_empty`).
bool clean_absolute(const std::string& p, bool may_be_empty) {
  if (p.empty()) return may_be_empty;
  if (p.front() != '/' || p.size() > 4096 || p.find('\0') != std::string::npos || p.find('\n') != std::string::npos)
    return false;
  for (size_t pos = 1; pos <= p.size();) {
    const size_t next = std::min(p.find('/', pos), p.size());
    const std::string_view comp(p.data() + pos, next - pos);
    if (comp.empty() || comp == "." || comp == "..") return false;
    pos = next + 1;
  }
  return true;
}

}  // namespace

bool valid_module_name(std::string_view name) {
  return !name.empty() && name.size() <= 55 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

json to_json(const Journal& j) {
  json inserted = json::array(), removed = json::array();
  for (const auto& i : j.inserted)
    inserted.push_back({{"name", i.name}, {"build_id", i.build_id}, {"state", state_name(i.done)}});
  for (const auto& r : j.removed)
    removed.push_back({{"name", r.name}, {"restore_path", r.restore_path}, {"state", state_name(r.done)}});
  return {{"schema", kJournalSchema},
          {"boot_id", j.boot_id},
          {"inserted", inserted},
          {"source", j.source},
          {"removed", removed},
          {"firmware_previous_path", j.firmware_previous_path ? json(*j.firmware_previous_path) : json(nullptr)},
          {"firmware_path", j.firmware_path},
          {"firmware_state", state_name(j.firmware_done)},
          {"nfd_file", j.nfd_file}};
}

Result<Journal> journal_from_json(const json& in, const std::string& boot_id, const std::string& file) {
  Journal j;
  j.boot_id = boot_id;
  const JsonFields top(in, file);
  auto boot = top.string_or("boot_id", "");
  if (!boot) return tl::unexpected(boot.error());
  if (*boot != boot_id) return j;  // another boot's: its kernel is gone
  auto schema = top.integer_or("schema", 1);
  if (!schema) return tl::unexpected(schema.error());
  if (*schema < 1 || *schema > kJournalSchema)
    return fail(EINVAL, "schema " + std::to_string(*schema) + " is not one this agent knows (1-" +
                            std::to_string(kJournalSchema) + ")", file);

  auto inserted = top.array("inserted", true);
  if (!inserted) return tl::unexpected(inserted.error());
  for (size_t k = 0; k < (*inserted)->size(); ++k) {
    const JsonFields f((**inserted)[k], file, "inserted[" + std::to_string(k) + "]");
    auto name = f.string("name");
    auto build_id = f.string_or("build_id", "");
    auto done = read_state(f);
    if (!name) return tl::unexpected(name.error());
    if (!build_id) return tl::unexpected(build_id.error());
    if (!done) return tl::unexpected(done.error());
    if (!valid_module_name(*name)) return tl::unexpected(f.error("name", "is not a module name"));
    if (!hex_or_empty(*build_id)) return tl::unexpected(f.error("build_id", "is not a hex build id"));
    j.inserted.push_back({*name, *build_id, *done});
  }
  auto removed = top.array("removed", true);
  if (!removed) return tl::unexpected(removed.error());
  for (size_t k = 0; k < (*removed)->size(); ++k) {
    const JsonFields f((**removed)[k], file, "removed[" + std::to_string(k) + "]");
    auto name = f.string("name");
    auto restore = f.string_or("restore_path", "");
    auto done = read_state(f);
    if (!name) return tl::unexpected(name.error());
    if (!restore) return tl::unexpected(restore.error());
    if (!done) return tl::unexpected(done.error());
    if (!valid_module_name(*name)) return tl::unexpected(f.error("name", "is not a module name"));
    if (!clean_absolute(*restore, true)) return tl::unexpected(f.error("restore_path", "is not a clean absolute path"));
    j.removed.push_back({*name, *restore, *done});
  }
  auto source = top.string_or("source", "");
  auto previous = top.optional_string("firmware_previous_path");
  auto fw = top.string_or("firmware_path", "");
  auto nfd = top.string_or("nfd_file", "");
  if (!source) return tl::unexpected(source.error());
  if (!previous) return tl::unexpected(previous.error());
  if (!fw) return tl::unexpected(fw.error());
  if (!nfd) return tl::unexpected(nfd.error());
  if (!source->empty() && *source != "prebuilt" && *source != "built")
    return tl::unexpected(top.error("source", "is '" + printable(*source) + "', not prebuilt or built"));
  if (!clean_absolute(*fw, true)) return tl::unexpected(top.error("firmware_path", "is not a clean absolute path"));
  if (!clean_absolute(*nfd, true)) return tl::unexpected(top.error("nfd_file", "is not a clean absolute path"));
  if (*previous && ((*previous)->size() > 4096 || (*previous)->find('\n') != std::string::npos))
    return tl::unexpected(top.error("firmware_previous_path", "is not a firmware_class.path value"));
  j.source = *source;
  j.firmware_previous_path = *previous;
  j.firmware_path = *fw;
  j.nfd_file = *nfd;
  if (j.firmware_previous_path) {
    const JsonFields f(in, file);
    auto done = f.string_or("firmware_state", "done");
    if (!done) return tl::unexpected(done.error());
    if (*done != "done" && *done != "intended")
      return tl::unexpected(f.error("firmware_state", "is '" + printable(*done) + "', not done or intended"));
    j.firmware_done = *done == "done";
  }
  return j;
}

Result<Journal> parse_journal(std::string_view text, const std::string& boot_id, const std::string& file) {
  auto j = parse_json_object(text, file);
  if (!j) {
    Error e = j.error();
    e.message += " (delete it if nothing needs undoing)";
    return tl::unexpected(std::move(e));
  }
  return journal_from_json(*j, boot_id, file);
}

Result<Journal> load_journal(const WritableDir& dir, const std::string& boot_id) {
  auto text = dir.read(kJournalFile);
  if (!text) {
    if (text.error().code == ENOENT) return Journal{boot_id, {}, {}, {}, std::nullopt, {}, true, {}};
    return tl::unexpected(text.error());
  }
  return parse_journal(*text, boot_id, dir.path() + "/" + kJournalFile);
}

Result<std::map<std::string, std::string>> inserted_build_ids(const std::filesystem::path& state_dir,
                                                              const std::string& boot_id) {
  std::map<std::string, std::string> out;
  const std::string file = (state_dir / kJournalFile).string();
  auto text = kabi::read_file(state_dir / kJournalFile, size_t{1} << 20);
  if (!text) {
    if (text.error().code == ENOENT) return out;
    return tl::unexpected(text.error());
  }
  auto j = parse_journal(*text, boot_id, file);
  if (!j) return tl::unexpected(j.error());
  for (const auto& i : j->inserted) out[i.name] = i.build_id;
  return out;
}

Result<void> save_journal(const WritableDir& dir, const Journal& j) {
  if (j.empty()) return dir.remove(kJournalFile);
  return dir.write(kJournalFile, safe_dump(to_json(j)) + "\n");
}

std::vector<std::string> reconcile(Journal& j, const KernelNow& now) {
  std::vector<std::string> said;
  for (auto it = j.inserted.begin(); it != j.inserted.end();) {
    if (it->done) { ++it; continue; }
    auto live = now.loaded.find(it->name);
    if (live != now.loaded.end() && !it->build_id.empty() && live->second == it->build_id) {
      it->done = true;
      said.push_back("adopted " + it->name + ": its insert was recorded, and it is live with the recorded build id " +
                     it->build_id + " (the agent that inserted it did not live to mark it done)");
      ++it;
    } else {
      said.push_back("dropped the intended insert of " + it->name + ": " +
                     (live == now.loaded.end() ? std::string("not loaded")
                                               : "live with another build id (" + live->second + ")"));
      it = j.inserted.erase(it);
    }
  }
  for (auto it = j.removed.begin(); it != j.removed.end();) {
    if (it->done) { ++it; continue; }
    if (!now.loaded.count(it->name)) {
      it->done = true;
      said.push_back("recorded the removal of " + it->name + ": it is not loaded");
      ++it;
    } else {
      said.push_back("dropped the intended removal of " + it->name + ": still loaded");
      it = j.removed.erase(it);
    }
  }
  if (j.firmware_previous_path && !j.firmware_done) {
    if (now.firmware_path && *now.firmware_path == j.firmware_path) {
      j.firmware_done = true;
      said.push_back("recorded firmware_class.path '" + j.firmware_path + "': the kernel has it");
    } else {
      said.push_back("dropped the intended firmware_class.path '" + j.firmware_path + "': the kernel has '" +
                     now.firmware_path.value_or("(unreadable)") + "'");
      j.firmware_previous_path.reset();
      j.firmware_path.clear();
      j.firmware_done = true;
    }
  }
  return said;
}

}  // namespace agent
