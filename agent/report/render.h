// One renderer per struct, text and JSON: `agent --check`, the status file and the logs are made
// of these, so a device, a conflict or the plan reads the same wherever it appears.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/decision/decide.h"
#include "agent/decision/diagnose.h"
#include "agent/decision/plan.h"

namespace agent {

[[nodiscard]] nlohmann::json to_json(const DeviceReport& d);
[[nodiscard]] nlohmann::json to_json(const Conflict& c);
[[nodiscard]] nlohmann::json to_json(const DecisionReason& r);
[[nodiscard]] nlohmann::json to_json(const Error& e);
[[nodiscard]] nlohmann::json to_json(const FirmwarePlan& f);
[[nodiscard]] nlohmann::json to_json(const Plan& p);

[[nodiscard]] std::string to_text(const DeviceReport& d);  // lines, indented by two
[[nodiscard]] std::string to_text(const Conflict& c);
[[nodiscard]] std::string to_text(const Plan& p);          // a "Plan" section

// The whole diagnosis (`agent --check` without the plan). Text: each reason on one line with
// its hint under it; `width` wraps the module reasons (a terminal's), 0 never.
[[nodiscard]] nlohmann::json diagnosis_json(const Diagnosis& d);
[[nodiscard]] std::string diagnosis_text(const Diagnosis& d, bool verbose = false, size_t width = 0);

// The last line of `agent --check`: "refuse (exit 20) on 6.1.0-56-amd64: 1/1 refused (ENOEXEC);
// modules_refused, no_kernel_headers" - the decision, the modules' verdicts, the reason codes.
[[nodiscard]] std::string check_summary(const Diagnosis& d);

// A host path as the rest of the output shows it: inside the root ("/sys/..."), not where the
// root is mounted ("/host/sys/..."). Every occurrence of "<root>/" in `text` becomes "/".
[[nodiscard]] std::string root_relative(const std::string& root, std::string text);

}  // namespace agent
