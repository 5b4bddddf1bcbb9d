// A kernel module (.ko, .ko.xz, .ko.zst, .ko.gz) as the kernel's loader sees it.
#pragma once

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kabi/relocations.h"
#include "kabi/result.h"

namespace agent::kabi {

// elf_check_arch() and sizeof(Elf_Shdr) of the kernel the agent judges: the agent is built for
// its node's architecture (EM_X86_64 = 62, EM_AARCH64 = 183; 0: unknown, not checked).
#if defined(__x86_64__)
inline constexpr uint16_t kNativeElfMachine = 62;
#elif defined(__aarch64__)
inline constexpr uint16_t kNativeElfMachine = 183;
#else
inline constexpr uint16_t kNativeElfMachine = 0;
#endif
inline constexpr uint16_t kNativeShdrSize = sizeof(void*) == 8 ? 64 : 40;

struct VersionEntry {
  std::string name;
  uint32_t crc = 0;
};

struct UndefinedSymbol {
  std::string name;
  bool weak = false;  // a missing weak symbol resolves to 0, never an error
  size_t index = 0;   // in the symbol table (simplify_symbols() order)
};

// A defined symbol simplify_symbols() refuses (ENOEXEC): SHN_COMMON, or st_shndx >= e_shnum.
struct BadSymbol {
  std::string name;
  size_t index = 0;  // in the symbol table
  uint16_t shndx = 0;
  bool common = false;  // SHN_COMMON; else the section index is out of range
};

// Which generation of the kernel's ELF validity checks (elf_validity.h).
enum class ElfGeneration { V6_1, V6_12, V7_2 };
inline constexpr size_t kElfGenerations = 3;

// A structural check the kernel fails the file on (ENOEXEC): a reason code and its message.
struct ElfRefusal {
  std::string code;
  std::string message;
};

struct ExportedSymbol {
  std::string name;
  std::optional<uint32_t> crc;  // absent when the module was built without MODVERSIONS
  // GPL-only as the kernel generation the module was built for reads it: its __kflagstab
  // byte when the module has one (7.x), else whether it sits in __ksymtab_gpl (6.x).
  bool gpl_only = false;
  std::string ns;
  bool in_ksymtab_gpl = false;   // __ksymtab_gpl: 6.x exports it GPL-only, 7.x ignores it
  int16_t flags = -1;  // its __kflagstab byte (by __ksymtab index), -1 none; bit 0 GPL-only
};
inline constexpr uint8_t kKsymFlagGplOnly = 0x01;  // KSYM_FLAG_GPL_ONLY (7.x)

struct Signature {
  // Unsupported: a trailer whose signature type is not PKCS#7 (the kernel's ENOPKG, which it
  // treats like an unsigned module); Malformed: one it cannot parse (EBADMSG, always fatal).
  enum class State { None, Present, Unsupported, Malformed };
  State state = State::None;
  std::string problem;    // why it is malformed
  int malformed_errno = EBADMSG;  // what the kernel's parser returns for it
  std::string signer;     // issuer name of the signing certificate, if readable
  std::string key_id;     // hex: serial number, or subject key identifier
  bool by_key_identifier = false;  // the signer named by subject key identifier, not issuer + serial
  // The issuer as the kernel names a key (kernel_key_name): a self-signed signer's key is
  // described "<this>: <hex>" on a keyring.
  std::string issuer_key_name;
  std::string hash_algo;  // e.g. "sha256"
  size_t signed_size = 0; // bytes covered by the signature (the module without the trailer)
  // What pkcs7_verify() refuses for a module whatever the key (EKEYREJECTED): an
  // eContentType other than id-data (its OID here, empty for id-data), and a SignerInfo with
  // signed (authenticated) attributes, which `openssl cms -sign` adds unless -noattr.
  std::string content_type;
  bool signed_attributes = false;
  // SHA-256 (hex) of the whole uncompressed file, trailer included: what Debian's 6.x
  // mod_is_hash_blacklisted() looks up on .blacklist. Set where the signature is verified.
  std::string module_sha256;
  // Set by whoever holds the target kernel's certificates (kernel_keys.h). KeyringKey: none of
  // them signed it, but a live keyring holds a key the signer may be (keyring_key says which, or
  // which keyring could not be read): keys there have no readable public key, so the signature
  // is not verified - the kernel may load the module or refuse it.
  enum class KeyCheck { NotChecked, Verified, BadSignature, UnknownKey, KeyringKey };
  KeyCheck key_check = KeyCheck::NotChecked;
  std::string keyring_key;
};

struct ModuleInfo {
  std::string path;
  std::string name;  // from .gnu.linkonce.this_module (what the kernel calls it)
  std::string compression;  // "none", "xz", "zstd", "gzip"

  // .modinfo in file order; repeated keys (alias, import_ns, firmware, parm...) repeat.
  std::vector<std::pair<std::string, std::string>> modinfo;
  std::string vermagic, license, srcversion;  // the first entry of each, as get_modinfo()
  bool has_vermagic = false;  // "vermagic=" present (an empty value is still a vermagic)
  std::vector<std::string> depends, aliases, import_ns, firmware;

  // __versions: the CRCs the module was built against.
  bool has_versions = false;        // the section exists
  bool versions_alloc = false;      // and is SHF_ALLOC, so the kernel reads it
  std::vector<VersionEntry> versions;
  // 6.14+ extended modversions; when present the kernel ignores __versions.
  bool has_ext_versions = false;
  std::vector<VersionEntry> ext_versions;

  std::vector<UndefinedSymbol> undefined;  // symbol-table order, as the kernel resolves them
  std::vector<ExportedSymbol> exports;

  uint64_t this_module_size = 0;  // sizeof(struct module) of the kernel it was built for
  // The sections the kernel takes export CRCs from (mod->crcs, mod->gpl_crcs).
  bool has_kcrctab = false, has_kcrctab_gpl = false;
  // 7.x's find_module_sections(): __kflagstab (GPL-only flags, required when exporting) and the
  // obsolete __ksymtab_gpl it warns about; SHF_ALLOC sections, as section_addr() finds them.
  bool has_kflagstab = false, has_ksymtab_gpl = false;

  // ELF header fields and section counts that the kernel's elf_validity_check() judges; the
  // reader records them and the rules decide (a module that names another machine is still
  // read, so that its report names every problem).
  // The defaults describe a well-formed module.
  uint16_t elf_machine = kNativeElfMachine;  // e_machine
  uint16_t elf_shentsize = kNativeShdrSize;  // e_shentsize (the reader assumes the native size)
  size_t symtab_count = 1;                   // SHT_SYMTAB sections; symbols come from the first
  // What each generation of the ELF validity checks refuses (indexed by ElfGeneration; empty:
  // accepted). `unreadable`: the file could not be read beyond that (not ELF, truncated, ...),
  // so nothing else in this ModuleInfo is known; every generation refuses such a file.
  std::optional<ElfRefusal> elf_refusal[kElfGenerations];
  bool unreadable = false;
  // .modinfo as the generations find it: 6.1 ignores one without SHF_ALLOC.
  bool has_modinfo = true, modinfo_alloc = true;
  // The first section with SHF_WRITE and SHF_EXECINSTR (module_enforce_rwx_sections()).
  std::optional<std::pair<std::string, size_t>> write_exec_section;
  std::vector<BadSymbol> bad_symbols;  // symbol-table order
  // apply_relocations(): the first relocation x86-64's kernel refuses, and the entries whose
  // outcome depends on run-time addresses (kabi/relocations.h; other machines: not read).
  Relocations relocations;
  // Parameters whose struct kernel_param (__param) carries KERNEL_PARAM_FL_UNSAFE (setting one
  // taints the kernel) or KERNEL_PARAM_FL_HWPARAM (refused under lockdown), by name.
  std::vector<std::string> unsafe_params, hw_params;
  uint16_t shnum = 0;                  // e_shnum
  // .note.gnu.build-id, hex; the kernel shows the same note of a loaded module in
  // /sys/module/<name>/notes/.note.gnu.build-id, which identifies exactly this build.
  std::string build_id;
  // .BTF and .BTF.base (the distilled base of an out-of-tree build, pahole >= 1.28): the first
  // section of each name, as any_section_objs() takes them; empty if absent.
  std::string btf, btf_base;
  Signature signature;
  std::string sha256;  // of the file as stored (compressed or not)

  [[nodiscard]] std::vector<std::string> modinfo_values(std::string_view key) const;
  // The CRC table the kernel consults: extended versions if present, else an SHF_ALLOC
  // __versions, else none.
  [[nodiscard]] const std::vector<VersionEntry>* effective_versions() const;
  [[nodiscard]] const VersionEntry* find_version(std::string_view symbol) const;
};

struct ReadOptions {
  // The target kernel's built-in certificates (DER): the signature is then checked as the
  // kernel would and Signature::key_check is set.
  const std::vector<std::string>* trusted_certs = nullptr;
  bool sha256 = true;  // hash the file (a pass over every byte: callers that never use it skip it)
  // A file every kernel generation refuses as no module (not ELF, truncated, ...) is returned
  // with ModuleInfo::unreadable and its refusals, for the rules to report, instead of an error
  // (the bundle checks: kabi check, agent check, the entrypoint).
  bool keep_unreadable = false;
};

// Parses a module file's bytes (compressed or not). `path` names it in errors.
[[nodiscard]] Result<ModuleInfo> parse_module(std::string_view bytes, const std::string& path,
                                              const ReadOptions& options = {});

// Reads and parses a module file (mapped, not copied, when it is not compressed).
[[nodiscard]] Result<ModuleInfo> read_module(const std::filesystem::path& path, const ReadOptions& options = {});

// The build id (hex) of an ELF note section holding an NT_GNU_BUILD_ID note, as found in a .ko
// and in /sys/module/<name>/notes/.note.gnu.build-id; empty if there is none.
[[nodiscard]] std::string parse_build_id_note(std::string_view notes);

// Lower-case hex SHA-256 of `bytes` (ModuleInfo::sha256's form).
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

// Whether a file name is a kernel module's: .ko, .ko.xz, .ko.zst or .ko.gz.
[[nodiscard]] bool is_module_file_name(const std::filesystem::path& path);

// The module name a file name implies: "drm_kms_helper.ko.xz" -> "drm_kms_helper",
// dashes folded to underscores as the kernel does.
[[nodiscard]] std::string module_name_from_path(std::string_view path);

}  // namespace agent::kabi
