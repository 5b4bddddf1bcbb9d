// The machine-readable (JSON, schema 1) and human (80-column) forms of an evaluation: the
// contract of `agent kabi check` and the "modules" part of `agent --check`.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "kabi/kernel_model.h"
#include "kabi/rules.h"

namespace agent::kabi {

inline constexpr int kReportSchema = 1;

[[nodiscard]] std::string crc_hex(uint32_t crc);
[[nodiscard]] std::string verdict_name(Verdict v);

[[nodiscard]] nlohmann::json module_verdict_json(const ModuleVerdict& v);
[[nodiscard]] nlohmann::json kernel_json(const KernelModel& k);
// {"schema":1,"kernel":{...},"modules":[...]}
[[nodiscard]] nlohmann::json evaluation_json(const Evaluation& ev, const KernelModel& k);

// A table (module, verdict, errno, reasons) then every fatal reason, wrapped to 80 columns.
[[nodiscard]] std::string evaluation_text(const Evaluation& ev, const KernelModel& k, bool verbose = false);

}  // namespace agent::kabi
