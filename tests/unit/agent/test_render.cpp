// The text of `agent --check` (agent/report/render.cpp) on a diagnosis built in the test: one reason a
// line with its hint, counts in words, nothing said twice, paths as inside the root, a plan that
// says why nothing happens, and the summary line.
#include "agent/report/render.h"

#include <cerrno>
#include <sstream>

#include "../test_lines.h"
#include "catch2_compat.h"

#include "agent/decision/hints.h"
#include "agent/decision/plan.h"

using agent::test::lines_with;

using namespace agent;
using Catch::Matchers::Contains;

namespace {

// A node seen through --root /host: one PCI function, i915 refused on module_layout (ENOEXEC),
// headers with the kernel's Module.symvers but no Makefile: refuse.
Diagnosis refused_node() {
  Diagnosis d;
  d.root = "/host";
  d.bundle_dir = "/opt/lib/modules/6.1.0-47-amd64";
  probes::PciDevice dev;
  dev.bdf = "0000:03:00.0";
  dev.vendor = 0x8086;
  dev.device = 0x56c0;
  dev.class_code = 0x038000;
  d.pci.devices = {dev};
  d.pci.backend = "sysfs";
  d.devices = {DeviceReport{dev, {"i915"}}};
  d.kernel.release = "6.1.0-56-amd64";
  d.kernel.proc_version = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian 6.1.158-1";
  d.model.release = d.kernel.release;
  auto& o = d.kernel.symvers_origin;
  o.kind = probes::SymversOrigin::Kind::File;
  o.path = "/lib/modules/6.1.0-56-amd64/build/Module.symvers";
  o.verified = true;
  o.verified_with = "12 of the kernel's own modules agree";
  probes::SymversCandidate chosen;
  chosen.path = o.path;
  chosen.state = probes::SymversCandidate::State::Verified;
  chosen.detail = "12 of the kernel's own modules agree";
  probes::SymversCandidate rejected;
  rejected.path = "/boot/symvers-6.1.0-56-amd64.gz";
  rejected.state = probes::SymversCandidate::State::Rejected;
  rejected.detail = "3 CRCs differ";
  o.candidates = {chosen, rejected};
  kabi::ModuleVerdict v;
  v.name = "i915";
  v.path = d.bundle_dir + "/updates/i915.ko";
  v.verdict = kabi::Verdict::Refused;
  v.err = ENOEXEC;
  kabi::Reason layout;
  layout.code = kabi::reason::kModuleLayout;
  layout.err = ENOEXEC;
  layout.symbol = "module_layout";
  layout.message = "i915: disagrees about version of symbol module_layout";
  layout.expected_crc = 0x9060323fu;
  layout.found_crc = 0x160c03afu;
  layout.fatal = true;
  v.reasons = {layout};
  d.evaluation.modules = {v};
  d.decision = Decision::Refuse;
  d.build.detail = "no kernel headers for 6.1.0-56-amd64: /lib/modules/6.1.0-56-amd64/build (incomplete: needs Makefile)";
  d.reasons = {{reason::kModulesRefused, "1 of 1 bundle modules would be refused: i915 (ENOEXEC: module_layout_crc)"},
               {reason::kNoKernelHeaders, d.build.detail}};
  attach_hints(d.reasons, {d.kernel.release, d.kernel.proc_version});
  d.problems = {Error{ENOENT, "cannot open: No such file or directory", "/host/lib/modules/6.1.0-56-amd64/modules.dep"}};
  return d;
}

}  // namespace

TEST_CASE("render: each reason on one line, its hint under it") {
  const Diagnosis d = refused_node();
  const std::string text = diagnosis_text(d);
  CHECK(text.rfind("Decision: REFUSE (exit 20)\n", 0) == 0);
  CHECK(lines_with(text, "no_kernel_headers") ==
        std::vector<std::string>{"  - no_kernel_headers: " + d.build.detail});
  const auto hints = lines_with(text, "hint: ");
  REQUIRE(hints.size() == 2);
  CHECK(hints[0] == "    hint: " + reason_hint(reason::kModulesRefused, {d.kernel.release, d.kernel.proc_version}));
  CHECK_THAT(hints[1], Contains("install linux-headers-6.1.0-56-amd64"));
  CHECK_THAT(hints[1], Contains("--build-mode sidecar"));
  // The kernel's message is not wrapped into a pipe: it stays whole on its line.
  CHECK(lines_with(text, "module_layout (kernel") ==
        std::vector<std::string>{"  module_layout_crc: i915: disagrees about version of symbol module_layout (kernel "
                                 "0x9060323f, module 0x160c03af)"});
}

TEST_CASE("render: counts in words, the chosen symvers once, problems inside the root") {
  Diagnosis d = refused_node();
  std::string text = diagnosis_text(d);
  CHECK(lines_with(text, "Devices (") == std::vector<std::string>{"Devices (1 PCI function via sysfs)"});
  // The chosen file and its verdict are shown once; another candidate keeps its line.
  CHECK(lines_with(text, "build/Module.symvers").size() == 1);
  CHECK(lines_with(text, "12 of the kernel's own modules agree").size() == 1);
  CHECK(lines_with(text, "rejected  /boot/symvers-6.1.0-56-amd64.gz: 3 CRCs differ").size() == 1);
  CHECK(lines_with(text, "crcs ").empty());  // the Bundle section does not repeat the Kernel section
  // The problem names the file as the rest does: inside the root.
  CHECK(lines_with(text, "modules.dep") ==
        std::vector<std::string>{"  /lib/modules/6.1.0-56-amd64/modules.dep: cannot open: No such file or directory"});
  CHECK_THAT(text, !Contains("/host/"));

  probes::PciDevice second = d.pci.devices[0];
  second.bdf = "0000:04:00.0";
  d.pci.devices.push_back(second);
  CHECK(lines_with(diagnosis_text(d), "Devices (") == std::vector<std::string>{"Devices (2 PCI functions via sysfs)"});
}

TEST_CASE("render: root_relative only strips the root") {
  CHECK(root_relative("/host", "/host/sys/bus/pci: x; /host/boot/vmlinuz") == "/sys/bus/pci: x; /boot/vmlinuz");
  CHECK(root_relative("/host/", "/host/sys") == "/sys");
  CHECK(root_relative("/host", "/hostile/sys") == "/hostile/sys");
  CHECK(root_relative("/", "/sys/x") == "/sys/x");
}

TEST_CASE("render: the plan says why nothing happens") {
  Plan p;
  p.decision = Decision::Refuse;
  const std::string refused = to_text(p);
  CHECK_THAT(refused, !Contains("nothing: refuse"));
  CHECK_THAT(refused, Contains("refused (the reasons and hints above say what is missing)"));
  p.decision = Decision::NoDevice;
  CHECK_THAT(to_text(p), Contains("no device here is one the bundle drives"));
  p.decision = Decision::UpgradePending;
  CHECK_THAT(to_text(p), Contains("waits until the older one is no longer in use"));
}

TEST_CASE("render: the summary line") {
  Diagnosis d = refused_node();
  CHECK(check_summary(d) == "refuse (exit 20) on 6.1.0-56-amd64: 1/1 refused (ENOEXEC); modules_refused, no_kernel_headers");
  kabi::Reason warn;
  warn.code = kabi::reason::kUnsignedAccepted;
  warn.fatal = false;
  d.evaluation.modules[0].reasons.push_back(warn);
  CHECK(check_summary(d) ==
        "refuse (exit 20) on 6.1.0-56-amd64: 1/1 refused (ENOEXEC), 1 warning; modules_refused, no_kernel_headers");
  d.decision = Decision::NoDevice;
  d.reasons = {{reason::kNoDevice, "no PCI device matches"}};
  CHECK(check_summary(d) == "no-device (exit 30) on 6.1.0-56-amd64: no_device");
}

TEST_CASE("render: JSON: the reason's hint (null for a note), problems inside the root") {
  const Diagnosis d = refused_node();
  const auto j = diagnosis_json(d);
  CHECK(j["reasons"][1]["code"] == "no_kernel_headers");
  CHECK(j["reasons"][1]["hint"] == d.reasons[1].hint);
  // Problems name their files inside the root, as the rest of the JSON does.
  CHECK(j["problems"][0]["path"] == "/lib/modules/6.1.0-56-amd64/modules.dep");
  CHECK(to_json(DecisionReason{reason::kBuildPossible, "headers"})["hint"].is_null());
}
