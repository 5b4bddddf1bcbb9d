// The loadability rules: predict what init_module() returns for each module, in the order
// the kernel checks (see DESIGN.md "The loadability rules").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kabi/kernel_model.h"
#include "kabi/module.h"

namespace agent::kabi {

// The licences the kernel treats as GPL-compatible (license_is_gpl_compatible()).
[[nodiscard]] bool license_is_gpl_compatible(const std::string& license);

// Stable reason codes: tools parse them; the README lists them all.
namespace reason {
inline constexpr const char* kSignatureRejected = "signature_rejected";
inline constexpr const char* kSignatureMalformed = "signature_malformed";
inline constexpr const char* kSignatureNotData = "signature_not_pkcs7_data";         // pkcs7_verify, any key
inline constexpr const char* kSignatureAuthattrs = "signature_signed_attributes";   // pkcs7_verify, any key
inline constexpr const char* kModuleHashBlacklisted = "module_hash_blacklisted";    // .blacklist, 6.x
inline constexpr const char* kUnsignedEnforced = "unsigned_rejected";
inline constexpr const char* kUnknownKeyEnforced = "unknown_key_rejected";
inline constexpr const char* kUnsupportedSigEnforced = "unsupported_signature_rejected";
inline constexpr const char* kElfMachine = "elf_machine_mismatch";
inline constexpr const char* kElfShentsize = "elf_shentsize_invalid";
// Files the kernel does not take for a module (ENOEXEC; elf_validity.h, by kernel generation).
inline constexpr const char* kElfHeader = "elf_header_invalid";             // too short, no ELF magic
inline constexpr const char* kElfType = "elf_type_not_rel";                 // e_type != ET_REL
inline constexpr const char* kElfSectionTable = "elf_section_table_invalid";  // outside the file, section 0
inline constexpr const char* kElfSectionNames = "elf_section_names_invalid";  // name table, name indexes
inline constexpr const char* kModinfoDuplicate = "modinfo_duplicate";       // 6.4+
inline constexpr const char* kThisModule = "this_module_invalid";           // missing, twice, NOBITS, not ALLOC
inline constexpr const char* kSymbolStrtab = "symbol_strtab_invalid";       // link, type, 7.x contents
inline constexpr const char* kExtVersions = "extended_versions_invalid";    // 6.14+
inline constexpr const char* kWriteExecSection = "section_write_exec";      // module_enforce_rwx_sections
inline constexpr const char* kRelocationInvalid = "relocation_invalid";      // apply_relocations(), ENOEXEC
inline constexpr const char* kRelocationsUnchecked = "relocations_unchecked";  // warning: run-time addresses decide
inline constexpr const char* kCommonSymbol = "common_symbol";               // SHN_COMMON
inline constexpr const char* kSymbolSectionIndex = "symbol_section_index_invalid";  // st_shndx >= e_shnum
inline constexpr const char* kNoSymbolTable = "no_symbol_table";
inline constexpr const char* kMultipleSymbolTables = "multiple_symbol_tables";
inline constexpr const char* kModuleStructSize = "module_struct_size";
inline constexpr const char* kModuleLayout = "module_layout_crc";
inline constexpr const char* kVermagic = "vermagic_mismatch";
inline constexpr const char* kAlreadyLoaded = "already_loaded";
inline constexpr const char* kDuplicateInSet = "duplicate_in_set";
inline constexpr const char* kUnknownSymbol = "unknown_symbol";
inline constexpr const char* kGplOnlySymbol = "gpl_only_symbol";
// inherit_taint(): a symbol from a proprietary (P-tainted) module, after a GPL-only one: ENOENT;
// before any: the module inherits the taint (a warning), and GPL-only symbols after it fail.
inline constexpr const char* kProprietaryProvider = "proprietary_provider";
inline constexpr const char* kInheritsProprietaryTaint = "inherits_proprietary_taint";  // warning
inline constexpr const char* kCrcMismatch = "crc_mismatch";
inline constexpr const char* kNoSymbolVersion = "no_symbol_version";
inline constexpr const char* kNamespaceNotImported = "namespace_not_imported";
// 7.x: exports need __kflagstab (check_export_symbol_sections; from 7.2), `import_ns=module:...`
// is refused (setup_modinfo; 6.16+).
inline constexpr const char* kNoExportFlags = "no_export_flags";                  // ENOEXEC
inline constexpr const char* kImportModuleNamespace = "import_module_namespace";  // EPERM
inline constexpr const char* kMissingDependency = "missing_dependency";
inline constexpr const char* kDependencyRefused = "dependency_refused";
inline constexpr const char* kDuplicateExport = "duplicate_export";
inline constexpr const char* kBuiltinModule = "builtin_module";
// btf_module_notify() (kabi/btf.h; docs/kernel-load-checks.md K2): .BTF that does not parse on
// the running kernel's BTF. 7.x refuses with the parse's errno; 6.x warns (a warning).
inline constexpr const char* kModuleBtfInvalid = "module_btf_invalid";
// Warnings: recorded, never fatal.
inline constexpr const char* kNoVersionsTable = "no_versions_table";         // tainted "forced"
inline constexpr const char* kNoVermagic = "no_vermagic";                   // tainted "forced"
inline constexpr const char* kMultipleSymbolTablesUnchecked = "multiple_symbol_tables_unchecked";  // first used
inline constexpr const char* kNoSymbolVersionWarn = "no_symbol_version_warning";
inline constexpr const char* kNoExtSymbolVersionWarn = "no_extended_symbol_version_warning";  // 6.14+
inline constexpr const char* kObsoleteExportSection = "obsolete_export_section";  // 7.2: __ksymtab_gpl, __kcrctab_gpl
inline constexpr const char* kUnsignedAccepted = "unsigned_accepted";         // taints
inline constexpr const char* kUnknownKeyAccepted = "unknown_key_accepted";    // taints
inline constexpr const char* kUnsupportedSigAccepted = "unsupported_signature_accepted";  // taints
inline constexpr const char* kModuleStructSizeUnchecked = "module_struct_size_unchecked";  // loads broken
inline constexpr const char* kNoModversions = "kernel_without_modversions";
inline constexpr const char* kSignatureNotVerified = "signature_not_verified";  // no certificates
inline constexpr const char* kBuiltinSameName = "builtin_same_name";       // no /sys/module known
inline constexpr const char* kBuiltinsUnknown = "builtins_unknown";         // modules.builtin unread
inline constexpr const char* kLiveExportsUnread = "live_exports_unread";    // duplicates not ruled out
inline constexpr const char* kModinfoIgnored = "modinfo_ignored";  // 6.1: .modinfo without SHF_ALLOC
inline constexpr const char* kModuleBtfMismatch = "module_btf_mismatch";    // 6.x: K2's warning
inline constexpr const char* kModuleBtfUnchecked = "module_btf_unchecked";  // base BTF unknown
// The node's part of a load and the taints (kabi/load_context.h; docs/kernel-load-checks.md A1,
// D1, F, L, M, N1). Refusals:
inline constexpr const char* kModulesDisabled = "modules_disabled";        // EPERM
inline constexpr const char* kNoCapSysModule = "no_cap_sys_module";        // EPERM
inline constexpr const char* kModuleBlacklisted = "module_blacklisted";    // EPERM
inline constexpr const char* kParameterInvalid = "parameter_invalid";      // the setter's errno
inline constexpr const char* kNomodesetInitFails = "nomodeset_init_fails"; // ENODEV from the init
// Warnings:
inline constexpr const char* kOutOfTree = "out_of_tree";
inline constexpr const char* kNoRetpoline = "no_retpoline";
inline constexpr const char* kStaging = "staging";
inline constexpr const char* kTestModule = "test_module";
inline constexpr const char* kLivepatch = "livepatch";
inline constexpr const char* kLicenseTaints = "license_taints";
inline constexpr const char* kExportsWithoutCrcs = "exports_without_crcs";  // tainted "forced"
inline constexpr const char* kUnknownParameter = "unknown_parameter";
inline constexpr const char* kParameterUnchecked = "parameter_unchecked";
// parse_one() -> param_check_unsafe(): a parameter declared unsafe taints when set (warning); a
// hardware parameter (ioport, irq, ...) is refused under lockdown (EPERM).
inline constexpr const char* kParameterUnsafe = "parameter_unsafe";
inline constexpr const char* kParameterLockedDown = "parameter_locked_down";
inline constexpr const char* kNomodesetNoDriver = "nomodeset_no_driver";
inline constexpr const char* kModprobeBlacklistBypassed = "modprobe_blacklist_bypassed";
inline constexpr const char* kModprobeInstallBypassed = "modprobe_install_bypassed";
}  // namespace reason

struct Reason {
  std::string code;
  std::string symbol;
  std::optional<uint32_t> expected_crc;  // what the kernel has
  std::optional<uint32_t> found_crc;     // what the module was built against
  std::string message;                   // the kernel's own message text
  bool fatal = true;
  int err = 0;                           // errno this reason alone would give
};

enum class Verdict { Loadable, Refused };

struct ModuleVerdict {
  std::string path;
  std::string name;
  Verdict verdict = Verdict::Loadable;
  int err = 0;  // errno init_module would return; 0 if it would load
  std::vector<Reason> reasons;              // fatal ones and warnings, in check order
  std::vector<std::string> load_after;      // modules (bundle or in-tree) to insert first
};

struct Evaluation {
  std::vector<ModuleVerdict> modules;  // in load order
  [[nodiscard]] bool all_loadable() const;
};

// Evaluates a set of modules meant to be loaded together against a kernel. Modules resolve
// against each other in dependency order and against the kernel's in-tree modules for
// dependencies the set does not ship.
[[nodiscard]] Evaluation evaluate(const std::vector<ModuleInfo>& set, const KernelModel& kernel);

[[nodiscard]] std::string errno_name(int err);  // "ENOEXEC", "" for 0

}  // namespace agent::kabi
