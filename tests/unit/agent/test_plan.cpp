// make_plan(): what the decision implies, from a diagnosis built in the test.
#include "agent/decision/plan.h"

#include "catch2_compat.h"

using namespace agent;

namespace {

std::vector<std::string> names(const std::vector<PlannedInsert>& v) {
  std::vector<std::string> out;
  for (const auto& i : v) out.push_back(i.name + (i.from_bundle ? "" : "(in-tree)"));
  return out;
}
std::vector<std::string> names(const std::vector<PlannedRemoval>& v) {
  std::vector<std::string> out;
  for (const auto& r : v) out.push_back(r.name);
  return out;
}

kabi::InTreeModule in_tree(const std::string& name, std::vector<std::string> deps = {}) {
  return {name, "/lib/modules/6.1.0-56-amd64/kernel/" + name + ".ko", std::move(deps)};
}

// A bundle of i915 (needs drm_display_helper, which needs drm, in-tree) and mei_gsc (needs
// i915); the in-tree i915 is loaded and held by the in-tree mei_gsc.
Diagnosis node() {
  Diagnosis d;
  d.decision = Decision::Prebuilt;
  for (const char* n : {"i915", "mei_gsc"}) {
    kabi::ModuleInfo m;
    m.name = n;
    m.path = std::string("/opt/lib/modules/6.1.0-55-amd64/") + n + ".ko";
    m.sha256 = std::string("sha-") + n;
    m.build_id = std::string("bid-") + n;
    d.bundle.push_back(m);
  }
  kabi::ModuleVerdict i915, gsc;
  i915.name = "i915";
  i915.load_after = {"drm_display_helper", "drm"};
  gsc.name = "mei_gsc";
  gsc.load_after = {"i915", "mei"};
  d.evaluation.modules = {i915, gsc};
  d.kernel.in_tree = {{"i915", in_tree("i915", {"drm_display_helper", "drm"})},
                      {"mei_gsc", in_tree("mei_gsc", {"i915", "mei"})},
                      {"drm_display_helper", in_tree("drm_display_helper", {"drm"})},
                      {"drm", in_tree("drm")},
                      {"mei", in_tree("mei")}};
  for (const char* n : {"i915", "mei_gsc", "drm", "mei"}) d.loaded.modules[n].name = n;
  Conflict c915, cgsc;
  c915.name = "i915";
  c915.refcnt = 1;
  c915.holders = {"mei_gsc"};
  c915.removable = true;
  cgsc.name = "mei_gsc";
  cgsc.refcnt = 0;
  cgsc.removable = true;
  d.conflicts = {c915, cgsc};
  d.policy.firmware_path = "";
  return d;
}

}  // namespace

TEST_CASE("plan: holders are removed first, in-tree dependencies inserted before the bundle's modules") {
  const Plan p = make_plan(node(), {}, "/var/lib/intel-gpu-driver/firmware");
  CHECK(p.decision == Decision::Prebuilt);
  CHECK_FALSE(p.fast_path);
  CHECK(names(p.remove) == std::vector<std::string>{"mei_gsc", "i915"});
  CHECK(p.remove[1].restore_path == "/lib/modules/6.1.0-56-amd64/kernel/i915.ko");
  // drm and mei stay loaded; drm_display_helper is not loaded: in-tree, after drm (live).
  CHECK(names(p.insert) == std::vector<std::string>{"drm_display_helper(in-tree)", "i915", "mei_gsc"});
  CHECK(p.insert[1].sha256 == "sha-i915");
  CHECK(p.insert[1].build_id == "bid-i915");
  CHECK(p.insert[1].path == "/opt/lib/modules/6.1.0-55-amd64/i915.ko");
  CHECK_FALSE(p.build);
  CHECK(p.firmware.firmware.files.empty());
  CHECK(p.firmware.dir.empty());
}

TEST_CASE("plan: an in-tree dependency is inserted before the in-tree module that needs it") {
  Diagnosis d = node();
  d.loaded.modules.erase("drm");  // neither drm nor drm_display_helper (which needs drm) is live
  const Plan p = make_plan(d, {}, "/var/lib/intel-gpu-driver/firmware");
  CHECK(names(p.insert) == std::vector<std::string>{"drm(in-tree)", "drm_display_helper(in-tree)", "i915", "mei_gsc"});
}

TEST_CASE("plan: the bundle already live with its own build is the fast path") {
  Diagnosis d = node();
  for (auto& c : d.conflicts) c.same_as_bundle = true, c.removable = false;
  const Plan p = make_plan(d, {}, "/fw");
  CHECK(p.fast_path);
  CHECK(p.remove.empty());
  CHECK(p.insert.empty());
  CHECK(p.keep == std::vector<std::string>{"i915", "mei_gsc"});

  // Only one of them live: the other is inserted, nothing removed.
  d.conflicts.pop_back();
  d.loaded.modules.erase("mei_gsc");
  const Plan half = make_plan(d, {}, "/fw");
  CHECK_FALSE(half.fast_path);
  CHECK(names(half.insert) == std::vector<std::string>{"mei_gsc"});
}

TEST_CASE("plan: no action for refuse, no-device, upgrade-pending; build for build") {
  for (Decision dec : {Decision::Refuse, Decision::NoDevice, Decision::UpgradePending}) {
    Diagnosis d = node();
    d.decision = dec;
    const Plan p = make_plan(d, {}, "/fw");
    CHECK(p.remove.empty());
    CHECK(p.insert.empty());
    CHECK_FALSE(p.build);
  }
  Diagnosis d = node();
  d.decision = Decision::Build;
  CHECK(make_plan(d, {}, "/fw").build);
}

TEST_CASE("plan: firmware goes to <base>/<digest>; firmware_class.path set only when empty or ours") {
  BundleFirmware fw{"/opt/lib/firmware", {{"i915/guc.bin", 3, "abc"}}, "d1g35t"};
  Diagnosis d = node();
  auto action = [&](std::optional<std::string> current) {
    d.policy.firmware_path = std::move(current);
    return make_plan(d, fw, "/var/lib/igd/fw/").firmware;
  };
  CHECK(action("").dir == "/var/lib/igd/fw/d1g35t");
  CHECK(action("").action == FirmwarePathAction::Set);
  CHECK(action("/var/lib/igd/fw/0ld").action == FirmwarePathAction::Ours);
  CHECK(action("/var/lib/igd/fw").action == FirmwarePathAction::Foreign);  // the base itself is no copy of ours
  CHECK(action("/var/lib/igd/fwx/a").action == FirmwarePathAction::Foreign);
  CHECK(action("/lib/firmware/custom").action == FirmwarePathAction::Foreign);
  CHECK(action(std::nullopt).action == FirmwarePathAction::Unknown);
}

TEST_CASE("course: the decision as the entrypoint acts on it, built sets and upgrades included") {
  Diagnosis d = node();
  auto course = [&](Decision dec, bool loaded_built, bool is_built) {
    d.decision = dec;
    return course_of(d, loaded_built, is_built);
  };
  CHECK(course(Decision::Prebuilt, false, false) == Course::Load);
  CHECK(course(Decision::Prebuilt, true, true) == Course::Load);
  CHECK(course(Decision::Refuse, false, false) == Course::Refuse);
  CHECK(course(Decision::NoDevice, true, false) == Course::Refuse);
  CHECK(course(Decision::Build, false, false) == Course::Build);
  // The built modules would themselves need a build: there is nothing more to build.
  CHECK(course(Decision::Build, false, true) == Course::Refuse);

  // An upgrade pending behind an older bundle: wait, unless the modules in use are a build this
  // agent loaded and the image's bundle would still be refused (then the build is what loads).
  d.build.possible = true;
  CHECK(course(Decision::UpgradePending, false, false) == Course::Wait);
  CHECK(course(Decision::UpgradePending, true, false) == Course::Wait);  // nothing refused yet
  d.evaluation.modules[0].verdict = kabi::Verdict::Refused;
  CHECK(course(Decision::UpgradePending, true, false) == Course::Build);
  CHECK(course(Decision::UpgradePending, false, false) == Course::Wait);  // in use: not our build
  CHECK(course(Decision::UpgradePending, true, true) == Course::Wait);    // the build is diagnosed already
  d.build.possible = false;
  CHECK(course(Decision::UpgradePending, true, false) == Course::Wait);
}

TEST_CASE("unjournaled: bundle modules live with the bundle's build that the journal does not name") {
  Diagnosis d = node();
  REQUIRE(unjournaled_live(d, {}).empty());  // the in-tree i915 is no bundle build
  d.conflicts[0].same_as_bundle = true;
  d.conflicts[0].build_id = "bid-i915";
  const auto all = unjournaled_live(d, {});
  REQUIRE(all.size() == 1);
  CHECK(all[0].name == "i915");
  CHECK(all[0].build_id == "bid-i915");
  CHECK(unjournaled_live(d, {"mei_gsc", "i915"}).empty());
  CHECK(unjournaled_live(d, {"mei_gsc"}).size() == 1);
}
