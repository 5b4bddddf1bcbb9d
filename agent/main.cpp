// agent: the Intel GPU driver container's node agent.
#include <signal.h>

#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/build.h"
#include "agent/bundle_manifest.h"
#include "agent/check.h"
#include "agent/kabi_check.h"
#include "agent/lifecycle.h"
#include "agent/log.h"
#include "agent/ready.h"
#include "agent/signing.h"
#include "agent/kabi_cli.h"
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

int run(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("agent");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("agent: %l: %v");
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"Intel GPU driver container node agent"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", AGENT_VERSION_STRING);  // defined in agent/CMakeLists.txt
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "More detail in logs and reports");

  // agent --check: the read-only diagnosis of this node.
  agent::CheckOptions co;
  bool check = false;
  std::string check_policy;
  app.add_flag("--check", check, "Read-only diagnosis: devices, kernel, verdicts and the decision; changes nothing");
  app.add_option("--root", co.root, "Host root (default: $HOST_ROOT, else /)");
  app.add_option("--bundle", co.bundle, "The shipped modules (default: /opt/lib/modules/<kver>, else the only bundle)");
  app.add_option("--symvers", co.symvers, "The running kernel's Module.symvers, tried first and verified like the others");
  app.add_option("--policy", check_policy, "Missing __versions entry: strict or upstream (default: strict on Debian kernels)")
      ->check(CLI::IsMember({"strict", "upstream"}));
  app.add_option("--pci-ids", co.pci_ids, "pci.ids for device names (default: this image's)");
  app.add_option("--signing-key", co.signing.key,
                 "Private key the built modules are signed with (PEM or DER; a mounted Secret)");
  app.add_option("--signing-cert", co.signing.cert,
                 "Its X.509 certificate, checked against the kernel's trusted keyrings (alone: judge a sidecar's signer)");
  app.add_option("--image-headers", co.image_headers,
                 "A Driver Toolkit image's kernel headers, DIR/<kver>: used when the node has none and they are "
                 "proven the running kernel's (default /usr/src/kernels; empty: never)");
  app.add_flag("--json", co.json, "JSON output (schema 1)");
  app.add_option("--bundle-firmware", co.bundle_firmware, "The image's firmware for the bundle (default /opt/lib/firmware)");
  app.add_option("--firmware-dir", co.firmware_base,
                 "Host directory the bundle's firmware is copied under (default /var/lib/intel-gpu-driver/firmware)");

  // agent run: the entrypoint (never implied: a bare `agent` typed on a machine must not insert
  // or remove kernel modules). Its options are the app's, so `agent --state-dir X run` works too.
  agent::RunOptions ro;
  std::string log_format = "text";
  long bind_timeout = 60, retry_interval = 60, recheck_interval = 30;
  std::optional<std::filesystem::path> nfd_dir;
  app.add_option("--state-dir", ro.state_dir, "Status, ready file and lock (default /run/intel-gpu-driver)");
  app.add_option("--nfd-dir", nfd_dir, "Write a Node Feature Discovery features file there when ready");
  app.add_flag("--exit-on-refuse", ro.exit_on_refuse, "Exit 20 when refused instead of staying up not ready");
  app.add_flag("--unload-on-exit", ro.unload_on_exit, "On SIGTERM/SIGINT, unload the bundle (as agent unload)");
  app.add_option("--log-format", log_format, "text or json")->check(CLI::IsMember({"text", "json"}));
  app.add_option("--bind-timeout", bind_timeout, "Seconds for the devices to bind after loading (default 60)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--retry-interval", retry_interval, "Seconds between decisions while waiting (default 60)")
      ->check(CLI::Range(1, 86400));
  app.add_option("--recheck-interval", recheck_interval, "Seconds between checks while ready, uevents aside (default 30)")
      ->check(CLI::Range(1, 86400));
  std::string build_mode = "node";
  long entry_build_timeout = 3600;
  app.add_option("--build-mode", build_mode,
                 "When the prebuilt modules would be refused: node (build here), sidecar (wait for a Driver Toolkit "
                 "sidecar's build in the cache) or off (refuse); default node")
      ->check(CLI::IsMember({"node", "sidecar", "off"}));
  app.add_option("--sources", ro.build.sources, "DKMS source trees to build, <name>-<version>/dkms.conf (default /usr/src)");
  app.add_option("--build-cache", ro.build.cache,
                 "Host directory of the build cache (default /var/lib/intel-gpu-driver/builds)");
  app.add_option("--build-timeout", entry_build_timeout,
                 "Seconds the build may take, or (sidecar) the wait for one (default 3600)")
      ->check(CLI::Range(1, 86400));
  CLI::App* run_cmd = app.add_subcommand("run", "The entrypoint (the image's ENTRYPOINT): load the bundle or refuse, then watch");
  run_cmd->fallthrough();
  CLI::App* unload_cmd = app.add_subcommand("unload", "Undo what the entrypoint did in this boot (a preStop hook)");
  unload_cmd->fallthrough();

  CLI::App* ready_cmd = app.add_subcommand(
      "ready", "Exit 0 only when this boot's agent is live and its driver ready (a readiness probe; needs no shell)");
  ready_cmd->fallthrough();

  CLI::App* kabi = app.add_subcommand("kabi", "kABI tools for CI: will a kernel accept these modules?");
  kabi->require_subcommand(1);
  kabi->fallthrough();
  CLI::App* kcheck = kabi->add_subcommand("check", "Predict init_module() for MODULE.ko... on a target kernel");
  kcheck->fallthrough();
  agent::KabiCheckOptions ko;
  std::string policy = "strict";
  kcheck->add_option("--symvers", ko.symvers, "The target kernel's Module.symvers (plain, .gz, .xz)")->required();
  kcheck->add_option("--kernel-modules", ko.kernel_modules, "The target kernel's module tree (/lib/modules/<kver>)")
      ->required();
  kcheck->add_option("--kernel-image", ko.kernel_image, "The target kernel image (vmlinuz), for its trusted certificates")
      ->check(CLI::ExistingFile);
  kcheck->add_option("--policy", policy, "Missing __versions entry: strict (refuse, Debian) or upstream (warn)")
      ->check(CLI::IsMember({"strict", "upstream"}));
  kcheck->add_flag("--sig-enforce", ko.sig_enforce, "Predict as if module.sig_enforce=1");
  kcheck->add_flag("--lockdown", ko.lockdown, "Predict as if the kernel were locked down (lockdown=integrity)");
  kcheck->add_flag("--json", ko.json, "JSON output (schema 1)");
  kcheck->add_option("--stablelist", ko.stablelist, "kABI stablelist: how much of the modules' imports it covers");
  kcheck->add_option("modules", ko.modules, "Modules to check (.ko, .ko.xz, .ko.zst, .ko.gz)")->required();

  // agent build: the image's DKMS sources against the running kernel, cached (agent/build.h).
  CLI::App* build_cmd = app.add_subcommand("build", "Build the image's DKMS sources for the running kernel (cached)");
  agent::BuildOptions bo;
  long build_timeout = 3600;
  build_cmd->add_option("--root", bo.root, "Host root (default: $HOST_ROOT, else /)");
  build_cmd->add_option("--sources", bo.sources, "DKMS source trees, <name>-<version>/dkms.conf (default /usr/src)");
  build_cmd->add_option("--cache", bo.cache, "Host directory of the build cache (default /var/lib/intel-gpu-driver/builds)");
  build_cmd->add_flag("--json", bo.json, "JSON output (schema 1)");
  build_cmd->add_flag("--rebuild", bo.rebuild, "Build even when a failure is recorded for these inputs");
  build_cmd->add_option("--signing-key", bo.signing.key, "Private key the built modules are signed with (PEM or DER)");
  build_cmd->add_option("--signing-cert", bo.signing.cert, "Its X.509 certificate (PEM or DER)");
  build_cmd->add_option("--image-headers", bo.image_headers,
                        "A Driver Toolkit image's kernel headers, DIR/<kver> (default /usr/src/kernels; empty: never)");
  build_cmd->add_option("--timeout", build_timeout, "Seconds the build may take (default 3600)")->check(CLI::Range(1, 86400));

  agent::KabiPipelineCli pipeline(*kabi);  // kabi diff, matrix, explain
  agent::ManifestCli manifest_cli(app);     // agent manifest (agent/bundle_manifest.h)

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : agent::kExitInputError;
  }
  agent::mask_option_values(argc, argv, "--signing-key");  // parsed: out of /proc/<pid>/cmdline
  if (verbose) spdlog::set_level(spdlog::level::debug);
  if (!check_policy.empty())
    co.policy = check_policy == "upstream" ? agent::kabi::MissingVersionPolicy::Upstream
                                           : agent::kabi::MissingVersionPolicy::Strict;
  co.state_dir = ro.state_dir;

  // Only the entrypoint reads its signals (a signalfd, agent/watch): every other command gets the
  // default actions back, with whatever arrived meanwhile.
  const bool entrypoint = run_cmd->parsed() && !check;
  if (!entrypoint) unblock_signals();
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
  if (!check && !run_cmd->parsed() && !unload_cmd->parsed() && !kabi->parsed()) {
    // No command: the usage, never the entrypoint (which loads and removes kernel modules).
    std::cerr << app.help() << "\nagent: no command given; the driver container's entrypoint is `agent run`\n";
    return agent::kExitInputError;
  }
  if (run_cmd->parsed() || unload_cmd->parsed()) {
    if (check) {
      std::cerr << "agent: --check is not a part of run or unload\n";
      return agent::kExitInputError;
    }
    agent::setup_logging(log_format == "json" ? agent::LogFormat::Json : agent::LogFormat::Text,
                         verbose ? spdlog::level::debug : spdlog::level::info);
    if (unload_cmd->parsed()) {
      agent::UnloadOptions uo;
      uo.root = co.root;
      uo.state_dir = ro.state_dir;
      uo.firmware_base = co.firmware_base;
      uo.nfd_dir = nfd_dir ? *nfd_dir : std::filesystem::path(agent::kDefaultNfdDir);
      uo.json = co.json;
      return agent::run_unload(uo, std::cout, std::cerr);
    }
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
  if (check) {
    co.verbose = verbose;
    return agent::run_check(co, std::cout, std::cerr);
  }
  if (kcheck->parsed()) {
    ko.policy = policy == "upstream" ? agent::kabi::MissingVersionPolicy::Upstream : agent::kabi::MissingVersionPolicy::Strict;
    ko.verbose = verbose;
    return agent::run_kabi_check(ko, std::cout, std::cerr);
  }
  if (auto rc = pipeline.run(std::cout, std::cerr, verbose)) return *rc;
  std::cerr << app.help();
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
