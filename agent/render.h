// One renderer per struct, text and JSON: `agent --check`, the status file and the logs are made
// of these, so a device, a conflict or the plan reads the same wherever it appears.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "agent/decide.h"
#include "agent/diagnose.h"
#include "agent/plan.h"

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

// The whole diagnosis (`agent --check` without the plan).
[[nodiscard]] nlohmann::json diagnosis_json(const Diagnosis& d);
[[nodiscard]] std::string diagnosis_text(const Diagnosis& d, bool verbose = false);

}  // namespace agent
