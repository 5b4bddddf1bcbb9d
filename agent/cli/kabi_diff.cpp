// `agent kabi diff OLD NEW [--bundle DIR] [--stablelist FILE] [--json]`
#include <algorithm>
#include <map>
#include <ostream>
#include <sstream>

#include "agent/cli/kabi_check.h"
#include "agent/cli/kabi_pipeline.h"
#include "kabi/kernel_source.h"
#include "kabi/matrix.h"
#include "kabi/stablelist.h"
#include "kabi/symvers_diff.h"
#include "kabi/text.h"

namespace agent {
namespace {

constexpr int kDiffSchema = 1;
constexpr size_t kShown = 30;  // per section, in text; JSON lists all

nlohmann::json changes_json(const std::vector<kabi::SymbolChange>& changes) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& c : changes) a.push_back(kabi::symbol_change_json(c));
  return a;
}

void changes_text(std::ostream& out, const std::vector<kabi::SymbolChange>& changes, const std::string& indent, bool all) {
  size_t n = 0;
  for (const auto& c : changes) {
    if (!all && n++ == kShown) {
      out << indent << "... and " << (changes.size() - kShown) << " more (--json or --verbose lists all)\n";
      break;
    }
    out << indent << kabi::symbol_change_text(c) << '\n';
  }
}

// The kinds of change in the order and words the text prints them.
constexpr std::pair<const char*, const char*> kKinds[] = {
    {"crc", "CRC changed"},  {"added", "added"},   {"removed", "removed"}, {"moved", "moved to another module"},
    {"export_type", "export type changed"}, {"namespace", "namespace changed"}};

std::map<std::string, size_t> tally(const std::vector<kabi::SymbolChange>& changes) {
  std::map<std::string, size_t> t{{"crc", 0}, {"added", 0}, {"removed", 0}, {"moved", 0}, {"export_type", 0}, {"namespace", 0}};
  for (const auto& c : changes)
    for (const auto& k : c.kinds()) ++t[k];
  return t;
}

}  // namespace

int run_kabi_diff(const KabiDiffOptions& o, std::ostream& out, std::ostream& err) {
  auto error = [&](const Error& e) {
    err << "agent: " << printable(e.what()) << '\n';
    return kExitInputError;
  };
  std::optional<std::vector<kabi::ModuleInfo>> bundle;
  std::vector<std::string> imports;
  kabi::SymbolSet only;
  if (!o.bundle.empty()) {
    auto b = kabi::read_bundle(o.bundle);
    if (!b) return error(b.error());
    bundle = std::move(*b);
    imports = kabi::bundle_imports(*bundle);
    only.insert(imports.begin(), imports.end());
    only.insert("module_layout");
  }
  std::optional<kabi::Stablelist> stable;
  if (!o.stablelist.empty()) {
    auto s = kabi::read_stablelist(o.stablelist);
    if (!s) return error(s.error());
    stable = std::move(*s);
  }
  kabi::Symvers tables[2];
  std::string args[2], names[2];
  bool arg_is_symvers[2] = {false, false};
  kabi::KernelRelease releases[2];
  std::vector<std::string> notes[2];
  for (int i = 0; i < 2; ++i) {
    auto src = kabi::locate_kernel(i == 0 ? o.old_kernel : o.new_kernel);
    if (!src) return error(src.error());
    auto sv = kabi::read_kernel_symvers(*src, bundle ? &only : nullptr);
    if (!sv) return error(sv.error());
    // The diff needs only the tables: a tree whose vermagic cannot be read is still compared,
    // named by its headers' release or its path, and the reason said.
    auto release = kabi::kernel_release(*src);
    if (release) {
      releases[i] = std::move(*release);
    } else {
      releases[i] = kabi::settle_release(kabi::source_release_facts(*src));
      releases[i].notes = {"its modules' vermagic not read (" + release.error().what() + ")"};
      if (releases[i].release.empty()) releases[i].notes.front().insert(0, "kernel release not established: ");
    }
    tables[i] = std::move(*sv);
    args[i] = src->arg;
    arg_is_symvers[i] = src->arg_is_symvers;
    names[i] = releases[i].release.empty() ? args[i] : releases[i].release;
    notes[i] = src->notes;
    notes[i].insert(notes[i].end(), releases[i].notes.begin(), releases[i].notes.end());
  }
  const std::vector<kabi::SymbolChange> changes = kabi::diff_symvers(tables[0], tables[1], bundle ? &only : nullptr);
  std::optional<kabi::BundleDiff> bd;
  if (bundle) bd = kabi::diff_for_bundle(changes, *bundle);
  // The stablelisted symbols that changed: a distribution's promise broken, or a list that does
  // not describe these kernels.
  std::vector<kabi::SymbolChange> covered_changed;
  std::optional<kabi::StablelistCoverage> coverage;
  if (stable) {
    for (const auto& c : changes)
      if (stable->symbols.count(c.symbol)) covered_changed.push_back(c);
    if (bundle) coverage = kabi::stablelist_coverage(*stable, imports);
  }

  if (o.json) {
    nlohmann::json j = {{"schema", kDiffSchema}};
    auto or_null = [](const std::string& v) { return v.empty() ? nlohmann::json(nullptr) : nlohmann::json(v); };
    for (int i = 0; i < 2; ++i)
      j[i == 0 ? "old" : "new"] = {{"kernel", args[i]},
                                   {"release", or_null(releases[i].release)},
                                   {"release_from", or_null(releases[i].from)},
                                   {"symvers", tables[i].source},
                                   {"symbols", tables[i].entries.size()},
                                   {"notes", notes[i]}};
    j["bundle"] = bundle ? nlohmann::json(o.bundle.string()) : nlohmann::json(nullptr);
    j["summary"] = tally(changes);
    j["summary"]["changed"] = changes.size();
    if (bd) {
      j["imports"] = bd->imports;
      j["module_layout"] = bd->module_layout ? kabi::symbol_change_json(*bd->module_layout) : nlohmann::json(nullptr);
      nlohmann::json mods = nlohmann::json::array();
      for (const auto& m : bd->modules)
        mods.push_back({{"name", m.name}, {"path", m.path}, {"imports", m.imports}, {"changes", changes_json(m.changes)}});
      j["modules"] = mods;
    } else {
      j["changes"] = changes_json(changes);
    }
    if (stable) {
      nlohmann::json s = coverage ? kabi::stablelist_json(*coverage) : nlohmann::json{{"source", stable->source}};
      s["covered_changed"] = changes_json(covered_changed);
      j["stablelist"] = s;
    } else {
      j["stablelist"] = nullptr;
    }
    out << safe_dump(j) << '\n';
  } else {
    std::ostringstream t;
    for (int i = 0; i < 2; ++i) {
      t << (i == 0 ? "old  " : "new  ") << names[i] << "  "
        << kabi::kernel_origin(args[i], releases[i].release, tables[i].source, arg_is_symvers[i]);
      if (!bundle) t << " (" << tables[i].entries.size() << " symbols)";
      t << '\n';
      for (const auto& n : notes[i]) t << "  note: " << n << '\n';
    }
    const auto counts = tally(changes);
    t << '\n' << names[0] << " -> " << names[1] << ": " << changes.size() << " symbol" << (changes.size() == 1 ? "" : "s")
      << " changed";
    if (bd) t << " of the bundle's " << bd->imports << " imports and module_layout";
    t << '\n';
    for (const auto& [key, label] : kKinds) {
      std::string l = std::string("  ") + label + ":";
      l.resize(std::max<size_t>(l.size() + 1, 28), ' ');
      t << l << counts.at(key) << '\n';
    }
    if (bd) {
      t << "module_layout: " << (bd->module_layout ? kabi::symbol_change_text(*bd->module_layout) : "unchanged") << '\n';
      for (const auto& m : bd->modules) {
        t << '\n' << m.name << " (" << m.imports << " imports, " << m.changes.size() << " changed)\n";
        changes_text(t, m.changes, "  ", o.verbose);
      }
    } else if (!changes.empty()) {
      t << '\n';
      changes_text(t, changes, "", o.verbose);
    }
    if (stable) {
      t << '\n';
      if (coverage) t << kabi::stablelist_text(*coverage);
      t << "stablelisted symbols that changed: " << covered_changed.size() << '\n';
      changes_text(t, covered_changed, "  ", o.verbose);
    }
    out << printable(t.str());
  }
  return changes.empty() ? kExitLoadable : kExitRefused;
}

}  // namespace agent
