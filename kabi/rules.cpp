#include "kabi/rules.h"

#include "kabi/btf.h"
#include "kabi/elf_validity.h"
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

// pkcs7_sig_note_digest_algo(): the digest OIDs the kernel's PKCS#7 parser knows, by OpenSSL's
// short name; any other is ENOPKG ("Unsupported digest algo"). 6.1.192 knows md4 and md5;
// 6.12.118 and 7.2.13 dropped them and know sha3-*. Kernels between use 6.1's list. Whether a
// known digest is built (CONFIG_CRYPTO_*) is the kernel config's, not modelled here.
bool pkcs7_parser_knows_digest(const std::string& sn, int major, int minor) {
  static const std::set<std::string> common = {"SHA1",   "SHA224", "SHA256",        "SHA384",
                                               "SHA512", "SM3",    "md_gost12_256", "md_gost12_512"};
  if (sn.empty() || common.count(sn)) return true;
  const bool v612 = major > 6 || (major == 6 && minor >= 12);
  if (v612) return sn == "SHA3-256" || sn == "SHA3-384" || sn == "SHA3-512";
  return sn == "MD4" || sn == "MD5";
}

// same_magic(): with CRCs, the release word may differ (the CRCs carry the ABI).
bool same_magic(const std::string& mod, const std::string& kernel, bool has_crcs) {
  if (!has_crcs) return mod == kernel;
  auto rest = [](const std::string& s) { return s.substr(std::min(s.find(' '), s.size())); };
  return rest(mod) == rest(kernel);
}

// EXPORT_SYMBOL_FOR_MODULES' `module:<patterns>` namespaces: 6.16 (verify_module_namespace()
// and setup_modinfo()'s refusal came with it; 6.12.118 has neither, 7.2.13 both).
bool has_module_namespaces(int major, int minor) { return major > 6 || (major == 6 && minor >= 16); }

// __kflagstab in place of __ksymtab_gpl (check_export_symbol_sections()): absent in 6.12.118,
// present in 7.2.13; the release between is not established, so from 7.2.
bool has_kflagstab(int major, int minor) { return major > 7 || (major == 7 && minor >= 2); }

// verify_module_namespace(): `module:` then comma-separated names, each matching the module's
// whole name or, ending in '*', its start; '-' and '_' compare equal (mod_strncmp()).
bool module_namespace_allows(std::string_view ns, std::string_view modname) {
  constexpr std::string_view prefix = "module:";
  if (ns.substr(0, prefix.size()) != prefix) return false;
  ns.remove_prefix(prefix.size());
  auto fold = [](char c) { return c == '-' ? '_' : c; };
  while (!ns.empty()) {
    const size_t comma = ns.find(',');
    std::string_view pattern = ns.substr(0, comma);
    ns.remove_prefix(comma == std::string_view::npos ? ns.size() : comma + 1);
    const bool glob = !pattern.empty() && pattern.back() == '*';
    if (glob) pattern.remove_suffix(1);
    if (pattern.size() > modname.size() || (!glob && pattern.size() != modname.size())) continue;
    if (std::equal(pattern.begin(), pattern.end(), modname.begin(),
                   [&](char a, char b) { return fold(a) == fold(b); }))
      return true;
  }
  return false;
}

struct Provider {
  std::string owner;  // module name, "vmlinux", or a bundle module name
  bool bundle = false;
  std::optional<uint32_t> crc;
  bool gpl_only = false;
  std::string ns;
  bool proprietary = false;  // the owner carries TAINT_PROPRIETARY_MODULE
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

// A warning: recorded with the kernel's message, never fatal, no errno of its own.
Reason warning(const char* code, std::string message) { return make(code, 0, std::move(message), {}, false); }

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
  // The exports each module has on this kernel: with __kflagstab only __ksymtab's, GPL-only by
  // their flags, __ksymtab_gpl ignored; before, both sections, GPL-only by section. A module
  // read from a file is judged as its own generation reads it (gpl_only); one built for the
  // other generation is read this kernel's way.
  const bool kflagstab = has_kflagstab(kernel.version_major, kernel.version_minor);
  std::vector<std::vector<ExportedSymbol>> exports_seen(set.size());
  for (size_t i = 0; i < set.size(); ++i)
    for (const ExportedSymbol& e : set[i].exports) {
      if (kflagstab && e.in_ksymtab_gpl) continue;
      ExportedSymbol seen = e;
      if (!kflagstab && set[i].has_kflagstab) seen.gpl_only = e.in_ksymtab_gpl;
      exports_seen[i].push_back(std::move(seen));
    }
  // Exports of the set, and which in-tree modules the set replaces.
  std::unordered_map<std::string, size_t> exporter_of;
  std::unordered_map<std::string_view, const ExportedSymbol*> export_of;
  std::set<std::string> replaced;
  for (size_t i = 0; i < set.size(); ++i) {
    replaced.insert(set[i].name);
    for (const auto& e : exports_seen[i]) {
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
  std::map<std::string, std::string> exported_in_set;  // symbol -> set member loaded before
  std::set<std::string> in_tree_loaded;        // in-tree modules inserted for those
  const bool modversions = kernel.modversions;

  auto kernel_provider = [&](const std::string& sym) -> std::optional<Provider> {
    const SymversEntry* e = kernel.symvers.find(sym);
    if (!e) return std::nullopt;
    std::string owner = e->owner == "vmlinux" ? "vmlinux" : owner_module_name(e->owner);
    if (replaced.count(owner)) return std::nullopt;  // the set ships its own copy
    // Owners in the symvers are the kernel build's own modules, GPL-compatible by modpost's
    // rule; a live one may still carry P (inherited from a proprietary module it uses).
    return Provider{owner, false, modversions ? std::optional<uint32_t>(e->crc) : std::nullopt, is_gpl_only(e->type), e->ns,
                    kernel.live_proprietary.count(owner) > 0};
  };

  const ElfGeneration elf_gen = elf_generation(kernel.version_major, kernel.version_minor);
  // The licence set_license() reads: 6.1's find_sec() does not see a .modinfo without SHF_ALLOC.
  auto license_seen = [&](const ModuleInfo& m) -> std::string {
    return elf_gen == ElfGeneration::V6_1 && m.has_modinfo && !m.modinfo_alloc ? std::string() : m.license;
  };
  for (size_t idx : order) {
    // 6.1's find_sec() does not see a .modinfo without SHF_ALLOC: no vermagic, no licence.
    std::optional<ModuleInfo> as_seen;
    if (elf_gen == ElfGeneration::V6_1 && set[idx].has_modinfo && !set[idx].modinfo_alloc) {
      as_seen = set[idx];
      as_seen->modinfo.clear();
      as_seen->vermagic.clear();
      as_seen->license.clear();
      as_seen->srcversion.clear();
      as_seen->has_vermagic = false;
      as_seen->depends.clear();
      as_seen->aliases.clear();
      as_seen->import_ns.clear();
      as_seen->firmware.clear();
    }
    const ModuleInfo& m = as_seen ? *as_seen : set[idx];
    const std::vector<ExportedSymbol>& my_exports = exports_seen[idx];
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
          v.reasons.push_back(warning(warn_code, m.name + ": module verification failed: signature and/or required key missing - tainting kernel"));
        }
      };
      if (s.state == Signature::State::None) {
        unenforced(reason::kUnsignedAccepted, reason::kUnsignedEnforced, "unsigned module");
      } else if (s.state == Signature::State::Unsupported) {
        unenforced(reason::kUnsupportedSigAccepted, reason::kUnsupportedSigEnforced, "module with unsupported crypto");
      } else if (s.state == Signature::State::Malformed) {
        v.reasons.push_back(make(reason::kSignatureMalformed, s.malformed_errno, "module signature malformed: " + s.problem));
        settle(s.malformed_errno);
      } else if (!pkcs7_parser_knows_digest(s.hash_algo, kernel.version_major, kernel.version_minor)) {
        // ENOPKG from the parser ("PKCS7: Unsupported digest algo"), before anything else is
        // looked at: as unsigned.
        unenforced(reason::kUnsupportedSigAccepted, reason::kUnsupportedSigEnforced, "module with unsupported crypto");
      } else if (!s.content_type.empty()) {
        // pkcs7_verify(VERIFYING_MODULE_SIGNATURE), before any key is looked up.
        v.reasons.push_back(make(reason::kSignatureNotData, EKEYREJECTED,
                                 "PKCS7: Invalid module sig (not pkcs7-data): content type " + s.content_type));
        settle(EKEYREJECTED);
      } else if (s.signed_attributes) {
        v.reasons.push_back(make(reason::kSignatureAuthattrs, EKEYREJECTED,
                                 "PKCS7: Invalid module sig (has authattrs): signed attributes, as `openssl cms -sign` "
                                 "makes without -noattr (sign-file makes none)"));
        settle(EKEYREJECTED);
      } else if (s.key_check == KC::BadSignature) {
        v.reasons.push_back(make(reason::kSignatureRejected, EKEYREJECTED,
                                 "Key was rejected by service (signed by " + s.signer + ", content does not match)"));
        settle(EKEYREJECTED);
      } else if (s.key_check == KC::Verified && kernel.version_major == 6 && !s.module_sha256.empty() &&
                 kernel.blacklisted_hashes.count(s.module_sha256)) {
        // Debian's mod_verify_sig() (6.1, 6.12; gone in 7.x), after a good signature.
        v.reasons.push_back(make(reason::kModuleHashBlacklisted, EKEYREJECTED,
                                 "Module hash " + s.module_sha256 + " is blacklisted"));
        settle(EKEYREJECTED);
      } else if (s.key_check == KC::UnknownKey) {
        unenforced(reason::kUnknownKeyAccepted, reason::kUnknownKeyEnforced, "module with unavailable key");
      } else if (s.key_check == KC::KeyringKey) {
        // Found by the kernel, it verifies (loads) or rejects the signature (EKEYREJECTED);
        // not found, it is an unknown key as above. Neither is known here: no verdict of its own.
        v.reasons.push_back(warning(reason::kSignatureNotVerified, "signed by " + s.signer + " (" + s.key_id +
                                                                       "), which no certificate the agent holds is: " + s.keyring_key +
                                                                       " - its public key cannot be read, so the signature is not verified"));
      } else if (s.key_check == KC::NotChecked && !kernel.certificates_known) {
        v.reasons.push_back(warning(reason::kSignatureNotVerified, "the kernel's certificates were not available: signature by " + s.signer +
                                     " not verified"));
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
    // The file's structure (elf_validity.h): what the checks above and below do not judge from
    // ModuleInfo's fields. A file read no further is judged by this alone.
    if (const auto& refusal = m.elf_refusal[static_cast<size_t>(elf_gen)]) {
      const std::string& c = refusal->code;
      const bool judged_elsewhere = c == reason::kElfMachine || c == reason::kElfShentsize ||
                                    c == reason::kNoSymbolTable || c == reason::kMultipleSymbolTables;
      if (m.unreadable || !judged_elsewhere) {
        v.reasons.push_back(make(c.c_str(), ENOEXEC, refusal->message));
        settle(ENOEXEC);
      }
    }
    if (m.unreadable) {
      v.err = stage_err;
      v.verdict = stage_err == 0 ? Verdict::Loadable : Verdict::Refused;
      verdict_of[m.name] = loaded_in_set.count(m.name) ? Verdict::Loadable : v.verdict;
      ev.modules.push_back(std::move(v));
      continue;
    }
    if (as_seen)
      v.reasons.push_back(warning(reason::kModinfoIgnored, m.name + ": .modinfo is not SHF_ALLOC: this kernel does not read it (no vermagic, no licence)"));
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
        v.reasons.push_back(warning(reason::kMultipleSymbolTablesUnchecked, m.name + ": " + std::to_string(m.symtab_count) +
                                     " SHT_SYMTAB sections: this kernel uses the first"));
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
        v.reasons.push_back(warning(reason::kModuleStructSizeUnchecked, size_msg + "; this kernel does not check it and would load a broken module"));
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

    // check_version(): 6.14+ consult the extended tables when the module has them, and then
    // nothing else; earlier kernels know only an SHF_ALLOC __versions.
    const bool use_ext = elf_gen == ElfGeneration::V7_2 && m.has_ext_versions;
    const bool basic_versions = m.has_versions && m.versions_alloc;  // same_magic()'s info->index.vers
    const std::vector<VersionEntry>* table = use_ext ? &m.ext_versions : basic_versions ? &m.versions : nullptr;
    const std::vector<VersionEntry>* versions = modversions ? table : nullptr;
    const bool has_crcs = table != nullptr;
    // The first entry of a name wins, as the kernel's linear search does.
    std::unordered_map<std::string_view, const VersionEntry*> version_of;
    if (versions) {
      version_of.reserve(versions->size());
      for (const auto& e : *versions) version_of.emplace(e.name, &e);
    }
    auto no_table_warned = false;
    auto ext_missing_warned = false;
    // check_version(): returns the errno a CRC problem gives (0 = accepted).
    auto check_version = [&](const std::string& sym, const std::optional<uint32_t>& crc, int mismatch_err,
                             const char* mismatch_code = reason::kCrcMismatch) -> int {
      if (!modversions || !crc) return 0;  // exporter has no CRCs: nothing to compare
      if (!has_crcs) {
        if (!no_table_warned) {
          v.reasons.push_back(warning(reason::kNoVersionsTable, m.name + ": no symbol version table (__versions missing or not SHF_ALLOC): kernel tainted (forced load)."));
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
      if (use_ext) {
        // An extended table without the symbol: pr_warn_once, accepted (Debian's patch does not
        // touch this path). The kernel prints it for the first such symbol of the boot.
        if (!ext_missing_warned)
          v.reasons.push_back(make(reason::kNoExtSymbolVersionWarn, 0, m.name + ": no extended symbol version for " + sym, sym, false));
        ext_missing_warned = true;
        return 0;
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
      v.reasons.push_back(warning(reason::kNoVermagic, m.name + ": bad vermagic: kernel tainted."));
    } else if (!same_magic(m.vermagic, kernel.vermagic, modversions && basic_versions)) {
      v.reasons.push_back(make(reason::kVermagic, ENOEXEC,
                               m.name + ": version magic '" + m.vermagic + "' should be '" + kernel.vermagic + "'"));
      settle(ENOEXEC);
    }

    // module_enforce_rwx_sections() (layout_and_allocate): 6.1 before the name check, 6.4+ after.
    auto write_exec = [&] {
      if (!m.write_exec_section) return;
      v.reasons.push_back(make(reason::kWriteExecSection, ENOEXEC,
                               m.name + ": section " + m.write_exec_section->first + " (index " +
                                   std::to_string(m.write_exec_section->second) + ") has invalid WRITE|EXEC flags"));
      settle(ENOEXEC);
    };
    if (elf_gen == ElfGeneration::V6_1) write_exec();
    // 5b. Taints (6.1 check_modinfo, set_license; 6.4+ module_augment_kernel_taints): warnings.
    // The kernel prints out-of-tree, test, livepatch, licence and forced once per boot.
    auto taint = [&](const char* code, std::string message) {
      v.reasons.push_back(warning(code, std::move(message)));
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
    // __kcrctab on a MODVERSIONS kernel are a forced load (7.2: __ksymtab and __kcrctab only).
    if (modversions && kernel.symvers.modversions) {
      const bool plain = std::any_of(my_exports.begin(), my_exports.end(), [&](const auto& e) { return kflagstab || !e.gpl_only; });
      const bool gpl = !kflagstab && std::any_of(my_exports.begin(), my_exports.end(), [](const auto& e) { return e.gpl_only; });
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
    if (elf_gen != ElfGeneration::V6_1) write_exec();

    // 6b. 7.2 find_module_sections(): warnings for the 6.x GPL-only sections, then
    // check_export_symbol_sections(): exports (__ksymtab) need their flags (__kflagstab).
    if (kflagstab) {
      if (m.has_ksymtab_gpl) v.reasons.push_back(warning(reason::kObsoleteExportSection, m.name + ": ignoring obsolete section __ksymtab_gpl"));
      if (m.has_kcrctab_gpl) v.reasons.push_back(warning(reason::kObsoleteExportSection, m.name + ": ignoring obsolete section __kcrctab_gpl"));
      if (!my_exports.empty() && !m.has_kflagstab) {
        v.reasons.push_back(make(reason::kNoExportFlags, ENOEXEC, m.name + ": no flags for exported symbols"));
        settle(ENOEXEC);
      }
    }
    // 6c. setup_modinfo() (6.16+): a `module:` namespace is implicit; importing one is refused.
    if (has_module_namespaces(kernel.version_major, kernel.version_minor))
      for (const auto& ns : m.import_ns)
        if (ns.rfind("module:", 0) == 0) {
          v.reasons.push_back(make(reason::kImportModuleNamespace, EPERM,
                                   m.name + ": module tries to import module namespace: " + ns));
          settle(EPERM);
          break;
        }

    // 7. Symbols (simplify_symbols): every unresolved symbol is reported; the errno is the
    // last failure's, because the kernel overwrites it for each one.
    // find_symbol() offers GPL-only exports only while the module is not P-tainted: set_license()
    // taints it for its licence, inherit_taint() for a proprietary provider on the way.
    bool proprietary = !license_is_gpl_compatible(m.license);
    std::string inherited_from;  // the provider the taint came from, if not the licence
    bool using_gplonly = false;
    const bool module_namespaces = has_module_namespaces(kernel.version_major, kernel.version_minor);
    std::set<std::string> deps;
    int symbol_err = 0;
    size_t last_failed = 0;  // symbol-table index of the failure whose errno stands
    auto fail_symbol = [&](int err, size_t index) {
      if (symbol_err == 0 || index >= last_failed) {
        symbol_err = err;
        last_failed = index;
      }
    };
    // A bundle module this one depends on that could not be read at all: its exports are unknown.
    std::string unread_dependency;
    for (const auto& d : m.depends)
      if (auto it = std::find_if(set.begin(), set.end(), [&](const ModuleInfo& o) { return o.name == d && o.unreadable; });
          it != set.end())
        unread_dependency = d;
    for (const auto& u : m.undefined) {
      std::optional<Provider> p;
      if (auto it = exporter_of.find(u.name); it != exporter_of.end() && it->second != idx) {
        const ModuleInfo& ex = set[it->second];
        if (position[it->second] < my_pos) {
          const ExportedSymbol& e = *export_of.at(u.name);
          p = Provider{ex.name, true, e.crc, e.gpl_only, e.ns, !license_is_gpl_compatible(license_seen(ex))};
        }
        if (p && verdict_of[ex.name] == Verdict::Refused) {
          deps.insert(ex.name);
          if (!u.weak) {
            v.reasons.push_back(make(reason::kDependencyRefused, ENOENT,
                                     m.name + ": Unknown symbol " + u.name + " (err -2): its provider " + ex.name + " is refused",
                                     u.name));
            fail_symbol(ENOENT, u.index);
          }
          continue;
        }
      }
      if (!p) p = kernel_provider(u.name);
      if (!p || (p->gpl_only && proprietary)) {
        if (u.weak) continue;
        const bool gpl = p && p->gpl_only && proprietary;
        if (!p && !unread_dependency.empty()) {
          deps.insert(unread_dependency);
          v.reasons.push_back(make(reason::kDependencyRefused, ENOENT,
                                   m.name + ": Unknown symbol " + u.name + " (err -2): " + unread_dependency +
                                       ", which it depends on, is refused (not a loadable module)",
                                   u.name));
        } else {
          const std::string why = inherited_from.empty()
                                      ? " [GPL-only symbol, module license '" + m.license + "']"
                                      : " [GPL-only symbol, the module inherited the proprietary taint of " + inherited_from + "]";
          v.reasons.push_back(make(gpl ? reason::kGplOnlySymbol : reason::kUnknownSymbol, ENOENT,
                                   m.name + ": Unknown symbol " + u.name + " (err -2)" + (gpl ? why : ""), u.name));
        }
        fail_symbol(ENOENT, u.index);
        continue;
      }
      if (p->owner != "vmlinux") {
        if (!p->bundle && !kernel.in_tree.empty() && !kernel.in_tree.count(p->owner)) {
          if (u.weak) continue;  // an unresolved weak reference is 0, never an error
          v.reasons.push_back(make(reason::kMissingDependency, ENOENT,
                                   m.name + ": Unknown symbol " + u.name + " (err -2): its module " + p->owner +
                                       " is not in the kernel's module tree",
                                   u.name));
          fail_symbol(ENOENT, u.index);
          continue;
        }
        deps.insert(p->owner);
      }
      if (p->gpl_only) using_gplonly = true;
      if (p->proprietary) {
        if (using_gplonly) {
          v.reasons.push_back(make(reason::kProprietaryProvider, ENOENT,
                                   m.name + ": module using GPL-only symbols uses symbols " + u.name +
                                       " from proprietary module " + p->owner + ".",
                                   u.name));
          fail_symbol(ENOENT, u.index);
          continue;
        }
        if (!proprietary) {
          v.reasons.push_back(warning(reason::kInheritsProprietaryTaint,
                                      m.name + ": module uses symbols " + u.name + " from proprietary module " + p->owner +
                                          ", inheriting taint."));
          proprietary = true;
          inherited_from = p->owner;
        }
      }
      if (int e = check_version(u.name, p->crc, EINVAL)) {
        fail_symbol(e, u.index);
        continue;
      }
      if (!p->ns.empty() && !(module_namespaces && module_namespace_allows(p->ns, m.name)) &&
          std::find(m.import_ns.begin(), m.import_ns.end(), p->ns) == m.import_ns.end()) {
        v.reasons.push_back(make(reason::kNamespaceNotImported, EINVAL,
                                 m.name + ": module uses symbol (" + u.name + ") from namespace " + p->ns +
                                     ", but does not import it.",
                                 u.name));
        fail_symbol(EINVAL, u.index);
      }
    }
    for (const auto& b : m.bad_symbols) {
      v.reasons.push_back(make(b.common ? reason::kCommonSymbol : reason::kSymbolSectionIndex, ENOEXEC,
                               b.common ? m.name + ": please compile with -fno-common [" + b.name + "]"
                                        : m.name + ": Symbol " + b.name + " has an invalid section index " +
                                              std::to_string(b.shndx) + " (max " + std::to_string(static_cast<unsigned>(m.shnum - 1)) + ")",
                               b.name));
      fail_symbol(ENOEXEC, b.index);
    }
    settle(symbol_err);

    // 7b. apply_relocations() (x86-64's apply_relocate_add()), in the wording of each
    // generation's source: 6.1 checks a relocation's target before its overflow, 6.4+ after.
    if (const auto& f = m.relocations.fault) {
      using K = RelocationFault::Kind;
      const std::string at = "section " + std::to_string(f->section) + " entry " + std::to_string(f->index);
      const std::string type = std::to_string(f->type);
      const bool overflow_first = elf_gen != ElfGeneration::V6_1;
      std::string msg;
      if (f->kind == K::RelSection) {
        msg = "module " + m.name + ": REL relocation unsupported [" + "section " + std::to_string(f->section) + "]";
      } else if (f->kind == K::UnknownType) {
        msg = m.name + ": Unknown rela relocation: " + type + " [" + at + "]";
      } else if (f->overflow && (!f->nonzero || overflow_first)) {
        msg = "overflow in relocation type " + type + " [" + at + "]; `" + m.name + "' likely not compiled with -mcmodel=kernel";
      } else {
        msg = std::string(elf_gen == ElfGeneration::V6_1 ? "x86/modules: Skipping invalid relocation target"
                                                          : "x86/modules: Invalid relocation target") +
              ", existing value is nonzero for type " + type + " [" + at + "]";
      }
      v.reasons.push_back(make(reason::kRelocationInvalid, ENOEXEC, msg));
      settle(ENOEXEC);
    }
    if (m.relocations.unchecked_count > 0) {
      std::string list;
      for (const auto& u : m.relocations.unchecked) list += (list.empty() ? "" : "; ") + u;
      v.reasons.push_back(warning(reason::kRelocationsUnchecked,
                                  m.name + ": " + std::to_string(m.relocations.unchecked_count) +
                                      " relocation(s) depend on run-time addresses (an overflow is ENOEXEC): " + list));
    }

    // In-tree dependencies also pull in theirs (modules.dep is transitive).
    std::set<std::string> all_deps = deps;
    for (const auto& d : deps)
      if (auto it = kernel.in_tree.find(d); it != kernel.in_tree.end())
        for (const auto& t : it->second.depends)
          if (!replaced.count(t)) all_deps.insert(t);
    v.load_after.assign(all_deps.begin(), all_deps.end());

    // 8. complete_formation() -> verify_exported_symbols(): each export against vmlinux and
    // every formed module; the first duplicate (6.x: plain exports, then GPL-only) ends it.
    // An in-tree module counts when it is loaded then: live, or inserted for this set (its
    // in-tree dependencies); one the set replaces (same name) is not.
    auto owner_of = [&](const std::string& sym) -> std::string {
      if (const SymversEntry* e = kernel.symvers.find(sym)) {
        if (e->owner == "vmlinux") return "kernel";  // module_name(NULL)
        const std::string owner = owner_module_name(e->owner);
        if (!replaced.count(owner) && (kernel.live.count(owner) || in_tree_loaded.count(owner) || all_deps.count(owner)))
          return owner;
      }
      if (auto it = exported_in_set.find(sym); it != exported_in_set.end()) return it->second;
      if (auto it = kernel.live_exports.find(sym); it != kernel.live_exports.end() && !replaced.count(it->second))
        return it->second;
      return {};
    };
    std::vector<const ExportedSymbol*> exports;
    for (const auto& e : my_exports) exports.push_back(&e);
    if (kernel.version_major < 7)
      std::stable_partition(exports.begin(), exports.end(), [](const ExportedSymbol* e) { return !e->gpl_only; });
    bool duplicate = false;
    for (const ExportedSymbol* e : exports) {
      const std::string owner = owner_of(e->name);
      if (owner.empty()) continue;
      v.reasons.push_back(make(reason::kDuplicateExport, ENOEXEC,
                               m.name + ": exports duplicate symbol " + e->name + " (owned by " + owner + ")", e->name));
      duplicate = true;
    }
    if (duplicate) settle(ENOEXEC);

    // prepare_coming_module() -> btf_module_notify() (after complete_formation, before
    // parse_args): the module's .BTF parsed as split BTF on the running kernel's. Debian 7.2
    // (MODULE_ALLOW_BTF_MISMATCH off) refuses with the parse's errno; 6.1 and 6.12 warn.
    if (!m.btf.empty()) {
      const bool refuses = kernel.version_major >= 7;
      if (!kernel.btf) {
        v.reasons.push_back(warning(reason::kModuleBtfUnchecked,
                                    m.name + ": the running kernel's BTF is not known (" + kernel.btf_unread + "): " +
                                        (refuses ? "this kernel refuses a module whose .BTF does not parse on it (\"failed to "
                                                   "validate module [" + m.name + "] BTF\"); not checked"
                                                 : "whether this kernel warns that its .BTF does not parse on it is not "
                                                   "known (it loads either way)")));
      } else {
        const ModuleBtfCheck c = check_module_btf(m.btf, m.btf_base, *kernel.btf, kernel.version_major, kernel.version_minor);
        const std::string why = " (" + c.problem + ", on " + kernel.btf->source + ")";
        const std::string failed = "failed to validate module [" + m.name + "] BTF: -" + std::to_string(c.err);
        if (c.err && refuses) {
          v.reasons.push_back(make(reason::kModuleBtfInvalid, c.err, failed + why));
          settle(c.err);
        } else if (c.err) {
          const bool once = kernel.version_major > 6 || kernel.version_minor >= 12;  // 6.12's pr_warn_once
          v.reasons.push_back(warning(reason::kModuleBtfMismatch,
                                      (once ? std::string("Kernel module BTF mismatch detected, BTF debug info may be unavailable "
                                                          "for some modules")
                                            : failed) + why));
        } else if (c.relocation && refuses) {
          v.reasons.push_back(warning(reason::kModuleBtfUnchecked,
                                      m.name + ": .BTF.base (a distilled base) is relocated onto the running kernel's types "
                                               "(btf_relocate), which the agent does not model: a refusal there is not ruled out"));
        }
      }
    }
    std::string unread;
    if (!my_exports.empty())
      for (const auto& l : kernel.live_exports_unknown)
        if (!replaced.count(l)) unread += (unread.empty() ? "" : ", ") + l;
    if (!unread.empty())
      v.reasons.push_back(warning(reason::kLiveExportsUnread, "the exports of the loaded module(s) " + unread + " were not read: " + m.name +
                                   " exporting one of them (ENOEXEC) is not ruled out"));

    // 9. parse_args(): the parameters the agent passes, against the module's parmtype=. An
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
        // parse_one(): a word without a value reaches the setter (and the unsafe check) only
        // for a type that takes none.
        const bool reaches_setter = p.value || *type == "bool" || *type == "invbool";
        const auto has = [&](const std::vector<std::string>& names) {
          return std::find(names.begin(), names.end(), p.name) != names.end();
        };
        if (reaches_setter && kernel.lockdown && has(m.hw_params)) {
          // The kernel's two lines: "Lockdown: <comm>: unsafe module parameters is restricted;
          // see man kernel_lockdown.7", then parse_args()'s.
          v.reasons.push_back(make(reason::kParameterLockedDown, EPERM,
                                   m.name + ": `" + p.value.value_or("") + "' invalid for parameter `" + p.name +
                                       "' (a hardware parameter: unsafe module parameters are restricted under lockdown)" + from,
                                   p.name));
          param_err = EPERM;
          continue;
        }
        if (reaches_setter && has(m.unsafe_params))
          v.reasons.push_back(make(reason::kParameterUnsafe, 0, "Setting dangerous option " + p.name + " - tainting kernel" + from,
                                   p.name, false));
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

    // 10. mod_sysfs_setup() -> mod_sysfs_init(): /sys/module/<name> of a built-in (after
    // parse_args). A built-in without one is no name conflict: its exports are vmlinux's.
    if (kernel.builtin_sysfs.count(m.name)) {
      v.reasons.push_back(make(reason::kBuiltinModule, EINVAL,
                               m.name + ": module is already loaded (built into the kernel: /sys/module/" + m.name +
                                   " exists)"));
      settle(EINVAL);
    } else if (kernel.builtin.count(m.name)) {
      v.reasons.push_back(warning(reason::kBuiltinSameName, m.name + " is built into the kernel without parameters or a version: /sys/module/" +
                                   m.name + " is not known to exist, so the name itself may not be refused (EINVAL if it does)"));
    } else if (!kernel.builtins_unread.empty()) {
      v.reasons.push_back(warning(reason::kBuiltinsUnknown, "the kernel's built-in modules are not known (" + kernel.builtins_unread + "): " + m.name +
                                   " being one (EINVAL) is not ruled out"));
    }
    // 11. The module's init (do_init_module): i915 and xe check nomodeset themselves. xe's
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
          v.reasons.push_back(warning(reason::kNomodesetNoDriver, "i915: " + why + ": " +
                                       (major == 6 && minor <= 1
                                            ? std::string("its init (6.1 code) returns 1: it loads but drives no GPU")
                                            : std::string("its init returns 1 (6.1 code: loads, drives no GPU) or -ENODEV "
                                                          "(6.12 code); this build's (" + m.vermagic.substr(0, m.vermagic.find(' ')) +
                                                          ") is not known"))));
        }
      }
    }

    // modprobe.d lines the insert by file bypasses: the operator's intent, not the kernel's.
    if (auto it = kernel.modprobe_blacklist.find(m.name); it != kernel.modprobe_blacklist.end())
      for (const auto& where : it->second)
        v.reasons.push_back(warning(reason::kModprobeBlacklistBypassed, "modprobe.d blacklists " + m.name + " (" + where +
                                     "): the agent inserts it by file, which a blacklist does not stop"));
    if (auto it = kernel.modprobe_install.find(m.name); it != kernel.modprobe_install.end())
      for (const auto& cmd : it->second)
        v.reasons.push_back(warning(reason::kModprobeInstallBypassed, "modprobe.d has 'install " + m.name + " " + cmd +
                                     ": the agent inserts the module itself and never runs it"));
    if (modversions == false && !kernel.symvers.modversions)
      v.reasons.push_back(warning(reason::kNoModversions, "kernel built without MODVERSIONS: CRCs are not checked, vermagic must match in full"));

    v.err = stage_err;
    v.verdict = stage_err == 0 ? Verdict::Loadable : Verdict::Refused;
    // A name once loaded stays live: a later refused copy does not unload it.
    if (v.verdict == Verdict::Loadable) {
      loaded_in_set.insert(m.name);
      for (const auto& e : my_exports) exported_in_set.emplace(e.name, m.name);
      in_tree_loaded.insert(all_deps.begin(), all_deps.end());
    }
    verdict_of[m.name] = loaded_in_set.count(m.name) ? Verdict::Loadable : v.verdict;
    ev.modules.push_back(std::move(v));
  }
  return ev;
}

}  // namespace agent::kabi
