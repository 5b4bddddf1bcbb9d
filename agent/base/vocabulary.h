// The agent's vocabulary: every reason code and exit code it reports, each defined once here.
// The README's lists are tested against kReasonCodes and kExitCodes (tests/unit/agent/
// test_vocabulary.cpp), both ways. The kABI rules' reason codes are kabi::reason's (kabi/rules.h).
#pragma once

#include <string_view>

namespace agent {

namespace reason {
// The decision's (agent check; the start of agent run's status reasons).
inline constexpr const char* kNoDevice = "no_device";
inline constexpr const char* kModulesLoadable = "modules_loadable";
inline constexpr const char* kModulesRefused = "modules_refused";
inline constexpr const char* kSymversPartial = "symvers_partial";          // union covers all: note
inline constexpr const char* kSymversIncomplete = "symvers_incomplete";    // union misses symbols
inline constexpr const char* kSymversUnverified = "symvers_unverified";    // note
inline constexpr const char* kConflictInUse = "conflict_in_use";
inline constexpr const char* kConflictBuiltin = "conflict_builtin";
inline constexpr const char* kUpgradePending = "upgrade_pending";  // our older bundle, in use
inline constexpr const char* kConflictRemovable = "conflict_removable";    // note
inline constexpr const char* kBundleAlreadyLoaded = "bundle_already_loaded";  // note: same build id
inline constexpr const char* kNodeRefusesLoad = "node_refuses_load";  // no build helps (modules_disabled, ...)
inline constexpr const char* kBuildPossible = "build_possible";
inline constexpr const char* kNoKernelHeaders = "no_kernel_headers";
inline constexpr const char* kHeadersMismatch = "kernel_headers_mismatch";
inline constexpr const char* kBuildUnsignedEnforced = "build_unsigned_enforced";
inline constexpr const char* kSigningKeyUnusable = "signing_key_unusable";    // the files given cannot be used
inline constexpr const char* kSigningKeyUntrusted = "signing_key_untrusted";  // enforcing, not trusted (or unknown)
inline constexpr const char* kBuildSigned = "build_signed";                   // note: who signs, how trusted
// No symvers file: the kernel's own modules show a symbol's CRC, not whether it is GPL-only or
// in which namespace, and a bundle module needs to know.
inline constexpr const char* kSymversFactsUnknown = "symvers_facts_unknown";
inline constexpr const char* kBundleManifestMismatch = "bundle_manifest_mismatch";

// The entrypoint's (agent run's status), added to the decision's.
inline constexpr const char* kInputError = "input_error";              // the diagnosis could not be made
inline constexpr const char* kRemoveFailed = "remove_failed";          // a conflicting module would not go
inline constexpr const char* kFirmwareFailed = "firmware_failed";      // the firmware could not be installed
inline constexpr const char* kFirmwarePathForeign = "firmware_path_foreign";  // note: someone else's path kept
inline constexpr const char* kInsertFailed = "insert_failed";          // the kernel refused a module, or its init failed
inline constexpr const char* kNotTheCheckedModule = "module_mismatch"; // bytes or live build id differ from the checked ones
inline constexpr const char* kDeviceNotBound = "device_not_bound";     // loaded, but a device did not bind in time
inline constexpr const char* kDriverLost = "driver_lost";              // while ready: a module went or a device unbound
inline constexpr const char* kRollbackIncomplete = "rollback_incomplete";
// Nothing is acted on that could not be recorded first.
inline constexpr const char* kJournalUnreadable = "journal_unreadable";  // undo.json cannot be read: nothing is done
inline constexpr const char* kJournalUnwritable = "journal_unwritable";  // a step could not be recorded before it acts
inline constexpr const char* kStatusUnwritable = "status_unwritable";    // the status could not be written: nothing is done
inline constexpr const char* kUnjournaledModule = "unjournaled_module";  // note: live with the bundle's build, not in the journal
// The entrypoint's build branch (the decision was build).
inline constexpr const char* kBuildFailed = "build_failed";            // failed, or recorded as failed: reason and log named
inline constexpr const char* kBuildUnavailable = "build_unavailable";  // cannot start: sources, headers, compiler, cache
inline constexpr const char* kBuildDisabled = "build_disabled";        // --build-mode off
inline constexpr const char* kBuildWaitTimeout = "build_wait_timeout"; // sidecar: no result in the cache in time

// A failed build's (agent build's `reason`, failed.json); kBuildFailed, kBuildUnsignedEnforced,
// kSigningKeyUnusable and kSigningKeyUntrusted too.
inline constexpr const char* kBuildTimeout = "build_timeout";
inline constexpr const char* kModulesMissing = "modules_missing";    // dkms succeeded without a module
inline constexpr const char* kKabiRefused = "kabi_refused";          // a built module would not load
inline constexpr const char* kSigningFailed = "signing_failed";
inline constexpr const char* kInterrupted = "interrupted";           // SIGTERM/SIGINT: not recorded
inline constexpr const char* kBuildEnvironment = "build_environment";  // the node cannot build: not recorded
}  // namespace reason

// Which lists a reason code is in (a code may be in several).
enum ReasonList : unsigned { kDecisionReason = 1, kEntrypointReason = 2, kBuildReason = 4 };
struct ReasonCode {
  std::string_view code;
  unsigned lists;
};
inline constexpr ReasonCode kReasonCodes[] = {
    {reason::kNoDevice, kDecisionReason},
    {reason::kModulesLoadable, kDecisionReason},
    {reason::kModulesRefused, kDecisionReason},
    {reason::kSymversPartial, kDecisionReason},
    {reason::kSymversIncomplete, kDecisionReason},
    {reason::kSymversUnverified, kDecisionReason},
    {reason::kConflictInUse, kDecisionReason},
    {reason::kConflictBuiltin, kDecisionReason},
    {reason::kUpgradePending, kDecisionReason | kEntrypointReason},  // the entrypoint waits on it
    {reason::kConflictRemovable, kDecisionReason},
    {reason::kBundleAlreadyLoaded, kDecisionReason},
    {reason::kNodeRefusesLoad, kDecisionReason},
    {reason::kBuildPossible, kDecisionReason},
    {reason::kNoKernelHeaders, kDecisionReason},
    {reason::kHeadersMismatch, kDecisionReason},
    {reason::kBuildUnsignedEnforced, kDecisionReason | kBuildReason},
    {reason::kSigningKeyUnusable, kDecisionReason | kBuildReason},
    {reason::kSigningKeyUntrusted, kDecisionReason | kBuildReason},
    {reason::kBuildSigned, kDecisionReason},
    {reason::kSymversFactsUnknown, kDecisionReason},
    {reason::kBundleManifestMismatch, kDecisionReason},
    {reason::kInputError, kEntrypointReason},
    {reason::kRemoveFailed, kEntrypointReason},
    {reason::kFirmwareFailed, kEntrypointReason},
    {reason::kFirmwarePathForeign, kEntrypointReason},
    {reason::kInsertFailed, kEntrypointReason},
    {reason::kNotTheCheckedModule, kEntrypointReason},
    {reason::kDeviceNotBound, kEntrypointReason},
    {reason::kDriverLost, kEntrypointReason},
    {reason::kRollbackIncomplete, kEntrypointReason},
    {reason::kJournalUnreadable, kEntrypointReason},
    {reason::kJournalUnwritable, kEntrypointReason},
    {reason::kStatusUnwritable, kEntrypointReason},
    {reason::kUnjournaledModule, kEntrypointReason},
    {reason::kBuildFailed, kEntrypointReason | kBuildReason},
    {reason::kBuildUnavailable, kEntrypointReason},
    {reason::kBuildDisabled, kEntrypointReason},
    {reason::kBuildWaitTimeout, kEntrypointReason},
    {reason::kBuildTimeout, kBuildReason},
    {reason::kModulesMissing, kBuildReason},
    {reason::kKabiRefused, kBuildReason},
    {reason::kSigningFailed, kBuildReason},
    {reason::kInterrupted, kBuildReason},
    {reason::kBuildEnvironment, kBuildReason},
};

// Exit codes. Every command exits kExitInputError on a usage error or input it cannot read.
inline constexpr int kExitInputError = 2;
// agent kabi check, matrix, diff, explain.
inline constexpr int kExitLoadable = 0;  // every module loadable; nothing changed; the same
inline constexpr int kExitRefused = 1;   // at least one refused (or a rebuild needed); a change
// agent check (agent --check): the decision's.
inline constexpr int kCheckPrebuilt = 0;         // the prebuilt modules would load
inline constexpr int kCheckBuild = 10;           // a build is needed and possible
inline constexpr int kCheckRefuse = 20;          // the agent would refuse
inline constexpr int kCheckUpgradePending = 21;  // it would wait: its older bundle is in use
inline constexpr int kCheckNoDevice = 30;        // no device this bundle drives
// agent run.
inline constexpr int kRunStopped = 0;   // stopped by SIGTERM/SIGINT
inline constexpr int kRunRefused = 20;  // refused, with --exit-on-refuse
// agent unload.
inline constexpr int kUnloadDone = 0;
inline constexpr int kUnloadIncomplete = 1;  // something could not be undone (listed)
// agent ready.
inline constexpr int kReadyYes = 0;
inline constexpr int kReadyNo = 1;
// agent build.
inline constexpr int kBuildOk = 0;      // built, or found in the cache
inline constexpr int kBuildFailed = 1;  // failed (recorded)
// agent manifest.
inline constexpr int kManifestWritten = 0;

// Each command's exit codes besides kExitInputError.
struct ExitCode {
  std::string_view command;
  int code;
};
inline constexpr ExitCode kExitCodes[] = {
    {"agent kabi check", kExitLoadable},   {"agent kabi check", kExitRefused},
    {"agent kabi matrix", kExitLoadable},  {"agent kabi matrix", kExitRefused},
    {"agent kabi diff", kExitLoadable},    {"agent kabi diff", kExitRefused},
    {"agent kabi explain", kExitLoadable}, {"agent kabi explain", kExitRefused},
    {"agent check", kCheckPrebuilt},       {"agent check", kCheckBuild},
    {"agent check", kCheckRefuse},         {"agent check", kCheckUpgradePending},
    {"agent check", kCheckNoDevice},       {"agent run", kRunStopped},
    {"agent run", kRunRefused},            {"agent unload", kUnloadDone},
    {"agent unload", kUnloadIncomplete},   {"agent ready", kReadyYes},
    {"agent ready", kReadyNo},             {"agent build", kBuildOk},
    {"agent build", kBuildFailed},         {"agent manifest", kManifestWritten},
};

}  // namespace agent
