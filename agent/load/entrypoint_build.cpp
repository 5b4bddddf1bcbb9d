// The entrypoint's build branch (agent/load/entrypoint.h): the modules built here, or a
// sidecar's build found in the cache, staged and diagnosed as the set to load.
#include "agent/load/entrypoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "agent/base/state_files.h"
#include "agent/decision/plan.h"
#include "agent/load/journal.h"
#include "agent/load/watch.h"
#include "agent/report/log.h"
#include "agent/report/status.h"
#include "kabi/file_io.h"
#include "kabi/module.h"
#include "kabi/text.h"

namespace agent {
namespace {

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

}  // namespace

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

}  // namespace agent
