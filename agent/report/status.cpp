#include "agent/report/status.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <unistd.h>

#include "agent/report/render.h"
#include "kabi/report.h"

namespace agent {

using nlohmann::json;

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::Detecting: return "detecting";
    case Phase::Building: return "building";
    case Phase::Loading: return "loading";
    case Phase::WaitingForBuild: return "waiting-for-build";
    case Phase::Ready: return "ready";
    case Phase::Refused: return "refused";
    case Phase::UpgradePending: return "upgrade-pending";
    case Phase::Stopping: return "stopping";
  }
  return "refused";
}

json to_json(const LoadFailure& f) {
  return {{"module", f.module},
          {"errno", f.err},
          {"errno_name", kabi::errno_name(f.err)},
          {"message", f.message},
          {"kernel_log", f.kernel_log}};
}

json to_json(const BuildState& b) {
  json j{{"mode", b.mode}, {"progress", b.progress.empty() ? json(nullptr) : json(b.progress)}};
  if (!b.result) {
    j["result"] = nullptr;
    return j;
  }
  const BuildResult& r = *b.result;
  auto str_or_null = [](const std::string& v) { return v.empty() ? json(nullptr) : json(v); };
  j["result"] = build_outcome_name(r.result);
  j["key"] = str_or_null(r.key);
  j["entry"] = str_or_null(r.entry);
  j["log"] = str_or_null(r.log);
  j["reason"] = str_or_null(r.reason);
  j["detail"] = str_or_null(r.detail);
  j["signer"] = r.signer.empty() ? json(nullptr) : json{{"name", r.signer}, {"key_id", r.signing_key_id}};
  j["compiler"] = str_or_null(r.compiler);
  j["build_seconds"] = r.build_seconds;
  j["total_seconds"] = r.total_seconds;
  return j;
}

json to_json(const SigningState& s) {
  auto str_or_null = [](const std::string& v) { return v.empty() ? json(nullptr) : json(v); };
  return {{"signer", str_or_null(s.signer)},
          {"key_id", str_or_null(s.key_id)},
          {"trust", str_or_null(s.trust)},
          {"problem", str_or_null(s.problem)},
          {"warnings", s.warnings}};
}

json to_json(const Status& s, const std::string& updated) {
  auto str_or_null = [](const std::string& v) { return v.empty() ? json(nullptr) : json(v); };
  json devices = json::array();
  for (const auto& d : s.devices) {
    json j = to_json(d.report);
    j["driver_module"] = str_or_null(d.driver_module);
    j["bound"] = d.bound;
    j["drm"] = d.drm;
    devices.push_back(std::move(j));
  }
  json modules = json::array();
  for (const auto& m : s.modules) {
    json j = kabi::module_verdict_json(m.verdict);
    j["sha256"] = str_or_null(m.sha256);
    j["build_id"] = str_or_null(m.build_id);
    j["inserted"] = m.inserted;
    j["live"] = m.live;
    modules.push_back(std::move(j));
  }
  json reasons = json::array(), conflicts = json::array();
  for (const auto& r : s.reasons) reasons.push_back(to_json(r));
  for (const auto& c : s.conflicts) conflicts.push_back(to_json(c));
  auto opt = [](const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); };
  return {
      {"schema", kStatusSchema},
      {"agent_version", s.agent_version},
      {"boot_id", s.boot_id},
      {"pid", static_cast<long>(::getpid())},
      {"kernel", {{"release", s.release}, {"version", s.kernel_version}}},
      {"phase", phase_name(s.phase)},
      {"decision", str_or_null(s.decision)},
      {"source", str_or_null(s.source)},
      {"since", s.since},
      {"updated", updated},
      {"devices", devices},
      {"modules", modules},
      {"reasons", reasons},
      {"conflicts", conflicts},
      {"removed", s.removed},
      {"firmware",
       {{"source_dir", str_or_null(s.firmware.source_dir)},
        {"dir", str_or_null(s.firmware.dir)},
        {"digest", str_or_null(s.firmware.digest)},
        {"files", s.firmware.files},
        {"previous_path", opt(s.firmware.previous_path)},
        {"path", opt(s.firmware.path)},
        {"conflict", str_or_null(s.firmware.conflict)}}},
      {"failure", s.failure ? to_json(*s.failure) : json(nullptr)},
      {"build", s.build ? to_json(*s.build) : json(nullptr)},
      {"signing", s.signing ? to_json(*s.signing) : json(nullptr)},
      {"event", str_or_null(s.event)},
      {"fast_path", s.fast_path},
      {"bundle_manifest", s.manifest ? manifest_identity_json(*s.manifest) : json(nullptr)},
      {"timings", s.timings_ms},
  };
}

}  // namespace agent
