// BTF (BPF Type Format, include/uapi/linux/btf.h, Documentation/bpf/btf.rst): a header, a type
// section and a string section. A module's `.BTF` is split BTF: its type ids continue after the
// running kernel's (vmlinux's) types and its string offsets after vmlinux's strings. When a
// module loads, btf_module_notify() (kernel/bpf/btf.c) parses it on top of the running kernel's
// BTF; Debian 7.2 (CONFIG_MODULE_ALLOW_BTF_MISMATCH off) refuses the module when that fails,
// 6.1 and 6.12 warn (docs/kernel-load-checks.md K2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"
#include "kabi/root_fs.h"

namespace agent::kabi {

// A kernel's own BTF, as far as a module's split BTF depends on it.
struct BaseBtf {
  uint32_t nr_types = 0;  // with void (id 0): the first type id of a module
  uint32_t str_len = 0;   // the string section's length: the first string offset of a module
  // Per type id (0: void): the btf_type info word and its size/type word.
  std::vector<uint32_t> info, size_type;
  std::string strings;  // its string section (names of a module's types may point into it)
  std::string source;  // where it was read from
};

// Parses base BTF: the bytes of /sys/kernel/btf/vmlinux, or a vmlinux ELF file (an unstripped
// build's, or the one Debian's linux-headers ship) whose .BTF section is taken. `what` names
// the source in errors.
[[nodiscard]] Result<BaseBtf> parse_base_btf(std::string_view bytes, const std::string& what);

// Reads base BTF from `path` inside `root` (/sys/kernel/btf/vmlinux, a vmlinux), at most
// kMaxBaseBtfFile bytes.
inline constexpr size_t kMaxBaseBtfFile = size_t{512} << 20;
[[nodiscard]] Result<BaseBtf> read_kernel_btf(const RootFs& root, const std::string& path);

// What btf_parse_module() decides for a module's split BTF, as far as the agent models it.
struct ModuleBtfCheck {
  int err = 0;              // the errno the kernel's parse returns (0: the modelled checks pass)
  std::string problem;      // the check that fails, as the kernel's verifier log says it
  bool relocation = false;  // the module has .BTF.base and this kernel relocates it first
};

// Checks a module's `.BTF` (and `.BTF.base`, used on 6.11+) against `base`, for a kernel of
// that major.minor: the header, the section layout, the string section, every type's record
// length, kind and name offsets (against the base's string length), the names each kind must
// have (C identifiers, section names; in the base's strings or the module's), and the modifier
// chains (type ids against the base's and the module's counts). Not modelled: the kinds' other
// field checks (vlen and kind_flag where unused, int encodings, member offsets, sizes) and,
// with .BTF.base, the relocation onto vmlinux's types (ModuleBtfCheck::relocation says it was
// not checked).
[[nodiscard]] ModuleBtfCheck check_module_btf(std::string_view btf, std::string_view btf_base, const BaseBtf& base,
                                              int version_major, int version_minor);

}  // namespace agent::kabi
