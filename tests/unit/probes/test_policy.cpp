#include "catch2_compat.h"

#include <cerrno>

#include "probes/policy.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;

namespace {

struct Node {
  TempDir t;
  Node() { agent::test::copy_tree(agent::test::base_host() / "sys", t / "sys"); }
  Policy probe() { return probe_policy(HostRoot::open(t.path()).value()); }
  fs::path operator/(const std::string& rel) const { return t / rel; }
};

const std::string kSecureBoot = "sys/firmware/efi/efivars/" + std::string(kSecureBootVar);

}  // namespace

TEST_CASE("policy of the fixture node: signatures checked, not enforced, no lockdown, Secure Boot off") {
  auto p = probe_policy(HostRoot::open(agent::test::base_host()).value());
  CHECK(p.problems.empty());
  CHECK(p.module_sig);
  CHECK(p.sig_enforce == false);
  CHECK(p.lockdown == "none");
  CHECK(p.secure_boot == false);
  CHECK(p.secure_boot_detail == "disabled");
  CHECK(p.firmware_path == "");
  CHECK(p.kernel_decompression.empty());
  CHECK_FALSE(p.enforced());
}

TEST_CASE("policy: sig_enforce=Y enforces") {
  Node n;
  write_file(n / "sys/module/module/parameters/sig_enforce", "Y\n");
  auto p = n.probe();
  CHECK(p.sig_enforce == true);
  CHECK(p.enforced());
}

TEST_CASE("policy: lockdown integrity or confidentiality enforces") {
  CHECK(parse_lockdown("none [integrity] confidentiality\n") == "integrity");
  CHECK(parse_lockdown("[none] integrity confidentiality") == "none");
  CHECK(parse_lockdown("none integrity confidentiality").empty());
  Node n;
  write_file(n / "sys/kernel/security/lockdown", "none integrity [confidentiality]\n");
  auto p = n.probe();
  CHECK(p.lockdown == "confidentiality");
  CHECK(p.enforced());
}

TEST_CASE("policy: Secure Boot enabled and lockdown unknown counts as enforced, and says why") {
  Node n;
  write_file(n / kSecureBoot, std::string("\x06\x00\x00\x00\x01", 5));
  fs::remove_all(n / "sys/kernel/security");
  auto p = n.probe();
  CHECK(p.secure_boot == true);
  CHECK(p.lockdown.empty());
  CHECK(p.enforced());
  REQUIRE(p.problems.size() == 1);
  CHECK(p.problems[0].message.find("lockdown state unknown") != std::string::npos);
}

TEST_CASE("policy: no /sys/firmware/efi means a BIOS boot, so no Secure Boot") {
  Node n;
  fs::remove_all(n / "sys/firmware");
  auto p = n.probe();
  CHECK(p.secure_boot == false);
  CHECK(p.secure_boot_detail == "not an EFI system");
}

TEST_CASE("policy: a truncated or missing SecureBoot variable on EFI is reported") {
  CHECK_FALSE(parse_efi_bool(std::string("\x06\x00", 2)));
  Node n;
  write_file(n / kSecureBoot, std::string("\x06\x00", 2));
  auto p = n.probe();
  CHECK_FALSE(p.secure_boot);
  REQUIRE(p.problems.size() == 1);
  CHECK(p.problems[0].message == "malformed SecureBoot variable");

  fs::remove(n / kSecureBoot);
  p = n.probe();
  CHECK_FALSE(p.secure_boot);
  REQUIRE(p.problems.size() == 1);
  CHECK(p.problems[0].code == ENOENT);
}

TEST_CASE("policy: module compression the kernel decompresses, and firmware_class.path") {
  Node n;
  write_file(n / "sys/module/compression", "zstd\n");
  write_file(n / "sys/module/firmware_class/parameters/path", "/opt/lib/firmware\n");
  auto p = n.probe();
  CHECK(p.kernel_decompression == "zstd");
  CHECK(p.firmware_path == "/opt/lib/firmware");
}

TEST_CASE("policy: a missing firmware_class.path is reported, not taken as empty") {
  Node n;
  fs::remove_all(n / "sys/module/firmware_class");
  auto p = n.probe();
  CHECK_FALSE(p.firmware_path);
  REQUIRE(p.problems.size() == 1);
  CHECK(p.problems[0].code == ENOENT);
}

TEST_CASE("policy: no sig_enforce parameter means the kernel does not check signatures") {
  Node n;
  fs::remove(n / "sys/module/module/parameters/sig_enforce");
  auto p = n.probe();
  CHECK_FALSE(p.module_sig);
  CHECK_FALSE(p.sig_enforce);
  CHECK(p.problems.empty());
}

TEST_CASE("policy: securityfs without a lockdown file means no lockdown LSM") {
  Node n;
  fs::remove(n / "sys/kernel/security/lockdown");
  auto p = n.probe();
  CHECK(p.lockdown == "none");
  CHECK(p.problems.empty());
}

TEST_CASE("policy: modules_disabled, the command line, and CAP_SYS_MODULE of the agent's own status") {
  Node n;
  write_file(n / "proc/sys/kernel/modules_disabled", "1\n");
  write_file(n / "proc/cmdline", "ro nomodeset module_blacklist=xe\n");
  write_file(n / "self-status", "Name:\tagent\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n");
  auto p = probe_policy(HostRoot::open(n.t.path()).value(), n / "self-status");
  CHECK(p.modules_disabled == true);
  CHECK(p.cmdline == "ro nomodeset module_blacklist=xe\n");
  CHECK(p.cap_sys_module == true);
  write_file(n / "proc/sys/kernel/modules_disabled", "0\n");
  write_file(n / "self-status", "Name:\tagent\nCapEff:\t00000000a80425fb\n");  // docker's default set
  p = probe_policy(HostRoot::open(n.t.path()).value(), n / "self-status");
  CHECK(p.modules_disabled == false);
  CHECK(p.cap_sys_module == false);
  // unreadable: a problem, not a guess
  p = probe_policy(HostRoot::open(n.t.path()).value(), n / "no-such-status");
  CHECK_FALSE(p.cap_sys_module);
  REQUIRE_FALSE(p.problems.empty());
  CHECK(p.problems.back().path.find("no-such-status") != std::string::npos);
}

TEST_CASE("policy: CapEff parsing") {
  CHECK(parse_cap_eff("CapPrm:\t0\nCapEff:\t0000000000010000\n") == uint64_t{1} << kCapSysModule);
  CHECK_FALSE(parse_cap_eff("Name:\tx\n"));
  CHECK_FALSE(parse_cap_eff("CapEff:\tzz\n"));
  CHECK_FALSE(parse_cap_eff("XCapEff:\t1\n"));
}
