// reason_hint(): advice per reason code, with the node's kernel and headers package filled in.
#include "agent/decision/hints.h"

#include "catch2_compat.h"

#include "agent/decision/decide.h"
#include "agent/facts/bundle_manifest.h"

using namespace agent;
using Catch::Matchers::Contains;

namespace {

const HintFacts kDebian{"6.1.0-56-amd64", "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP "
                                          "PREEMPT_DYNAMIC Debian 6.1.158-1 (2026-11-20)"};
const HintFacts kRhel{"5.14.0-427.el9.x86_64", "Linux version 5.14.0-427.el9.x86_64 (mockbuild@x86-64-01.build.eng) "
                                               "(gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3)) #1 SMP PREEMPT_DYNAMIC"};

}  // namespace

TEST_CASE("hints: the headers package by distribution") {
  CHECK(headers_package(kDebian) == "linux-headers-6.1.0-56-amd64");
  CHECK(headers_package(kRhel) == "kernel-devel-5.14.0-427.el9.x86_64");
  CHECK(headers_package({"6.8.0-45-generic", "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075) #45-Ubuntu SMP"}) ==
        "linux-headers-6.8.0-45-generic");
  CHECK(headers_package({"6.6.1-custom", "Linux version 6.6.1-custom (me@box) #1 SMP"}) ==
        "the kernel headers package for 6.6.1-custom");
}

TEST_CASE("hints: what a refusal needs, with the kernel named") {
  const std::string headers = reason_hint(reason::kNoKernelHeaders, kDebian);
  CHECK_THAT(headers, Contains("install linux-headers-6.1.0-56-amd64"));
  CHECK_THAT(headers, Contains("--build-mode sidecar"));
  CHECK_THAT(headers, Contains("ship an image built for 6.1.0-56-amd64"));
  CHECK_THAT(reason_hint(reason::kNoKernelHeaders, kRhel), Contains("install kernel-devel-5.14.0-427.el9.x86_64"));
  CHECK_THAT(reason_hint(reason::kModulesRefused, kDebian), Contains("ship an image built for 6.1.0-56-amd64"));
  CHECK_THAT(reason_hint(reason::kBuildUnsignedEnforced, kDebian), Contains("--signing-key"));
  CHECK_THAT(reason_hint("build_disabled", kDebian), Contains("--build-mode sidecar"));
}

TEST_CASE("hints: every reason that stops the agent has one; a note has none") {
  using namespace reason;
  for (const char* code : {kNoDevice, kModulesRefused, kSymversIncomplete, kSymversFactsUnknown, kSymversUnverified,
                           kConflictInUse, kConflictBuiltin, kUpgradePending, kNoKernelHeaders, kHeadersMismatch,
                           kBuildUnsignedEnforced, kSigningKeyUnusable, kSigningKeyUntrusted, kBundleManifestMismatch,
                           // the entrypoint's (agent/load/lifecycle.cpp)
                           "remove_failed", "firmware_failed", "insert_failed", "module_mismatch", "device_not_bound",
                           "rollback_incomplete", "journal_unreadable", "journal_unwritable", "status_unwritable",
                           "build_failed", "build_disabled", "build_wait_timeout"}) {
    INFO(code);
    const std::string hint = reason_hint(code, kDebian);
    CHECK_FALSE(hint.empty());
    CHECK(hint.find('{') == std::string::npos);  // every placeholder filled
  }
  for (const char* code : {kModulesLoadable, kSymversPartial, kConflictRemovable, kBundleAlreadyLoaded, kBuildPossible,
                           kBuildSigned, "unjournaled_module", "no_such_code"}) {
    INFO(code);
    CHECK(reason_hint(code, kDebian).empty());
  }
}

TEST_CASE("hints: attached to each reason by its code") {
  std::vector<DecisionReason> reasons{{reason::kModulesRefused, "1 of 1 bundle modules would be refused"},
                                      {reason::kNoKernelHeaders, "no kernel headers for 6.1.0-56-amd64"},
                                      {reason::kBuildPossible, "kernel headers for 6.1.0-56-amd64"}};
  attach_hints(reasons, kDebian);
  CHECK(reasons[0].hint == reason_hint(reason::kModulesRefused, kDebian));
  CHECK_THAT(reasons[1].hint, Contains("linux-headers-6.1.0-56-amd64"));
  CHECK(reasons[2].hint.empty());
}
