#include "probes/kernel.h"

#include "kabi/text.h"

#include <algorithm>
#include <cerrno>
#include <sstream>

#include <spdlog/spdlog.h>

#include "kabi/file_io.h"

namespace agent::probes {
namespace fs = std::filesystem;

namespace {

constexpr size_t kReportedSymbols = 10;

std::string compression_of(const fs::path& p) {
  const std::string n = p.filename().string();
  auto ends = [&](std::string_view e) { return n.size() > e.size() && n.compare(n.size() - e.size(), e.size(), e) == 0; };
  if (ends(".ko.xz")) return "xz";
  if (ends(".ko.zst")) return "zstd";
  if (ends(".ko.gz")) return "gzip";
  return "none";
}

// A spread of own modules to verify CRC tables with: the preferred ones (the bundle's in-tree
// dependencies, whose CRCs matter most) first, then modules spread evenly over the tree so that
// many subsystems' imports are compared.
std::vector<std::string> pick_sample(const std::map<std::string, kabi::InTreeModule>& tree,
                                     const std::vector<std::string>& prefer, size_t size) {
  std::vector<std::string> out;
  for (const auto& p : prefer) {
    if (out.size() >= size / 2) break;
    if (tree.count(p) && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  const size_t rest = size > out.size() ? size - out.size() : 0;
  if (rest && !tree.empty()) {
    std::vector<std::string> names;
    names.reserve(tree.size());
    for (const auto& [n, m] : tree) names.push_back(n);
    const size_t step = std::max<size_t>(1, names.size() / rest);
    for (size_t i = step / 2; i < names.size() && out.size() < size; i += step)
      if (std::find(out.begin(), out.end(), names[i]) == out.end()) out.push_back(names[i]);
  }
  return out;
}

}  // namespace

std::string_view candidate_state_name(SymversCandidate::State s) noexcept {
  switch (s) {
    case SymversCandidate::State::Absent: return "absent";
    case SymversCandidate::State::Unreadable: return "unreadable";
    case SymversCandidate::State::Rejected: return "rejected";
    case SymversCandidate::State::Verified: return "verified";
    case SymversCandidate::State::Unverifiable: return "unverifiable";
    case SymversCandidate::State::NotTried: return "not_tried";
  }
  return "unknown";
}

Result<std::string> probe_release(const HostRoot& root) {
  auto r = root.read_value("/proc/sys/kernel/osrelease");
  if (!r) return r;
  if (r->empty()) return fail(EINVAL, "empty kernel release", root.root().string() + "/proc/sys/kernel/osrelease");
  return r;
}

Result<std::string> probe_boot_id(const HostRoot& root) {
  auto r = root.read_value("/proc/sys/kernel/random/boot_id");
  if (!r) return r;
  if (r->empty()) return fail(EINVAL, "empty boot id", root.display("/proc/sys/kernel/random/boot_id"));
  return r;
}

std::optional<std::string> find_kernel_image(const HostRoot& root, const std::string& release) {
  for (auto& p : kabi::kernel_image_paths(release))
    if (root.is_regular_file(p)) return std::move(p);
  return std::nullopt;
}

std::vector<std::string> module_dir_candidates(const std::string& release) {
  return {"/lib/modules/" + release, "/usr/lib/modules/" + release};
}

std::vector<std::string> symvers_candidates(const std::string& r) {
  std::vector<std::string> c = {
      "/usr/src/kernels/" + r + "/Module.symvers",   // RHEL/Fedora kernel-devel, Driver Toolkit
      "/lib/modules/" + r + "/build/Module.symvers",  // the build link, any distribution
      "/usr/src/linux-headers-" + r + "/Module.symvers",  // Debian/Ubuntu linux-headers
  };
  // RHEL/Fedora/SUSE ship the table beside the modules and in /boot; newer Fedora compresses
  // with xz, some builds use zstd.
  for (const char* ext : {".gz", ".xz", ".zst"}) c.push_back("/lib/modules/" + r + "/symvers" + ext);
  for (const char* ext : {".gz", ".xz", ".zst"}) c.push_back("/boot/symvers-" + r + ext);
  // usr-merged layouts where /lib is not a link to /usr/lib (e.g. a root mounted piecemeal).
  c.push_back("/usr/lib/modules/" + r + "/build/Module.symvers");
  for (const char* ext : {".gz", ".xz", ".zst"}) c.push_back("/usr/lib/modules/" + r + "/symvers" + ext);
  return c;
}

std::map<std::string, std::string> parse_modules_symbols(std::string_view text) {
  std::map<std::string, std::string> out;
  std::istringstream in{std::string(text)};
  std::string word, sym, mod;
  while (in >> word >> sym >> mod) {
    if (word != "alias" || sym.rfind("symbol:", 0) != 0) continue;
    out.emplace(sym.substr(7), mod);
  }
  return out;
}

CrcAgreement compare_with_modules(const kabi::Symvers& table, const std::vector<kabi::ModuleInfo>& sample) {
  CrcAgreement a;
  for (const auto& m : sample) {
    const auto* versions = m.effective_versions();
    if (!versions) continue;
    for (const auto& v : *versions) {
      ++a.compared;
      const kabi::SymversEntry* e = table.find(v.name);
      if (!e) {
        ++a.missing;
        if (a.missing_symbols.size() < kReportedSymbols) a.missing_symbols.push_back(m.name + ":" + v.name);
      } else if (e->crc != v.crc) {
        ++a.mismatched;
        if (a.mismatched_symbols.size() < kReportedSymbols) a.mismatched_symbols.push_back(m.name + ":" + v.name);
      }
    }
  }
  return a;
}

Result<kabi::Symvers> union_of_modules(const std::vector<kabi::ModuleInfo>& modules,
                                       const std::map<std::string, std::string>& owner_of, const std::string& source) {
  kabi::Symvers sv;
  sv.source = source;
  bool nonzero = false;
  auto crc_of = [&](const std::string& name, uint32_t crc, const std::string& from) -> Result<kabi::SymversEntry*> {
    kabi::SymversEntry* e = sv.find(name);
    if (e && e->crc != crc)
      return fail(EINVAL, "own modules disagree about the CRC of " + name + " (" + from + ")", source);
    if (!e) {
      kabi::SymversEntry n;
      n.name = name;
      n.crc = crc;
      n.type_known = n.ns_known = false;
      if (auto o = owner_of.find(name); o != owner_of.end()) n.owner = o->second;
      else n.owner = "vmlinux";
      nonzero |= crc != 0;
      e = &sv.add(std::move(n));
    }
    return e;
  };
  // First every export: its own record knows owner, licence and namespace.
  for (const auto& m : modules) {
    for (const auto& x : m.exports) {
      if (!x.crc) continue;
      auto e = crc_of(x.name, *x.crc, m.path);
      if (!e) return tl::unexpected(e.error());
      (*e)->owner = m.name;
      (*e)->type = x.gpl_only ? kabi::ExportType::Gpl : kabi::ExportType::Plain;
      (*e)->ns = x.ns;
      (*e)->type_known = (*e)->ns_known = true;
      (*e)->ns_possible.clear();
    }
  }
  // Then what modules record of their imports: the CRC; of the namespace, that it is one the
  // importing module imports (it loads on this kernel), or none.
  std::set<std::string> constrained;  // symbols some importing module has narrowed down
  for (const auto& m : modules) {
    const auto* versions = m.effective_versions();
    if (!versions) continue;
    for (const auto& v : *versions) {
      auto e = crc_of(v.name, v.crc, m.path);
      if (!e) return tl::unexpected(e.error());
      if ((*e)->ns_known) continue;
      auto& possible = (*e)->ns_possible;
      if (constrained.insert(v.name).second) {
        possible = {std::string()};
        possible.insert(possible.end(), m.import_ns.begin(), m.import_ns.end());
      } else {
        std::erase_if(possible, [&](const std::string& ns) {
          return !ns.empty() && std::find(m.import_ns.begin(), m.import_ns.end(), ns) == m.import_ns.end();
        });
      }
      if (possible.size() == 1 && possible.front().empty()) (*e)->ns_known = true;  // certainly none
    }
  }
  sv.modversions = nonzero;
  return sv;
}

Result<RunningKernel> probe_kernel(const HostRoot& root, const KernelProbeOptions& options) {
  RunningKernel k;
  auto release = probe_release(root);
  if (!release) return tl::unexpected(release.error());
  k.release = *release;
  if (auto v = root.read_value("/proc/version")) {
    k.proc_version = *v;
  } else {
    return tl::unexpected(v.error());
  }

  // The module tree. /lib/modules and /usr/lib/modules resolve to one directory on usr-merged
  // systems; the first that exists wins.
  for (const auto& dir : module_dir_candidates(k.release)) {
    if (root.is_directory(dir)) {
      k.module_dir = dir;
      break;
    }
  }
  if (k.module_dir.empty()) {
    return fail(ENOENT, "no module tree for the running kernel " + k.release + " (looked in " +
                            join(module_dir_candidates(k.release)) + ")",
                root.display("/lib/modules/" + k.release));
  }
  auto tree = kabi::scan_module_tree(root.fs(), k.module_dir);
  if (!tree) return tl::unexpected(tree.error());
  // Without modules.dep, the dependencies that matter are read from the modules themselves.
  kabi::complete_dependencies(root.fs(), *tree, options.prefer_sample);
  SymversOrigin& origin = k.symvers_origin;
  k.tree_problems = std::move(tree->problems);
  k.in_tree = std::move(tree->modules);

  std::set<std::string> compressions;
  for (const auto& [n, m] : k.in_tree) compressions.insert(compression_of(m.path));
  k.tree_compression = compressions.size() == 1 ? *compressions.begin() : "mixed";

  auto facts = kabi::read_tree_facts(root.fs(), k.in_tree);
  if (!facts) return tl::unexpected(facts.error());
  k.vermagic = facts->vermagic;
  k.vermagic_from = facts->sample;
  k.this_module_size = facts->this_module_size;
  k.modversions = kabi::vermagic_has_modversions(k.vermagic);

  // The sample of own modules every candidate is compared with, read once.
  std::vector<kabi::ModuleInfo> sample;
  // Only their CRCs and signatures are compared: no file hashes.
  const kabi::ReadOptions own_module{.trusted_certs = nullptr, .sha256 = false};
  for (const auto& name : pick_sample(k.in_tree, options.prefer_sample, options.sample_size)) {
    auto m = kabi::read_module(root.fs(), k.in_tree.at(name).path.native(), own_module);
    if (!m) {
      origin.problems.push_back(m.error());
      continue;
    }
    k.own_modules_signed |= m->signature.state == kabi::Signature::State::Present;
    origin.sample.push_back(name);
    sample.push_back(std::move(*m));
  }
  const bool sample_has_crcs = std::any_of(sample.begin(), sample.end(), [](const auto& m) {
    return m.effective_versions() && !m.effective_versions()->empty();
  });

  // Candidates in order; the override first (a path on the agent's own filesystem). Two host
  // paths that are one file (the build link and the headers directory, /lib and /usr/lib) are
  // tried once: the same inode.
  std::vector<SymversCandidate> cands;
  if (options.symvers_override) {
    SymversCandidate c;
    c.path = options.symvers_override->string();
    c.real_path = c.path;
    cands.push_back(std::move(c));
  }
  std::set<std::pair<dev_t, ino_t>> seen_files;
  for (const auto& p : symvers_candidates(k.release)) {
    SymversCandidate c;
    c.path = p;
    c.real_path = root.display(p);
    auto st = root.fs().stat(p);
    if (!st) {
      c.state = st.error().code == ENOENT || st.error().code == ENOTDIR ? SymversCandidate::State::Absent
                                                                          : SymversCandidate::State::Unreadable;
      if (c.state == SymversCandidate::State::Unreadable) c.detail = st.error().what();
      cands.push_back(std::move(c));
      continue;
    }
    if (!seen_files.insert({st->st_dev, st->st_ino}).second) continue;
    c.file_id = {st->st_dev, st->st_ino};
    cands.push_back(std::move(c));
  }

  // Reads a candidate: the override from this filesystem, the rest through the root.
  const bool has_override = options.symvers_override.has_value();
  auto read_candidate = [&](size_t i) -> Result<kabi::Symvers> {
    if (i == 0 && has_override) return kabi::read_symvers(*options.symvers_override);
    auto file = root.fs().map(cands[i].path, kabi::kMaxSymversSize);
    if (!file) return tl::unexpected(file.error());
    return kabi::read_symvers(*file, cands[i].real_path);
  };

  // Verified (true) when the sample's CRCs all agree with `table`, else Rejected with the first
  // differences named.
  auto judge = [&](SymversCandidate& c, const kabi::Symvers& table) {
    const CrcAgreement a = compare_with_modules(table, sample);
    c.compared = a.compared;
    c.mismatched = a.mismatched;
    c.missing = a.missing;
    if (a.mismatched == 0 && a.missing == 0 && a.compared > 0) {
      c.state = SymversCandidate::State::Verified;
      c.detail = std::to_string(a.compared) + " CRCs of " + std::to_string(sample.size()) + " own modules agree";
      return true;
    }
    c.state = SymversCandidate::State::Rejected;
    c.mismatched_symbols = a.mismatched_symbols;
    c.detail = std::to_string(a.mismatched) + " of " + std::to_string(a.compared) + " CRCs differ, " +
               std::to_string(a.missing) + " symbols missing";
    if (!a.mismatched_symbols.empty()) c.detail += " (" + join(a.mismatched_symbols) + ")";
    else if (!a.missing_symbols.empty()) c.detail += " (" + join(a.missing_symbols) + ")";
    return false;
  };

  // Nothing to compare: a kernel without MODVERSIONS records no CRCs in its modules.
  const std::string unverifiable = sample.empty() ? "no own module could be read to compare with"
                                                  : "the kernel's own modules carry no CRCs (built without MODVERSIONS)";

  bool chosen = false;
  kabi::Symvers first_unverifiable;
  std::optional<size_t> first_unverifiable_at;
  for (size_t i = 0; i < cands.size(); ++i) {
    SymversCandidate& c = cands[i];
    if (c.state == SymversCandidate::State::Unreadable || c.state == SymversCandidate::State::Absent) continue;
    if (chosen) continue;  // NotTried: an earlier candidate already won
    auto table = read_candidate(i);
    // --symvers, given explicitly, is read or is an error: never quietly replaced by a default.
    if (!table && i == 0 && has_override) return tl::unexpected(table.error());
    if (!table) {
      c.state = table.error().code == ENOENT ? SymversCandidate::State::Absent : SymversCandidate::State::Unreadable;
      c.detail = table.error().what();
      continue;
    }
    if (!sample_has_crcs || !table->modversions) {
      c.state = SymversCandidate::State::Unverifiable;
      c.detail = unverifiable;
      if (!first_unverifiable_at) {
        first_unverifiable_at = i;
        first_unverifiable = std::move(*table);
      }
      continue;
    }
    if (!judge(c, *table)) continue;
    origin.kind = SymversOrigin::Kind::File;
    origin.path = c.path;
    origin.verified = true;
    origin.verified_with = c.detail + " (" + join(origin.sample) + ")";
    k.symvers = std::move(*table);
    chosen = true;
  }
  if (options.also_verify) {
    SymversCandidate c;
    c.path = options.also_verify->string();
    c.real_path = c.path;
    auto table = kabi::read_symvers(*options.also_verify);
    if (!table) {
      c.state = table.error().code == ENOENT ? SymversCandidate::State::Absent : SymversCandidate::State::Unreadable;
      c.detail = table.error().what();
    } else if (!sample_has_crcs || !table->modversions) {
      c.state = SymversCandidate::State::Unverifiable;
      c.detail = unverifiable;
    } else {
      (void)judge(c, *table);
    }
    k.also_verified = std::move(c);
  }
  if (!chosen && first_unverifiable_at) {
    SymversCandidate& c = cands[*first_unverifiable_at];
    origin.kind = SymversOrigin::Kind::File;
    origin.path = c.path;
    origin.verified = false;
    origin.verified_with = "not verified: " + c.detail;
    k.symvers = std::move(first_unverifiable);
    chosen = true;
  }
  origin.candidates = std::move(cands);

  if (!chosen) {
    // No trustworthy file: the CRCs the kernel's own modules were linked against are the next
    // best truth. Read the bundle's in-tree dependencies first (their exports carry CRCs), then
    // the rest, and stop once every symbol the bundle needs is covered.
    std::map<std::string, std::string> owner_of;
    if (auto text = root.read_text(k.module_dir + "/modules.symbols")) {
      owner_of = parse_modules_symbols(*text);
    } else {
      origin.problems.push_back(text.error());
    }
    std::vector<std::string> order;
    std::set<std::string> queued;
    for (const auto& p : options.prefer_sample)
      if (k.in_tree.count(p) && queued.insert(p).second) order.push_back(p);
    for (const auto& [n, m] : k.in_tree)
      if (queued.insert(n).second) order.push_back(n);

    std::vector<kabi::ModuleInfo> read;
    std::set<std::string> covered;
    auto all_covered = [&] {
      return !options.needed_symbols.empty() &&
             std::all_of(options.needed_symbols.begin(), options.needed_symbols.end(),
                         [&](const std::string& s) { return covered.count(s) > 0; });
    };
    // The sample was read already; its modules are taken, not read again.
    std::map<std::string, kabi::ModuleInfo> sampled;
    for (size_t i = 0; i < sample.size(); ++i) sampled.emplace(origin.sample[i], std::move(sample[i]));
    for (const auto& name : order) {
      if (all_covered()) break;
      auto it = sampled.find(name);
      Result<kabi::ModuleInfo> m = it != sampled.end() ? Result<kabi::ModuleInfo>(std::move(it->second))
                                                        : kabi::read_module(root.fs(), k.in_tree.at(name).path.native(), own_module);
      if (!m) {
        origin.problems.push_back(m.error());
        continue;
      }
      if (const auto* v = m->effective_versions())
        for (const auto& e : *v) covered.insert(e.name);
      for (const auto& e : m->exports)
        if (e.crc) covered.insert(e.name);
      read.push_back(std::move(*m));
    }
    auto table = union_of_modules(read, owner_of, "in-tree __versions union");
    if (!table) return tl::unexpected(table.error());
    origin.kind = SymversOrigin::Kind::InTreeUnion;
    origin.union_modules = read.size();
    for (const auto& s : options.needed_symbols)
      if (!covered.count(s)) origin.uncovered.push_back(s);
    origin.verified_with = "partial table from the __versions of " + std::to_string(read.size()) + " own modules";
    if (!options.needed_symbols.empty()) {
      const size_t have = options.needed_symbols.size() - origin.uncovered.size();
      origin.verified_with += ": covers " + std::to_string(have) + " of the " +
                              std::to_string(options.needed_symbols.size()) + " symbols the bundle needs";
    }
    k.symvers = std::move(*table);
    spdlog::debug("symvers: in-tree union of {} modules, {} symbols", read.size(), k.symvers.entries.size());
  }
  k.modversions = k.modversions && (k.symvers.modversions || origin.kind == SymversOrigin::Kind::InTreeUnion);
  return k;
}

}  // namespace agent::probes
