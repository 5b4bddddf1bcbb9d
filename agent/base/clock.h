// The wall clock as the agent's status, log and state files write it.
#pragma once

#include <string>

namespace agent {

// Now, as "2026-11-29T22:04:45.123Z".
[[nodiscard]] std::string utc_now();

}  // namespace agent
