// `agent ready`: the readiness probe (exec, no shell). Ready means all of: the ready file is
// there (a regular file), the status says `ready` for this boot, and a live agent holds the
// state directory's lock. A ready file left by a pod whose preStop never ran (its agent killed)
// fails the last check; one of another boot the second.
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>

#include "agent/base/vocabulary.h"
#include "agent/cli/check.h"
#include "kabi/result.h"

namespace agent {

struct ReadyOptions {
  std::optional<std::filesystem::path> root;  // for the boot id
  std::filesystem::path state_dir = kDefaultStateDir;
};

// "" when ready, else why not (one line).
[[nodiscard]] std::string why_not_ready(const ReadyOptions& o);

// Prints "ready" or "not ready: <why>"; kReadyYes or kReadyNo.
int run_ready(const ReadyOptions& o, std::ostream& out);

}  // namespace agent
