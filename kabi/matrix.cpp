#include "kabi/matrix.h"

#include <algorithm>
#include <sstream>

#include "kabi/report.h"

namespace agent::kabi {

std::string plan_name(Plan p) {
  switch (p) {
    case Plan::Reuse: return "reuse";
    case Plan::Rebuild: return "rebuild";
    case Plan::Impossible: return "impossible";
  }
  return "impossible";
}

Plan plan_of(const Reason& r) {
  if (!r.fatal) return Plan::Reuse;
  // What the sources themselves would have to change for: modpost refuses a build that uses
  // a symbol the kernel does not export (or from a namespace the module does not import, or
  // a GPL-only one from a non-GPL module), and a dependency missing from the kernel's tree is
  // missing whatever is rebuilt.
  if (r.code == reason::kUnknownSymbol || r.code == reason::kMissingDependency || r.code == reason::kGplOnlySymbol ||
      r.code == reason::kNamespaceNotImported)
    return Plan::Impossible;
  // Everything else is the build's: CRCs, module_layout, vermagic, struct module size, a
  // missing __versions entry, a refused dependency of the set (rebuilt with it), a signature
  // (a rebuild is signed again), the ELF header of another machine.
  return Plan::Rebuild;
}

ModulePlan plan_module(const ModuleVerdict& v, size_t max_reasons) {
  ModulePlan m;
  m.name = v.name;
  m.path = v.path;
  m.err = v.err;
  for (const auto& r : v.reasons) {
    if (!r.fatal) continue;
    m.plan = std::max(m.plan, plan_of(r));
    ++m.counts[r.code];
  }
  // The reasons that decide the plan first (what makes it impossible, say), each kind in the
  // kernel's order.
  for (int p = static_cast<int>(m.plan); p >= static_cast<int>(Plan::Rebuild); --p)
    for (const auto& r : v.reasons)
      if (r.fatal && plan_of(r) == static_cast<Plan>(p) && m.first_reasons.size() < max_reasons)
        m.first_reasons.push_back(r);
  // A refusal with no fatal reason cannot happen; if it did, it is no reuse.
  if (v.verdict == Verdict::Refused && m.plan == Plan::Reuse) m.plan = Plan::Rebuild;
  return m;
}

KernelPlan plan_kernel(const Evaluation& ev, size_t max_reasons) {
  KernelPlan k;
  for (const auto& v : ev.modules) {
    k.modules.push_back(plan_module(v, max_reasons));
    k.verdict = std::max(k.verdict, k.modules.back().plan);
  }
  return k;
}

std::string bundle_fingerprint(const std::vector<std::string>& imports, const KernelModel& k) {
  std::string f;
  f.reserve(imports.size() * 24);
  auto add = [&](const std::string& name) {
    f += name;
    if (const SymversEntry* e = k.symvers.find(name)) {
      f += ' ';
      f += crc_hex(k.modversions ? e->crc : 0);
      f += ' ';
      f += e->type_known ? std::string(export_type_name(e->type)) : "?";
      f += ' ';
      f += e->ns_known ? e->ns : "?";
      // A module of the kernel's tree the bundle would depend on, and whether the tree has it.
      if (e->owner != "vmlinux") {
        const std::string owner = owner_module_name(e->owner);
        f += " " + owner;
        if (!k.in_tree.empty() && !k.in_tree.count(owner)) f += " (not in the tree)";
      }
    } else {
      f += " -";
    }
    f += '\n';
  };
  add("module_layout");
  for (const auto& s : imports) add(s);
  const std::string& vm = k.vermagic;
  f += "vermagic" + vm.substr(std::min(vm.find(' '), vm.size())) + '\n';
  f += "struct_module " + std::to_string(k.this_module_size) + '\n';
  f += std::string("modversions ") + (k.modversions ? "1" : "0") + '\n';
  return f;
}

void group_kernels(MatrixReport& report) {
  report.groups.clear();
  std::map<std::string, size_t> by_fingerprint;
  for (size_t i = 0; i < report.kernels.size(); ++i) {
    KernelPlan& k = report.kernels[i];
    auto [it, fresh] = by_fingerprint.emplace(k.fingerprint, report.groups.size());
    if (fresh) report.groups.push_back(KernelGroup{{}, k.verdict});
    k.group = it->second;
    KernelGroup& g = report.groups[k.group];
    g.kernels.push_back(i);
    // The same fingerprint gives the same verdict; should inputs differ in what they could show
    // (a symvers alone), the group takes the worst.
    g.verdict = std::max(g.verdict, k.verdict);
  }
}

nlohmann::json stablelist_json(const StablelistCoverage& c) {
  return {{"source", c.source},
          {"imports", c.imports},
          {"covered", c.covered.size()},
          {"not_covered", c.not_covered}};
}

std::string stablelist_text(const StablelistCoverage& c, size_t max_listed) {
  std::ostringstream out;
  out << "stablelist " << c.source << ": covers " << c.covered.size() << " of the bundle's " << c.imports
      << " imports; not covered: " << c.not_covered.size() << '\n';
  size_t n = 0;
  for (const auto& s : c.not_covered) {
    if (n++ == max_listed) {
      out << "  ... and " << (c.not_covered.size() - max_listed) << " more (--json lists all)\n";
      break;
    }
    out << "  " << s << '\n';
  }
  return out.str();
}

nlohmann::json matrix_json(const MatrixReport& r) {
  nlohmann::json kernels = nlohmann::json::array();
  for (const auto& k : r.kernels) {
    nlohmann::json mods = nlohmann::json::array();
    for (const auto& m : k.modules) {
      nlohmann::json reasons = nlohmann::json::array();
      for (const auto& reason : m.first_reasons) reasons.push_back(reason_json(reason));
      mods.push_back({{"name", m.name},
                      {"path", m.path},
                      {"verdict", plan_name(m.plan)},
                      {"errno", m.err},
                      {"errno_name", errno_name(m.err)},
                      {"counts", m.counts},
                      {"reasons", reasons}});
    }
    kernels.push_back({{"kernel", k.kernel},
                       {"name", kernel_display_name(k)},
                       {"release", k.release.empty() ? nlohmann::json(nullptr) : nlohmann::json(k.release)},
                       {"release_from", k.release_from.empty() ? nlohmann::json(nullptr) : nlohmann::json(k.release_from)},
                       {"symvers", k.symvers},
                       {"verdict", plan_name(k.verdict)},
                       {"group", k.group},
                       {"notes", k.notes},
                       {"modules", mods}});
  }
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& g : r.groups) {
    nlohmann::json names = nlohmann::json::array();
    for (size_t i : g.kernels) names.push_back(r.kernels[i].kernel);
    groups.push_back({{"verdict", plan_name(g.verdict)}, {"kernels", names}});
  }
  nlohmann::json j = {{"schema", kMatrixSchema},
                      {"bundle", r.bundle},
                      {"bundle_modules", r.bundle_modules},
                      {"imports", r.imports},
                      {"kernels", kernels},
                      {"groups", groups}};
  j["stablelist"] = r.stablelist ? stablelist_json(*r.stablelist) : nlohmann::json(nullptr);
  return j;
}

KernelArg parse_kernel_arg(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == 0 || eq == std::string::npos || eq + 1 == arg.size() || arg.substr(0, eq).find('/') != std::string::npos)
    return {"", arg};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

std::string kernel_display_name(const KernelPlan& k) {
  if (!k.name.empty()) return k.name;
  return k.release.empty() ? k.kernel : k.release;
}

std::string kernel_origin(const std::string& given, const std::string& release, const std::string& symvers,
                          bool given_is_symvers) {
  std::string s = release.empty() ? "release unknown" : given_is_symvers ? "" : "given as " + given;
  if (!given_is_symvers || !release.empty()) s += (s.empty() ? "" : "; ") + std::string("CRCs from ") + symvers;
  return s;
}

std::string matrix_text(const MatrixReport& r) {
  std::ostringstream out;
  out << "bundle  " << r.bundle << " (" << r.bundle_modules << " module" << (r.bundle_modules == 1 ? "" : "s") << ", "
      << r.imports << " symbols from the kernel)\n\n";
  int width = 6;
  for (const auto& k : r.kernels) width = std::max(width, static_cast<int>(kernel_display_name(k).size()));
  auto pad = [](std::string s, int w) {
    s.resize(std::max(s.size(), static_cast<size_t>(w)), ' ');
    return s;
  };
  out << pad("GROUP", 6) << pad("KERNEL", width + 1) << pad("VERDICT", 12) << pad("REFUSED", 8) << "FIRST REASON\n";
  for (const auto& k : r.kernels) {
    size_t refused = 0;
    std::string first;
    for (const auto& m : k.modules) {
      if (m.plan == Plan::Reuse) continue;
      ++refused;
      if (first.empty() && m.plan == k.verdict && !m.first_reasons.empty()) {
        const Reason& reason = m.first_reasons.front();
        first = m.name + ": " + reason.code + (reason.symbol.empty() ? "" : " " + reason.symbol);
      }
    }
    const std::string refused_col = std::to_string(refused) + "/" + std::to_string(k.modules.size());
    std::string line = pad(std::to_string(k.group + 1), 6) + pad(kernel_display_name(k), width + 1) +
                       pad(plan_name(k.verdict), 12) + pad(refused_col, 8) + first;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  }
  out << '\n';
  for (size_t g = 0; g < r.groups.size(); ++g) {
    const KernelGroup& group = r.groups[g];
    std::string list;
    for (size_t i : group.kernels) list += (list.empty() ? "" : ", ") + kernel_display_name(r.kernels[i]);
    const size_t n = group.kernels.size();
    const std::string these = n == 1 ? "this kernel" : "these " + std::to_string(n) + " kernels";
    out << "group " << (g + 1) << " (" << plan_name(group.verdict) << "): "
        << (group.verdict == Plan::Reuse     ? "the bundle as built serves " + these
            : group.verdict == Plan::Rebuild ? "one image rebuilt for any of them serves " + these
                                             : "no image of these sources serves " + these)
        << ": " << list << '\n';
  }
  out << '\n';
  for (const auto& k : r.kernels) {
    // A kernel named on the command line: its release said unless it is that name.
    const std::string origin =
        k.name.empty() ? kernel_origin(k.kernel, k.release, k.symvers, k.kernel_is_symvers)
                       : (k.release.empty() ? "release unknown, " : k.release == k.name ? "" : "release " + k.release + ", ") +
                             "given as " + k.kernel + "; CRCs from " + k.symvers;
    out << pad(kernel_display_name(k), width) << "  " << origin << '\n';
  }
  for (const auto& k : r.kernels) {
    bool header = false;
    for (const auto& m : k.modules) {
      if (m.plan == Plan::Reuse) continue;
      if (!header) {
        out << '\n' << kernel_display_name(k) << " (" << plan_name(k.verdict) << "):\n";
        header = true;
      }
      std::string counts;
      for (const auto& [code, c] : m.counts) counts += (counts.empty() ? "" : ", ") + std::to_string(c) + " " + code;
      out << "  " << m.name << ": " << plan_name(m.plan) << ", " << errno_name(m.err) << " (" << counts << ")\n";
      for (const auto& reason : m.first_reasons) {
        std::string text = "    " + reason.code + ": " + reason.message;
        if (reason.expected_crc && reason.found_crc)
          text += " (kernel " + crc_hex(*reason.expected_crc) + ", module " + crc_hex(*reason.found_crc) + ")";
        out << text << '\n';
      }
    }
    if (!header && !k.notes.empty()) out << '\n' << kernel_display_name(k) << ":\n";
    for (const auto& note : k.notes) out << "  note: " << note << '\n';
  }
  if (r.stablelist) out << '\n' << stablelist_text(*r.stablelist);
  return out.str();
}

}  // namespace agent::kabi
