// Why a build produced no modules, typed: the reason code it reports follows from the kind, and
// so does whether the cache records it - a failure of these inputs, not retried until one of
// them changes - or not: the node's set-up or a stop, which the next run must try again.
#pragma once

#include <string>

#include "agent/base/vocabulary.h"

namespace agent {

struct BuildFailure {
  enum class Kind {
    UnsignedEnforced,  // the kernel enforces signatures and no key is given
    KeyUntrusted,      // ... and it does not trust the key
    KeyUnusable,       // the key cannot be read or is not the certificate's, now
    Environment,       // the node cannot build (headers naming what is missing, the namespace)
    Interrupted,       // SIGTERM/SIGINT
    Failed,            // dkms failed
    TimedOut,
    ModulesMissing,    // dkms succeeded without a module
    SigningFailed,
    KabiRefused,       // a built module would not load
  };
  Kind kind = Kind::Failed;
  std::string detail;  // one line for people
};

// The build reason (agent/base/vocabulary.h) a kind reports.
[[nodiscard]] constexpr const char* failure_reason(BuildFailure::Kind k) noexcept {
  using K = BuildFailure::Kind;
  switch (k) {
    case K::UnsignedEnforced: return reason::kBuildUnsignedEnforced;
    case K::KeyUntrusted: return reason::kSigningKeyUntrusted;
    case K::KeyUnusable: return reason::kSigningKeyUnusable;
    case K::Environment: return reason::kBuildEnvironment;
    case K::Interrupted: return reason::kInterrupted;
    case K::Failed: return reason::kBuildFailed;
    case K::TimedOut: return reason::kBuildTimeout;
    case K::ModulesMissing: return reason::kModulesMissing;
    case K::SigningFailed: return reason::kSigningFailed;
    case K::KabiRefused: return reason::kKabiRefused;
  }
  return reason::kBuildFailed;
}

// Whether the cache records a failure of this kind (failed.json), so that the same inputs are
// not built again.
[[nodiscard]] constexpr bool failure_recorded(BuildFailure::Kind k) noexcept {
  using K = BuildFailure::Kind;
  return k == K::Failed || k == K::TimedOut || k == K::ModulesMissing || k == K::SigningFailed || k == K::KabiRefused;
}

}  // namespace agent
