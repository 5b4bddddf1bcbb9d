// The entrypoint's readiness (agent/load/entrypoint.h): the devices bound, the ready file and
// the NFD labels written and withdrawn, the driver lost behind its back.
#include "agent/load/entrypoint.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <vector>

#include "agent/base/clock.h"
#include "agent/base/state_files.h"
#include "agent/decision/plan.h"
#include "agent/load/journal.h"
#include "agent/load/watch.h"
#include "agent/report/log.h"
#include "agent/report/notify.h"
#include "agent/report/status.h"
#include "kabi/text.h"
#include "probes/loaded_modules.h"
#include "probes/pci.h"

namespace agent {
namespace {

// An NFD label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric.
std::string label_value(std::string v) {
  for (char& c : v)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  if (v.size() > 63) v.resize(63);
  while (!v.empty() && !std::isalnum(static_cast<unsigned char>(v.back()))) v.pop_back();
  while (!v.empty() && !std::isalnum(static_cast<unsigned char>(v.front()))) v.erase(v.begin());
  return v.empty() ? "unknown" : v;
}

}  // namespace

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

}  // namespace agent
