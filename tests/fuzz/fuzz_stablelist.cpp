// libFuzzer target: a kABI stablelist (kabi/stablelist.h), RHEL's sectioned format or a plain
// list. Any input must give a value or an error naming the source and line; never a crash, a
// leak or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kabi/stablelist.h"

using namespace agent::kabi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto list = parse_stablelist(text, "fuzz.stablelist");
  if (!list) {
    if (list.error().path != "fuzz.stablelist" || list.error().message.empty()) std::abort();
    return 0;
  }
  if (list->symbols.empty()) std::abort();
  std::vector<std::string> imports(list->symbols.begin(), list->symbols.end());
  imports.emplace_back("not_in_any_list$");
  const auto c = stablelist_coverage(*list, imports);
  if (c.covered.size() + c.not_covered.size() != imports.size()) std::abort();
  for (const auto& s : c.covered)
    if (s.empty() || s.find_first_of(" \t\r\n") != std::string::npos) std::abort();
  return 0;
}
