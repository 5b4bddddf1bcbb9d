#include "agent/check.h"

#include <ostream>

#include "agent/plan.h"
#include "agent/render.h"
#include "kabi/text.h"

namespace agent {

int run_check(const CheckOptions& options, std::ostream& out, std::ostream& err) {
  auto report = diagnose(options);
  if (!report) {
    err << "agent: --check: " << printable(report.error().what()) << '\n';
    return kCheckInputError;
  }
  auto firmware = scan_bundle_firmware(options.bundle_firmware);
  if (!firmware) {
    err << "agent: --check: " << printable(firmware.error().what()) << '\n';
    return kCheckInputError;
  }
  const Plan plan = make_plan(*report, *firmware, options.firmware_base);
  if (options.json) {
    nlohmann::json j = diagnosis_json(*report);
    j["plan"] = to_json(plan);
    out << safe_dump(j) << '\n';
  } else {
    out << printable(diagnosis_text(*report, options.verbose) + to_text(plan));
  }
  return exit_code(report->decision);
}

}  // namespace agent
