// `agent --check` (agent/cli/check.cpp) on fixture nodes built from real Debian kernels
// (tests/fixtures/hosts/make-host.sh, the kernel roles of tests/e2e/fetch-kernels.sh): the
// ctest agent_check_realdata, which exits 77 (SKIPPED) when the nodes or kernels are missing.
#define CATCH_CONFIG_RUNNER
#include "catch2_compat.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include <openssl/pem.h>

#include "../test_certs.h"
#include "../test_lines.h"
#include "agent/cli/check.h"
#include "agent/facts/node_model.h"
#include "agent/facts/signing.h"
#include "kabi/rules.h"
#include "test_util.h"

using agent::test::lines_with;

using namespace agent;
using agent::test::TempDir;
using agent::test::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

using Node = agent::test::HostCopy;

// A bundle directory holding modules from the kernel cache: <dir>/<kver>/updates/<file>.
struct Bundle {
  TempDir t;
  fs::path dir;
  Bundle(const fs::path& abi_dir, const std::vector<std::string>& rel_modules) {
    std::ifstream done(abi_dir / ".done");
    std::string kver;
    done >> kver;
    dir = t / ("opt/lib/modules/" + kver);
    for (const auto& rel : rel_modules) {
      const fs::path src = abi_dir / "modules" / rel;
      fs::create_directories(dir / "updates");
      fs::copy_file(src, dir / "updates" / src.filename());
    }
  }
};

CheckOptions options_for(const fs::path& root, const fs::path& bundle) {
  CheckOptions o;
  o.root = root;
  o.bundle = bundle;
  o.pci_ids = AGENT_PCI_IDS;
  o.pci_backend = probes::PciBackend::Sysfs;
  return o;
}

bool has_reason(const Diagnosis& r, const std::string& code) {
  return std::any_of(r.reasons.begin(), r.reasons.end(), [&](const auto& x) { return x.code == code; });
}

// The node's /proc/modules, to edit a line of it.
std::string proc_modules(const fs::path& root) {
  std::ifstream in(root / "proc/modules");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string reasons_of(const Diagnosis& r) {
  std::string s;
  for (const auto& x : r.reasons) s += x.code + ": " + x.message + "\n";
  return s;
}

const DeviceReport* device(const Diagnosis& r, const std::string& bdf) {
  for (const auto& d : r.devices)
    if (d.device.bdf == bdf) return &d;
  return nullptr;
}

const char* kI915_61 = "kernel/drivers/gpu/drm/i915/i915.ko";

// The fixture nodes (make-host.sh) and the kernels are the roles of fetch-kernels.sh, checked
// by main(): debian12 runs k61, rhel9 k612_old, nosymvers k61_same. Bundles come from k61 and
// k61_same (identical CRCs), k61_old (other CRCs, module_layout too) and k612 (other CRCs
// than k612_old).
using agent::test::fixture_host;
using agent::test::fixture_kver;
using agent::test::kernel_of;

}  // namespace

TEST_CASE("check, Debian node, a bundle built for k61_same on k61: same kABI, prebuilt") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_same"), {kI915_61});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Prebuilt);
  CHECK(exit_code(r->decision) == kCheckPrebuilt);
  CHECK(has_reason(*r, reason::kModulesLoadable));
  // i915 is loaded in-tree but unused: it would be removed first.
  REQUIRE(r->conflicts.size() == 1);
  CHECK(r->conflicts[0].name == "i915");
  CHECK(r->conflicts[0].removable);
  CHECK(has_reason(*r, reason::kConflictRemovable));
  // The devices: 6.1's i915 drives the Flex 170, the A770 and the Alder Lake iGPU, not the Max 1550.
  CHECK(device(*r, "0000:03:00.0")->bundle_modules == std::vector<std::string>{"i915"});
  CHECK(device(*r, "0000:04:00.0")->bundle_modules == std::vector<std::string>{"i915"});
  CHECK(device(*r, "0000:00:02.0")->bundle_modules == std::vector<std::string>{"i915"});
  REQUIRE(device(*r, "0000:81:00.0"));
  CHECK(device(*r, "0000:81:00.0")->bundle_modules.empty());
  CHECK(device(*r, "0000:06:00.0")->bundle_modules.empty());  // ASPEED BMC VGA: shown, not handled
  CHECK(device(*r, "0000:82:00.0") == nullptr);               // a NIC no bundle module matches: not shown
  CHECK(r->kernel.symvers_origin.verified);
  CHECK(r->model.certificates_known);
  CHECK(r->problems.empty());
}

TEST_CASE("check without CAP_SYS_MODULE: a problem of this process; the entrypoint's diagnosis refuses (EPERM)") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_same"), {kI915_61});
  // This process's status as a shell without privileges has it: CapEff without bit 16.
  const fs::path status = b.t / "status-unprivileged";
  {
    std::ofstream out(status);
    out << "Name:\tagent\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n"
           "CapEff:\t000001fffffeffff\n";
  }
  REQUIRE(probes::parse_cap_eff("CapEff:\t000001fffffeffff\n") == std::optional<uint64_t>{0x1fffffeffffULL});
  const char* before = std::getenv("AGENT_SELF_STATUS");
  const std::string saved = before ? before : "";
  REQUIRE(::setenv("AGENT_SELF_STATUS", status.c_str(), 1) == 0);
  auto check = diagnose(options_for(host, b.dir));
  DiagnoseOptions run_opts = options_for(host, b.dir);
  run_opts.inserting = true;
  auto run = diagnose(run_opts);
  // The build's kABI check (an image build or a sidecar has no CAP_SYS_MODULE) ignores it.
  auto host_root = probes::HostRoot::open(host.string());
  REQUIRE(host_root);
  REQUIRE(check);
  auto build_model = node_model_for(*host_root, check->bundle);
  if (before) ::setenv("AGENT_SELF_STATUS", saved.c_str(), 1);
  else ::unsetenv("AGENT_SELF_STATUS");
  REQUIRE(check);
  REQUIRE(run);
  INFO(reasons_of(*check));
  CHECK(check->decision == Decision::Prebuilt);
  REQUIRE(check->problems.size() == 1);
  CHECK(check->problems[0].code == EPERM);
  CHECK(check->problems[0].message.find("CAP_SYS_MODULE") != std::string::npos);
  REQUIRE(run->evaluation.modules.size() == 1);
  CHECK(run->evaluation.modules[0].err == EPERM);
  CHECK(run->decision == Decision::Refuse);
  REQUIRE(build_model);
  CHECK(build_model->model.cap_sys_module);
  CHECK(kabi::evaluate(check->bundle, build_model->model).all_loadable());
}

TEST_CASE("check: --symvers given is read or is an error, never passed over for the node's own") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_same"), {kI915_61});
  // Without it the node's verified table decides: the data the error below must not fall back to.
  auto plain = diagnose(options_for(host, b.dir));
  REQUIRE(plain);
  REQUIRE(plain->kernel.symvers_origin.verified);
  agent::test::TempDir t;
  agent::test::write_file(t / "garbage.symvers", "not a symvers file\n");
  for (const fs::path& given : {t / "garbage.symvers", t / "absent.symvers"}) {
    auto o = options_for(host, b.dir);
    o.symvers = given;
    auto r = diagnose(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().what().find(given.string()) != std::string::npos);
  }
}

TEST_CASE("check, Debian node, a bundle built for k61_old: kABI differs, headers present, build") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_old"), {kI915_61});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Build);
  CHECK(exit_code(r->decision) == kCheckBuild);
  CHECK(has_reason(*r, reason::kModulesRefused));
  CHECK(has_reason(*r, reason::kBuildPossible));
  REQUIRE(r->evaluation.modules.size() == 1);
  const auto& v = r->evaluation.modules[0];
  CHECK(v.err == ENOEXEC);
  // module_layout is checked before vermagic and gives ENOEXEC.
  CHECK(std::any_of(v.reasons.begin(), v.reasons.end(), [](auto& x) {
    return x.symbol == "module_layout" && (x.code == "crc_mismatch" || x.code == "module_layout_crc") && x.err == ENOEXEC;
  }));
}

TEST_CASE("check: under sig_enforce a node build would be unsigned, so refuse") {
  const fs::path host = fixture_host("debian12");
  Node n(host);
  n.put("sys/module/module/parameters/sig_enforce", "Y\n");
  Bundle b(kernel_of("k61_old"), {kI915_61});
  auto r = diagnose(options_for(n.root, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Refuse);
  CHECK(has_reason(*r, reason::kBuildUnsignedEnforced));
  // k61_old's modules are signed by its build key, which k61 does not trust.
  const auto& reasons = r->evaluation.modules.at(0).reasons;
  CHECK(std::any_of(reasons.begin(), reasons.end(), [](auto& x) { return x.code == "unknown_key_rejected"; }));
}

TEST_CASE("check: an in-tree i915 in use blocks the load whatever the kABI says") {
  const fs::path host = fixture_host("debian12");
  Node n(host);
  std::string modules = proc_modules(n.root);
  modules.replace(modules.find("i915 3706880 0 -"), 16, "i915 3706880 1 -");
  n.put("proc/modules", modules);
  n.put("sys/module/i915/refcnt", "1\n");
  Bundle b(kernel_of("k61_same"), {kI915_61});
  auto r = diagnose(options_for(n.root, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Refuse);
  CHECK(exit_code(r->decision) == kCheckRefuse);
  CHECK(has_reason(*r, reason::kConflictInUse));
  REQUIRE(r->conflicts.size() == 1);
  CHECK_FALSE(r->conflicts[0].removable);
  CHECK(r->conflicts[0].detail.find("1 other reference") != std::string::npos);
}

TEST_CASE("check: a live provider tainted P (/proc/modules flags) refuses the bundle's GPL-only user") {
  const fs::path host = fixture_host("debian12");
  Node n(host);
  std::string modules = proc_modules(n.root);
  const std::string drm = "i915,ttm, Live 0x0000000000000000";
  REQUIRE(modules.find(drm) != std::string::npos);
  Bundle b(kernel_of("k61_same"), {kI915_61});
  {
    auto r = diagnose(options_for(n.root, b.dir));
    REQUIRE(r);
    REQUIRE(r->decision == Decision::Prebuilt);  // drm not tainted: the bundle loads
  }
  modules.replace(modules.find(drm), drm.size(), drm + " (P)");
  n.put("proc/modules", modules);
  auto r = diagnose(options_for(n.root, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision != Decision::Prebuilt);
  const auto& reasons = r->evaluation.modules.at(0).reasons;
  // i915 uses GPL-only symbols before drm's (inherit_taint: ENOENT) or after (the taint is
  // inherited and they are not found): either way the kernel's ENOENT.
  CHECK(r->evaluation.modules.at(0).err == ENOENT);
  CHECK(std::any_of(reasons.begin(), reasons.end(), [](auto& x) {
    return x.code == "proprietary_provider" || x.code == "inherits_proprietary_taint";
  }));
}

TEST_CASE("check: a bundle ttm used only by the bundle's i915 is removable with it; used by another driver it is not") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_same"), {kI915_61, "kernel/drivers/gpu/drm/ttm/ttm.ko"});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->conflicts.size() == 2);
  CHECK(std::all_of(r->conflicts.begin(), r->conflicts.end(), [](auto& c) { return c.removable; }));
  CHECK(r->decision == Decision::Prebuilt);

  Node n(host);
  std::filesystem::create_symlink("../../ast", n.root / "sys/module/ttm/holders/ast");
  n.put("sys/module/ttm/refcnt", "2\n");
  auto r2 = diagnose(options_for(n.root, b.dir)).value();
  INFO(reasons_of(r2));
  CHECK(r2.decision == Decision::Refuse);
  auto ttm = std::find_if(r2.conflicts.begin(), r2.conflicts.end(), [](auto& c) { return c.name == "ttm"; });
  REQUIRE(ttm != r2.conflicts.end());
  CHECK(ttm->detail == "in use by ast");
}

TEST_CASE("check, RHEL 9 node, a k612 bundle on k612_old: CRCs differ, kernel-devel present, build") {
  const fs::path host = fixture_host("rhel9");
  const std::string kver = fixture_kver(host);
  Bundle b(kernel_of("k612"),
           {"kernel/drivers/gpu/drm/i915/i915.ko.xz", "kernel/drivers/gpu/drm/xe/xe.ko.xz"});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Build);
  CHECK(r->kernel.symvers_origin.path == "/usr/src/kernels/" + kver + "/Module.symvers");
  CHECK(r->build.dir == "/lib/modules/" + kver + "/build");
  // Both drivers claim the Arc A770; i915 alone the Flex 170 here (xe lists it too in 6.12).
  CHECK(device(*r, "0000:04:00.0")->bundle_modules == std::vector<std::string>{"i915", "xe"});
  CHECK(r->policy.kernel_decompression == "xz");
  for (const auto& m : r->evaluation.modules) {
    CHECK(m.verdict == kabi::Verdict::Refused);
    // The cause named: symbols whose CRCs differ, or module_layout's (if the pair's differs).
    CHECK(std::any_of(m.reasons.begin(), m.reasons.end(), [](auto& x) {
      return (x.code == "crc_mismatch" || x.code == "module_layout_crc") && !x.symbol.empty();
    }));
  }
}

TEST_CASE("check, node without any symvers: the in-tree union covers i915's needs, prebuilt, and says so") {
  const fs::path host = fixture_host("nosymvers");
  Bundle b(kernel_of("k61"), {kI915_61});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Prebuilt);
  CHECK(has_reason(*r, reason::kSymversPartial));
  CHECK(r->kernel.symvers_origin.kind == probes::SymversOrigin::Kind::InTreeUnion);
  CHECK_FALSE(r->build.possible);
}

TEST_CASE("check: a bundle file that is no loadable module is refused by name, the rest still judged") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_same"), {kI915_61});
  std::ifstream in(b.dir / "updates/i915.ko", std::ios::binary);
  const std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(whole.size() > 4096);
  write_file(b.dir / "updates/i915_helper.ko", whole.substr(0, whole.size() / 2));  // truncated
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision != Decision::Prebuilt);
  CHECK(has_reason(*r, reason::kModulesRefused));
  REQUIRE(r->evaluation.modules.size() == 2);
  for (const auto& m : r->evaluation.modules) {
    if (m.name == "i915") {
      CHECK(m.verdict == kabi::Verdict::Loadable);
      continue;
    }
    CHECK(m.path == (b.dir / "updates/i915_helper.ko").string());
    CHECK(m.verdict == kabi::Verdict::Refused);
    CHECK(m.err == ENOEXEC);
    REQUIRE_FALSE(m.reasons.empty());
    CHECK(m.reasons.back().code == kabi::reason::kElfSectionTable);
    CHECK(m.reasons.back().message == "Invalid ELF section header overflow");
  }
}

TEST_CASE("check, node without any symvers or headers, a foreign kABI: refuse") {
  const fs::path host = fixture_host("nosymvers");
  Bundle b(kernel_of("k61_old"), {kI915_61});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  INFO(reasons_of(*r));
  CHECK(r->decision == Decision::Refuse);
  CHECK(has_reason(*r, reason::kNoKernelHeaders));
  CHECK(has_reason(*r, reason::kModulesRefused));
}

TEST_CASE("check: a bundle whose aliases match no device here: no-device") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61"), {"kernel/drivers/net/ethernet/intel/e1000/e1000.ko"});
  auto r = diagnose(options_for(host, b.dir));
  REQUIRE(r);
  CHECK(r->decision == Decision::NoDevice);
  CHECK(exit_code(r->decision) == kCheckNoDevice);
  CHECK(has_reason(*r, reason::kNoDevice));
  // Display devices are still listed, as not handled.
  CHECK(device(*r, "0000:03:00.0")->bundle_modules.empty());
}

TEST_CASE("check JSON carries the contract fields") {
  const fs::path host = fixture_host("debian12");
  const std::string kver = fixture_kver(host);
  Bundle b(kernel_of("k61_same"), {kI915_61});
  CheckOptions o = options_for(host, b.dir);
  o.json = true;
  std::ostringstream out, err;
  CHECK(run_check(o, out, err) == 0);
  auto j = nlohmann::json::parse(out.str());
  CHECK(j["schema"] == 1);
  CHECK(j["decision"] == "prebuilt");
  CHECK(j["exit_code"] == 0);
  auto flex = std::find_if(j["devices"].begin(), j["devices"].end(), [](auto& d) { return d["bdf"] == "0000:03:00.0"; });
  REQUIRE(flex != j["devices"].end());
  CHECK((*flex)["vendor"] == "0x8086");
  CHECK((*flex)["device"] == "0x56c0");
  CHECK((*flex)["name"] == "Intel Corporation Data Center GPU Flex 170");
  CHECK((*flex)["driver"] == "i915");
  CHECK((*flex)["bundle_module"] == "i915");
  auto max = std::find_if(j["devices"].begin(), j["devices"].end(), [](auto& d) { return d["bdf"] == "0000:81:00.0"; });
  REQUIRE(max != j["devices"].end());
  CHECK((*max)["bundle_module"].is_null());
  CHECK((*max)["driver"].is_null());
  CHECK(j["kernel"]["release"] == kver);
  CHECK(j["kernel"]["vermagic"] == kver + " SMP preempt mod_unload modversions ");
  CHECK(j["kernel"]["modversions"] == true);
  CHECK(j["kernel"]["symvers"]["path"] == "/lib/modules/" + kver + "/build/Module.symvers");
  CHECK(j["kernel"]["symvers"]["verified"] == true);
  CHECK_FALSE(j["kernel"]["symvers"]["verified_with"].get<std::string>().empty());
  REQUIRE(j["modules"].size() == 1);
  CHECK(j["modules"][0]["name"] == "i915");
  CHECK(j["modules"][0]["verdict"].is_string());
  CHECK(j["conflicts"][0]["name"] == "i915");
  CHECK(j["conflicts"][0]["in_use"] == false);
  CHECK(j["policy"]["sig_enforce"] == false);
  CHECK(j["policy"]["lockdown"] == "none");
  CHECK(j["policy"]["secure_boot"] == false);
  CHECK(j["policy"]["firmware_path"] == "");
  CHECK(j["build"]["possible"] == true);
  // The plan the entrypoint would carry out: the in-tree i915 (unused) out, the bundle's in.
  CHECK(j["plan"]["decision"] == "prebuilt");
  CHECK(j["plan"]["fast_path"] == false);
  REQUIRE(j["plan"]["remove"].size() == 1);
  CHECK(j["plan"]["remove"][0]["name"] == "i915");
  CHECK(j["plan"]["remove"][0]["restore_path"].get<std::string>().ends_with("/i915.ko"));
  const auto& ins = j["plan"]["insert"];
  REQUIRE_FALSE(ins.empty());
  CHECK(ins.back()["name"] == "i915");
  CHECK(ins.back()["source"] == "bundle");
  CHECK(ins.back()["sha256"].get<std::string>().size() == 64);
  CHECK(err.str().empty());
}

TEST_CASE("check: the decision reads the signing certificate alone; the key file is never read") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_old"), {kI915_61});  // a build: the signing decision counts
  TempDir keys;
  agent::test::Key key = agent::test::rsa_key();
  {
    CHandle<BIO, BIO_free> bio(BIO_new_file((keys / "crt.pem").c_str(), "w"));
    REQUIRE(PEM_write_bio_X509(bio.get(), agent::test::make_cert(key.get()).get()) == 1);
  }
  {
    CHandle<BIO, BIO_free> bio(BIO_new_file((keys / "key.pem").c_str(), "w"));
    REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1);
  }
  REQUIRE(::chmod((keys / "key.pem").c_str(), 0400) == 0);
  write_file(keys / "garbage.key", "this is no key\n");
  REQUIRE(::chmod((keys / "garbage.key").c_str(), 0644) == 0);

  auto run = [&](const fs::path& key_file) {
    CheckOptions o = options_for(host, b.dir);
    o.json = true;
    o.signing = {key_file, keys / "crt.pem"};
    std::ostringstream out, err;
    const int rc = run_check(o, out, err);
    INFO(err.str());
    REQUIRE(err.str().empty());
    auto j = nlohmann::json::parse(out.str());
    j["exit"] = rc;
    return j;
  };
  auto codes = [](const nlohmann::json& j) {
    std::vector<std::string> out;
    for (const auto& r : j["reasons"]) out.push_back(r["code"]);
    return out;
  };
  const auto real = run(keys / "key.pem");
  const auto garbage = run(keys / "garbage.key");
  CHECK(real["decision"] == "build");
  const auto rc = codes(real);
  CHECK(std::count(rc.begin(), rc.end(), std::string(reason::kBuildSigned)) == 1);
  // The same decision and reasons with garbage where the key is: its bytes were never read.
  CHECK(garbage["decision"] == real["decision"]);
  CHECK(garbage["exit"] == real["exit"]);
  CHECK(codes(garbage) == codes(real));
  CHECK(signing_keys_held() == 0);
  // Its mode is looked at: readable by others, said in the reason that names the signer.
  std::string signed_message;
  for (const auto& r : garbage["reasons"])
    if (r["code"] == reason::kBuildSigned) signed_message = r["message"];
  CHECK_THAT(signed_message, Catch::Contains("mode 0644"));
  for (const auto& r : real["reasons"])
    if (r["code"] == reason::kBuildSigned) CHECK_THAT(r["message"].get<std::string>(), !Catch::Contains("mode 0"));
  // A key file that is not there is a fact the decision can know without reading a key.
  const auto missing = run(keys / "nope.key");
  const auto mc = codes(missing);
  CHECK(std::count(mc.begin(), mc.end(), std::string(reason::kSigningKeyUnusable)) == 1);
}

TEST_CASE("check text names the decision, the devices and the symvers source") {
  const fs::path host = fixture_host("debian12");
  const std::string kver = fixture_kver(host);
  Bundle b(kernel_of("k61_old"), {kI915_61});
  std::ostringstream out, err;
  CHECK(run_check(options_for(host, b.dir), out, err) == kCheckBuild);
  const std::string text = out.str();
  CHECK(text.rfind("Decision: BUILD (exit 10)", 0) == 0);
  CHECK(text.find("Data Center GPU Flex 170") != std::string::npos);
  CHECK(text.find("not handled by this bundle") != std::string::npos);
  CHECK(text.find("/lib/modules/" + kver + "/build/Module.symvers") != std::string::npos);
  CHECK(text.find("module_layout") != std::string::npos);
}


TEST_CASE("check text: headers without their Makefile - what is missing, what to do, one summary line") {
  const fs::path host = fixture_host("debian12");
  const std::string kver = fixture_kver(host);
  // The headers keep the kernel's Module.symvers (the CRCs are verified from it) but lose the
  // Makefile: a build cannot run, and only the Makefile is missing.
  Node n(host);
  const fs::path makefile = n.root / ("usr/src/linux-headers-" + kver + "/Makefile");
  REQUIRE(fs::is_regular_file(makefile));
  REQUIRE(fs::is_regular_file(n.root / ("usr/src/linux-headers-" + kver + "/Module.symvers")));
  fs::remove(makefile);
  // k61_old's i915: another module_layout (ENOEXEC), signed by 6.1.0-47's key, which k61's
  // image does not hold (a warning: the kernel taints).
  Bundle b(kernel_of("k61_old"), {kI915_61});
  std::ostringstream out, err;
  CHECK(run_check(options_for(n.root, b.dir), out, err) == kCheckRefuse);
  const std::string text = out.str();
  INFO(text);
  // The symvers file under the headers is verified, and said once.
  const std::string symvers = "/lib/modules/" + kver + "/build/Module.symvers";
  CHECK(lines_with(text, symvers) == std::vector<std::string>{"  symvers      " + symvers});
  CHECK_THAT(text, Contains("/lib/modules/" + kver + "/build (incomplete: needs Makefile)"));
  CHECK_THAT(text, !Contains("needs Makefile and Module.symvers"));
  // The refusal says what to do.
  const auto headers = lines_with(text, "  - no_kernel_headers: ");
  REQUIRE(headers.size() == 1);
  const auto hint = lines_with(text, "hint: install linux-headers-" + kver + " on the node");
  CHECK(hint.size() == 1);
  // The warning is shown without -v. The second (after the symbols, cut from the list) is
  // module_btf_unchecked: the fixture node has no /sys/kernel/btf/vmlinux (K2).
  CHECK(lines_with(text, "  warning: unknown_key_accepted: ").size() == 1);
  // The last line sums it up.
  const std::string summary =
      "refuse (exit 20) on " + kver + ": 1/1 refused (ENOEXEC), 2 warnings; modules_refused, no_kernel_headers";
  CHECK(text.size() > summary.size() + 1);
  CHECK(text.substr(text.size() - summary.size() - 2) == "\n" + summary + "\n");
  CHECK_THAT(text, !Contains("nothing: refuse"));
  CHECK(err.str().empty());

  // -q: that line alone.
  CheckOptions q = options_for(n.root, b.dir);
  q.quiet = true;
  std::ostringstream qout;
  CHECK(run_check(q, qout, err) == kCheckRefuse);
  CHECK(qout.str() == summary + "\n");

  // JSON: the hint beside its reason.
  CheckOptions j = options_for(n.root, b.dir);
  j.json = true;
  std::ostringstream jout;
  CHECK(run_check(j, jout, err) == kCheckRefuse);
  const auto reasons = nlohmann::json::parse(jout.str())["reasons"];
  auto it = std::find_if(reasons.begin(), reasons.end(), [](auto& r) { return r["code"] == "no_kernel_headers"; });
  REQUIRE(it != reasons.end());
  CHECK_THAT((*it)["hint"].get<std::string>(), Contains("install linux-headers-" + kver));
}

TEST_CASE("check: the default bundle is the image's only one under /opt/lib/modules") {
  const fs::path host = fixture_host("debian12");
  Bundle b(kernel_of("k61_same"), {kI915_61});
  CheckOptions o = options_for(host, {});
  o.bundle_base = b.dir.parent_path();
  auto r = diagnose(o);
  REQUIRE(r);
  CHECK(r->bundle_dir == b.dir.string());

  fs::create_directories(b.dir.parent_path() / (agent::test::abi_of("k61_old") + "-amd64"));
  auto two = diagnose(o);
  REQUIRE_FALSE(two);
  CHECK(two.error().message.find("several bundles") != std::string::npos);
}

namespace {

// Everything about a tree that a write would change: names, types, sizes, modes, mtimes, link
// targets, and the content of every regular file.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> s;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const fs::path& p = it->path();
    struct stat st{};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    std::ostringstream v;
    v << st.st_mode << ' ' << st.st_size << ' ' << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec;
    if (S_ISLNK(st.st_mode)) v << " -> " << fs::read_symlink(p).string();
    if (S_ISREG(st.st_mode)) {
      std::ifstream f(p, std::ios::binary);
      std::ostringstream c;
      c << f.rdbuf();
      v << ' ' << std::hash<std::string>{}(c.str());
    }
    s[fs::relative(p, dir).string()] = v.str();
  }
  return s;
}

}  // namespace

TEST_CASE("check never writes: a read-only copy of a node is unchanged, byte for byte") {
  const fs::path host = fixture_host("debian12");
  TempDir t;
  const fs::path node = t / "node";
  // A real copy (no hard links into the shared fixture), then made read-only.
  fs::copy(host, node, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  Bundle b(kernel_of("k61_old"), {kI915_61});
  REQUIRE(std::system(("chmod -R a-w '" + node.string() + "' '" + b.t.path().string() + "'").c_str()) == 0);
  const auto before = snapshot(node);
  const auto bundle_before = snapshot(b.t.path());
  std::ostringstream out, err;
  CheckOptions o = options_for(node, b.dir);
  CHECK(run_check(o, out, err) == kCheckBuild);
  o.json = true;
  CHECK(run_check(o, out, err) == kCheckBuild);
  CHECK(err.str().empty());
  CHECK(snapshot(node) == before);
  CHECK(snapshot(b.t.path()) == bundle_before);
}

int main(int argc, char** argv) {
  const bool roles = agent::test::require_roles({"k61", "k61_same", "k61_old", "k612"});
  if (!agent::test::require_hosts({"debian12", "rhel9", "nosymvers"}) || !roles) return 77;
  return Catch::Session().run(argc, argv);
}
