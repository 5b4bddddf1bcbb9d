#include "agent/load/lifecycle.h"

#include "agent/load/entrypoint.h"
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <vector>

#include "agent/base/clock.h"
#include "agent/base/state_files.h"
#include "agent/decision/plan.h"
#include "agent/load/journal.h"
#include "agent/load/kernel_modules.h"
#include "agent/load/undo.h"
#include "agent/load/watch.h"
#include "agent/report/log.h"
#include "agent/report/notify.h"
#include "agent/report/render.h"
#include "agent/report/status.h"
#include "kabi/text.h"
#include "probes/kernel.h"
#include "probes/loaded_modules.h"
#include "probes/policy.h"

namespace agent {

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
