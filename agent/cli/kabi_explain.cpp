// `agent kabi explain SYMBOL --old DEBUG --new DEBUG [--json]`
#include <ostream>

#include "agent/cli/kabi_check.h"
#include "agent/cli/kabi_pipeline.h"
#include "kabi/dwarf_types.h"
#include "kabi/text.h"

namespace agent {

int run_kabi_explain(const KabiExplainOptions& o, std::ostream& out, std::ostream& err) {
  auto a = kabi::expand_symbol(o.old_debug, o.symbol);
  if (!a) {
    err << "agent: " << printable(a.error().what()) << '\n';
    return kExitInputError;
  }
  auto b = kabi::expand_symbol(o.new_debug, o.symbol);
  if (!b) {
    err << "agent: " << printable(b.error().what()) << '\n';
    return kExitInputError;
  }
  const auto diff = kabi::first_difference(*a, *b);
  if (o.json) {
    nlohmann::json d = nullptr;
    if (diff)
      d = {{"where", diff->where},
           {"what", diff->what},
           {"old", diff->old_text.empty() ? nlohmann::json(nullptr) : nlohmann::json(diff->old_text)},
           {"new", diff->new_text.empty() ? nlohmann::json(nullptr) : nlohmann::json(diff->new_text)}};
    out << safe_dump(nlohmann::json{{"schema", 1},
                                    {"symbol", o.symbol},
                                    {"changed", diff.has_value()},
                                    {"first_difference", d},
                                    {"old", kabi::expansion_json(*a)},
                                    {"new", kabi::expansion_json(*b)}})
        << '\n';
  } else {
    std::string t;
    if (diff) {
      t += o.symbol + ": the type expansion differs (so does a genksyms CRC)\n";
      t += "first difference: " + diff->where + ": " + diff->what + '\n';
      if (!diff->old_text.empty()) t += "  old: " + diff->old_text + '\n';
      if (!diff->new_text.empty()) t += "  new: " + diff->new_text + '\n';
    } else {
      t += o.symbol + ": the same type expansion in both builds\n";
    }
    t += "\n--- old: " + a->file + '\n' + kabi::expansion_text(*a);
    t += "\n+++ new: " + b->file + '\n' + kabi::expansion_text(*b);
    out << printable(t);
  }
  return diff ? kExitRefused : kExitLoadable;
}

}  // namespace agent
