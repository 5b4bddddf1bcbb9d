// agent: the Intel GPU driver container's node agent.
#include <signal.h>

#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/base/cli_words.h"
#include "agent/build/build.h"
#include "agent/cli/check.h"
#include "agent/cli/kabi_check.h"
#include "agent/cli/kabi_cli.h"
#include "agent/cli/ready.h"
#include "agent/facts/bundle_manifest.h"
#include "agent/facts/signing.h"
#include "agent/load/lifecycle.h"
#include "agent/report/log.h"
#include "kabi/text.h"

namespace {

const sigset_t& entrypoint_signals() {
  static const sigset_t set = [] {
    sigset_t s;
    sigemptyset(&s);
    for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&s, sig);
    return s;
  }();
  return set;
}

void unblock_signals() { ::sigprocmask(SIG_UNBLOCK, &entrypoint_signals(), nullptr); }

// Each command's --help ends with its exit codes (the README's table has them all) and, where
// a first try needs one, an example.
constexpr const char* kTopFooter = R"(Examples:
  agent kabi check --symvers linux-headers-6.1.0-56-amd64/Module.symvers \
                   --kernel-modules lib/modules/6.1.0-56-amd64 i915.ko
  agent check                   # what would the agent do on this node? (changes nothing)
  agent check --root /host --json
  agent run                     # the driver container's entrypoint: loads kernel modules

`agent --check` is `agent check`. Each command's --help lists its options and exit codes;
every command exits 2 on a usage or input error.)";

constexpr const char* kCheckFooter = R"(Exit codes: 0 prebuilt (the shipped modules would load), 10 build (a node build is
needed and possible), 20 refuse, 21 upgrade pending (an older bundle this agent loaded is in
use), 30 no device this bundle drives, 2 usage or input error.

Examples:
  agent check
  agent check --root /host --bundle /opt/lib/modules/6.1.0-56-amd64 --json)";

constexpr const char* kRunFooter = R"(Exit codes: 0 stopped by SIGTERM/SIGINT, 2 could not start (host root, state directory,
lock, boot id: the status names it), 20 refused with --exit-on-refuse. Without it a refusal
stays up, not ready, the status saying why.

Example (what the DaemonSet runs):
  agent run --root /host --nfd-dir /host/etc/kubernetes/node-feature-discovery/features.d)";

constexpr const char* kUnloadFooter =
    "Exit codes: 0 everything the agent changed in this boot is undone (or nothing was changed),\n"
    "1 something could not be undone (listed), 2 usage or input error.";

constexpr const char* kReadyFooter =
    "Exit codes: 0 ready (the ready file, this boot's ready status, a live agent holding the lock),\n"
    "1 not ready (one line says why), 2 usage error.";

constexpr const char* kBuildFooter =
    "Exit codes: 0 built or cached, 1 failed (recorded; --rebuild tries again), 2 usage or input error.";

constexpr const char* kKabiCheckFooter = R"(Exit codes: 0 every module loadable, 1 at least one refused, 2 usage or input error.

Example:
  agent kabi check --symvers /usr/src/linux-headers-6.1.0-56-amd64/Module.symvers \
                   --kernel-modules /lib/modules/6.1.0-56-amd64 \
                   --kernel-image /boot/vmlinuz-6.1.0-56-amd64 i915.ko xe.ko)";

constexpr const char* kKabiDiffFooter =
    "Exit codes: 0 nothing changed, 1 something did, 2 usage or input error.";
constexpr const char* kKabiMatrixFooter =
    "Exit codes: 0 every kernel can reuse the bundle, 1 some kernel needs a rebuild (or a rebuild\n"
    "cannot help), 2 usage or input error.";
constexpr const char* kKabiExplainFooter =
    "Exit codes: 0 the same type expansion, 1 it differs, 2 no DWARF or another input error.";
constexpr const char* kManifestFooter = "Exit codes: 0 written, 2 usage or input error.";

// The node and the bundle, as `check` and `run` read them.
void add_node_options(CLI::App& cmd, agent::CheckOptions& co, std::string& policy) {
  const char* node = "Node and bundle";
  cmd.add_option("--root", co.root, "Host root (default: $HOST_ROOT, else /)")->group(node);
  cmd.add_option("--bundle", co.bundle,
                 "Directory of the shipped modules (default: /opt/lib/modules/<kver>, else the only bundle)")
      ->group(node);
  cmd.add_option("--symvers", co.symvers,
                 "The running kernel's Module.symvers, tried first and verified like the others")
      ->group(node);
  cmd.add_option("--policy", policy, "Missing __versions entry: strict or upstream (default: strict on Debian kernels)")
      ->check(CLI::IsMember({"strict", "upstream"}))
      ->group(node);
  cmd.add_option("--pci-ids", co.pci_ids, "pci.ids for device names (default: this image's)")->group(node);
  cmd.add_option("--image-headers", co.image_headers,
                 "A Driver Toolkit image's kernel headers, DIR/<kver>: used when the node has none and they are "
                 "proven the running kernel's (default /usr/src/kernels; empty: never)")
      ->group(node);
  cmd.add_option("--bundle-firmware", co.bundle_firmware, "The image's firmware for the bundle (default /opt/lib/firmware)")
      ->group(node);
  cmd.add_option("--firmware-dir", co.firmware_base,
                 "Host directory the bundle's firmware is copied under (default /var/lib/intel-gpu-driver/firmware)")
      ->group(node);
  const char* signing = "Signing";
  cmd.add_option("--signing-key", co.signing.key,
                 "Private key the built modules are signed with (PEM or DER; a mounted Secret)")
      ->group(signing);
  cmd.add_option("--signing-cert", co.signing.cert,
                 "Its X.509 certificate, checked against the kernel's trusted keyrings (alone: judge a sidecar's signer)")
      ->group(signing);
}

void add_state_dir(CLI::App& cmd, std::filesystem::path& state_dir) {
  cmd.add_option("--state-dir", state_dir, "Status, ready file, journal and lock (default /run/intel-gpu-driver)")
      ->group("State");
}

std::vector<std::string> arguments(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return args;
}

int run(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("agent");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("agent: %l: %v");
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"Intel GPU driver container node agent: will this kernel accept the shipped modules, and if not, why?"};
  app.name("agent");
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", AGENT_VERSION_STRING);  // defined in agent/CMakeLists.txt
  app.footer(kTopFooter);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "More detail in logs and reports");
  bool check_flag = false;  // `--check` before a command is rewritten to `check`; only a misplaced one lands here
  app.add_flag("--check", check_flag, "The same as the check command");

  // agent check: the read-only diagnosis of this node.
  agent::CheckOptions co;
  std::string check_policy;
  agent::RunOptions ro;
  CLI::App* check_cmd =
      app.add_subcommand("check", "What would the agent do on this node? Devices, kernel, verdicts, the decision; changes nothing");
  check_cmd->fallthrough()->footer(kCheckFooter);
  add_node_options(*check_cmd, co, check_policy);
  add_state_dir(*check_cmd, ro.state_dir);
  check_cmd->add_flag("--json", co.json, "JSON output (schema 1)");
  check_cmd->add_flag("-q,--quiet", co.quiet, "Print only the summary line (and errors)");

  // agent run: the entrypoint (never implied: a bare `agent` typed on a machine must not insert
  // or remove kernel modules).
  std::string log_format = "text";
  long bind_timeout = 60, retry_interval = 60, recheck_interval = 30;
  std::optional<std::filesystem::path> nfd_dir;
  std::string build_mode = "node";
  long entry_build_timeout = 3600;
  CLI::App* run_cmd = app.add_subcommand(
      "run", "The driver container's entrypoint: load the shipped modules (or build them) or refuse, then watch");
  run_cmd->fallthrough()->footer(kRunFooter);
  add_node_options(*run_cmd, co, check_policy);
  add_state_dir(*run_cmd, ro.state_dir);
  run_cmd->add_option("--nfd-dir", nfd_dir, "Write a Node Feature Discovery features file there when ready")->group("State");
  const char* behaviour = "Behaviour";
  run_cmd->add_flag("--exit-on-refuse", ro.exit_on_refuse, "Exit 20 when refused instead of staying up not ready")
      ->group(behaviour);
  run_cmd->add_flag("--unload-on-exit", ro.unload_on_exit, "On SIGTERM/SIGINT, unload the bundle (as agent unload)")
      ->group(behaviour);
  run_cmd->add_option("--log-format", log_format, "text or json")->check(CLI::IsMember({"text", "json"}))->group(behaviour);
  run_cmd->add_option("--bind-timeout", bind_timeout, "Seconds for the devices to bind after loading (default 60)")
      ->check(CLI::Range(1, 3600))
      ->group(behaviour);
  run_cmd->add_option("--retry-interval", retry_interval, "Seconds between decisions while waiting (default 60)")
      ->check(CLI::Range(1, 86400))
      ->group(behaviour);
  run_cmd->add_option("--recheck-interval", recheck_interval, "Seconds between checks while ready, uevents aside (default 30)")
      ->check(CLI::Range(1, 86400))
      ->group(behaviour);
  const char* building = "Node build";
  run_cmd->add_option("--build-mode", build_mode,
                      "When the prebuilt modules would be refused: node (build here), sidecar (wait for a Driver Toolkit "
                      "sidecar's build in the cache) or off (refuse); default node")
      ->check(CLI::IsMember({"node", "sidecar", "off"}))
      ->group(building);
  run_cmd->add_option("--sources", ro.build.sources, "DKMS source trees to build, <name>-<version>/dkms.conf (default /usr/src)")
      ->group(building);
  run_cmd->add_option("--build-cache", ro.build.cache, "Host directory of the build cache (default /var/lib/intel-gpu-driver/builds)")
      ->group(building);
  run_cmd->add_option("--build-timeout", entry_build_timeout, "Seconds the build may take, or (sidecar) the wait for one (default 3600)")
      ->check(CLI::Range(1, 86400))
      ->group(building);

  // agent unload: a preStop hook, or an uninstall.
  CLI::App* unload_cmd = app.add_subcommand("unload", "Undo what the entrypoint did in this boot (a preStop hook)");
  unload_cmd->fallthrough()->footer(kUnloadFooter);
  unload_cmd->add_option("--root", co.root, "Host root (default: $HOST_ROOT, else /)");
  add_state_dir(*unload_cmd, ro.state_dir);
  unload_cmd->add_option("--firmware-dir", co.firmware_base,
                         "Host directory the firmware was copied under (default /var/lib/intel-gpu-driver/firmware)");
  unload_cmd->add_option("--nfd-dir", nfd_dir, "Where the entrypoint wrote its Node Feature Discovery file");
  unload_cmd->add_flag("--json", co.json, "JSON output (schema 1)");
  unload_cmd->add_option("--log-format", log_format, "text or json")->check(CLI::IsMember({"text", "json"}));

  CLI::App* ready_cmd = app.add_subcommand(
      "ready", "Exit 0 only when this boot's agent is live and its driver ready (a readiness probe; needs no shell)");
  ready_cmd->fallthrough()->footer(kReadyFooter);
  ready_cmd->add_option("--root", co.root, "Host root (default: $HOST_ROOT, else /)");
  add_state_dir(*ready_cmd, ro.state_dir);

  CLI::App* kabi = app.add_subcommand("kabi", "kABI tools for CI: will a kernel accept these modules?");
  kabi->require_subcommand(1);
  kabi->fallthrough();
  CLI::App* kcheck = kabi->add_subcommand("check", "Predict init_module() for MODULE.ko... on a target kernel");
  kcheck->fallthrough()->footer(kKabiCheckFooter);
  agent::KabiCheckOptions ko;
  std::string policy = "strict";
  kcheck->add_option("--symvers", ko.symvers, "The target kernel's Module.symvers (plain, .gz, .xz)")->required();
  kcheck->add_option("--kernel-modules", ko.kernel_modules, "The target kernel's module tree (/lib/modules/<kver>)")
      ->required();
  kcheck->add_option("--kernel-image", ko.kernel_image, "The target kernel image (vmlinuz), for its trusted certificates")
      ->check(CLI::ExistingFile);
  kcheck->add_option("--kernel-btf", ko.kernel_btf,
                     "The target kernel's BTF (a vmlinux with .BTF, or /sys/kernel/btf/vmlinux's bytes); default: "
                     "the linux-headers vmlinux at <kernel-modules>/build/vmlinux")
      ->check(CLI::ExistingFile);
  kcheck->add_option("--policy", policy, "Missing __versions entry: strict (refuse, Debian) or upstream (warn)")
      ->check(CLI::IsMember({"strict", "upstream"}));
  kcheck->add_flag("--sig-enforce", ko.sig_enforce, "Predict as if module.sig_enforce=1");
  kcheck->add_flag("--lockdown", ko.lockdown, "Predict as if the kernel were locked down (lockdown=integrity)");
  kcheck->add_option("--kernel-cmdline", ko.kernel_cmdline,
                     "Predict with this kernel command line: module_blacklist=, nomodeset, <module>.<param>= "
                     "(the parameters the module gets)");
  kcheck->add_option("--loaded", ko.loaded, "Predict as if these modules were loaded (as /proc/modules lists them)")
      ->delimiter(',');
  kcheck->add_flag("--modules-disabled", ko.modules_disabled, "Predict as if kernel.modules_disabled were 1");
  kcheck->add_flag("--no-cap-sys-module", ko.no_cap_sys_module,
                   "Predict for a loading process without CAP_SYS_MODULE (a pod without it)");
  kcheck->add_flag("--json", ko.json, "JSON output (schema 1)");
  kcheck->add_flag("-q,--quiet", ko.quiet, "Print only the summary line (and errors)");
  kcheck->add_option("--stablelist", ko.stablelist, "kABI stablelist: how much of the modules' imports it covers");
  kcheck->add_option("modules", ko.modules, "Modules to check (.ko, .ko.xz, .ko.zst, .ko.gz)")->required();

  // agent build: the image's DKMS sources against the running kernel, cached (agent/build/build.h).
  CLI::App* build_cmd = app.add_subcommand("build", "Build the image's DKMS sources for the running kernel (cached)");
  build_cmd->fallthrough()->footer(kBuildFooter);
  agent::BuildOptions bo;
  long build_timeout = 3600;
  build_cmd->add_option("--root", bo.root, "Host root (default: $HOST_ROOT, else /)");
  build_cmd->add_option("--sources", bo.sources, "DKMS source trees, <name>-<version>/dkms.conf (default /usr/src)");
  build_cmd->add_option("--build-cache,--cache", bo.cache,
                        "Host directory of the build cache (default /var/lib/intel-gpu-driver/builds)");
  build_cmd->add_option("--build-timeout,--timeout", build_timeout, "Seconds the build may take (default 3600)")
      ->check(CLI::Range(1, 86400));
  build_cmd->add_flag("--rebuild", bo.rebuild, "Build even when a failure is recorded for these inputs");
  build_cmd->add_option("--image-headers", bo.image_headers,
                        "A Driver Toolkit image's kernel headers, DIR/<kver> (default /usr/src/kernels; empty: never)");
  build_cmd->add_flag("--json", bo.json, "JSON output (schema 1)");
  build_cmd->add_option("--signing-key", bo.signing.key, "Private key the built modules are signed with (PEM or DER)")
      ->group("Signing");
  build_cmd->add_option("--signing-cert", bo.signing.cert, "Its X.509 certificate (PEM or DER)")->group("Signing");

  agent::KabiPipelineCli pipeline(*kabi);  // kabi diff, matrix, explain
  kabi->get_subcommand("diff")->footer(kKabiDiffFooter);
  kabi->get_subcommand("matrix")->footer(kKabiMatrixFooter);
  kabi->get_subcommand("explain")->footer(kKabiExplainFooter);
  agent::ManifestCli manifest_cli(app);  // agent manifest (agent/facts/bundle_manifest.h)
  app.get_subcommand("manifest")->fallthrough()->footer(kManifestFooter);

  const std::vector<std::string> args = agent::check_flag_as_command(arguments(argc, argv));
  const bool help_asked = std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a == "-h" || a == "--help" || a == "--version";
  });
  if (auto bad = agent::unknown_word(app, args); bad && !help_asked) {
    std::cerr << "agent: " << *bad << "\nRun '" << agent::command_words(app, args) << " --help' for usage.\n";
    return agent::kExitInputError;
  }
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    return app.exit(CLI::CallForHelp());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // help or version
    const std::string where = agent::command_words(app, args);  // "agent kabi check"
    std::cerr << "agent: " << (where == "agent" ? "" : where.substr(6) + ": ") << e.what() << "\nRun '" << where
              << " --help' for usage.\n";
    return agent::kExitInputError;
  }
  agent::mask_option_values(argc, argv, "--signing-key");  // parsed: out of /proc/<pid>/cmdline
  if (verbose) spdlog::set_level(spdlog::level::debug);
  if (!check_policy.empty())
    co.policy = check_policy == "upstream" ? agent::kabi::MissingVersionPolicy::Upstream
                                           : agent::kabi::MissingVersionPolicy::Strict;
  co.state_dir = ro.state_dir;
  if (check_flag) {
    std::cerr << "agent: --check is the check command, not an option of another command\n";
    return agent::kExitInputError;
  }

  // Only the entrypoint reads its signals (a signalfd, agent/watch): every other command gets the
  // default actions back, with whatever arrived meanwhile.
  if (!run_cmd->parsed()) unblock_signals();
  if (manifest_cli.parsed()) return manifest_cli.run(std::cout, std::cerr);
  if (ready_cmd->parsed()) {
    agent::ReadyOptions r;
    r.root = co.root;
    r.state_dir = ro.state_dir;
    return agent::run_ready(r, std::cout);
  }
  if (build_cmd->parsed()) {
    agent::setup_logging(agent::LogFormat::Text, verbose ? spdlog::level::debug : spdlog::level::info);
    bo.timeout = std::chrono::seconds(build_timeout);
    return agent::run_build(bo, std::cout, std::cerr);
  }
  if (check_cmd->parsed()) {
    co.verbose = verbose;
    return agent::run_check(co, std::cout, std::cerr);
  }
  if (unload_cmd->parsed()) {
    agent::setup_logging(log_format == "json" ? agent::LogFormat::Json : agent::LogFormat::Text,
                         verbose ? spdlog::level::debug : spdlog::level::info);
    agent::UnloadOptions uo;
    uo.root = co.root;
    uo.state_dir = ro.state_dir;
    uo.firmware_base = co.firmware_base;
    uo.nfd_dir = nfd_dir ? *nfd_dir : std::filesystem::path(agent::kDefaultNfdDir);
    uo.json = co.json;
    return agent::run_unload(uo, std::cout, std::cerr);
  }
  if (run_cmd->parsed()) {
    agent::setup_logging(log_format == "json" ? agent::LogFormat::Json : agent::LogFormat::Text,
                         verbose ? spdlog::level::debug : spdlog::level::info);
    ro.check = co;
    ro.nfd_dir = nfd_dir;
    ro.bind_timeout = std::chrono::seconds(bind_timeout);
    ro.retry_interval = std::chrono::seconds(retry_interval);
    ro.recheck_interval = std::chrono::seconds(recheck_interval);
    ro.agent_version = AGENT_VERSION_STRING;
    ro.build_mode = build_mode == "sidecar" ? agent::BuildMode::Sidecar
                    : build_mode == "off"   ? agent::BuildMode::Off
                                            : agent::BuildMode::Node;
    ro.build.timeout = std::chrono::seconds(entry_build_timeout);
    ro.build.image_headers = co.image_headers;
    ro.build.signing = co.signing;
    return agent::run_entrypoint(ro);
  }
  if (kcheck->parsed()) {
    ko.policy = policy == "upstream" ? agent::kabi::MissingVersionPolicy::Upstream : agent::kabi::MissingVersionPolicy::Strict;
    ko.verbose = verbose;
    return agent::run_kabi_check(ko, std::cout, std::cerr);
  }
  if (auto rc = pipeline.run(std::cout, std::cerr, verbose)) return *rc;
  // No command: the usage, never the entrypoint (which loads and removes kernel modules).
  std::cerr << app.help() << "\nagent: no command given; the driver container's entrypoint is `agent run`\n";
  return agent::kExitInputError;
}

}  // namespace

// One handler for everything: a failure nobody foresaw is exit 2 with a message, never an
// abort (a std::bad_alloc, a library's exception on input it did not expect).
int main(int argc, char** argv) {
  // First: the entrypoint's signals wait (the watch reads them from a signalfd later) instead
  // of killing an agent that has not set up its handling yet; a SIGHUP in the first
  // milliseconds is a decision made again, never a death.
  ::sigprocmask(SIG_BLOCK, &entrypoint_signals(), nullptr);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "agent: internal error: " << agent::printable(e.what()) << '\n';
  } catch (...) {
    std::cerr << "agent: internal error: unknown exception\n";
  }
  return agent::kExitInputError;
}
