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
  auto add = [&](const std::string& name, uint32_t crc, const std::string& owner, bool gpl, const std::string& ns,
                 const std::string& from) -> Result<void> {
    if (kabi::SymversEntry* found = sv.find(name)) {
      kabi::SymversEntry& e = *found;
      if (e.crc != crc)
        return fail(EINVAL, "own modules disagree about the CRC of " + name + " (" + from + ")", source);
      // An export's own record knows its owner, licence and namespace; a __versions one does not.
      if (!owner.empty()) {
        e.owner = owner;
        e.type = gpl ? kabi::ExportType::Gpl : kabi::ExportType::Plain;
        e.ns = ns;
      }
      return {};
    }
    kabi::SymversEntry e;
    e.name = name;
    e.crc = crc;
    if (!owner.empty()) {
      e.owner = owner;
    } else if (auto o = owner_of.find(name); o != owner_of.end()) {
      e.owner = o->second;
    } else {
      e.owner = "vmlinux";
    }
    e.type = gpl ? kabi::ExportType::Gpl : kabi::ExportType::Plain;
    e.ns = ns;
    nonzero |= crc != 0;
    sv.add(std::move(e));
    return {};
  };
  for (const auto& m : modules) {
    for (const auto& x : m.exports) {
      if (!x.crc) continue;
      if (auto r = add(x.name, *x.crc, m.name, x.gpl_only, x.ns, m.path); !r) return tl::unexpected(r.error());
    }
    if (const auto* versions = m.effective_versions()) {
      for (const auto& v : *versions)
        if (auto r = add(v.name, v.crc, {}, false, {}, m.path); !r) return tl::unexpected(r.error());
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
      k.module_dir_real = *root.resolve(dir);
      break;
    }
  }
  if (k.module_dir.empty()) {
    return fail(ENOENT, "no module tree for the running kernel " + k.release + " (looked in " +
                            join(module_dir_candidates(k.release)) + ")",
                (root.root() / ("lib/modules/" + k.release)).string());
  }
  auto tree = kabi::scan_module_tree(k.module_dir_real);
  if (!tree) return tl::unexpected(tree.error());
  k.in_tree = std::move(*tree);

  std::set<std::string> compressions;
  for (const auto& [n, m] : k.in_tree) compressions.insert(compression_of(m.path));
  k.tree_compression = compressions.size() == 1 ? *compressions.begin() : "mixed";

  auto facts = kabi::read_tree_facts(k.in_tree);
  if (!facts) return tl::unexpected(facts.error());
  k.vermagic = facts->vermagic;
  k.vermagic_from = root.host_path_of(facts->sample);
  k.this_module_size = facts->this_module_size;
  k.modversions = kabi::vermagic_has_modversions(k.vermagic);

  // The sample of own modules every candidate is compared with, read once.
  SymversOrigin& origin = k.symvers_origin;
  std::vector<kabi::ModuleInfo> sample;
  // Only their CRCs and signatures are compared: no file hashes.
  const kabi::ReadOptions own_module{.trusted_certs = nullptr, .sha256 = false};
  for (const auto& name : pick_sample(k.in_tree, options.prefer_sample, options.sample_size)) {
    auto m = kabi::read_module(k.in_tree.at(name).path, own_module);
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

  // Candidates in order; the override first. Two host paths that are one file (the build link
  // and the headers directory, /lib and /usr/lib) are tried once.
  std::vector<SymversCandidate> cands;
  if (options.symvers_override) {
    SymversCandidate c;
    c.path = options.symvers_override->string();
    c.real_path = c.path;
    cands.push_back(std::move(c));
  }
  std::set<std::string> seen_real;
  for (const auto& p : symvers_candidates(k.release)) {
    SymversCandidate c;
    c.path = p;
    auto real = root.resolve(p);
    if (!real) {
      c.state = SymversCandidate::State::Unreadable;
      c.detail = real.error().what();
      cands.push_back(std::move(c));
      continue;
    }
    std::error_code ec;
    const fs::path canon = fs::exists(*real, ec) ? fs::canonical(*real, ec) : *real;
    c.real_path = (ec ? *real : canon).string();
    if (!seen_real.insert(c.real_path).second) continue;
    cands.push_back(std::move(c));
  }

  bool chosen = false;
  kabi::Symvers first_unverifiable;
  std::optional<size_t> first_unverifiable_at;
  for (size_t i = 0; i < cands.size(); ++i) {
    SymversCandidate& c = cands[i];
    if (c.state == SymversCandidate::State::Unreadable) continue;
    if (chosen) {
      std::error_code ec;
      c.state = fs::exists(c.real_path, ec) ? SymversCandidate::State::NotTried : SymversCandidate::State::Absent;
      continue;
    }
    std::error_code ec;
    if (!fs::exists(c.real_path, ec)) {
      c.state = SymversCandidate::State::Absent;
      continue;
    }
    auto table = kabi::read_symvers(c.real_path);
    if (!table) {
      c.state = SymversCandidate::State::Unreadable;
      c.detail = table.error().what();
      continue;
    }
    if (!sample_has_crcs || !table->modversions) {
      // Nothing to compare: a kernel without MODVERSIONS records no CRCs in its modules.
      c.state = SymversCandidate::State::Unverifiable;
      c.detail = sample.empty() ? "no own module could be read to compare with"
                                : "the kernel's own modules carry no CRCs (built without MODVERSIONS)";
      if (!first_unverifiable_at) {
        first_unverifiable_at = i;
        first_unverifiable = std::move(*table);
      }
      continue;
    }
    const CrcAgreement a = compare_with_modules(*table, sample);
    c.compared = a.compared;
    c.mismatched = a.mismatched;
    c.missing = a.missing;
    if (a.mismatched == 0 && a.missing == 0 && a.compared > 0) {
      c.state = SymversCandidate::State::Verified;
      c.detail = std::to_string(a.compared) + " CRCs of " + std::to_string(sample.size()) + " own modules agree";
      origin.kind = SymversOrigin::Kind::File;
      origin.path = c.path;
      origin.verified = true;
      origin.verified_with = c.detail + " (" + join(origin.sample) + ")";
      k.symvers = std::move(*table);
      chosen = true;
    } else {
      c.state = SymversCandidate::State::Rejected;
      c.mismatched_symbols = a.mismatched_symbols;
      c.detail = std::to_string(a.mismatched) + " of " + std::to_string(a.compared) + " CRCs differ, " +
                 std::to_string(a.missing) + " symbols missing";
      if (!a.mismatched_symbols.empty()) c.detail += " (" + join(a.mismatched_symbols) + ")";
      else if (!a.missing_symbols.empty()) c.detail += " (" + join(a.missing_symbols) + ")";
    }
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
                                                        : kabi::read_module(k.in_tree.at(name).path, own_module);
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
