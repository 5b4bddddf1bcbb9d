// Module options as modprobe applies them: modprobe.d's "options" lines and the kernel command
// line, read through the host root.
#include "probes/module_options.h"

#include "catch2_compat.h"

#include "test_util.h"

using namespace agent;
using namespace agent::probes;
using agent::test::TempDir;
using agent::test::write_file;

TEST_CASE("modprobe.d: options lines, continuations, comments, dashes in names") {
  const auto o = parse_modprobe_options(
      "# a comment\n"
      "options i915 enable_guc=3\n"
      "  options   agent-test-nic fail_init=1 \\\n"
      "     other=\"a b\"\n"
      "install i915 /bin/false\n"
      "blacklist xe\n"
      "options lonely\n");
  REQUIRE(o.size() == 2);
  CHECK(o[0] == std::pair<std::string, std::string>{"i915", "enable_guc=3"});
  CHECK(o[1] == std::pair<std::string, std::string>{"agent_test_nic", "fail_init=1 other=\"a b\""});
}

TEST_CASE("cmdline: module.param words only, quotes kept, nothing after --") {
  const auto o = parse_cmdline_options(
      "BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=UUID=1.2 ro i915.enable_psr=0 agent-test-nic.fail_init "
      "xe.force_probe=\"*\" quiet -- init.opt=1");
  REQUIRE(o.size() == 3);
  CHECK(o[0] == std::pair<std::string, std::string>{"i915", "enable_psr=0"});
  CHECK(o[1] == std::pair<std::string, std::string>{"agent_test_nic", "fail_init"});
  CHECK(o[2] == std::pair<std::string, std::string>{"xe", "force_probe=\"*\""});
}

TEST_CASE("probe_module_options: /etc hides a file of the same name in /lib; cmdline last") {
  TempDir t;
  write_file(t / "etc/modprobe.d/i915.conf", "options i915 enable_guc=2\n");
  write_file(t / "lib/modprobe.d/i915.conf", "options i915 enable_guc=0\n");  // hidden by /etc's
  write_file(t / "lib/modprobe.d/aa.conf", "options i915 modeset=1\n");
  write_file(t / "etc/modprobe.d/readme.txt", "options i915 ignored=1\n");  // not *.conf
  write_file(t / "proc/cmdline", "ro i915.enable_psr=0\n");
  auto root = HostRoot::open(t.path()).value();
  const ModuleOptions o = probe_module_options(root);
  CHECK(o.of("i915") == "modeset=1 enable_guc=2 enable_psr=0");
  CHECK(o.of("xe").empty());
  CHECK(o.problems.empty());
  CHECK(o.sources.size() == 3);
}

TEST_CASE("modprobe.d: options, blacklist and install lines with where each starts") {
  const auto l = parse_modprobe_conf(
      "# x\n"
      "blacklist i915\n"
      "options i915 enable_guc=3 \\\n"
      "  modeset=0\n"
      "install xe /bin/false\n"
      "alias foo bar\n"
      "blacklist\n",
      "/etc/modprobe.d/a.conf");
  REQUIRE(l.size() == 3);
  CHECK(l[0].kind == "blacklist");
  CHECK(l[0].module == "i915");
  CHECK(l[0].source == "/etc/modprobe.d/a.conf:2");
  CHECK(l[1].kind == "options");
  CHECK(l[1].rest == "enable_guc=3 modeset=0");
  CHECK(l[1].source == "/etc/modprobe.d/a.conf:3");
  CHECK(l[2].kind == "install");
  CHECK(l[2].rest == "/bin/false");
  CHECK(l[2].source == "/etc/modprobe.d/a.conf:5");
}
