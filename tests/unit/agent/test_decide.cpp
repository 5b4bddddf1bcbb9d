// decide(): every branch, from facts built in the test (no node, no files).
#include "agent/decision/decide.h"

#include "catch2_compat.h"

#include <algorithm>

using namespace agent;
using Catch::Matchers::Contains;

namespace {

// A node where everything is fine: one bundle module that drives one device, a verified
// symvers, headers present, nothing enforced. Each test changes one fact.
struct Node {
  std::vector<kabi::ModuleInfo> bundle;
  std::vector<DeviceReport> devices;
  std::vector<Conflict> conflicts;
  kabi::Evaluation evaluation;
  kabi::KernelModel model;
  probes::SymversOrigin symvers;
  probes::BuildEnv build;
  probes::Policy policy;
  SigningFacts signing;

  Node() {
    kabi::ModuleInfo m;
    m.name = "i915";
    m.license = "Dual MIT/GPL";
    m.undefined = {{"drm_open", false}, {"dma_buf_get", false}};
    m.import_ns = {"DMA_BUF"};
    bundle.push_back(m);
    DeviceReport d;
    d.device.bdf = "0000:03:00.0";
    d.device.class_code = 0x038000;
    d.bundle_modules = {"i915"};
    devices.push_back(d);
    kabi::ModuleVerdict v;
    v.name = "i915";
    evaluation.modules.push_back(v);
    model.release = "6.1.0-56-amd64";
    for (const char* s : {"drm_open", "dma_buf_get"}) {
      kabi::SymversEntry e;
      e.name = s;
      e.crc = 1;
      e.owner = "vmlinux";
      model.symvers.add(e);
    }
    symvers.kind = probes::SymversOrigin::Kind::File;
    symvers.path = "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers";
    symvers.verified = true;
    build.possible = true;
    build.dir = "/usr/src/linux-headers-6.1.0-56-amd64";
    build.detail = "kernel headers for 6.1.0-56-amd64";
    build.symvers_id = {1, 42};
  }

  DecisionResult decide() const {
    return agent::decide(DecisionFacts{.bundle = bundle,
                                       .devices = devices,
                                       .pci_functions = 12,
                                       .conflicts = conflicts,
                                       .evaluation = evaluation,
                                       .model = model,
                                       .symvers = symvers,
                                       .build = build,
                                       .policy = policy,
                                       .signing = &signing});
  }

  void refuse_module() {
    auto& v = evaluation.modules[0];
    v.verdict = kabi::Verdict::Refused;
    v.err = 8;
    kabi::Reason r;
    r.code = "module_layout_crc";
    v.reasons.push_back(r);
  }

  // The table of a node without any symvers file: CRCs from own modules' __versions only.
  void union_table() {
    symvers.kind = probes::SymversOrigin::Kind::InTreeUnion;
    symvers.verified = false;
    symvers.verified_with = "partial table from the __versions of 40 own modules";
    for (auto& e : model.symvers.entries) {
      e.type_known = e.ns_known = false;
      e.ns_possible = {""};
    }
    model.symvers.find("dma_buf_get")->ns_possible = {"", "DMA_BUF"};
  }
};

std::vector<std::string> codes(const DecisionResult& r) {
  std::vector<std::string> out;
  for (const auto& x : r.reasons) out.push_back(x.code);
  return out;
}

bool has(const DecisionResult& r, const std::string& code) {
  const auto c = codes(r);
  return std::find(c.begin(), c.end(), code) != c.end();
}

}  // namespace

TEST_CASE("decide: every module loads, the table is verified -> prebuilt") {
  Node n;
  auto r = n.decide();
  CHECK(r.decision == Decision::Prebuilt);
  CHECK(codes(r) == std::vector<std::string>{"modules_loadable"});
  CHECK(exit_code(r.decision) == 0);
}

TEST_CASE("decide: no device the bundle drives -> no-device") {
  Node n;
  n.devices[0].bundle_modules.clear();
  auto r = n.decide();
  CHECK(r.decision == Decision::NoDevice);
  CHECK(codes(r) == std::vector<std::string>{"no_device"});
  CHECK_THAT(r.reasons[0].message, Contains("(12 PCI functions, 1 display device)"));
  n.devices.push_back(n.devices[0]);
  CHECK_THAT(n.decide().reasons[0].message, Contains("(12 PCI functions, 2 display devices)"));
}

TEST_CASE("decide: a conflict in use or built in -> refuse, whatever the verdicts") {
  Node n;
  Conflict c;
  c.name = "i915";
  SECTION("in use") {
    c.refcnt = 3;
    c.detail = "in use (3 other reference(s))";
    n.conflicts.push_back(c);
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    CHECK(codes(r) == std::vector<std::string>{"conflict_in_use"});
  }
  SECTION("our older bundle in use: upgrade pending, not someone else's driver") {
    c.refcnt = 1;
    c.ours_previous = true;
    c.detail = "in use (1 other reference(s))";
    n.conflicts.push_back(c);
    auto r = n.decide();
    CHECK(r.decision == Decision::UpgradePending);
    CHECK(codes(r) == std::vector<std::string>{"upgrade_pending"});
    CHECK(exit_code(r.decision) == 21);  // its own code: waiting is not refusing
    CHECK(decision_name(r.decision) == "upgrade-pending");
    Conflict other;
    other.name = "xe";
    other.refcnt = 1;
    n.conflicts.push_back(other);
    CHECK(n.decide().decision == Decision::Refuse);  // and someone else's in use too: refuse
  }
  SECTION("built in, and the module refused too") {
    c.builtin = true;
    n.conflicts.push_back(c);
    n.refuse_module();
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    CHECK(codes(r) == std::vector<std::string>{"conflict_builtin", "modules_refused"});
  }
}

TEST_CASE("decide: removable conflicts and the bundle's own module are notes of a prebuilt") {
  Node n;
  Conflict removable;
  removable.name = "i915";
  removable.removable = true;
  Conflict same;
  same.name = "mei_gsc";
  same.same_as_bundle = true;
  n.conflicts = {removable, same};
  auto r = n.decide();
  CHECK(r.decision == Decision::Prebuilt);
  CHECK(codes(r) == std::vector<std::string>{"modules_loadable", "conflict_removable", "bundle_already_loaded"});
}

TEST_CASE("decide: a refused module -> build where headers allow, else refuse with why") {
  Node n;
  n.refuse_module();
  SECTION("headers present") {
    auto r = n.decide();
    CHECK(r.decision == Decision::Build);
    CHECK(codes(r) == std::vector<std::string>{"modules_refused", "build_possible"});
    CHECK_THAT(r.reasons[0].message, Contains("i915 (ENOEXEC: module_layout_crc)"));
  }
  SECTION("no headers") {
    n.build.possible = false;
    CHECK(codes(n.decide()) == std::vector<std::string>{"modules_refused", "no_kernel_headers"});
    CHECK(n.decide().decision == Decision::Refuse);
  }
  SECTION("no headers of the node's, and the image's are another kernel's: the mismatch named") {
    n.build.possible = false;
    n.build.mismatch = "the image's kernel headers (/usr/src/kernels) are for 6.1.0-47-amd64; the node runs 6.1.0-56-amd64";
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    CHECK(codes(r) == std::vector<std::string>{"modules_refused", "kernel_headers_mismatch"});
    CHECK_THAT(r.reasons[1].message, Contains("are for 6.1.0-47-amd64"));
  }
  SECTION("headers whose Module.symvers the kernel's own modules rejected") {
    probes::SymversCandidate c;
    c.state = probes::SymversCandidate::State::Rejected;
    c.file_id = n.build.symvers_id;
    c.detail = "40 of 900 CRCs differ";
    n.symvers.candidates.push_back(c);
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    CHECK(codes(r) == std::vector<std::string>{"modules_refused", "kernel_headers_mismatch"});
  }
  SECTION("another rejected file is no reason") {
    probes::SymversCandidate c;
    c.state = probes::SymversCandidate::State::Rejected;
    c.file_id = {1, 43};
    n.symvers.candidates.push_back(c);
    CHECK(n.decide().decision == Decision::Build);
  }
  SECTION("signatures enforced: a node build would be unsigned") {
    SECTION("sig_enforce") { n.policy.sig_enforce = true; }
    SECTION("lockdown") { n.policy.lockdown = "integrity"; }
    SECTION("predicted so by the model") { n.model.sig_enforce = true; }
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    CHECK(codes(r).back() == "build_unsigned_enforced");
  }
  SECTION("signing: a trusted certificate makes the build possible where signatures are enforced") {
    n.policy.sig_enforce = true;
    n.signing.configured = true;
    n.signing.identity.signer = "Example Corp: module signing";
    n.signing.identity.key_ids = {"01", "aabb"};
    n.signing.trust.where = ".machine";
    SECTION("trusted") {
      n.signing.trust.verdict = SigningTrust::Verdict::Trusted;
      auto r = n.decide();
      CHECK(r.decision == Decision::Build);
      CHECK(codes(r) == std::vector<std::string>{"modules_refused", "build_possible", "build_signed"});
      CHECK_THAT(r.reasons.back().message, Contains("Example Corp: module signing (aabb): trusted in .machine"));
    }
    SECTION("untrusted, or not known to be trusted: refused, never assumed") {
      n.signing.trust.verdict = GENERATE(SigningTrust::Verdict::Untrusted, SigningTrust::Verdict::Unknown);
      n.signing.trust.where.clear();
      auto r = n.decide();
      CHECK(r.decision == Decision::Refuse);
      CHECK(codes(r).back() == "signing_key_untrusted");
      CHECK_THAT(r.reasons.back().message, Contains("module.sig_enforce=1"));
    }
    SECTION("files that cannot be used: refused, enforced or not") {
      n.policy.sig_enforce = GENERATE(true, false);
      n.signing.problem = "/secrets/key.pem: not a private key";
      auto r = n.decide();
      CHECK(r.decision == Decision::Refuse);
      CHECK(codes(r).back() == "signing_key_unusable");
    }
    SECTION("not enforced: built and signed, the trust said") {
      n.policy.sig_enforce = false;
      n.signing.trust.verdict = SigningTrust::Verdict::Untrusted;
      auto r = n.decide();
      CHECK(r.decision == Decision::Build);
      CHECK_THAT(r.reasons.back().message, Contains("untrusted"));
    }
  }
}

TEST_CASE("decide: an unverified symvers file is said, and does not block") {
  Node n;
  n.symvers.verified = false;
  n.symvers.verified_with = "not verified: the kernel's own modules carry no CRCs";
  auto r = n.decide();
  CHECK(r.decision == Decision::Prebuilt);
  CHECK(codes(r) == std::vector<std::string>{"symvers_unverified", "modules_loadable"});
}

TEST_CASE("decide: the in-tree union table") {
  Node n;
  n.union_table();
  SECTION("covers everything a GPL bundle needs, namespaces imported -> prebuilt, said partial") {
    auto r = n.decide();
    CHECK(r.decision == Decision::Prebuilt);
    CHECK(codes(r) == std::vector<std::string>{"symvers_partial", "modules_loadable"});
  }
  SECTION("misses symbols -> not prebuilt") {
    n.symvers.uncovered = {"drm_open"};
    auto r = n.decide();
    CHECK(r.decision == Decision::Build);
    CHECK(codes(r) == std::vector<std::string>{"symvers_incomplete", "build_possible"});
  }
  SECTION("a proprietary module: whether a symbol is GPL-only was never seen -> not prebuilt") {
    // The case seen on a node without Module.symvers: i915 relicensed "Proprietary" was called
    // PREBUILT from the union table, refused (gpl_only_symbol, ENOENT) with the real one.
    n.bundle[0].license = "Proprietary";
    auto r = n.decide();
    CHECK(r.decision == Decision::Build);
    CHECK(codes(r) == std::vector<std::string>{"symvers_partial", "symvers_facts_unknown", "build_possible"});
    CHECK_THAT(r.reasons[1].message, Contains("i915: drm_open (GPL-only or not, for licence 'Proprietary')"));
    n.build.possible = false;
    CHECK(n.decide().decision == Decision::Refuse);
  }
  SECTION("a namespace the module does not import may be the symbol's -> not prebuilt") {
    n.bundle[0].import_ns.clear();
    auto r = n.decide();
    CHECK(r.decision == Decision::Build);
    CHECK(has(r, "symvers_facts_unknown"));
    CHECK_THAT(r.reasons[1].message, Contains("dma_buf_get (its namespace (possibly DMA_BUF, not imported))"));
  }
  SECTION("symbols whose export was seen are known facts") {
    n.bundle[0].license = "Proprietary";
    n.bundle[0].import_ns.clear();
    for (auto& e : n.model.symvers.entries) e.type_known = e.ns_known = true;
    CHECK(n.decide().decision == Decision::Prebuilt);
  }
}

TEST_CASE("unknown_export_facts: the bundle's own exports and missing symbols are not asked about") {
  Node n;
  n.union_table();
  n.bundle[0].license = "Proprietary";
  kabi::ModuleInfo helper;
  helper.name = "i915_helper";
  helper.license = "GPL";
  helper.exports.push_back({"drm_open", std::nullopt, false, ""});
  n.bundle.push_back(helper);
  n.bundle[0].undefined.push_back({"not_in_the_table", false});
  const auto unknown = unknown_export_facts(n.bundle, n.model.symvers);
  REQUIRE(unknown.size() == 1);
  CHECK_THAT(unknown[0], Contains("i915: dma_buf_get"));
}

TEST_CASE("decide: upgrade pending only when every blocker is ours, in any order") {
  auto blocker = [](const char* name, bool ours) {
    Conflict c;
    c.name = name;
    c.refcnt = 1;
    c.ours_previous = ours;
    c.detail = "in use (1 other reference(s))";
    return c;
  };
  // Three blockers, each in turn the only foreign one: refuse, wherever it stands.
  for (size_t foreign = 0; foreign < 3; ++foreign) {
    Node n;
    for (size_t i = 0; i < 3; ++i) n.conflicts.push_back(blocker(i == 0 ? "i915" : i == 1 ? "xe" : "mei_gsc", i != foreign));
    INFO("the foreign blocker is number " << foreign);
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    const auto c = codes(r);
    CHECK(std::count(c.begin(), c.end(), "upgrade_pending") == 2);
    CHECK(std::count(c.begin(), c.end(), "conflict_in_use") == 1);
  }
  SECTION("all three ours: upgrade pending") {
    Node n;
    for (const char* name : {"i915", "xe", "mei_gsc"}) n.conflicts.push_back(blocker(name, true));
    CHECK(n.decide().decision == Decision::UpgradePending);
  }
  SECTION("ours but built in is not ours: refuse") {
    Node n;
    n.conflicts.push_back(blocker("xe", true));
    n.conflicts.push_back(blocker("i915", true));
    n.conflicts.back().builtin = true;
    auto r = n.decide();
    CHECK(r.decision == Decision::Refuse);
    CHECK(codes(r) == std::vector<std::string>{"upgrade_pending", "conflict_builtin"});
  }
}

// settle_removability(): a module's references beyond the modules that hold it are users (an
// open device, fbcon); one such reference is enough to keep it, and whatever it holds.
TEST_CASE("settle_removability: a single reference beyond the holders is a user") {
  auto conflict = [](const char* name, int refcnt, std::vector<std::string> holders) {
    Conflict c;
    c.name = name;
    c.refcnt = refcnt;
    c.holders = std::move(holders);
    return c;
  };
  auto find = [](const std::vector<Conflict>& v, const std::string& name) -> const Conflict& {
    auto it = std::find_if(v.begin(), v.end(), [&](const Conflict& c) { return c.name == name; });
    REQUIRE(it != v.end());
    return *it;
  };
  SECTION("unused: removable") {
    std::vector<Conflict> v{conflict("i915", 0, {})};
    settle_removability(v);
    CHECK(v[0].removable);
    CHECK(v[0].detail == "loaded, not in use: would be removed before loading");
  }
  SECTION("one reference, no holder: in use") {
    std::vector<Conflict> v{conflict("i915", 1, {})};
    settle_removability(v);
    CHECK_FALSE(v[0].removable);
    CHECK(v[0].detail == "in use (1 other reference(s))");
  }
  SECTION("held by a removable module only: removable with it") {
    std::vector<Conflict> v{conflict("ttm", 1, {"i915"}), conflict("i915", 0, {})};
    settle_removability(v);
    CHECK(find(v, "ttm").removable);
    CHECK(find(v, "i915").removable);
  }
  SECTION("its holder has one user: neither is removable") {
    std::vector<Conflict> v{conflict("ttm", 1, {"i915"}), conflict("i915", 1, {})};
    settle_removability(v);
    CHECK_FALSE(find(v, "i915").removable);
    CHECK_FALSE(find(v, "ttm").removable);
    CHECK(find(v, "ttm").detail == "in use by i915");
  }
  SECTION("one reference beyond its one holder: in use") {
    std::vector<Conflict> v{conflict("ttm", 2, {"i915"}), conflict("i915", 0, {})};
    settle_removability(v);
    CHECK_FALSE(find(v, "ttm").removable);
    CHECK(find(v, "ttm").detail == "in use (1 other reference(s))");
    CHECK(find(v, "i915").removable);
  }
  SECTION("held by a module that is not a conflict: in use by it") {
    std::vector<Conflict> v{conflict("ttm", 1, {"amdgpu"})};
    settle_removability(v);
    CHECK_FALSE(v[0].removable);
    CHECK(v[0].detail == "in use by amdgpu");
  }
  SECTION("no refcount, or built in: never removable") {
    std::vector<Conflict> v{conflict("i915", 0, {}), conflict("xe", 0, {})};
    v[0].refcnt.reset();
    v[1].builtin = true;
    settle_removability(v);
    CHECK_FALSE(v[0].removable);
    CHECK_FALSE(v[1].removable);
  }
}

TEST_CASE("decide: a refusal no build can change (modules_disabled, blacklist, ...) -> refuse, not build") {
  for (const char* code : {"modules_disabled", "no_cap_sys_module", "module_blacklisted", "parameter_invalid",
                           "nomodeset_init_fails"}) {
    INFO(code);
    Node n;
    auto& v = n.evaluation.modules[0];
    v.verdict = kabi::Verdict::Refused;
    v.err = 1;
    kabi::Reason r;
    r.code = code;
    r.message = "why";
    v.reasons.push_back(r);
    const auto d = n.decide();
    CHECK(d.decision == Decision::Refuse);
    REQUIRE(std::any_of(d.reasons.begin(), d.reasons.end(),
                        [](const auto& x) { return x.code == reason::kNodeRefusesLoad && x.message == "i915: why"; }));
  }
  // the same module refused for a CRC: a build (the baseline of this test)
  Node n;
  n.refuse_module();
  CHECK(n.decide().decision == Decision::Build);
}
