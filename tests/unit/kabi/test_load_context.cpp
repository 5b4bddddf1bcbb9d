// The node's part of a load (kabi/load_context.h) and the taints: may_init_module(),
// module_blacklist=, parse_args() on the parameters the agent passes, i915/xe under nomodeset,
// modprobe.d lines the insert bypasses; out-of-tree, staging, test, livepatch, licence and
// export-CRC taints as warnings. Expected values from the kernel's sources (6.1, 6.12, 7.2).
#include <cerrno>

#include "catch2_compat.h"

#include "kabi/load_context.h"
#include "kabi/rules.h"

using namespace agent::kabi;

namespace {

constexpr const char* kVermagic61 = "6.1.0-56-amd64 SMP preempt mod_unload modversions ";
constexpr const char* kVermagic612 = "6.12.118+deb13-amd64 SMP preempt mod_unload modversions ";

KernelModel kernel(const char* vermagic = kVermagic61) {
  KernelModel k;
  k.vermagic = vermagic;
  k.modversions = true;
  auto sv = parse_symvers("0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n", "t");
  REQUIRE(sv);
  k.symvers = std::move(*sv);
  return k;
}

// In-tree-built, GPL, retpoline: no taint; i915-like parameters.
ModuleInfo module(const std::string& name = "i915", const char* vermagic = kVermagic61) {
  ModuleInfo m;
  m.path = "/b/" + name + ".ko";
  m.name = name;
  m.vermagic = vermagic;
  m.has_vermagic = true;
  m.license = "GPL";
  m.has_versions = m.versions_alloc = true;
  m.versions = {{"_printk", 0x92997ed8}};
  m.undefined = {{"_printk", false}};
  m.modinfo = {{"name", name},
               {"intree", "Y"},
               {"retpoline", "Y"},
               {"parmtype", "enable_guc:int"},
               {"parmtype", "modeset:int"},
               {"parmtype", "reset:uint"},
               {"parmtype", "enable_hangcheck:bool"},
               {"parmtype", "force_probe:charp"},
               {"parmtype", "lvds:array of byte"},
               {"parmtype", "mode:custom_ops"}};
  return m;
}

ModuleVerdict one(const ModuleInfo& m, const KernelModel& k) {
  Evaluation ev = evaluate({m}, k);
  REQUIRE(ev.modules.size() == 1);
  return ev.modules[0];
}

const Reason* find(const ModuleVerdict& v, const std::string& code) {
  for (const auto& r : v.reasons)
    if (r.code == code) return &r;
  return nullptr;
}

}  // namespace

TEST_CASE("load context: the baseline module loads with no reason", "[rules][load_context]") {
  auto v = one(module(), kernel());
  CHECK(v.verdict == Verdict::Loadable);
  CHECK(v.reasons.empty());
}

TEST_CASE("load context: modules_disabled, no CAP_SYS_MODULE -> EPERM before the signature", "[rules][load_context]") {
  auto k = kernel();
  k.module_sig = true;
  k.sig_enforce = true;  // the unsigned module's EKEYREJECTED comes later
  k.modules_disabled = true;
  auto v = one(module(), k);
  CHECK(v.err == EPERM);
  REQUIRE(find(v, reason::kModulesDisabled));
  CHECK_FALSE(find(v, reason::kNoCapSysModule));
  REQUIRE(find(v, reason::kUnsignedEnforced));  // still reported, not the errno

  k.modules_disabled = false;
  k.cap_sys_module = false;
  v = one(module(), k);
  CHECK(v.err == EPERM);
  REQUIRE(find(v, reason::kNoCapSysModule));
}

TEST_CASE("load context: module_blacklist= -> EPERM by the modinfo name, before module_layout", "[rules][load_context]") {
  auto k = kernel();
  apply_kernel_cmdline(k, "quiet module_blacklist=nouveau,i915 module_blacklist=xe -- module_blacklist=foo", "t");
  CHECK(k.module_blacklist == std::set<std::string>{"nouveau", "i915", "xe"});
  auto m = module();
  m.vermagic = "6.1.0-56-amd64 SMP preempt mod_unloaX modversions ";  // ENOEXEC, a later stage
  auto v = one(m, k);
  CHECK(v.err == EPERM);
  REQUIRE(find(v, reason::kModuleBlacklisted));
  CHECK(find(v, reason::kModuleBlacklisted)->message.find("Module i915 is blacklisted") == 0);
  // modinfo name= decides, not the file or struct module's name
  m = module();
  m.modinfo[0].second = "i915_backport";
  CHECK(one(m, k).verdict == Verdict::Loadable);
}

TEST_CASE("load context: kernel words as next_arg splits them", "[load_context]") {
  auto p = parse_module_params(R"(enable_guc=3  modeset "force_probe=a b" reset="1")", "f:1");
  REQUIRE(p.size() == 4);
  CHECK(p[0].name == "enable_guc");
  CHECK(p[0].value == "3");
  CHECK(p[1].name == "modeset");
  CHECK_FALSE(p[1].value);
  CHECK(p[2].name == "force_probe");
  CHECK(p[2].value == "a b");
  CHECK(p[3].value == "1");
  CHECK(p[3].source == "f:1");
  auto k = kernel();
  apply_kernel_cmdline(k, "root=/dev/sda i915.enable_guc=2 i915.modeset nomodeset xe.force_probe=* agent-test.opt -- i915.reset=1",
                       "/proc/cmdline");
  CHECK(k.nomodeset);
  REQUIRE(k.params["i915"].size() == 2);
  CHECK(k.params["i915"][1].name == "modeset");
  CHECK_FALSE(k.params["i915"][1].value);
  CHECK(k.params["agent_test"].size() == 1);
  REQUIRE(k.params["xe"].size() == 1);
  CHECK(k.params["xe"][0].value == "*");
}

TEST_CASE("load context: parameter values as the kernel's setters take them", "[load_context]") {
  using V = std::optional<std::string>;
  CHECK(param_value_errno("int", V("-3")) == 0);
  CHECK(param_value_errno("int", V("0x10")) == 0);
  CHECK(param_value_errno("int", V("010\n")) == 0);
  CHECK(param_value_errno("int", V("notanumber")) == EINVAL);
  CHECK(param_value_errno("int", V("")) == EINVAL);
  CHECK(param_value_errno("int", V("08")) == EINVAL);  // octal
  CHECK(param_value_errno("int", V("2147483648")) == ERANGE);
  CHECK(param_value_errno("int", V("-2147483648")) == 0);
  CHECK(param_value_errno("uint", V("-1")) == EINVAL);
  CHECK(param_value_errno("uint", V("4294967296")) == ERANGE);
  CHECK(param_value_errno("byte", V("256")) == ERANGE);
  CHECK(param_value_errno("ulong", V("18446744073709551616")) == ERANGE);
  CHECK(param_value_errno("int", std::nullopt) == EINVAL);  // no value, not a bool
  CHECK(param_value_errno("bool", std::nullopt) == 0);
  CHECK(param_value_errno("bool", V("on")) == 0);
  CHECK(param_value_errno("bool", V("maybe")) == EINVAL);
  CHECK(param_value_errno("invbool", V("o")) == EINVAL);
  CHECK(param_value_errno("charp", V(std::string(1024, 'a'))) == 0);
  CHECK(param_value_errno("charp", V(std::string(1025, 'a'))) == ENOSPC);
  CHECK(param_value_errno("array of byte", V("1,2,255")) == 0);
  CHECK(param_value_errno("array of byte", V("1,x")) == EINVAL);
  CHECK_FALSE(param_value_errno("custom_ops", V("1")));
}

TEST_CASE("load context: parameters: unknown -> warning, bad value -> the setter's errno (the last)", "[rules][load_context]") {
  auto k = kernel();
  k.params["i915"] = parse_module_params("no_such=1 enable_guc=x reset=4294967296 enable-hangcheck=N mode=1",
                                         "/etc/modprobe.d/i915.conf:2");
  auto v = one(module(), k);
  CHECK(v.verdict == Verdict::Refused);
  CHECK(v.err == ERANGE);  // reset's, the last failing one
  const Reason* u = find(v, reason::kUnknownParameter);
  REQUIRE(u);
  CHECK_FALSE(u->fatal);
  CHECK(u->message == "i915: unknown parameter 'no_such' ignored (from /etc/modprobe.d/i915.conf:2)");
  size_t invalid = 0;
  for (const auto& r : v.reasons) invalid += r.code == reason::kParameterInvalid;
  CHECK(invalid == 2);
  const Reason* bad = find(v, reason::kParameterInvalid);
  CHECK(bad->message.find("i915: `x' invalid for parameter `enable_guc'") == 0);
  CHECK(bad->err == EINVAL);
  REQUIRE(find(v, reason::kParameterUnchecked));
  // another module's parameters are not this one's
  k.params.erase("i915");
  k.params["xe"] = parse_module_params("enable_guc=x", "t");
  CHECK(one(module(), k).reasons.empty());
}

TEST_CASE("load context: nomodeset: xe -> ENODEV; i915 by its code's version", "[rules][load_context]") {
  auto k = kernel(kVermagic612);
  auto xe = module("xe", kVermagic612);
  CHECK(one(xe, k).verdict == Verdict::Loadable);
  CHECK(one(module("i915", kVermagic612), k).verdict == Verdict::Loadable);
  apply_kernel_cmdline(k, "nomodeset", "t");
  auto v = one(xe, k);
  CHECK(v.err == ENODEV);
  REQUIRE(find(v, reason::kNomodesetInitFails));
  v = one(module("i915", kVermagic612), k);
  CHECK(v.err == ENODEV);
  // 6.1's i915 returns 1: loads, drives nothing (a warning)
  auto k61 = kernel();
  apply_kernel_cmdline(k61, "nomodeset", "t");
  v = one(module(), k61);
  CHECK(v.verdict == Verdict::Loadable);
  REQUIRE(find(v, reason::kNomodesetNoDriver));
  // i915.modeset=1 overrides nomodeset; modeset=0 alone disables KMS
  k.params["i915"] = parse_module_params("modeset=1", "t");
  CHECK(one(module("i915", kVermagic612), k).verdict == Verdict::Loadable);
  auto k2 = kernel(kVermagic612);
  k2.params["i915"] = parse_module_params("modeset=0", "t");
  CHECK(one(module("i915", kVermagic612), k2).err == ENODEV);
  // another module is not affected
  CHECK(one(module("ast", kVermagic612), k).reasons.empty());
}

TEST_CASE("load context: taints are warnings with the kernel's messages", "[rules][load_context]") {
  auto k = kernel();
  auto m = module();
  m.modinfo = {{"name", "i915"}, {"staging", "Y"}, {"test", "Y"}, {"livepatch", "Y"}};
  m.license = "Proprietary";
  m.exports = {{"exp_a", std::nullopt, false, ""}, {"exp_g", std::nullopt, true, ""}};
  m.has_kcrctab = true;  // the GPL ones lack theirs
  auto v = one(m, k);
  CHECK(v.verdict == Verdict::Loadable);
  const std::pair<const char*, const char*> want[] = {
      {reason::kOutOfTree, "i915: loading out-of-tree module taints kernel."},
      {reason::kNoRetpoline, "i915: loading module not compiled with retpoline compiler."},
      {reason::kStaging, "i915: module is from the staging directory, the quality is unknown, you have been warned."},
      {reason::kLivepatch, "i915: tainting kernel with TAINT_LIVEPATCH"},
      {reason::kLicenseTaints, "i915: module license 'Proprietary' taints kernel."},
      {reason::kTestModule, "i915: loading test module taints kernel."},
      {reason::kExportsWithoutCrcs, "i915: no versions for exported symbols: kernel tainted."}};
  for (const auto& [code, message] : want) {
    INFO(code);
    const Reason* r = find(v, code);
    REQUIRE(r);
    CHECK_FALSE(r->fatal);
    CHECK(r->message.find(message) == 0);
  }
  // both CRC sections present, or a kernel without MODVERSIONS: no forced load
  m.has_kcrctab_gpl = true;
  CHECK_FALSE(find(one(m, k), reason::kExportsWithoutCrcs));
  m.has_kcrctab = m.has_kcrctab_gpl = false;
  k.modversions = false;
  CHECK_FALSE(find(one(m, k), reason::kExportsWithoutCrcs));
  // no licence at all is "unspecified"
  m.license.clear();
  CHECK(find(one(m, k), reason::kLicenseTaints)->message.find("'unspecified'") != std::string::npos);
}

TEST_CASE("load context: modprobe.d blacklist and install lines bypassed: warnings", "[rules][load_context]") {
  auto k = kernel();
  k.modprobe_blacklist["i915"] = {"/etc/modprobe.d/bl.conf:1"};
  k.modprobe_install["i915"] = {"/bin/false' (/etc/modprobe.d/bl.conf:2)"};
  k.modprobe_blacklist["nouveau"] = {"/etc/modprobe.d/bl.conf:3"};
  auto v = one(module(), k);
  CHECK(v.verdict == Verdict::Loadable);
  REQUIRE(find(v, reason::kModprobeBlacklistBypassed));
  CHECK(find(v, reason::kModprobeBlacklistBypassed)->message.find("/etc/modprobe.d/bl.conf:1") != std::string::npos);
  REQUIRE(find(v, reason::kModprobeInstallBypassed));
  CHECK(find(v, reason::kModprobeInstallBypassed)->message.find("'install i915 /bin/false' (/etc/modprobe.d/bl.conf:2)") !=
        std::string::npos);
  CHECK(v.reasons.size() == 2);
}
