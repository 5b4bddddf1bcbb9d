// The release pipeline on real Debian kernels, by role (tests/e2e/fetch-kernels.sh): bundles
// taken from role kernels' own in-tree modules, run through the matrix over the other kernels
// (each a directory holding Module.symvers and modules/, as the cache keeps them), and the
// verdicts held against what the kernel-agreement suite established under qemu: the kernel's
// own errno for the very same module file, read from <cache>/e2e-results/<abi>/<sha256> when
// the suite has run, and the cross-kernel facts of tests/e2e/README.md always.
#define CATCH_CONFIG_RUNNER
#include "catch2_compat.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "kabi/kernel_source.h"
#include "kabi/matrix.h"
#include "kabi/rules.h"
#include "kabi/symvers_diff.h"
#include "kernel_roles.h"

namespace fs = std::filesystem;
using namespace agent::kabi;
using agent::test::abi_of;
using agent::test::kernel_of;

namespace {

// The in-tree module NAME of a role's kernel (its path from modules.dep).
fs::path module_path(const std::string& role, const std::string& name) {
  auto tree = scan_module_tree(kernel_of(role) / "modules");
  if (!tree) FAIL(tree.error().what());
  auto it = tree->modules.find(name);
  REQUIRE(it != tree->modules.end());
  return it->second.path;
}

std::vector<ModuleInfo> bundle_of(const std::string& role, const std::vector<std::string>& names) {
  std::vector<ModuleInfo> b;
  for (const auto& n : names) {
    auto m = read_module(module_path(role, n));  // with its sha256: the suite's cache key
    if (!m) FAIL(m.error().what());
    b.push_back(std::move(*m));
  }
  return b;
}

KernelPlan plan_on(const std::vector<ModuleInfo>& bundle, const std::string& role) {
  auto src = locate_kernel(kernel_of(role));
  if (!src) FAIL(src.error().what());
  CHECK(!src->symvers.empty());
  CHECK(!src->module_dir.empty());
  auto k = load_kernel(*src, bundle);
  if (!k) FAIL(k.error().what());
  KernelPlan p = plan_kernel(evaluate(bundle, k->model));
  p.kernel = role;
  p.release = k->model.release;
  p.fingerprint = bundle_fingerprint(bundle_imports(bundle), k->model);
  return p;
}

const ModulePlan& module_plan(const KernelPlan& p, const std::string& name) {
  auto it = std::find_if(p.modules.begin(), p.modules.end(), [&](const ModulePlan& m) { return m.name == name; });
  REQUIRE(it != p.modules.end());
  return *it;
}

// The kernel's answer for this module file on the role's kernel, if the suite recorded one.
std::optional<int> kernel_answer(const ModuleInfo& m, const std::string& role) {
  std::ifstream in(agent::test::kernel_cache() / "e2e-results" / abi_of(role) / m.sha256);
  std::string word;
  int err = 0;
  if (in >> word >> err && word == "errno") return err;
  return std::nullopt;
}

size_t compared_with_kernel = 0;

// Each module's verdict against the kernel's recorded answer: errno 0 is exactly `reuse`, and
// the errno is the one the agent predicts.
void agrees_with_kernel(const std::vector<ModuleInfo>& bundle, const KernelPlan& p, const std::string& role) {
  for (const auto& m : bundle) {
    auto answer = kernel_answer(m, role);
    if (!answer) continue;
    const ModulePlan& mp = module_plan(p, m.name);
    INFO(m.name << " of " << m.path << " on " << role << " (" << abi_of(role) << "): kernel errno " << *answer);
    CHECK((*answer == 0) == (mp.plan == Plan::Reuse));
    CHECK(mp.err == *answer);
    ++compared_with_kernel;
  }
}

}  // namespace

TEST_CASE("k61_same's i915 and e1000: reuse on k61 (one image for both), rebuild on k61_old for module_layout") {
  const auto bundle = bundle_of("k61_same", {"i915", "e1000"});
  MatrixReport r;
  for (const char* role : {"k61", "k61_same", "k61_old"}) {
    r.kernels.push_back(plan_on(bundle, role));
    agrees_with_kernel(bundle, r.kernels.back(), role);
  }
  group_kernels(r);
  CHECK(r.kernels[0].verdict == Plan::Reuse);
  CHECK(r.kernels[1].verdict == Plan::Reuse);
  CHECK(r.kernels[2].verdict == Plan::Rebuild);
  for (const char* name : {"i915", "e1000"}) {
    const ModulePlan& m = module_plan(r.kernels[2], name);
    CHECK(m.plan == Plan::Rebuild);
    CHECK(m.err == ENOEXEC);
    CHECK(m.counts.count(reason::kModuleLayout) == 1);
    CHECK(m.first_reasons.front().code == reason::kModuleLayout);
  }
  // Identical CRCs: one image serves k61 and k61_same; k61_old needs its own.
  REQUIRE(r.groups.size() == 2);
  CHECK(r.groups[0].kernels == std::vector<size_t>{0, 1});
  CHECK(r.groups[0].verdict == Plan::Reuse);
  CHECK(r.groups[1].kernels == std::vector<size_t>{2});
}

TEST_CASE("6.12: k612_old's i915 and xe need a rebuild on k612, and k612's on k612_old") {
  for (const auto& [from, on] : std::vector<std::pair<std::string, std::string>>{{"k612_old", "k612"}, {"k612", "k612_old"}}) {
    const auto bundle = bundle_of(from, {"i915", "xe"});
    const KernelPlan own = plan_on(bundle, from);
    CHECK(own.verdict == Plan::Reuse);
    agrees_with_kernel(bundle, own, from);
    const KernelPlan p = plan_on(bundle, on);
    INFO(from << " on " << on);
    CHECK(p.verdict == Plan::Rebuild);
    for (const auto& m : p.modules) {
      CHECK(m.plan == Plan::Rebuild);
      CHECK(m.err != 0);
    }
    agrees_with_kernel(bundle, p, on);
    CHECK(own.fingerprint != p.fingerprint);
  }
}

TEST_CASE("a 6.1 bundle on 6.12: symbols gone from the kernel, a rebuild of these sources cannot help") {
  const auto bundle = bundle_of("k61_same", {"i915"});
  const KernelPlan p = plan_on(bundle, "k612");
  CHECK(p.verdict == Plan::Impossible);
  CHECK(module_plan(p, "i915").counts.count(reason::kUnknownSymbol) == 1);
}

TEST_CASE("the kernel-agreement suite's answers were compared where it recorded them") {
  std::cerr << "matrix verdicts compared with the kernel's recorded answers: " << compared_with_kernel << '\n';
  SUCCEED();
}

TEST_CASE("diff of the real pairs, for i915's imports: none on the same-CRC pair, module_layout on the old one") {
  const auto bundle = bundle_of("k61_same", {"i915"});
  const auto imports = bundle_imports(bundle);
  SymbolSet only(imports.begin(), imports.end());
  only.insert("module_layout");
  auto table = [&](const std::string& role) {
    auto src = locate_kernel(kernel_of(role));
    REQUIRE(src);
    auto sv = read_kernel_symvers(*src, &only);
    if (!sv) FAIL(sv.error().what());
    return *sv;
  };
  const Symvers k61 = table("k61"), same = table("k61_same"), old = table("k61_old");
  CHECK(diff_symvers(same, k61, &only).empty());
  const auto changes = diff_symvers(old, k61, &only);
  const BundleDiff d = diff_for_bundle(changes, bundle);
  REQUIRE(d.module_layout);
  CHECK(d.module_layout->crc);
  CHECK(d.changed > 100);
  CHECK(d.imports == imports.size());
  // The full tables of the same-CRC pair: nothing changed at all, in ~25,000 symbols.
  auto full_k61 = read_symvers(kernel_of("k61") / "Module.symvers");
  auto full_same = read_symvers(kernel_of("k61_same") / "Module.symvers");
  REQUIRE(full_k61);
  REQUIRE(full_same);
  CHECK(diff_symvers(*full_same, *full_k61).empty());
}

TEST_CASE("speed: one bundle (i915 and its in-tree dependencies) over 20 kernels in well under a second") {
  // What `agent kabi matrix` does per kernel: locate, read the symvers (only the imports kept)
  // and the tree's facts, evaluate, plan, fingerprint. bench/matrix.sh measures the CLI.
  auto tree = scan_module_tree(kernel_of("k61_same") / "modules");
  REQUIRE(tree);
  std::vector<ModuleInfo> bundle;
  auto add = [&](const std::string& name) {
    auto m = read_module(tree->modules.at(name).path, {.trusted_certs = nullptr, .sha256 = false});
    REQUIRE(m);
    bundle.push_back(std::move(*m));
  };
  add("i915");
  for (const auto& d : tree->modules.at("i915").depends) add(d);
  CHECK(bundle.size() > 5);
  const std::vector<std::string> roles = {"k61", "k61_same", "k61_old", "k612", "k612_old"};
  const auto start = std::chrono::steady_clock::now();
  MatrixReport r;
  for (size_t i = 0; i < 20; ++i) r.kernels.push_back(plan_on(bundle, roles[i % roles.size()]));
  group_kernels(r);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "matrix of " << bundle.size() << " modules over 20 kernels: " << seconds * 1e3 << " ms\n";
  CHECK(seconds < 1.0);
  CHECK(r.groups.size() == 4);  // k61 + k61_same, k61_old, k612, k612_old
}

int main(int argc, char** argv) {
  if (!agent::test::require_roles({"k61", "k61_same", "k61_old", "k612", "k612_old"})) return 77;
  return Catch::Session().run(argc, argv);
}
