// What to do about a reason: one line of advice per reason code (the decision's and the
// entrypoint's), shown under the reason by `agent --check` and carried as `hint` next to it in
// the JSON and in status.json. Data and a pure function, so every hint is a unit test.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace agent {

struct DecisionReason;

// The node facts a hint names.
struct HintFacts {
  std::string release;       // the running kernel
  std::string proc_version;  // /proc/version: which distribution built it
};

// The package with the kernel's headers (Makefile and Module.symvers) for this release:
// "linux-headers-<kver>" (Debian, Ubuntu), "kernel-devel-<kver>" (RHEL, CentOS, Fedora), or
// "the kernel headers package for <kver>" when the distribution is not known.
[[nodiscard]] std::string headers_package(const HintFacts& f);

// The advice for a reason code; "" for a note (nothing to do) or a code without one.
[[nodiscard]] std::string reason_hint(std::string_view code, const HintFacts& f);

// Sets every reason's hint from its code.
void attach_hints(std::vector<DecisionReason>& reasons, const HintFacts& f);

}  // namespace agent
