// The entrypoint's state and steps (agent/load/lifecycle.h runs it): one class whose member
// functions live by concern - lifecycle.cpp sequences (attempt, run, stop), entrypoint_build.cpp
// obtains built modules, entrypoint_act.cpp carries the plan out and rolls it back,
// entrypoint_ready.cpp keeps the devices, the ready file and the NFD labels in step with the
// kernel. Only the load room includes it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "agent/base/state_files.h"
#include "agent/decision/diagnose.h"
#include "agent/decision/hints.h"
#include "agent/decision/plan.h"
#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "agent/load/lifecycle.h"
#include "agent/load/undo.h"
#include "agent/load/watch.h"
#include "agent/report/status.h"
#include "probes/host_root.h"
#include "probes/module_options.h"

namespace agent {

using Clock = std::chrono::steady_clock;
using spdlog::level::level_enum;

[[nodiscard]] inline double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

class Entrypoint {
 public:
  Entrypoint(const RunOptions& o, probes::HostRoot root, WritableDir state, InstanceLock lock, Events& watch,
             const ModuleControl& kernel, Result<Journal> journal, std::string boot_id)
      : o_(o),
        root_(std::move(root)),
        state_(std::move(state)),
        lock_(std::move(lock)),
        watch_(watch),
        kernel_(kernel) {
    status_.agent_version = o.agent_version;
    status_.boot_id = boot_id;
    journal_.boot_id = std::move(boot_id);
    take_journal(std::move(journal));
  }

  int run();

 private:
  enum class Outcome { Ready, Refused, Waiting, Stop };

  Outcome attempt();
  // The diagnosis behind the status from now on; `decision`: what the status shows as decided.
  void adopt(Diagnosis d, const std::string& decision);
  // The build branch: the built modules (built here, or a sidecar's from the cache) become the
  // diagnosed set (diag_). nullopt to go on loading them, else how this attempt ends.
  std::optional<Outcome> obtain_build(DiagnoseOptions opts);
  // A restart whose journal says built modules were loaded: true, with that set adopted, when
  // the cache's entry for this kernel and these sources is live with its build ids (its fast
  // path; the image's bundle, refused for this kernel when the build was made, is not read).
  bool adopt_live_build(DiagnoseOptions opts);
  // The acting steps; each returns how it failed (the reason code, the module, the kernel's lines).
  struct StepFailure {
    const char* code;
    std::string module;
    Error error;
    std::vector<std::string> kernel_lines;
  };
  bool act(const Plan& plan);
  std::optional<StepFailure> remove_conflict(const PlannedRemoval& r);
  std::optional<StepFailure> point_firmware(const FirmwarePlan& fp);
  std::optional<StepFailure> insert_module(const PlannedInsert& i, const probes::ModuleOptions& options,
                                           std::optional<KernelLog>& klog, double& insert_ms);
  static StepFailure unrecorded(const std::string& what, const Error& e);
  void rollback();
  // The journal as read (an unreadable one is kept as an error: nothing is acted on), with the
  // intended steps of an agent that died reconciled with the kernel.
  void take_journal(Result<Journal> j);
  bool journal_ready();  // false (refused, reason named) while the journal cannot be read
  [[nodiscard]] Result<void> record();
  [[nodiscard]] UndoScope undo_scope() const;
  Outcome wait_bound(const Diagnosis& d);
  void refresh_devices();
  std::string why_not_ready();  // "" when every bundle module is live and every device bound
  bool all_bound() const;
  bool become_ready();
  void lose_ready(const std::string& what);
  bool withdraw_ready();  // the ready file (first) and the NFD file go; false: the ready file stayed
  void track();  // not ready any more: keep the status in step with the kernel
  int stop(int code);

  bool set_phase(Phase p, const std::string& message, level_enum level = spdlog::level::info);
  bool write_status();
  void save_journal_or_log();
  void note(const char* code, std::string message) {
    status_.reasons.push_back({code, std::move(message), reason_hint(code, {status_.release, status_.kernel_version})});
  }

  const RunOptions& o_;
  probes::HostRoot root_;
  WritableDir state_;
  InstanceLock lock_;
  Events& watch_;
  const ModuleControl& kernel_;
  Journal journal_;
  Status status_;
  Clock::time_point started_ = Clock::now();
  bool first_ready_ = true;
  bool lost_ = false;  // was ready, then the driver went behind the agent's back

  // The diagnosis behind the current state: the bundle, its devices, the kernel's module dir.
  std::optional<Diagnosis> diag_;
  std::optional<Error> journal_error_;     // undo.json could not be read: act on nothing
  // This attempt's acting steps, in order; rollback undoes them last first.
  std::vector<ActedStep> steps_;
  std::optional<WatchEvent> interrupted_;  // a SIGTERM that arrived while acting or waiting
  std::optional<ScratchDir> staged_;          // the built modules being loaded
  std::string source_;                     // what this attempt loads: "prebuilt" or "built"
};

}  // namespace agent
