#include "agent/cli/check.h"

#include <ostream>

#include "agent/base/terminal.h"
#include "agent/decision/plan.h"
#include "agent/load/journal.h"
#include "agent/report/render.h"
#include "kabi/text.h"
#include "probes/kernel.h"

namespace agent {

int run_check(const CheckOptions& check_options, std::ostream& out, std::ostream& err) {
  CheckOptions options = check_options;
  if (options.previous_build_ids.empty()) {
    // Without the host root, diagnose() below says why.
    if (auto root = probes::HostRoot::from_cli_or_env(options.root)) {
      auto boot_id = probes::probe_boot_id(*root);
      if (!boot_id) {
        err << "agent check: " << printable(boot_id.error().what())
            << ": the entrypoint's journal is not read (modules it inserted are not recognised as its own)\n";
      } else {
        auto ids = inserted_build_ids(options.state_dir, *boot_id);
        if (!ids) {
          err << "agent check: the entrypoint's journal: " << printable(ids.error().what()) << '\n';
          return kExitInputError;
        }
        options.previous_build_ids = std::move(*ids);
      }
    }
  }
  auto report = diagnose(options);
  if (!report) {
    err << "agent check: " << printable(report.error().what()) << '\n';
    return kExitInputError;
  }
  auto firmware = scan_bundle_firmware(options.bundle_firmware);
  if (!firmware) {
    err << "agent check: " << printable(firmware.error().what()) << '\n';
    return kExitInputError;
  }
  const Plan plan = make_plan(*report, *firmware, options.firmware_base);
  if (options.json) {
    nlohmann::json j = diagnosis_json(*report);
    j["plan"] = to_json(plan);
    out << safe_dump(j) << '\n';
  } else {
    if (!options.quiet)
      out << printable(diagnosis_text(*report, options.verbose, terminal_width(out)) + to_text(plan)) << '\n';
    out << printable(check_summary(*report)) << '\n';
  }
  return exit_code(report->decision);
}

}  // namespace agent
