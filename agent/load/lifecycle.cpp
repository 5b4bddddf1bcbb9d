#include "agent/load/lifecycle.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <sstream>
#include <set>
#include <vector>

#include "agent/base/clock.h"
#include "agent/base/state_files.h"
#include "agent/decision/hints.h"
#include "agent/decision/plan.h"
#include "agent/load/actions.h"
#include "agent/load/firmware.h"
#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "agent/load/undo.h"
#include "agent/load/watch.h"
#include "agent/report/log.h"
#include "agent/report/notify.h"
#include "agent/report/render.h"
#include "agent/report/status.h"
#include "kabi/file_io.h"
#include "kabi/module.h"
#include "kabi/text.h"
#include "probes/kernel.h"
#include "probes/loaded_modules.h"
#include "probes/module_options.h"
#include "probes/pci.h"
#include "probes/policy.h"

namespace agent {
namespace {

using Clock = std::chrono::steady_clock;
using spdlog::level::level_enum;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Reason codes the entrypoint adds to the decision's (the README lists them).
// The built modules, read from the cache through the host root and verified against the sha256
// their kABI check was made on, copied into a directory of the agent's own: from there they are
// diagnosed and inserted exactly as the image's bundle is (and verified again before the insert).
Result<ScratchDir> stage_built(const probes::HostRoot& root, const BuildResult& r) {
  auto dir = ScratchDir::make("agent-built");
  if (!dir) return tl::unexpected(dir.error());
  for (const auto& m : r.modules) {
    auto bytes = root.fs().read(m.path, kabi::kMaxModuleSize);
    if (!bytes) return tl::unexpected(bytes.error());
    if (kabi::sha256_hex(*bytes) != m.sha256)
      return fail(EIO, "changed since it was checked (sha256 " + kabi::sha256_hex(*bytes) + ", checked " + m.sha256 + ")",
                  root.display(m.path));
    const std::string to = dir->path() + "/" + std::filesystem::path(m.path).filename().string();
    Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return fail(errno, std::string("cannot create: ") + std::strerror(errno), to);
    for (size_t done = 0; done < bytes->size();) {
      const ssize_t n = ::write(out.get(), bytes->data() + done, bytes->size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(errno ? errno : EIO, std::string("cannot write: ") + std::strerror(errno), to);
      done += static_cast<size_t>(n);
    }
  }
  return dir;
}

// An NFD label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric.
std::string label_value(std::string v) {
  for (char& c : v)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  if (v.size() > 63) v.resize(63);
  while (!v.empty() && !std::isalnum(static_cast<unsigned char>(v.back()))) v.pop_back();
  while (!v.empty() && !std::isalnum(static_cast<unsigned char>(v.front()))) v.erase(v.begin());
  return v.empty() ? "unknown" : v;
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

bool Entrypoint::set_phase(Phase p, const std::string& message, level_enum level) {
  if (p != status_.phase || status_.since.empty()) status_.since = utc_now();
  status_.phase = p;
  log_line(level, phase_name(p), message);
  const bool written = write_status();
  notify_phase(p, message);  // systemd: STATUS=, READY=1 when settled, STOPPING=1
  return written;
}

bool Entrypoint::write_status() {
  auto w = state_.write(kStatusFile, safe_dump(to_json(status_, utc_now())) + "\n");
  if (!w) log_line(spdlog::level::err, "", "cannot write the status: " + w.error().what());
  return w.has_value();
}

void Entrypoint::save_journal_or_log() {
  if (auto w = record(); !w)
    log_line(spdlog::level::err, "", "cannot record what was changed (agent unload will not know): " + w.error().what());
}

Result<void> Entrypoint::record() {
  // A journal that could not be read is evidence for an operator: never overwritten.
  if (journal_error_) return fail(journal_error_->code, "not overwritten: " + journal_error_->message, journal_error_->path);
  return save_journal(state_, journal_);
}

UndoScope Entrypoint::undo_scope() const {
  return UndoScope{status_.release, o_.check.firmware_base, o_.nfd_dir ? o_.nfd_dir->string() : std::string()};
}

void Entrypoint::take_journal(Result<Journal> j) {
  if (!j) {
    journal_error_ = j.error();
    return;
  }
  journal_error_.reset();
  journal_ = std::move(*j);
  status_.removed.clear();
  for (const auto& r : journal_.removed) status_.removed.push_back(r.name);
  const bool pending = std::any_of(journal_.inserted.begin(), journal_.inserted.end(), [](const auto& i) { return !i.done; }) ||
                       std::any_of(journal_.removed.begin(), journal_.removed.end(), [](const auto& r) { return !r.done; }) ||
                       (journal_.firmware_previous_path && !journal_.firmware_done);
  if (!pending) return;
  KernelNow now;
  auto loaded = probes::probe_loaded_modules(root_, "");
  if (!loaded) {
    journal_error_ = Error{loaded.error().code, "its intended steps cannot be reconciled: " + loaded.error().what(),
                           state_.path() + "/" + kJournalFile};
    return;
  }
  for (const auto& [name, m] : loaded->modules) now.loaded[name] = m.build_id;
  now.firmware_path = probes::probe_policy(root_).firmware_path;
  for (const auto& line : reconcile(journal_, now)) log_line(spdlog::level::warn, "", "journal: " + line);
  if (auto w = record(); !w) journal_error_ = w.error();
  status_.removed.clear();
  for (const auto& r : journal_.removed) status_.removed.push_back(r.name);
}

bool Entrypoint::journal_ready() {
  if (journal_error_) take_journal(load_journal(state_, journal_.boot_id));  // fixed meanwhile (SIGHUP)?
  if (!journal_error_) return true;
  note(reason::kJournalUnreadable, journal_error_->what() + "; nothing is changed until it can be read (SIGHUP to retry)");
  set_phase(Phase::Refused, "the journal cannot be read: " + journal_error_->what(), spdlog::level::err);
  return false;
}

// One pass: detect, decide, (build,) and carry the plan out.
Entrypoint::Outcome Entrypoint::attempt() {
  const auto t0 = Clock::now();
  status_.failure.reset();
  status_.reasons.clear();
  status_.decision.clear();
  status_.build.reset();
  // Deciding again (SIGHUP, a retry) is not ready until it says so: the ready file (and the NFD
  // labels) go before the status says anything else.
  if (!withdraw_ready()) {
    note(reason::kInputError, "the ready file cannot be removed (" + state_.path() + "/" + kReadyFile +
                                      "): nothing is decided while it claims ready");
    set_phase(Phase::Refused, "the ready file cannot be removed", spdlog::level::err);
    return Outcome::Refused;
  }
  if (!set_phase(Phase::Detecting, "probing the node: devices, running kernel, loaded modules, policy")) {
    note(reason::kStatusUnwritable, "the status cannot be written (" + state_.path() + "/" + kStatusFile +
                                            "): nothing is done; SIGHUP to retry");
    status_.phase = Phase::Refused;
    log_line(spdlog::level::err, phase_name(Phase::Refused),
             "status_unwritable: the status cannot be written, so nothing is done (SIGHUP to retry)");
    return Outcome::Refused;
  }
  if (!journal_ready()) return Outcome::Refused;

  DiagnoseOptions opts = o_.check;
  for (const auto& i : journal_.inserted) opts.previous_build_ids[i.name] = i.build_id;
  opts.fast_path = true;  // the bundle live with its own build needs no kABI check
  opts.inserting = true;
  auto fw = scan_bundle_firmware(o_.check.bundle_firmware);
  if (!fw) {
    note(reason::kInputError, fw.error().what());
    set_phase(Phase::Refused, "cannot read the bundle's firmware: " + fw.error().what(), spdlog::level::err);
    return Outcome::Refused;
  }
  const BundleFirmware firmware = std::move(*fw);

  source_ = "prebuilt";
  if (journal_.source == "built" && o_.build_mode != BuildMode::Off && adopt_live_build(opts)) {
    source_ = "built";
    status_.timings_ms["detect_ms"] = ms_since(t0);
  } else {
    auto d = diagnose(opts);
    if (!d) {
      note(reason::kInputError, d.error().what());
      set_phase(Phase::Refused, "cannot diagnose: " + d.error().what(), spdlog::level::err);
      return Outcome::Refused;
    }
    const std::string decided = decision_name(d->decision);
    adopt(std::move(*d), decided);
    status_.timings_ms["detect_ms"] = ms_since(t0);
    for (const auto& e : diag_->problems) log_line(spdlog::level::warn, "", "could not read: " + e.what());

    if (course_of(*diag_, journal_.source == "built", false) == Course::Build) {
      if (auto end = obtain_build(opts)) return *end;
      source_ = "built";
    }
  }
  const Diagnosis& diag = *diag_;
  std::vector<std::string> journaled;
  for (const auto& i : journal_.inserted) journaled.push_back(i.name);
  for (const auto& c : unjournaled_live(diag, journaled))
    note(reason::kUnjournaledModule, c.name + " is live with the bundle's build" +
                                         (c.build_id.empty() ? std::string() : " (build id " + c.build_id + ")") +
                                         " but this agent's journal does not name it (loaded by hand, or the "
                                         "journal was lost): kept, and `agent unload` will not remove it");

  const Plan plan = make_plan(diag, firmware, o_.check.firmware_base);
  status_.firmware = {firmware.dir, plan.firmware.dir, firmware.digest, firmware.files.size(),
                      journal_.firmware_previous_path, plan.firmware.current, {}};
  std::string why;
  for (const auto& r : diag.reasons)
    why += (why.empty() ? "" : "; ") + r.code + ": " + r.message + (r.hint.empty() ? "" : " (hint: " + r.hint + ")");
  switch (course_of(diag, journal_.source == "built", source_ == "built")) {
    case Course::Refuse:
      set_phase(Phase::Refused,
                diag.decision == Decision::Build ? "the built modules would be refused: " + why
                                                 : "decision " + decision_name(diag.decision) + ": " + why,
                diag.decision == Decision::Build ? spdlog::level::err : spdlog::level::warn);
      return Outcome::Refused;
    case Course::Wait:
      set_phase(Phase::UpgradePending, why, spdlog::level::warn);
      return Outcome::Waiting;
    case Course::Build:  // obtained above: not reached
    case Course::Load: break;
  }

  if (!set_phase(Phase::Loading, plan.fast_path ? "every " + source_ + " module is already live with its build: nothing to load"
                                                : std::to_string(plan.remove.size()) + " module(s) to remove, " +
                                                      std::to_string(plan.insert.size()) + " " + source_ + " to insert")) {
    note(reason::kStatusUnwritable, "the status cannot be written (" + state_.path() + "/" + kStatusFile +
                                            "): nothing is loaded; SIGHUP to retry");
    set_phase(Phase::Refused, "the status cannot be written: nothing is loaded", spdlog::level::err);
    return Outcome::Refused;
  }
  if (!act(plan)) {
    set_phase(Phase::Refused, status_.failure ? status_.failure->module + ": " + status_.failure->message : "loading failed",
              spdlog::level::err);
    return Outcome::Refused;
  }
  status_.source = source_;
  status_.fast_path = plan.fast_path;
  const Outcome bound = wait_bound(diag);
  if (bound != Outcome::Ready) return bound;
  status_.timings_ms["attempt_ms"] = ms_since(t0);
  if (first_ready_) status_.timings_ms["start_to_ready_ms"] = ms_since(started_);
  return become_ready() ? Outcome::Ready : Outcome::Refused;
}

void Entrypoint::adopt(Diagnosis d, const std::string& decision) {
  diag_ = std::move(d);
  const Diagnosis& diag = *diag_;
  status_.release = diag.kernel.release;
  status_.manifest = diag.manifest;
  status_.kernel_version = diag.kernel.proc_version;
  if (diag.signing.configured) {
    SigningState sg{diag.signing.identity.signer,
                    diag.signing.identity.key_ids.empty() ? std::string() : diag.signing.identity.key_ids.back(),
                    diag.signing.problem.empty() ? std::string(signing_verdict_name(diag.signing.trust.verdict)) : "",
                    diag.signing.problem, signing_warnings(diag.signing)};
    // Said once, not at every attempt.
    if (!status_.signing || status_.signing->warnings != sg.warnings)
      for (const auto& w : sg.warnings) log_line(spdlog::level::warn, "", "signing: " + w);
    status_.signing = std::move(sg);
  } else {
    status_.signing.reset();
  }
  status_.decision = decision;
  status_.reasons = diag.reasons;
  status_.conflicts = diag.conflicts;
  status_.modules.clear();
  for (const auto& v : diag.evaluation.modules) {
    ModuleState m{v, {}, {}, false, false};
    for (const auto& b : diag.bundle)
      if (b.name == v.name) m.sha256 = b.sha256, m.build_id = b.build_id;
    m.live = std::any_of(diag.conflicts.begin(), diag.conflicts.end(),
                         [&](const Conflict& c) { return c.name == v.name && c.same_as_bundle; });
    status_.modules.push_back(std::move(m));
  }
  refresh_devices();
}

bool Entrypoint::adopt_live_build(DiagnoseOptions opts) {
  BuildOptions bo = o_.build;
  bo.root = o_.check.root;
  bo.check_cached = false;  // a fast path is the kernel's own word on these very modules
  auto found = find_build(root_, bo);
  if (!found || !*found || (*found)->result == BuildOutcome::Failed) return false;
  auto staged = stage_built(root_, **found);
  if (!staged) return false;
  opts.bundle = staged->path();
  auto d = diagnose(opts);
  if (!d || !d->fast_path) return false;
  staged_ = std::move(*staged);
  status_.build = BuildState{build_mode_name(o_.build_mode), std::move(**found), {}};
  adopt(std::move(*d), decision_name(Decision::Build));
  return true;
}

std::optional<Entrypoint::Outcome> Entrypoint::obtain_build(DiagnoseOptions opts) {
  const std::vector<DecisionReason> image_reasons = diag_->reasons;
  const std::string release = diag_->kernel.release;
  auto refuse = [&](const char* code, const std::string& message) {
    note(code, message);
    set_phase(Phase::Refused, message, spdlog::level::err);
    return Outcome::Refused;
  };
  if (o_.build_mode == BuildMode::Off)
    return refuse(reason::kBuildDisabled, "the prebuilt modules would be refused, and building is off (--build-mode off)");

  status_.build = BuildState{build_mode_name(o_.build_mode), std::nullopt, {}};
  BuildOptions bo = o_.build;
  bo.root = o_.check.root;
  bo.check_cached = false;  // the set is diagnosed below, its kABI check included
  bo.stop = [this]() -> std::string {
    if (auto s = watch_.pending_signal()) {
      if (!interrupted_ || s->kind == WatchEvent::Kind::Terminate) interrupted_ = s;
      if (s->kind == WatchEvent::Kind::Terminate) return "interrupted by " + s->signal;
    }
    return {};
  };
  bo.progress = [this](double elapsed, const std::string& line) {
    status_.build->progress = std::to_string(static_cast<long>(elapsed)) + " s: " + line;
    write_status();
  };
  const auto t = Clock::now();
  Result<std::optional<BuildResult>> got = std::optional<BuildResult>();
  std::vector<Error> broken;  // sidecar: entries of this kernel that could not be read
  if (o_.build_mode == BuildMode::Node) {
    set_phase(Phase::Building, "the prebuilt modules would be refused: building " + bo.sources.string() + " for " +
                                   release + " (cache " + bo.cache + ")",
              spdlog::level::warn);
    auto r = build_for_node(root_, bo);
    if (r) got = std::optional<BuildResult>(std::move(*r));
    else got = tl::unexpected(r.error());
  } else {
    set_phase(Phase::WaitingForBuild, "the prebuilt modules would be refused: waiting up to " +
                                          std::to_string(bo.timeout.count()) + " s for a sidecar's build of " +
                                          bo.sources.string() + " for " + release + " in " + bo.cache + "/" + release,
              spdlog::level::warn);
    const auto deadline = t + bo.timeout;
    // A sidecar installs its entry by rename into <cache>/<kver>, which changes that directory's
    // mtime: the sources are hashed and the entries read again only then, not every 2 s.
    const std::string kdir = bo.cache + "/" + release;
    std::optional<struct timespec> seen;
    for (;;) {
      auto st = root_.fs().stat(kdir);
      const bool changed = !seen || !st || st->st_mtim.tv_sec != seen->tv_sec || st->st_mtim.tv_nsec != seen->tv_nsec;
      if (changed) {
        if (st) seen = st->st_mtim;
        broken.clear();
        got = find_build(root_, bo, &broken);
      }
      if (!got || *got || Clock::now() >= deadline) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      WatchEvent e = watch_.next(std::min(left, std::chrono::milliseconds(2000)));
      if (e.kind == WatchEvent::Kind::Terminate || e.kind == WatchEvent::Kind::Reload) {
        interrupted_ = e;  // run() stops, or decides again
        return Outcome::Waiting;
      }
    }
  }
  status_.timings_ms["build_ms"] = ms_since(t);
  if (interrupted_ && interrupted_->kind == WatchEvent::Kind::Terminate) return Outcome::Stop;
  if (!got) return refuse(reason::kBuildUnavailable, "the build cannot run: " + got.error().what());
  if (!*got) {
    if (!broken.empty()) {
      std::vector<std::string> named;
      for (const auto& e : broken) named.push_back(e.what());
      return refuse(reason::kBuildFailed, "the build cache has no usable build of " + bo.sources.string() + " for " +
                                                  release + " after " + std::to_string(bo.timeout.count()) +
                                                  " s; unusable entries: " + join(named));
    }
    return refuse(reason::kBuildWaitTimeout, "no build of " + bo.sources.string() + " for " + release + " in " +
                                                     bo.cache + "/" + release + " after " +
                                                     std::to_string(bo.timeout.count()) +
                                                     " s (is the Driver Toolkit sidecar running `agent build`?)");
  }
  const BuildResult& r = **got;
  status_.build->result = r;
  status_.build->progress.clear();
  if (r.result == BuildOutcome::Failed)
    return refuse(reason::kBuildFailed,
                  r.reason + ": " + r.detail + (r.log.empty() ? std::string() : "; log: " + r.log));
  log_line(spdlog::level::info, "building",
           std::string(build_outcome_name(r.result)) + " (" + std::to_string(r.modules.size()) + " module(s), entry " + r.entry + ", " +
               std::to_string(static_cast<long>(r.build_seconds)) + " s of build)" +
               (r.signer.empty() ? "" : ", signed by " + r.signer));

  auto staged = stage_built(root_, r);
  if (!staged) return refuse(reason::kBuildFailed, "the built modules cannot be staged: " + staged.error().what());
  staged_ = std::move(*staged);
  opts.bundle = staged_->path();
  auto d = diagnose(opts);
  if (!d) return refuse(reason::kInputError, "cannot diagnose the built modules: " + d.error().what());
  adopt(std::move(*d), decision_name(Decision::Build));
  status_.reasons.insert(status_.reasons.begin(), image_reasons.begin(), image_reasons.end());
  return std::nullopt;
}

// Write-ahead: the step is recorded before it acts; one that cannot be is not taken.
Entrypoint::StepFailure Entrypoint::unrecorded(const std::string& what, const Error& e) {
  return {reason::kJournalUnwritable, what, Error{e.code, "not done, since it could not be recorded first: " + e.what(), ""}, {}};
}

// A conflicting module out (holders come first in the plan).
std::optional<Entrypoint::StepFailure> Entrypoint::remove_conflict(const PlannedRemoval& r) {
  if (r.ours_previous) {
    // An older bundle's module is not the kernel's own: it is not restored (its file went with
    // the older image), and no longer ours to unload once it is gone.
    if (auto done = kernel_.remove(r.name); !done) return StepFailure{reason::kRemoveFailed, r.name, done.error(), {}};
    std::erase_if(journal_.inserted, [&](const auto& x) { return x.name == r.name; });
    if (auto w = record(); !w) return unrecorded(r.name, w.error());
  } else {
    journal_.removed.push_back({r.name, r.restore_path, false});
    if (auto w = record(); !w) {
      journal_.removed.pop_back();
      return unrecorded(r.name, w.error());
    }
    if (auto done = kernel_.remove(r.name); !done) {
      journal_.removed.pop_back();
      save_journal_or_log();
      return StepFailure{reason::kRemoveFailed, r.name, done.error(), {}};
    }
    journal_.removed.back().done = true;
    steps_.push_back({ActedStep::Kind::Removal, r.name, {}, {}, {}, false, false});
    if (auto w = record(); !w) return unrecorded(r.name, w.error());
  }
  log_line(spdlog::level::info, "loading", "removed " + r.name + (r.ours_previous ? " (an older bundle)" : ""));
  status_.removed.push_back(r.name);
  return std::nullopt;
}

// The firmware: our copy, and firmware_class.path pointing at it when that is ours to set.
std::optional<Entrypoint::StepFailure> Entrypoint::point_firmware(const FirmwarePlan& fp) {
  if (fp.firmware.files.empty()) return std::nullopt;
  auto dir = install_firmware(root_.fs(), fp.firmware, o_.check.firmware_base);
  if (!dir) return StepFailure{reason::kFirmwareFailed, "firmware", dir.error(), {}};
  switch (fp.action) {
    case FirmwarePathAction::Set:
    case FirmwarePathAction::Ours: {
      const std::string before = fp.current.value_or("");
      if (before != *dir) {
        ActedStep step{ActedStep::Kind::Firmware, {}, before, *dir, journal_.firmware_path,
                       !journal_.firmware_previous_path.has_value(), false};
        if (step.first_change) journal_.firmware_previous_path = before;
        journal_.firmware_path = *dir;
        journal_.firmware_done = false;
        auto forget = [&] {
          if (step.first_change) journal_.firmware_previous_path.reset();
          journal_.firmware_path = step.ours_before;
          journal_.firmware_done = true;
        };
        if (auto w = record(); !w) {
          forget();
          return unrecorded("firmware", w.error());
        }
        if (auto set = set_firmware_path(root_.fs(), *dir); !set) {
          forget();
          save_journal_or_log();
          return StepFailure{reason::kFirmwareFailed, "firmware", set.error(), {}};
        }
        journal_.firmware_done = true;
        steps_.push_back(std::move(step));
        if (auto w = record(); !w) return unrecorded("firmware", w.error());
        log_line(spdlog::level::info, "loading", "firmware_class.path: '" + before + "' -> '" + *dir + "'");
      }
      status_.firmware.path = *dir;
      status_.firmware.previous_path = journal_.firmware_previous_path;
      break;
    }
    case FirmwarePathAction::Foreign:
      status_.firmware.conflict = "firmware_class.path is '" + *fp.current +
                                  "', set by someone else: kept; the bundle's firmware is in " + *dir;
      note(reason::kFirmwarePathForeign, status_.firmware.conflict);
      log_line(spdlog::level::warn, "loading", status_.firmware.conflict);
      break;
    case FirmwarePathAction::Unknown:
      status_.firmware.conflict = std::string(kFirmwarePathParam) + " is not readable: left alone";
      note(reason::kFirmwarePathForeign, status_.firmware.conflict);
      log_line(spdlog::level::warn, "loading", status_.firmware.conflict);
      break;
  }
  return std::nullopt;
}

// One insert, from the bytes that were checked. A bundle module is recorded as intended before
// the insert call: a kill -9 while the kernel runs its init leaves a record the next agent
// reconciles.
std::optional<Entrypoint::StepFailure> Entrypoint::insert_module(const PlannedInsert& i, const probes::ModuleOptions& options,
                                                                 std::optional<KernelLog>& klog, double& insert_ms) {
  if (auto sig = watch_.pending_signal()) {
    interrupted_ = sig;
    if (sig->kind == WatchEvent::Kind::Terminate)
      return StepFailure{reason::kInsertFailed, i.name, Error{EINTR, "interrupted by " + sig->signal, ""}, {}};
  }
  auto file = open_for_insert(i, root_);
  if (!file)
    return StepFailure{file.error().code == EIO ? reason::kNotTheCheckedModule : reason::kInsertFailed, i.name,
                       file.error(), {}};
  if (i.from_bundle) {
    std::erase_if(journal_.inserted, [&](const auto& x) { return x.name == i.name; });  // not live: stale
    journal_.inserted.push_back({i.name, i.build_id, false});
    journal_.source = source_;
    if (auto w = record(); !w) {
      journal_.inserted.pop_back();
      return unrecorded(i.name, w.error());
    }
  }
  if (klog) (void)klog->read_new();
  const auto t = Clock::now();
  auto done = kernel_.insert(*file, i.name, options.of(i.name));
  insert_ms += ms_since(t);
  if (!done) {
    if (i.from_bundle) {
      journal_.inserted.pop_back();
      save_journal_or_log();
    }
    return StepFailure{reason::kInsertFailed, i.name, done.error(),
                       klog ? lines_about(klog->read_new(), i.name) : std::vector<std::string>{}};
  }
  steps_.push_back({i.from_bundle ? ActedStep::Kind::Insert : ActedStep::Kind::Dependency, i.name, {}, {}, {}, false, true});
  if (i.from_bundle) {
    journal_.inserted.back().done = true;
    for (auto& m : status_.modules)
      if (m.verdict.name == i.name) m.inserted = m.live = true;
    if (auto w = record(); !w) return unrecorded(i.name, w.error());
  }
  const std::string opts = options.of(i.name);
  log_line(spdlog::level::info, "loading",
           "inserted " + i.name + (i.from_bundle ? "" : " (in-tree dependency)") + (opts.empty() ? "" : " with " + opts));
  if (i.from_bundle && !i.build_id.empty()) {
    auto live = probes::probe_build_id(root_, i.name);
    if (!live) return StepFailure{reason::kNotTheCheckedModule, i.name, live.error(), {}};
    if (*live != i.build_id)
      return StepFailure{reason::kNotTheCheckedModule, i.name,
                         Error{EIO, "the live module's build id is '" + *live + "', the checked one's " + i.build_id, ""},
                         {}};
  }
  return std::nullopt;
}

// The plan's acting steps in order - conflicts out, the firmware, the inserts - and on the
// first failure this attempt's steps undone.
bool Entrypoint::act(const Plan& plan) {
  steps_.clear();
  const probes::ModuleOptions options = probes::probe_module_options(root_);
  for (const auto& e : options.problems) log_line(spdlog::level::warn, "", "module options: " + e.what());
  std::optional<KernelLog> klog;
  if (auto k = KernelLog::open()) klog.emplace(std::move(*k));
  else log_line(spdlog::level::warn, "", k.error().what() + ": a failed insert will carry no kernel lines");

  std::optional<StepFailure> failure;
  for (const auto& r : plan.remove)
    if ((failure = remove_conflict(r))) break;
  if (!failure) failure = point_firmware(plan.firmware);
  double insert_ms = 0;
  if (!failure)
    for (const auto& i : plan.insert)
      if ((failure = insert_module(i, options, klog, insert_ms))) break;
  if (failure) {
    // The module's name is the error's path when it is about the module itself.
    const Error& e = failure->error;
    const std::string message = e.path == failure->module ? e.message : e.what();
    status_.failure = LoadFailure{failure->module, e.code, message, std::move(failure->kernel_lines)};
    note(failure->code, failure->module + ": " + message);
    rollback();
    return false;
  }
  status_.timings_ms["insert_ms"] = insert_ms;
  write_status();
  return true;
}

// This attempt's steps undone last first, with the same undo `agent unload` uses.
void Entrypoint::rollback() {
  const UndoScope scope = undo_scope();
  const probes::ModuleOptions options = probes::probe_module_options(root_);
  const UndoReport report = undo_steps(UndoContext{root_, kernel_, scope, options}, journal_, steps_,
                                       [this] { save_journal_or_log(); });
  steps_.clear();
  for (const auto& u : report.undone) {
    log_line(spdlog::level::info, "loading", "rollback: " + u.what);
    if (u.step.kind == ActedStep::Kind::Removal) std::erase(status_.removed, u.step.name);
    if (u.step.kind == ActedStep::Kind::Firmware && u.changed) status_.firmware.path = u.step.before;
  }
  for (const auto& n : report.not_undone) log_line(spdlog::level::err, "loading", "rollback: could not " + n);
  for (auto& m : status_.modules) m.inserted = m.live = false;
  if (!report.not_undone.empty()) note(reason::kRollbackIncomplete, join(report.not_undone, "; "));
}

void Entrypoint::refresh_devices() {
  if (!diag_) return;
  probes::PciOptions po;
  po.backend = o_.check.pci_backend;
  po.pci_ids = o_.check.pci_ids;
  auto pci = probes::discover_pci(root_, po);
  status_.devices.clear();
  for (const auto& dr : diag_->devices) {
    DeviceState s{dr, {}, false, {}};
    if (pci)
      for (const auto& d : pci->devices)
        if (d.bdf == dr.device.bdf) s.report.device = d;
    // Unreadable: neither bound nor with DRM nodes, and said.
    if (auto b = probes::probe_device_binding(root_, s.report.device.sysfs_path)) {
      if (!s.report.device.driver.empty()) s.driver_module = std::move(b->driver_module);
      if (s.report.device.is_display()) s.drm = std::move(b->drm);
    } else {
      log_line(spdlog::level::warn, "", s.report.device.bdf + ": " + b.error().what());
    }
    const auto& mods = s.report.bundle_modules;
    s.bound = !s.driver_module.empty() && std::find(mods.begin(), mods.end(), s.driver_module) != mods.end();
    status_.devices.push_back(std::move(s));
  }
}

bool Entrypoint::all_bound() const {
  return std::all_of(status_.devices.begin(), status_.devices.end(), [](const DeviceState& d) {
    return d.report.bundle_modules.empty() || (d.bound && (!d.report.device.is_display() || !d.drm.empty()));
  });
}

Entrypoint::Outcome Entrypoint::wait_bound(const Diagnosis&) {
  const auto t = Clock::now();
  const auto deadline = t + o_.bind_timeout;
  for (;;) {
    refresh_devices();
    if (all_bound()) break;
    if (Clock::now() >= deadline) {
      std::vector<std::string> unbound;
      for (const auto& d : status_.devices)
        if (!d.report.bundle_modules.empty() && !(d.bound && (!d.report.device.is_display() || !d.drm.empty())))
          unbound.push_back(d.report.device.bdf + (d.bound ? " (no DRM node)" : " (driver: " + (d.report.device.driver.empty() ? std::string("none") : d.report.device.driver) + ")"));
      note(reason::kDeviceNotBound, "not bound to the bundle's driver after " +
                                            std::to_string(o_.bind_timeout.count()) + " s: " + join(unbound));
      set_phase(Phase::Refused, "loaded, but not every device bound: " + join(unbound), spdlog::level::err);
      return Outcome::Refused;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    WatchEvent e = watch_.next(std::min(left, std::chrono::milliseconds(250)));
    if (e.kind == WatchEvent::Kind::Terminate) {
      interrupted_ = e;
      return Outcome::Stop;
    }
    if (e.kind == WatchEvent::Kind::Reload && !interrupted_) interrupted_ = e;  // decided again once this ends
  }
  status_.timings_ms["bind_ms"] = ms_since(t);
  return Outcome::Ready;
}

std::string Entrypoint::why_not_ready() {
  auto loaded = probes::probe_loaded_modules(root_, diag_ ? diag_->kernel.module_dir : std::string());
  if (!loaded) return "cannot read the loaded modules: " + loaded.error().what();
  for (auto& m : status_.modules) {
    auto it = loaded->modules.find(m.verdict.name);
    m.live = it != loaded->modules.end() && (it->second.state.empty() || it->second.state == "Live");
    if (it == loaded->modules.end()) return m.verdict.name + " was removed";
    if (!m.build_id.empty() && !it->second.build_id.empty() && it->second.build_id != m.build_id)
      return m.verdict.name + " was replaced by another build (" + it->second.build_id + ")";
    if (!m.live)
      return m.verdict.name + (it->second.state == "Unloading" ? " is being removed (Unloading)" : " is " + it->second.state);
  }
  refresh_devices();
  for (const auto& d : status_.devices) {
    if (d.report.bundle_modules.empty()) continue;
    if (!d.bound)
      return d.report.device.bdf + " is " +
             (d.report.device.driver.empty() ? std::string("unbound") : "bound to " + d.report.device.driver);
    if (d.report.device.is_display() && d.drm.empty()) return d.report.device.bdf + " has no DRM node";
  }
  return "";
}

bool Entrypoint::become_ready() {
  status_.phase = Phase::Ready;
  status_.since = utc_now();
  if (!write_status()) {
    note(reason::kInputError, "the status could not be written: not ready");
    return false;
  }
  if (o_.nfd_dir) {
    std::string version;
    for (const auto& b : diag_->bundle)
      for (const auto& v : b.modinfo_values("version"))
        if (version.empty()) version = v;
    if (version.empty() && !diag_->bundle.empty()) version = diag_->bundle.front().build_id.substr(0, 12);
    const std::string text = "intel-gpu-driver.source=" + label_value(status_.source) +
                             "\nintel-gpu-driver.version=" + label_value(version) +
                             "\nintel-gpu-driver.kernel=" + label_value(status_.release) + "\n" +
                             // The manifest's identity of the sources (agent/facts/bundle_manifest.h).
                             (status_.manifest ? "intel-gpu-driver.sources-version=" +
                                                     label_value(status_.manifest->sources_version) +
                                                     "\nintel-gpu-driver.sources-digest=" +
                                                     label_value(status_.manifest->sources_digest.substr(0, 16)) + "\n"
                                               : std::string());
    auto live = kabi::RootFs::open("/");
    auto dir = live ? WritableDir::open(*live, o_.nfd_dir->string(), "NFD features directory")
                    : Result<WritableDir>(tl::unexpected(live.error()));
    // Recorded first, so that `agent unload` removes it even if this agent dies right after.
    const std::string previous = journal_.nfd_file;
    journal_.nfd_file = (*o_.nfd_dir / kNfdFile).string();
    auto w = !dir ? Result<void>(tl::unexpected(dir.error())) : record();
    if (w) w = dir->write(kNfdFile, text);
    if (!w) {
      journal_.nfd_file = previous;
      save_journal_or_log();
      log_line(spdlog::level::warn, "ready", "no Node Feature Discovery file: " + w.error().what());
    }
  }
  if (auto r = state_.write(kReadyFile, ""); !r) {
    note(reason::kInputError, "the ready file could not be written: " + r.error().what());
    set_phase(Phase::Refused, "cannot write the ready file: " + r.error().what(), spdlog::level::err);
    return false;
  }
  first_ready_ = false;
  std::vector<std::string> bound;
  for (const auto& d : status_.devices)
    if (d.bound) bound.push_back(d.report.device.bdf + " -> " + d.driver_module);
  const std::string what = std::to_string(status_.modules.size()) + " module(s) live, " +
                           std::to_string(bound.size()) + " device(s) bound (" + join(bound) + ")";
  log_line(spdlog::level::info, "ready", what);
  notify_phase(Phase::Ready, what);  // systemd: READY=1 (the ready file exists)
  return true;
}

bool Entrypoint::withdraw_ready() {
  auto gone = state_.remove_any(kReadyFile);
  if (!gone) log_line(spdlog::level::err, "", gone.error().what());
  if (!journal_.nfd_file.empty() && o_.nfd_dir) {
    if (auto live = kabi::RootFs::open("/"))
      if (auto dir = WritableDir::open(*live, o_.nfd_dir->string(), "NFD features directory")) (void)dir->remove(kNfdFile);
    journal_.nfd_file.clear();
    save_journal_or_log();
  }
  return gone.has_value();
}

void Entrypoint::lose_ready(const std::string& what) {
  withdraw_ready();
  status_.event = utc_now() + ": " + what;
  status_.reasons.clear();
  refresh_devices();
  note(reason::kDriverLost, what + " behind the agent's back; send SIGHUP (or restart the pod) to load again");
  set_phase(Phase::Refused, "no longer ready: " + what, spdlog::level::err);
}

void Entrypoint::track() {
  auto loaded = probes::probe_loaded_modules(root_, diag_ ? diag_->kernel.module_dir : std::string());
  if (!loaded) return;
  for (auto& m : status_.modules) {
    auto it = loaded->modules.find(m.verdict.name);
    m.live = it != loaded->modules.end() && (it->second.state.empty() || it->second.state == "Live");
  }
  refresh_devices();
  write_status();
}

int Entrypoint::stop(int code) {
  (void)state_.remove_any(kReadyFile);  // first: the readiness probe must not pass while stopping
  status_.phase = Phase::Stopping;
  set_phase(Phase::Stopping, o_.unload_on_exit ? "stopping; unloading the bundle (--unload-on-exit)"
                                               : "stopping; the modules stay loaded");
  if (o_.unload_on_exit) {
    UnloadOptions u;
    u.root = o_.check.root;
    u.state_dir = o_.state_dir;
    u.firmware_base = o_.check.firmware_base;
    u.nfd_dir = o_.nfd_dir;
    std::ostringstream out, err;
    const int rc = run_unload(u, kernel_, out, err);
    log_line(rc == kUnloadDone ? spdlog::level::info : spdlog::level::warn, "stopping", out.str() + err.str());
  }
  return code;
}

int Entrypoint::run() {
  log_line(spdlog::level::info, "", o_.agent_version + " starting: state " + state_.path() + ", host root " +
                                        root_.root().string() +
                                        (watch_.uevents() ? "" : "; no uevents (" + watch_.uevent_problem() + ")"));
  Outcome outcome = attempt();
  for (;;) {
    if (interrupted_ && interrupted_->kind == WatchEvent::Kind::Terminate) return stop(kRunStopped);
    if (outcome == Outcome::Stop) return stop(kRunStopped);
    if (interrupted_ && interrupted_->kind == WatchEvent::Kind::Reload) {  // a SIGHUP while acting
      log_line(spdlog::level::info, "", interrupted_->signal + " received while deciding or acting: deciding again");
      interrupted_.reset();
      outcome = attempt();
      continue;
    }
    interrupted_.reset();
    // A pass that ended anywhere but ready (SIGHUP while ready, then refused) takes back the
    // ready file and the NFD labels.
    if (outcome != Outcome::Ready) withdraw_ready();
    if (outcome == Outcome::Refused && o_.exit_on_refuse) {
      log_line(spdlog::level::warn, "refused", "exiting (--exit-on-refuse)");
      return kRunRefused;
    }
    std::optional<std::chrono::milliseconds> timeout;
    if (outcome == Outcome::Ready) timeout = o_.recheck_interval;
    if (outcome == Outcome::Waiting) timeout = o_.retry_interval;
    WatchEvent e = watch_.next(timeout);
    switch (e.kind) {
      case WatchEvent::Kind::Terminate:
        log_line(spdlog::level::info, "", e.signal + " received");
        return stop(kRunStopped);
      case WatchEvent::Kind::Reload:
        log_line(spdlog::level::info, "", e.signal + " received: deciding again");
        status_.event.clear();
        lost_ = false;
        outcome = attempt();
        break;
      case WatchEvent::Kind::Timeout:
      case WatchEvent::Kind::Uevent:
        if (outcome == Outcome::Ready) {
          if (e.kind == WatchEvent::Kind::Uevent) log_line(spdlog::level::debug, "ready", "uevent " + e.subsystem + " " + e.action + " " + e.name);
          const std::string why = why_not_ready();
          if (!why.empty()) {
            lose_ready(why);
            outcome = Outcome::Refused;
            lost_ = true;
          }
        } else if (lost_) {
          track();
        } else if (outcome == Outcome::Waiting && e.kind == WatchEvent::Kind::Timeout) {
          outcome = attempt();
        } else if (e.kind == WatchEvent::Kind::Uevent && e.subsystem == "pci" && e.action == "add" &&
                   status_.decision == decision_name(Decision::NoDevice)) {
          outcome = attempt();  // a device was hot-plugged: it may be one of ours
        }
        break;
    }
  }
}

}  // namespace

const char* build_mode_name(BuildMode m) {
  switch (m) {
    case BuildMode::Node: return "node";
    case BuildMode::Sidecar: return "sidecar";
    case BuildMode::Off: return "off";
  }
  return "off";
}

int run_entrypoint(const RunOptions& o) {
  EntrypointSeams real;
  real.events = []() -> Result<std::unique_ptr<Events>> {
    auto w = Watch::open();
    if (!w) return tl::unexpected(w.error());
    return std::make_unique<Watch>(std::move(*w));
  };
  real.kernel = []() -> Result<std::unique_ptr<ModuleControl>> {
    auto k = KernelModules::open();
    if (!k) return tl::unexpected(k.error());
    return std::make_unique<KernelModules>(std::move(*k));
  };
  return run_entrypoint(o, real);
}

int run_entrypoint(const RunOptions& o, const EntrypointSeams& seams) {
  auto fail_start = [](const std::string& what) {
    log_line(spdlog::level::critical, "", what);
    return kExitInputError;
  };
  auto root = probes::HostRoot::from_cli_or_env(o.check.root);
  if (!root) return fail_start("host root: " + root.error().what());
  auto live = kabi::RootFs::open("/");
  if (!live) return fail_start(live.error().what());
  auto state = WritableDir::open(*live, o.state_dir.string(), "state directory");
  if (!state) return fail_start("cannot use the state directory: " + state.error().what());
  // A start that fails from here on leaves no ready file (of an agent that died, or of the
  // previous pod) and a status that says why, never a stale "ready" or a bare "detecting".
  auto refuse_start = [&](const std::string& what) {
    (void)state->remove_any(kReadyFile);
    const nlohmann::json status{{"schema", kStatusSchema},
                                {"phase", phase_name(Phase::Refused)},
                                {"pid", ::getpid()},
                                {"updated", utc_now()},
                                {"reasons", nlohmann::json::array({{{"code", "input_error"}, {"message", what}, {"hint", nullptr}}})}};
    (void)state->write(kStatusFile, safe_dump(status) + "\n");
    return fail_start(what);
  };
  auto lock = InstanceLock::acquire(*state);
  if (!lock) {
    // Another agent's ready file is its own; anything else that keeps the lock from us is ours to report.
    if (lock.error().code == EWOULDBLOCK) return fail_start(lock.error().what());
    return refuse_start(lock.error().what());
  }
  // First, before anything else can fail: whatever `ready` is (a file, a link, a directory), it goes.
  if (auto r = state->remove_any(kReadyFile); !r) return refuse_start("the ready file cannot be removed: " + r.error().what());
  auto boot_id = probes::probe_boot_id(*root);
  if (!boot_id) return refuse_start("boot id: " + boot_id.error().what());
  // Nothing is decided until the status can be written: an unwritable directory is an error
  // now, never a ready file later.
  const nlohmann::json first{{"schema", kStatusSchema}, {"phase", phase_name(Phase::Detecting)}, {"pid", ::getpid()},
                             {"boot_id", *boot_id}, {"agent_version", o.agent_version}, {"updated", utc_now()}};
  if (auto w = state->write(kStatusFile, safe_dump(first) + "\n"); !w)
    return fail_start("cannot write the status: " + w.error().what());
  auto watch = seams.events();
  if (!watch) return refuse_start(watch.error().what());
  auto kernel = seams.kernel();
  if (!kernel) return refuse_start(kernel.error().what());
  // An unreadable journal is not a reason to exit (a crash loop): the agent stays up, refused,
  // naming the file, and acts on nothing until it can be read.
  auto journal = load_journal(*state, *boot_id);
  Entrypoint e(o, std::move(*root), std::move(*state), std::move(*lock), **watch, **kernel, std::move(journal),
               std::move(*boot_id));
  return e.run();
}

}  // namespace agent
