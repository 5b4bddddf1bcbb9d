#include "catch2_compat.h"

#include <algorithm>
#include <cerrno>

#include "kabi/module.h"
#include "probes/kernel.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;
using State = SymversCandidate::State;

namespace {

const SymversCandidate* find_candidate(const RunningKernel& k, const std::string& path) {
  for (const auto& c : k.symvers_origin.candidates)
    if (c.path == path) return &c;
  return nullptr;
}

using agent::test::HostCopy;

agent::kabi::ModuleInfo module_with(std::string name, std::vector<agent::kabi::VersionEntry> versions,
                                    std::vector<agent::kabi::ExportedSymbol> exports = {}) {
  agent::kabi::ModuleInfo m;
  m.name = std::move(name);
  m.has_versions = m.versions_alloc = true;
  m.versions = std::move(versions);
  m.exports = std::move(exports);
  return m;
}

}  // namespace

TEST_CASE("symvers candidates follow DESIGN.md's order") {
  const auto c = symvers_candidates("6.1.0-56-amd64");
  const std::vector<std::string> want = {
      "/usr/src/kernels/6.1.0-56-amd64/Module.symvers",
      "/lib/modules/6.1.0-56-amd64/build/Module.symvers",
      "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers",
      "/lib/modules/6.1.0-56-amd64/symvers.gz",
      "/lib/modules/6.1.0-56-amd64/symvers.xz",
      "/lib/modules/6.1.0-56-amd64/symvers.zst",
      "/boot/symvers-6.1.0-56-amd64.gz",
      "/boot/symvers-6.1.0-56-amd64.xz",
      "/boot/symvers-6.1.0-56-amd64.zst",
      "/usr/lib/modules/6.1.0-56-amd64/build/Module.symvers",
      "/usr/lib/modules/6.1.0-56-amd64/symvers.gz",
      "/usr/lib/modules/6.1.0-56-amd64/symvers.xz",
      "/usr/lib/modules/6.1.0-56-amd64/symvers.zst",
  };
  CHECK(c == want);
}

TEST_CASE("parse_modules_symbols maps exported symbols to their modules") {
  auto m = parse_modules_symbols("# Aliases extracted from modules themselves.\n"
                                 "alias symbol:drm_dev_put drm\nalias symbol:ttm_bo_put ttm\n");
  CHECK(m.size() == 2);
  CHECK(m.at("drm_dev_put") == "drm");
}

TEST_CASE("compare_with_modules counts agreement, mismatches and missing symbols") {
  agent::kabi::Symvers table = agent::kabi::parse_symvers(
      "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\n0x22222222\tdrm_dev_put\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL\n",
      "t").value();
  auto a = compare_with_modules(table, {module_with("x", {{"printk", 0x11111111}, {"drm_dev_put", 0x2}, {"gone", 1}})});
  CHECK(a.compared == 3);
  CHECK(a.mismatched == 1);
  CHECK(a.missing == 1);
  CHECK(a.mismatched_symbols == std::vector<std::string>{"x:drm_dev_put"});
}

TEST_CASE("union_of_modules: owners from exports, then modules.symbols, else vmlinux") {
  agent::kabi::ExportedSymbol e;
  e.name = "drm_dev_put";
  e.crc = 0x22;
  e.gpl_only = true;
  auto sv = union_of_modules({module_with("i915", {{"printk", 0x11}, {"ttm_bo_put", 0x33}, {"drm_dev_put", 0x22}}),
                              module_with("drm", {}, {e})},
                             {{"ttm_bo_put", "ttm"}}, "union");
  REQUIRE(sv);
  CHECK(sv->find("printk")->owner == "vmlinux");
  CHECK(sv->find("ttm_bo_put")->owner == "ttm");
  CHECK(sv->find("drm_dev_put")->owner == "drm");
  CHECK(agent::kabi::is_gpl_only(sv->find("drm_dev_put")->type));
  CHECK(sv->modversions);

  auto bad = union_of_modules({module_with("a", {{"printk", 1}}), module_with("b", {{"printk", 2}})}, {}, "union");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("printk") != std::string::npos);
}

TEST_CASE("probe_kernel: no release file is an error") {
  TempDir t;
  auto k = probe_kernel(HostRoot::open(t.path()).value());
  REQUIRE_FALSE(k);
  CHECK(k.error().code == ENOENT);
}

TEST_CASE("probe_kernel: a release without a module tree is an error naming where it looked") {
  TempDir t;
  agent::test::copy_tree(agent::test::base_host() / "proc", t / "proc");
  auto k = probe_kernel(HostRoot::open(t.path()).value());
  REQUIRE_FALSE(k);
  CHECK(k.error().message.find("/lib/modules/6.1.0-56-amd64") != std::string::npos);
}

TEST_CASE("probe_kernel: Debian layout, symvers through the build link, verified by own modules") {
  auto host = agent::test::cache_host("debian12");
  if (!host) {
    WARN(agent::test::skip_message("debian12"));
    return;
  }
  auto k = probe_kernel(HostRoot::open(*host).value());
  REQUIRE(k);
  CHECK(k->release == "6.1.0-56-amd64");
  CHECK(k->proc_version.rfind("Linux version 6.1.0-56-amd64", 0) == 0);
  CHECK(k->module_dir == "/lib/modules/6.1.0-56-amd64");
  CHECK(k->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
  CHECK(k->modversions);
  CHECK(k->tree_compression == "none");
  CHECK(k->own_modules_signed);
  const SymversOrigin& o = k->symvers_origin;
  CHECK(o.kind == SymversOrigin::Kind::File);
  CHECK(o.path == "/lib/modules/6.1.0-56-amd64/build/Module.symvers");
  CHECK(o.verified);
  CHECK(o.sample.size() >= 8);
  CHECK(find_candidate(*k, "/usr/src/kernels/6.1.0-56-amd64/Module.symvers")->state == State::Absent);
  // The build link and the headers directory are one file: tried once.
  CHECK(find_candidate(*k, "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers") == nullptr);
  CHECK(k->symvers.find("module_layout"));
}

TEST_CASE("probe_kernel: RHEL layout, kernel-devel first, then symvers.gz, then /boot") {
  auto host = agent::test::cache_host("rhel9");
  if (!host) {
    WARN(agent::test::skip_message("rhel9"));
    return;
  }
  const std::string kver = "6.12.94+deb13-amd64";
  HostCopy copy(*host);
  auto root = HostRoot::open(copy.root).value();
  auto k = probe_kernel(root);
  REQUIRE(k);
  CHECK(k->module_dir == "/lib/modules/" + kver);  // through /lib -> usr/lib
  CHECK(k->tree_compression == "xz");
  CHECK(k->vermagic.rfind(kver + " SMP preempt mod_unload modversions", 0) == 0);
  CHECK(k->symvers_origin.path == "/usr/src/kernels/" + kver + "/Module.symvers");
  CHECK(k->symvers_origin.verified);
  CHECK(find_candidate(*k, "/lib/modules/" + kver + "/symvers.gz")->state == State::NotTried);

  SECTION("without kernel-devel the build link dangles and symvers.gz wins") {
    fs::remove_all(copy.root / "usr/src/kernels");
    auto k2 = probe_kernel(root).value();
    CHECK(find_candidate(k2, "/usr/src/kernels/" + kver + "/Module.symvers")->state == State::Absent);
    CHECK(k2.symvers_origin.path == "/lib/modules/" + kver + "/symvers.gz");
    CHECK(k2.symvers_origin.verified);
  }
  SECTION("then /boot/symvers-<kver>.gz") {
    fs::remove_all(copy.root / "usr/src/kernels");
    fs::remove(copy.root / ("usr/lib/modules/" + kver + "/symvers.gz"));
    auto k2 = probe_kernel(root).value();
    CHECK(k2.symvers_origin.path == "/boot/symvers-" + kver + ".gz");
    CHECK(k2.symvers_origin.verified);
  }
  SECTION("a corrupt candidate is reported and skipped") {
    copy.put("usr/src/kernels/" + kver + "/Module.symvers", "not a symvers file\n");
    auto k2 = probe_kernel(root).value();
    const auto* c = find_candidate(k2, "/usr/src/kernels/" + kver + "/Module.symvers");
    REQUIRE(c);
    CHECK(c->state == State::Unreadable);
    CHECK(c->detail.find("line 1") != std::string::npos);
    CHECK(k2.symvers_origin.path == "/lib/modules/" + kver + "/symvers.gz");
  }
}

TEST_CASE("probe_kernel: a symvers of another ABI is rejected by the kernel's own modules") {
  auto host = agent::test::cache_host("debian12");
  auto other = agent::test::kernel_abi("6.1.0-47");
  if (!host || !other) {
    WARN(agent::test::skip_message("debian12") + " (or 6.1.0-47 not cached)");
    return;
  }
  HostCopy copy(*host);
  const fs::path hdr = copy.root / "usr/src/linux-headers-6.1.0-56-amd64/Module.symvers";
  fs::remove(hdr);
  fs::copy_file(*other / "Module.symvers", hdr);
  auto k = probe_kernel(HostRoot::open(copy.root).value()).value();
  const auto* c = find_candidate(k, "/lib/modules/6.1.0-56-amd64/build/Module.symvers");
  REQUIRE(c);
  CHECK(c->state == State::Rejected);
  CHECK(c->mismatched > 0);
  CHECK_FALSE(c->mismatched_symbols.empty());
  // Nothing else to try: the in-tree union takes over, and says it is partial.
  CHECK(k.symvers_origin.kind == SymversOrigin::Kind::InTreeUnion);
  CHECK_FALSE(k.symvers_origin.verified);

  SECTION("--symvers comes first and is verified like any candidate") {
    KernelProbeOptions o;
    o.symvers_override = *agent::test::kernel_abi("6.1.0-56") / "Module.symvers";
    auto k2 = probe_kernel(HostRoot::open(copy.root).value(), o).value();
    CHECK(k2.symvers_origin.path == o.symvers_override->string());
    CHECK(k2.symvers_origin.verified);
  }
  SECTION("a wrong --symvers is rejected and discovery goes on") {
    KernelProbeOptions o;
    o.symvers_override = *other / "Module.symvers";
    auto k2 = probe_kernel(HostRoot::open(*host).value(), o).value();
    CHECK(k2.symvers_origin.candidates.front().state == State::Rejected);
    CHECK(k2.symvers_origin.path == "/lib/modules/6.1.0-56-amd64/build/Module.symvers");
  }
}

TEST_CASE("probe_kernel: no symvers anywhere, the in-tree union covers what i915 needs") {
  auto host = agent::test::cache_host("nosymvers");
  auto abi = agent::test::kernel_abi("6.1.0-56");
  if (!host || !abi) {
    WARN(agent::test::skip_message("nosymvers"));
    return;
  }
  auto bundle = agent::kabi::read_module(*abi / "modules/kernel/drivers/gpu/drm/i915/i915.ko");
  REQUIRE(bundle);
  KernelProbeOptions o;
  for (const auto& v : *bundle->effective_versions()) o.needed_symbols.insert(v.name);
  o.prefer_sample = bundle->depends;
  auto k = probe_kernel(HostRoot::open(*host).value(), o);
  REQUIRE(k);
  CHECK(k->release == "6.1.0-55-amd64");
  for (const auto& c : k->symvers_origin.candidates) CHECK(c.state == State::Absent);
  const SymversOrigin& u = k->symvers_origin;
  CHECK(u.kind == SymversOrigin::Kind::InTreeUnion);
  CHECK(u.uncovered.empty());
  CHECK(u.union_modules > 0);
  CHECK(u.verified_with.find("covers") != std::string::npos);
  // The union's CRCs are the kernel's: they agree with 55's real Module.symvers.
  if (auto real = agent::test::kernel_abi("6.1.0-55")) {
    auto truth = agent::kabi::read_symvers(*real / "Module.symvers").value();
    size_t compared = 0;
    for (const auto& e : k->symvers.entries) {
      if (const auto* t = truth.find(e.name)) {
        ++compared;
        CHECK(t->crc == e.crc);
      }
    }
    CHECK(compared > 1000);
  }
}
