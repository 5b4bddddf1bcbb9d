// The machine-readable (JSON, schema 1) and human forms of an evaluation: the contract of
// `agent kabi check` and the "modules" part of `agent --check`.
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "kabi/kernel_model.h"
#include "kabi/rules.h"

namespace agent::kabi {

inline constexpr int kReportSchema = 1;

[[nodiscard]] std::string crc_hex(uint32_t crc);
[[nodiscard]] std::string verdict_name(Verdict v);

// One reason: code, symbol, expected_crc, found_crc (0x-hex), message, fatal.
[[nodiscard]] nlohmann::json reason_json(const Reason& r);
[[nodiscard]] nlohmann::json module_verdict_json(const ModuleVerdict& v);
[[nodiscard]] nlohmann::json kernel_json(const KernelModel& k);
// {"schema":1,"kernel":{...},"modules":[...]}
[[nodiscard]] nlohmann::json evaluation_json(const Evaluation& ev, const KernelModel& k);

struct TextOptions {
  bool verbose = false;  // every reason of a module, not the first 20
  size_t width = 0;      // wrap reasons at this many columns (a terminal's); 0: one reason a line
  // Advice by reason code, printed once after the modules when a module has such a reason
  // ("hint: <text>"): a flag that would settle a warning.
  std::map<std::string, std::string> hints;
  bool header = true;  // the "kernel" and "crcs" lines (`agent --check` shows them in its Kernel section)
};

// A table (module, verdict, errno, reasons) then every reason of each module, fatal ones and
// warnings ("warning: " before the code), then the hints that apply.
[[nodiscard]] std::string evaluation_text(const Evaluation& ev, const KernelModel& k, const TextOptions& o = {});

// "2/2 loadable", "1/2 refused (ENOEXEC)", "3/3 refused (ENOEXEC, EINVAL)": the errno names of
// the refused modules, each once, in load order.
[[nodiscard]] std::string evaluation_counts(const Evaluation& ev);
[[nodiscard]] size_t warning_count(const Evaluation& ev);  // non-fatal reasons, all modules
// The last line of the text: "1/1 refused (ENOEXEC) on 6.1.0-56-amd64", then ", 2 warnings".
[[nodiscard]] std::string evaluation_summary(const Evaluation& ev, const KernelModel& k);

}  // namespace agent::kabi
