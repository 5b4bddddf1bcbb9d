// libFuzzer target: kernel module images (kabi/module.h): the kernel's ELF validity checks
// (kabi/elf_validity.h), ELF through libelf, .modinfo,
// __versions, extended modversions, symbol table, exports, this_module, signature trailer,
// and the compressed forms. Any input must give a value or an error naming the path.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kabi/btf.h"
#include "kabi/module.h"

using namespace agent::kabi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Kept as the bundle checks keep them: a file every kernel refuses is a value, not an error.
  auto m = parse_module(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.ko",
                        {.trusted_certs = nullptr, .sha256 = true, .keep_unreadable = true});
  if (!m) {
    if (m.error().path != "fuzz.ko" || m.error().message.empty()) std::abort();
    return 0;
  }
  if (m->sha256.size() != 64) std::abort();
  for (const auto& r : m->elf_refusal) {
    if (m->unreadable && !r) std::abort();  // only what every generation refuses is kept unread
    if (r && (r->code.empty() || r->message.empty())) std::abort();
  }
  for (const auto& b : m->bad_symbols)
    if (!b.common && b.shndx < m->shnum) std::abort();
  // Use what the rules use, so a bad value shows up here rather than in the rules.
  (void)m->modinfo_values("alias");
  if (const auto* table = m->effective_versions()) {
    for (const auto& v : *table)
      if (m->find_version(v.name) == nullptr) std::abort();
  }
  for (const auto& u : m->undefined) (void)m->find_version(u.name);
  // Module BTF (btf_module_notify()): as the kernel's own BTF, and split on a base with a few
  // types, in each generation's format; a check that fails names its problem.
  if (!m->btf.empty()) {
    (void)parse_base_btf(m->btf, "fuzz.ko .BTF");
    BaseBtf base;
    base.nr_types = 3;
    base.info = {0, 1u << 24, 2u << 24};  // void, an int, a pointer
    base.size_type = {0, 4, 1};
    base.strings = std::string("\0int\0", 5);
    base.str_len = 5;
    for (int major : {6, 7}) {
      const ModuleBtfCheck c = check_module_btf(m->btf, m->btf_base, base, major, major == 6 ? 12 : 2);
      if (c.err != 0 && c.problem.empty()) std::abort();
    }
  }
  size_t total = 0;
  for (const auto& e : m->exports) total += e.name.size() + e.ns.size() + (e.crc ? 4 : 0);
  for (const auto& [k, v] : m->modinfo) total += k.size() + v.size();
  if (total == SIZE_MAX) std::abort();  // never; keeps the loops
  return 0;
}
