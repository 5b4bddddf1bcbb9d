// probe_kernel on fixture nodes built from real Debian kernels (tests/fixtures/hosts/make-host.sh
// from the kernel roles of tests/e2e/fetch-kernels.sh): the ctest probes_realdata, which
// exits 77 (SKIPPED) when the nodes or the roles' kernels are missing.
#define CATCH_CONFIG_RUNNER
#include "catch2_compat.h"

#include <algorithm>
#include <cerrno>

#include "kabi/module.h"
#include "kabi/symvers.h"
#include "probes/kernel.h"
#include "test_util.h"

using namespace agent::probes;
namespace fs = std::filesystem;
using State = SymversCandidate::State;

namespace {

const SymversCandidate* find_candidate(const RunningKernel& k, const std::string& path) {
  for (const auto& c : k.symvers_origin.candidates)
    if (c.path == path) return &c;
  return nullptr;
}

using agent::test::HostCopy;

}  // namespace

TEST_CASE("probe_kernel: Debian layout, symvers through the build link, verified by own modules") {
  const fs::path host = agent::test::fixture_host("debian12");
  const std::string kver = agent::test::fixture_kver(host);
  INFO("debian12: " << kver);
  auto k = probe_kernel(HostRoot::open(host).value());
  REQUIRE(k);
  CHECK(k->release == kver);
  CHECK(k->proc_version.rfind("Linux version " + kver + " ", 0) == 0);
  CHECK(k->module_dir == "/lib/modules/" + kver);
  CHECK(k->vermagic == kver + " SMP preempt mod_unload modversions ");
  CHECK(k->modversions);
  CHECK(k->tree_compression == "none");
  CHECK(k->own_modules_signed);
  const SymversOrigin& o = k->symvers_origin;
  CHECK(o.kind == SymversOrigin::Kind::File);
  CHECK(o.path == "/lib/modules/" + kver + "/build/Module.symvers");
  CHECK(o.verified);
  CHECK(o.sample.size() >= 8);
  CHECK(find_candidate(*k, "/usr/src/kernels/" + kver + "/Module.symvers")->state == State::Absent);
  // The build link and the headers directory are one file: tried once.
  CHECK(find_candidate(*k, "/usr/src/linux-headers-" + kver + "/Module.symvers") == nullptr);
  CHECK(k->symvers.find("module_layout"));
}

TEST_CASE("probe_kernel: RHEL layout, kernel-devel first, then symvers.gz, then /boot") {
  const fs::path host = agent::test::fixture_host("rhel9");
  const std::string kver = agent::test::fixture_kver(host);
  INFO("rhel9: " << kver);
  HostCopy copy(host);
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
  // The node's kernel is k61; k61_old's CRCs differ.
  const fs::path host = agent::test::fixture_host("debian12");
  const std::string kver = agent::test::fixture_kver(host);
  const fs::path other = agent::test::kernel_of("k61_old");
  INFO("debian12: " << kver << ", k61_old: " << other.filename());
  HostCopy copy(host);
  const fs::path hdr = copy.root / ("usr/src/linux-headers-" + kver + "/Module.symvers");
  fs::remove(hdr);
  fs::copy_file(other / "Module.symvers", hdr);
  auto k = probe_kernel(HostRoot::open(copy.root).value()).value();
  const auto* c = find_candidate(k, "/lib/modules/" + kver + "/build/Module.symvers");
  REQUIRE(c);
  CHECK(c->state == State::Rejected);
  CHECK(c->mismatched > 0);
  CHECK_FALSE(c->mismatched_symbols.empty());
  // Nothing else to try: the in-tree union takes over, and says it is partial.
  CHECK(k.symvers_origin.kind == SymversOrigin::Kind::InTreeUnion);
  CHECK_FALSE(k.symvers_origin.verified);

  SECTION("--symvers comes first and is verified like any candidate") {
    KernelProbeOptions o;
    o.symvers_override = agent::test::kernel_of("k61") / "Module.symvers";
    auto k2 = probe_kernel(HostRoot::open(copy.root).value(), o).value();
    CHECK(k2.symvers_origin.path == o.symvers_override->string());
    CHECK(k2.symvers_origin.verified);
  }
  SECTION("a wrong --symvers is rejected and discovery goes on") {
    KernelProbeOptions o;
    o.symvers_override = other / "Module.symvers";
    auto k2 = probe_kernel(HostRoot::open(host).value(), o).value();
    CHECK(k2.symvers_origin.candidates.front().state == State::Rejected);
    CHECK(k2.symvers_origin.path == "/lib/modules/" + kver + "/build/Module.symvers");
  }
}

TEST_CASE("probe_kernel: no symvers anywhere, the in-tree union covers what i915 needs") {
  // The node's kernel is k61_same; the bundle's i915 is k61's (the same CRCs).
  const fs::path host = agent::test::fixture_host("nosymvers");
  const std::string kver = agent::test::fixture_kver(host);
  INFO("nosymvers: " << kver << ", i915 of k61: " << agent::test::abi_of("k61"));
  auto bundle = agent::kabi::read_module(agent::test::kernel_of("k61") / "modules/kernel/drivers/gpu/drm/i915/i915.ko");
  REQUIRE(bundle);
  KernelProbeOptions o;
  for (const auto& v : *bundle->effective_versions()) o.needed_symbols.insert(v.name);
  o.prefer_sample = bundle->depends;
  auto k = probe_kernel(HostRoot::open(host).value(), o);
  REQUIRE(k);
  CHECK(k->release == kver);
  for (const auto& c : k->symvers_origin.candidates) CHECK(c.state == State::Absent);
  const SymversOrigin& u = k->symvers_origin;
  CHECK(u.kind == SymversOrigin::Kind::InTreeUnion);
  CHECK(u.uncovered.empty());
  CHECK(u.union_modules > 0);
  CHECK(u.verified_with.find("covers") != std::string::npos);
  // The union's CRCs are the kernel's: they agree with its real Module.symvers.
  auto truth = agent::kabi::read_symvers(agent::test::kernel_of("k61_same") / "Module.symvers").value();
  size_t compared = 0;
  for (const auto& e : k->symvers.entries) {
    if (const auto* t = truth.find(e.name)) {
      ++compared;
      CHECK(t->crc == e.crc);
    }
  }
  CHECK(compared > 1000);
}

int main(int argc, char** argv) {
  const bool roles = agent::test::require_roles({"k61", "k61_same", "k61_old"});
  if (!agent::test::require_hosts({"debian12", "rhel9", "nosymvers"}) || !roles) return 77;
  return Catch::Session().run(argc, argv);
}
