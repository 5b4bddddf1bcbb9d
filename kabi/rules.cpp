#include "kabi/rules.h"

#include "kabi/load_context.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

namespace agent::kabi {

// license_is_gpl_compatible() in include/linux/license.h.
bool license_is_gpl_compatible(const std::string& l) {
  return l == "GPL" || l == "GPL v2" || l == "GPL and additional rights" || l == "Dual BSD/GPL" ||
         l == "Dual MIT/GPL" || l == "Dual MPL/GPL";
}

namespace {

// same_magic(): with CRCs, the release word may differ (the CRCs carry the ABI).
bool same_magic(const std::string& mod, const std::string& kernel, bool has_crcs) {
  if (!has_crcs) return mod == kernel;
  auto rest = [](const std::string& s) { return s.substr(std::min(s.find(' '), s.size())); };
  return rest(mod) == rest(kernel);
}

struct Provider {
  std::string owner;  // module name, "vmlinux", or a bundle module name
  bool bundle = false;
  std::optional<uint32_t> crc;
  bool gpl_only = false;
  std::string ns;
};

Reason make(const char* code, int err, std::string message, std::string symbol = {}, bool fatal = true) {
  Reason r;
  r.code = code;
  r.err = err;
  r.message = std::move(message);
  r.symbol = std::move(symbol);
  r.fatal = fatal;
  return r;
}

// Orders the set so that every module comes after the set members it needs (by depends= and
// by the symbols it imports from them); ties keep the caller's order.
std::vector<size_t> load_order(const std::vector<ModuleInfo>& set,
                               const std::unordered_map<std::string, size_t>& exporter_of) {
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < set.size(); ++i) by_name.emplace(set[i].name, i);
  std::vector<std::set<size_t>> needs(set.size());
  for (size_t i = 0; i < set.size(); ++i) {
    for (const auto& d : set[i].depends)
      if (auto it = by_name.find(d); it != by_name.end() && it->second != i) needs[i].insert(it->second);
    for (const auto& u : set[i].undefined)
      if (auto it = exporter_of.find(u.name); it != exporter_of.end() && it->second != i) needs[i].insert(it->second);
  }
  std::vector<size_t> order;
  std::vector<int> state(set.size(), 0);  // 0 new, 1 visiting, 2 done
  std::function<void(size_t)> visit = [&](size_t i) {
    if (state[i] != 0) return;  // a cycle is broken where it closes, as insmod order would
    state[i] = 1;
    for (size_t d : needs[i]) visit(d);
    state[i] = 2;
    order.push_back(i);
  };
  for (size_t i = 0; i < set.size(); ++i) visit(i);
  return order;
}

}  // namespace

bool Evaluation::all_loadable() const {
  return std::all_of(modules.begin(), modules.end(), [](const auto& m) { return m.verdict == Verdict::Loadable; });
}

std::string errno_name(int err) {
  if (err == 0) return "";
  // glibc >= 2.32 names every errno ("ENXIO" from a module's init, "EAGAIN" from a removal).
  if (const char* n = ::strerrorname_np(err)) return n;
  std::string name = "E";
  name += std::to_string(err);  // appended: GCC 12's false -Wrestrict on operator+ (PR 105329)
  return name;
}

Evaluation evaluate(const std::vector<ModuleInfo>& set, const KernelModel& kernel) {
  // Exports of the set, and which in-tree modules the set replaces.
  std::unordered_map<std::string, size_t> exporter_of;
  std::unordered_map<std::string_view, const ExportedSymbol*> export_of;
  std::set<std::string> replaced;
  for (size_t i = 0; i < set.size(); ++i) {
    replaced.insert(set[i].name);
    for (const auto& e : set[i].exports) {
      exporter_of.emplace(e.name, i);
      export_of.emplace(e.name, &e);
    }
  }
  const std::vector<size_t> order = load_order(set, exporter_of);
  std::vector<int> position(set.size());
  for (size_t p = 0; p < order.size(); ++p) position[order[p]] = static_cast<int>(p);

  Evaluation ev;
  std::map<std::string, Verdict> verdict_of;  // bundle modules evaluated so far
  std::set<std::string> loaded_in_set;         // names of those predicted to load
  const bool modversions = kernel.modversions;

  auto kernel_provider = [&](const std::string& sym) -> std::optional<Provider> {
    const SymversEntry* e = kernel.symvers.find(sym);
    if (!e) return std::nullopt;
    std::string owner = e->owner == "vmlinux" ? "vmlinux" : owner_module_name(e->owner);
    if (replaced.count(owner)) return std::nullopt;  // the set ships its own copy
    return Provider{owner, false, modversions ? std::optional<uint32_t>(e->crc) : std::nullopt, is_gpl_only(e->type), e->ns};
  };

  for (size_t idx : order) {
    const ModuleInfo& m = set[idx];
    ModuleVerdict v;
    v.path = m.path;
    v.name = m.name;
    const int my_pos = position[idx];
    // Kernel order: each stage that fails ends the load with its errno; later stages are still
    // evaluated so that the report names everything that would need fixing.
    int stage_err = 0;
    auto settle = [&](int err) {
      if (stage_err == 0 && err != 0) stage_err = err;
    };

    // 0. may_init_module(): CAP_SYS_MODULE and kernel.modules_disabled, before anything else.
    if (kernel.modules_disabled) {
      v.reasons.push_back(make(reason::kModulesDisabled, EPERM,
                               "kernel.modules_disabled = 1: the kernel loads no module until reboot"));
      settle(EPERM);
    }
    if (!kernel.cap_sys_module) {
      v.reasons.push_back(make(reason::kNoCapSysModule, EPERM,
                               "the agent's process lacks CAP_SYS_MODULE in its effective capabilities"));
      settle(EPERM);
    }

    // 1. Signature (module_sig_check): a bad signature is fatal even when not enforced.
    if (kernel.module_sig) {
      using KC = Signature::KeyCheck;
      const Signature& s = m.signature;
      const bool enforce = kernel.sig_enforce;
      auto unenforced = [&](const char* warn_code, const char* fatal_code, const std::string& what) {
        if (enforce) {
          v.reasons.push_back(make(fatal_code, EKEYREJECTED, "Loading of " + what + " is rejected"));
          settle(EKEYREJECTED);
        } else if (kernel.lockdown) {
          v.reasons.push_back(make(fatal_code, EPERM, "Lockdown: insmod: unsigned module loading is restricted; see man kernel_lockdown.7"));
          settle(EPERM);
        } else {
          v.reasons.push_back(make(warn_code, 0,
                                   m.name + ": module verification failed: signature and/or required key missing - tainting kernel",
                                   {}, false));
        }
      };
      if (s.state == Signature::State::None) {
        unenforced(reason::kUnsignedAccepted, reason::kUnsignedEnforced, "unsigned module");
      } else if (s.state == Signature::State::Unsupported) {
        unenforced(reason::kUnsupportedSigAccepted, reason::kUnsupportedSigEnforced, "module with unsupported crypto");
      } else if (s.state == Signature::State::Malformed) {
        v.reasons.push_back(make(reason::kSignatureMalformed, EBADMSG, "module signature malformed: " + s.problem));
        settle(EBADMSG);
      } else if (s.key_check == KC::BadSignature) {
        v.reasons.push_back(make(reason::kSignatureRejected, EKEYREJECTED,
                                 "Key was rejected by service (signed by " + s.signer + ", content does not match)"));
        settle(EKEYREJECTED);
      } else if (s.key_check == KC::UnknownKey) {
        unenforced(reason::kUnknownKeyAccepted, reason::kUnknownKeyEnforced, "module with unavailable key");
      } else if (s.key_check == KC::NotChecked && !kernel.certificates_known) {
        v.reasons.push_back(make(reason::kSignatureNotVerified, 0,
                                 "the kernel's certificates were not available: signature by " + s.signer +
                                     " not verified",
                                 {}, false));
      }
    }

    // 2. elf_validity_check(), in its order: the machine, the section header entry size, then
    // (6.4+, with the struct module size below) exactly one symbol table. 6.1 takes the first
    // SHT_SYMTAB in setup_load_info() and refuses only a module without one.
    const bool checks_elf_sections = kernel.version_major > 6 || (kernel.version_major == 6 && kernel.version_minor >= 4);
    if (kNativeElfMachine != 0 && m.elf_machine != kNativeElfMachine) {
      v.reasons.push_back(make(reason::kElfMachine, ENOEXEC,
                               "Invalid architecture in ELF header: " + std::to_string(m.elf_machine)));
      settle(ENOEXEC);
    }
    if (m.elf_shentsize != kNativeShdrSize) {
      v.reasons.push_back(make(reason::kElfShentsize, ENOEXEC,
                               "Invalid ELF section header size (e_shentsize " + std::to_string(m.elf_shentsize) +
                                   ", kernel " + std::to_string(kNativeShdrSize) + ")"));
      settle(ENOEXEC);
    }
    if (m.symtab_count == 0) {
      v.reasons.push_back(make(reason::kNoSymbolTable, ENOEXEC, m.name + ": module has no symbols (stripped?)"));
      settle(ENOEXEC);
    } else if (m.symtab_count > 1) {
      const std::string what = m.name + ": module has no symbols (stripped?) [" + std::to_string(m.symtab_count) +
                               " SHT_SYMTAB sections]";
      if (checks_elf_sections) {
        v.reasons.push_back(make(reason::kMultipleSymbolTables, ENOEXEC, what));
        settle(ENOEXEC);
      } else {
        v.reasons.push_back(make(reason::kMultipleSymbolTablesUnchecked, 0,
                                 m.name + ": " + std::to_string(m.symtab_count) +
                                     " SHT_SYMTAB sections: this kernel uses the first",
                                 {}, false));
      }
    }

    // 3. sizeof(struct module) must match exactly. The check came with the ELF sanity checks
    // of 6.4 (proven refused on 6.12 under qemu); 6.1 does not check and loads such a module
    // broken (WARNING at load, BUG at unload, also seen under qemu) - a warning there.
    if (kernel.this_module_size && m.this_module_size && m.this_module_size != kernel.this_module_size) {
      const std::string size_msg = "module " + m.name + ": .gnu.linkonce.this_module section size must match the kernel's built struct module size at run time (module " +
                                   std::to_string(m.this_module_size) + ", kernel " + std::to_string(kernel.this_module_size) + ")";
      if (checks_elf_sections) {
        v.reasons.push_back(make(reason::kModuleStructSize, ENOEXEC, size_msg));
        settle(ENOEXEC);
      } else {
        v.reasons.push_back(make(reason::kModuleStructSizeUnchecked, 0,
                                 size_msg + "; this kernel does not check it and would load a broken module", {}, false));
      }
    }

    // 3b. blacklisted(): module_blacklist= of the command line, by the modinfo name= (else
    // struct module's), before module_layout.
    {
      const auto names = m.modinfo_values("name");
      const std::string& name = names.empty() ? m.name : names.front();
      if (kernel.module_blacklist.count(name)) {
        v.reasons.push_back(make(reason::kModuleBlacklisted, EPERM,
                                 "Module " + name + " is blacklisted (module_blacklist= on the kernel command line)"));
        settle(EPERM);
      }
    }

    const std::vector<VersionEntry>* versions = modversions ? m.effective_versions() : nullptr;
    const bool has_crcs = m.effective_versions() != nullptr;
    // The first entry of a name wins, as the kernel's linear search does.
    std::unordered_map<std::string_view, const VersionEntry*> version_of;
    if (versions) {
      version_of.reserve(versions->size());
      for (const auto& e : *versions) version_of.emplace(e.name, &e);
    }
    auto no_table_warned = false;
    // check_version(): returns the errno a CRC problem gives (0 = accepted).
    auto check_version = [&](const std::string& sym, const std::optional<uint32_t>& crc, int mismatch_err,
                             const char* mismatch_code = reason::kCrcMismatch) -> int {
      if (!modversions || !crc) return 0;  // exporter has no CRCs: nothing to compare
      if (!has_crcs) {
        if (!no_table_warned) {
          v.reasons.push_back(make(reason::kNoVersionsTable, 0,
                                   m.name + ": no symbol version table (__versions missing or not SHF_ALLOC): kernel tainted (forced load).",
                                   {}, false));
          no_table_warned = true;
        }
        return 0;
      }
      if (auto it = version_of.find(sym); it != version_of.end()) {
        const VersionEntry& e = *it->second;
        if (e.crc == *crc) return 0;
        Reason r = make(mismatch_code, mismatch_err, m.name + ": disagrees about version of symbol " + sym, sym);
        r.expected_crc = crc;
        r.found_crc = e.crc;
        v.reasons.push_back(std::move(r));
        return mismatch_err;
      }
      if (kernel.policy == MissingVersionPolicy::Strict) {
        // module_layout's failure is check_modstruct_version()'s: ENOEXEC, like a mismatch.
        v.reasons.push_back(make(reason::kNoSymbolVersion, mismatch_err, m.name + ": no symbol version for " + sym, sym));
        v.reasons.back().expected_crc = crc;
        return mismatch_err;
      }
      v.reasons.push_back(make(reason::kNoSymbolVersionWarn, 0, m.name + ": no symbol version for " + sym, sym, false));
      return 0;
    };

    // 4. module_layout (check_modstruct_version), before vermagic.
    if (modversions) {
      if (const SymversEntry* ml = kernel.symvers.find("module_layout"))
        settle(check_version("module_layout", ml->crc, ENOEXEC, reason::kModuleLayout));
    }

    // 5. vermagic (check_modinfo). No vermagic at all is what modprobe --force leaves:
    // try_to_force_load() accepts it with a taint (MODULE_FORCE_LOAD=y, as on Debian).
    if (!m.has_vermagic && m.vermagic.empty()) {
      v.reasons.push_back(make(reason::kNoVermagic, 0, m.name + ": bad vermagic: kernel tainted.", {}, false));
    } else if (!same_magic(m.vermagic, kernel.vermagic, modversions && has_crcs)) {
      v.reasons.push_back(make(reason::kVermagic, ENOEXEC,
                               m.name + ": version magic '" + m.vermagic + "' should be '" + kernel.vermagic + "'"));
      settle(ENOEXEC);
    }

    // 5b. Taints (6.1 check_modinfo, set_license; 6.4+ module_augment_kernel_taints): warnings.
    // The kernel prints out-of-tree, test, livepatch, licence and forced once per boot.
    auto taint = [&](const char* code, std::string message) {
      v.reasons.push_back(make(code, 0, std::move(message), {}, false));
    };
    if (m.modinfo_values("intree").empty()) taint(reason::kOutOfTree, m.name + ": loading out-of-tree module taints kernel.");
    if (kNativeElfMachine == 62 && m.modinfo_values("retpoline").empty())
      taint(reason::kNoRetpoline, m.name + ": loading module not compiled with retpoline compiler. (printed when the CPU "
                                           "has a spectre_v2 mitigation on)");
    if (!m.modinfo_values("staging").empty())
      taint(reason::kStaging, m.name + ": module is from the staging directory, the quality is unknown, you have been warned.");
    if (!m.modinfo_values("livepatch").empty()) taint(reason::kLivepatch, m.name + ": tainting kernel with TAINT_LIVEPATCH");
    {
      const std::string lic = m.license.empty() ? "unspecified" : m.license;
      if (!license_is_gpl_compatible(lic))
        taint(reason::kLicenseTaints, m.name + ": module license '" + lic + "' taints kernel.");
      else if (m.name == "ndiswrapper" || m.name == "driverloader" || m.name == "lve")
        taint(reason::kLicenseTaints, m.name + ": module license taints kernel.");
    }
    if (!m.modinfo_values("test").empty()) taint(reason::kTestModule, m.name + ": loading test module taints kernel.");
    // check_module_license_and_versions() / check_export_symbol_versions(): exports without
    // __kcrctab on a MODVERSIONS kernel are a forced load.
    if (modversions && kernel.symvers.modversions) {
      const bool plain = std::any_of(m.exports.begin(), m.exports.end(), [](const auto& e) { return !e.gpl_only; });
      const bool gpl = std::any_of(m.exports.begin(), m.exports.end(), [](const auto& e) { return e.gpl_only; });
      if ((plain && !m.has_kcrctab) || (gpl && !m.has_kcrctab_gpl))
        taint(reason::kExportsWithoutCrcs, m.name + ": no versions for exported symbols: kernel tainted.");
    }

    // 6. A live module of the same name (add_unformed_module; 6.4+ early_mod_check): one the
    // kernel has, or one of this set inserted before it.
    if (kernel.live.count(m.name)) {
      v.reasons.push_back(make(reason::kAlreadyLoaded, EEXIST, "module " + m.name + " is already loaded"));
      settle(EEXIST);
    } else if (loaded_in_set.count(m.name)) {
      v.reasons.push_back(make(reason::kDuplicateInSet, EEXIST,
                               "module " + m.name + " is already loaded: another module of this set has its name"));
      settle(EEXIST);
    }

    // 7. Symbols (simplify_symbols): every unresolved symbol is reported; the errno is the
    // last failure's, because the kernel overwrites it for each one.
    const bool gplok = license_is_gpl_compatible(m.license);
    std::set<std::string> deps;
    int symbol_err = 0;
    for (const auto& u : m.undefined) {
      std::optional<Provider> p;
      if (auto it = exporter_of.find(u.name); it != exporter_of.end() && it->second != idx) {
        const ModuleInfo& ex = set[it->second];
        if (position[it->second] < my_pos) {
          const ExportedSymbol& e = *export_of.at(u.name);
          p = Provider{ex.name, true, e.crc, e.gpl_only, e.ns};
        }
        if (p && verdict_of[ex.name] == Verdict::Refused) {
          deps.insert(ex.name);
          if (!u.weak) {
            v.reasons.push_back(make(reason::kDependencyRefused, ENOENT,
                                     m.name + ": Unknown symbol " + u.name + " (err -2): its provider " + ex.name + " is refused",
                                     u.name));
            symbol_err = ENOENT;
          }
          continue;
        }
      }
      if (!p) p = kernel_provider(u.name);
      if (!p || (p->gpl_only && !gplok)) {
        if (u.weak) continue;
        const bool gpl = p && p->gpl_only && !gplok;
        v.reasons.push_back(make(gpl ? reason::kGplOnlySymbol : reason::kUnknownSymbol, ENOENT,
                                 m.name + ": Unknown symbol " + u.name + " (err -2)" +
                                     (gpl ? " [GPL-only symbol, module license '" + m.license + "']" : ""),
                                 u.name));
        symbol_err = ENOENT;
        continue;
      }
      if (p->owner != "vmlinux") {
        if (!p->bundle && !kernel.in_tree.empty() && !kernel.in_tree.count(p->owner)) {
          if (u.weak) continue;  // an unresolved weak reference is 0, never an error
          v.reasons.push_back(make(reason::kMissingDependency, ENOENT,
                                   m.name + ": Unknown symbol " + u.name + " (err -2): its module " + p->owner +
                                       " is not in the kernel's module tree",
                                   u.name));
          symbol_err = ENOENT;
          continue;
        }
        deps.insert(p->owner);
      }
      if (int e = check_version(u.name, p->crc, EINVAL)) {
        symbol_err = e;
        continue;
      }
      if (!p->ns.empty() && std::find(m.import_ns.begin(), m.import_ns.end(), p->ns) == m.import_ns.end()) {
        v.reasons.push_back(make(reason::kNamespaceNotImported, EINVAL,
                                 m.name + ": module uses symbol (" + u.name + ") from namespace " + p->ns +
                                     ", but does not import it.",
                                 u.name));
        symbol_err = EINVAL;
      }
    }
    settle(symbol_err);

    // 8. parse_args(): the parameters the agent passes, against the module's parmtype=. An
    // unknown one is ignored with a warning; a bad value is the setter's errno, the last one's.
    const auto params = kernel.params.find(m.name);
    int param_err = 0;
    if (params != kernel.params.end()) {
      for (const ModuleParam& p : params->second) {
        const std::string from = " (from " + p.source + ")";
        const auto type = param_type(m, p.name);
        if (!type) {
          v.reasons.push_back(make(reason::kUnknownParameter, 0, m.name + ": unknown parameter '" + p.name + "' ignored" + from,
                                   p.name, false));
          continue;
        }
        const auto e = param_value_errno(*type, p.value);
        if (!e) {
          v.reasons.push_back(make(reason::kParameterUnchecked, 0,
                                   m.name + ": parameter '" + p.name + "' has type '" + *type +
                                       "', whose setter is the module's own: its value is not checked" + from,
                                   p.name, false));
        } else if (*e) {
          const std::string what = *e == ENOSPC ? "' too large for parameter `" : "' invalid for parameter `";
          v.reasons.push_back(make(reason::kParameterInvalid, *e,
                                   m.name + ": `" + p.value.value_or("") + what + p.name + "' (" + *type + ")" + from, p.name));
          param_err = *e;
        }
      }
    }
    settle(param_err);

    // 9. The module's init (do_init_module): i915 and xe check nomodeset themselves. xe's
    // xe_check_nomodeset() returns -ENODEV; i915's i915_check_nomodeset() (also i915.modeset=0)
    // returns 1 in 6.1's code (loads, registers no driver) and -ENODEV in 6.12's and 7.2's. The
    // module's own code decides: its vermagic release tells which code it is.
    if (m.name == "xe" && kernel.nomodeset) {
      v.reasons.push_back(make(reason::kNomodesetInitFails, ENODEV,
                               "xe: nomodeset on the kernel command line: its init (xe_check_nomodeset) returns -ENODEV"));
      settle(ENODEV);
    } else if (m.name == "i915") {
      int modeset = -1;
      if (params != kernel.params.end())
        for (const ModuleParam& p : params->second)
          if ((p.name == "modeset") && p.value && param_value_errno("int", p.value) == 0)
            modeset = static_cast<int>(std::strtol(p.value->c_str(), nullptr, 0));
      if (modeset == 0 || (kernel.nomodeset && modeset == -1)) {
        const std::string why = modeset == 0 ? "i915.modeset=0" : "nomodeset on the kernel command line";
        const auto [major, minor] = parse_release_version(m.vermagic.substr(0, m.vermagic.find(' ')));
        if (major > 6 || (major == 6 && minor >= 12)) {
          v.reasons.push_back(make(reason::kNomodesetInitFails, ENODEV,
                                   "i915: " + why + ": its init (i915_check_nomodeset, " + std::to_string(major) + "." +
                                       std::to_string(minor) + " code) returns -ENODEV"));
          settle(ENODEV);
        } else {
          v.reasons.push_back(make(reason::kNomodesetNoDriver, 0,
                                   "i915: " + why + ": " +
                                       (major == 6 && minor <= 1
                                            ? std::string("its init (6.1 code) returns 1: it loads but drives no GPU")
                                            : std::string("its init returns 1 (6.1 code: loads, drives no GPU) or -ENODEV "
                                                          "(6.12 code); this build's (" + m.vermagic.substr(0, m.vermagic.find(' ')) +
                                                          ") is not known")),
                                   {}, false));
        }
      }
    }

    // modprobe.d lines the insert by file bypasses: the operator's intent, not the kernel's.
    if (auto it = kernel.modprobe_blacklist.find(m.name); it != kernel.modprobe_blacklist.end())
      for (const auto& where : it->second)
        v.reasons.push_back(make(reason::kModprobeBlacklistBypassed, 0,
                                 "modprobe.d blacklists " + m.name + " (" + where +
                                     "): the agent inserts it by file, which a blacklist does not stop",
                                 {}, false));
    if (auto it = kernel.modprobe_install.find(m.name); it != kernel.modprobe_install.end())
      for (const auto& cmd : it->second)
        v.reasons.push_back(make(reason::kModprobeInstallBypassed, 0,
                                 "modprobe.d has 'install " + m.name + " " + cmd +
                                     ": the agent inserts the module itself and never runs it",
                                 {}, false));
    if (modversions == false && !kernel.symvers.modversions)
      v.reasons.push_back(make(reason::kNoModversions, 0,
                               "kernel built without MODVERSIONS: CRCs are not checked, vermagic must match in full", {}, false));

    // In-tree dependencies also pull in theirs (modules.dep is transitive).
    std::set<std::string> all_deps = deps;
    for (const auto& d : deps)
      if (auto it = kernel.in_tree.find(d); it != kernel.in_tree.end())
        for (const auto& t : it->second.depends)
          if (!replaced.count(t)) all_deps.insert(t);
    v.load_after.assign(all_deps.begin(), all_deps.end());
    v.err = stage_err;
    v.verdict = stage_err == 0 ? Verdict::Loadable : Verdict::Refused;
    // A name once loaded stays live: a later refused copy does not unload it.
    if (v.verdict == Verdict::Loadable) loaded_in_set.insert(m.name);
    verdict_of[m.name] = loaded_in_set.count(m.name) ? Verdict::Loadable : v.verdict;
    ev.modules.push_back(std::move(v));
  }
  return ev;
}

}  // namespace agent::kabi
