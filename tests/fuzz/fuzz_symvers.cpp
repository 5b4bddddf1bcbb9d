// libFuzzer target: Module.symvers text (kabi/symvers.h). Any input must give a value or an
// error naming the source and line; never a crash, a leak or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kabi/symvers.h"

using namespace agent::kabi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto sv = parse_symvers(text, "fuzz.symvers");
  if (!sv) {
    // Every error names the file it is about.
    if (sv.error().path != "fuzz.symvers" || sv.error().message.empty()) std::abort();
    return 0;
  }
  if (sv->entries.empty() || sv->index.size() != sv->entries.size()) std::abort();
  bool any_nonzero = false;
  for (const auto& e : sv->entries) {
    const SymversEntry* found = sv->find(e.name);
    if (found != &e) std::abort();  // the index points at the (last) entry of that name
    any_nonzero |= e.crc != 0;
    (void)owner_module_name(e.owner);
    (void)export_type_name(e.type);
    (void)is_gpl_only(e.type);
  }
  // (A CRC overridden by a later duplicate line still counts, so only one direction holds.)
  if (any_nonzero && !sv->modversions) std::abort();
  return 0;
}
