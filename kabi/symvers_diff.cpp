#include "kabi/symvers_diff.h"

#include <algorithm>
#include <set>

#include "kabi/report.h"

namespace agent::kabi {
namespace {

std::optional<SymbolChange> compare(std::string_view name, const SymversEntry* a, const SymversEntry* b) {
  SymbolChange c;
  c.symbol = name;
  if (a) c.old_entry = *a;
  if (b) c.new_entry = *b;
  if (!a || !b) return c;
  c.crc = a->crc != b->crc;
  // A derived table knows a vmlinux symbol's CRC, not who exports it or how.
  const bool facts = a->type_known && b->type_known;
  c.moved = facts && a->owner != b->owner;
  c.type = facts && a->type != b->type;
  c.ns = a->ns_known && b->ns_known && a->ns != b->ns;
  if (!c.crc && !c.moved && !c.type && !c.ns) return std::nullopt;
  return c;
}

nlohmann::json entry_json(const std::optional<SymversEntry>& e) {
  if (!e) return nullptr;
  return {
      {"crc", crc_hex(e->crc)},
      {"module", e->owner},
      {"export_type", e->type_known ? nlohmann::json(std::string(export_type_name(e->type))) : nlohmann::json(nullptr)},
      {"namespace", e->ns_known ? nlohmann::json(e->ns) : nlohmann::json(nullptr)},
  };
}

}  // namespace

std::vector<std::string> SymbolChange::kinds() const {
  if (added()) return {"added"};
  if (removed()) return {"removed"};
  std::vector<std::string> k;
  if (crc) k.emplace_back("crc");
  if (moved) k.emplace_back("moved");
  if (type) k.emplace_back("export_type");
  if (ns) k.emplace_back("namespace");
  return k;
}

std::vector<SymbolChange> diff_symvers(const Symvers& a, const Symvers& b, const SymbolSet* only) {
  std::vector<SymbolChange> out;
  auto wanted = [&](const std::string& n) { return !only || only->count(n); };
  for (const auto& e : a.entries) {
    if (!wanted(e.name)) continue;
    if (auto c = compare(e.name, &e, b.find(e.name))) out.push_back(std::move(*c));
  }
  for (const auto& e : b.entries) {
    if (!wanted(e.name) || a.find(e.name)) continue;
    if (auto c = compare(e.name, nullptr, &e)) out.push_back(std::move(*c));
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.symbol < y.symbol; });
  return out;
}

BundleDiff diff_for_bundle(const std::vector<SymbolChange>& changes, const std::vector<ModuleInfo>& bundle) {
  BundleDiff d;
  SymbolSet exported;
  for (const auto& m : bundle)
    for (const auto& e : m.exports) exported.insert(e.name);
  std::unordered_map<std::string_view, const SymbolChange*> by_name;
  for (const auto& c : changes) by_name.emplace(c.symbol, &c);
  if (auto it = by_name.find("module_layout"); it != by_name.end()) d.module_layout = *it->second;
  std::set<std::string> all, changed;
  for (const auto& m : bundle) {
    ModuleDiff md;
    md.name = m.name;
    md.path = m.path;
    std::set<std::string> mine;
    for (const auto& u : m.undefined)
      if (!exported.count(u.name)) mine.insert(u.name);
    md.imports = mine.size();
    for (const auto& s : mine) {
      all.insert(s);
      if (auto it = by_name.find(s); it != by_name.end()) {
        md.changes.push_back(*it->second);
        changed.insert(s);
      }
    }
    d.modules.push_back(std::move(md));
  }
  d.imports = all.size();
  d.changed = changed.size();
  return d;
}

nlohmann::json symbol_change_json(const SymbolChange& c) {
  return {{"symbol", c.symbol}, {"changes", c.kinds()}, {"old", entry_json(c.old_entry)}, {"new", entry_json(c.new_entry)}};
}

std::string symbol_change_text(const SymbolChange& c) {
  if (c.added()) return c.symbol + ": added (" + crc_hex(c.new_entry->crc) + ", " + c.new_entry->owner + ")";
  if (c.removed()) return c.symbol + ": removed (was " + crc_hex(c.old_entry->crc) + ", " + c.old_entry->owner + ")";
  std::string s = c.symbol + ":";
  const auto& o = *c.old_entry;
  const auto& n = *c.new_entry;
  if (c.crc) s += " crc " + crc_hex(o.crc) + " -> " + crc_hex(n.crc);
  if (c.moved) s += std::string(c.crc ? "," : "") + " moved " + o.owner + " -> " + n.owner;
  if (c.type)
    s += std::string(c.crc || c.moved ? "," : "") + " " + std::string(export_type_name(o.type)) + " -> " +
         std::string(export_type_name(n.type));
  if (c.ns)
    s += std::string(c.crc || c.moved || c.type ? "," : "") + " namespace '" + o.ns + "' -> '" + n.ns + "'";
  return s;
}

}  // namespace agent::kabi
