// The kABI engine on real Debian kernels (fetched by tests/e2e/fetch-kernels.sh, chosen by
// role): i915 and xe of one ABI against another ABI's Module.symvers and module tree.
#define CATCH_CONFIG_RUNNER
#include "catch2_compat.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include "kabi/kernel_model.h"
#include "kabi/module.h"
#include "kabi/rules.h"
#include "kernel_roles.h"

namespace fs = std::filesystem;
using namespace agent::kabi;

namespace {

using agent::test::abi_of;

// The roles (tests/e2e/fetch-kernels.sh): k61 and k61_same have identical CRCs; k61_old is
// older with other CRCs, module_layout's too; k612 and k612_old are two trixie 6.12 ABIs with
// different CRCs (whether module_layout differs too is theirs to say, not the test's).
const std::vector<std::string> kRoles = {"k61", "k61_same", "k61_old", "k612", "k612_old"};

const KernelModel& kernel(const std::string& role) {
  static std::map<std::string, KernelModel> cache;
  auto it = cache.find(role);
  if (it == cache.end()) {
    const fs::path dir = agent::test::kernel_of(role);
    auto k = load_kernel_model(dir / "Module.symvers", dir / "modules");
    if (!k) FAIL(k.error().what());
    it = cache.emplace(role, std::move(*k)).first;
  }
  return it->second;
}

ModuleInfo module_of(const std::string& abi, const std::string& name) {
  const auto& tree = kernel(abi).in_tree;
  auto it = tree.find(name);
  REQUIRE(it != tree.end());
  auto m = read_module(it->second.path);
  if (!m) FAIL(m.error().what());
  return *m;
}

ModuleVerdict check(const std::string& from, const std::string& name, const std::string& on) {
  auto ev = evaluate({module_of(from, name)}, kernel(on));
  REQUIRE(ev.modules.size() == 1);
  return ev.modules[0];
}

size_t count_code(const ModuleVerdict& v, const std::string& code) {
  return static_cast<size_t>(std::count_if(v.reasons.begin(), v.reasons.end(), [&](const Reason& r) { return r.code == code; }));
}

bool has_symbol_reason(const ModuleVerdict& v, const std::string& code, const std::string& sym) {
  return std::any_of(v.reasons.begin(), v.reasons.end(), [&](const Reason& r) { return r.code == code && r.symbol == sym; });
}

}  // namespace

TEST_CASE("every fetched kernel yields a model from its own symvers and tree") {
  for (const auto& role : kRoles) {
    const KernelModel& k = kernel(role);
    INFO(role << " = " << abi_of(role));
    CHECK(k.release == abi_of(role) + "-amd64");
    CHECK(k.modversions);
    CHECK(k.symvers.entries.size() > 20000);
    if (role == "k61" || role == "k61_same" || role == "k61_old") CHECK(k.symvers.find("module_layout") != nullptr);
    CHECK(k.vermagic.find(" modversions") != std::string::npos);
    CHECK(k.this_module_size > 0);
    CHECK(k.in_tree.count("i915") == 1);
  }
}

TEST_CASE("i915 from k61_same loads on k61: identical CRCs, different build") {
  INFO("k61_same " << abi_of("k61_same") << " on k61 " << abi_of("k61"));
  auto v = check("k61_same", "i915", "k61");
  CHECK(v.verdict == Verdict::Loadable);
  CHECK(v.err == 0);
  CHECK(count_code(v, reason::kCrcMismatch) == 0);
  // Its in-tree dependencies are named, from symbols and the target's modules.dep.
  for (const char* dep : {"drm", "drm_kms_helper", "ttm", "drm_display_helper", "i2c_algo_bit"})
    CHECK(std::count(v.load_after.begin(), v.load_after.end(), dep) == 1);
}

TEST_CASE("i915 from k61_old is refused on k61: module_layout differs, ENOEXEC") {
  INFO("k61_old " << abi_of("k61_old") << " on k61 " << abi_of("k61"));
  auto v = check("k61_old", "i915", "k61");
  CHECK(v.verdict == Verdict::Refused);
  CHECK(v.err == ENOEXEC);
  CHECK(has_symbol_reason(v, reason::kModuleLayout, "module_layout"));
  CHECK(count_code(v, reason::kCrcMismatch) > 100);  // and the symbols are named
}

TEST_CASE("i915 and xe across the two trixie 6.12 kernels: CRCs differ, refused with the cause named") {
  for (auto [from, on] : {std::pair{"k612_old", "k612"}, std::pair{"k612", "k612_old"}}) {
    // module_layout: when both kernels have it and its CRCs differ, the first check fails.
    const auto* from_layout = kernel(from).symvers.find("module_layout");
    const auto* on_layout = kernel(on).symvers.find("module_layout");
    const bool layout_differs = from_layout && on_layout && from_layout->crc != on_layout->crc;
    for (const char* name : {"i915", "xe"}) {
      INFO(name << " from " << from << " (" << abi_of(from) << ") on " << on << " (" << abi_of(on)
                << "), module_layout " << (layout_differs ? "differs" : "equal or absent"));
      auto v = check(from, name, on);
      CHECK(v.verdict == Verdict::Refused);
      CHECK(has_symbol_reason(v, reason::kModuleLayout, "module_layout") == layout_differs);
      if (layout_differs) {
        CHECK(v.err == ENOEXEC);
      } else {
        // The kernel reports the errno of the last failing symbol in symbol-table order: a
        // CRC mismatch (EINVAL), or an unknown symbol (ENOENT) when the module uses exports
        // the target lacks. tests/e2e asks the kernel.
        CHECK((v.err == EINVAL || v.err == ENOENT));
      }
      CHECK(count_code(v, reason::kCrcMismatch) > 0);  // the symbols are named
      for (const auto& r : v.reasons)
        if (r.code == reason::kCrcMismatch) {
          REQUIRE(r.expected_crc);
          REQUIRE(r.found_crc);
          CHECK(*r.expected_crc != *r.found_crc);
        }
    }
  }
}

TEST_CASE("a kernel's own i915 and xe load on it") {
  for (const char* role : {"k61", "k612", "k612_old"}) {
    INFO(role << " = " << abi_of(role));
    CHECK(check(role, "i915", role).verdict == Verdict::Loadable);
    if (std::string(role) != "k61") CHECK(check(role, "xe", role).verdict == Verdict::Loadable);
  }
}

TEST_CASE("compressed trixie modules read as the kernel sees them") {
  INFO("k612 = " << abi_of("k612"));
  ModuleInfo xe = module_of("k612", "xe");
  CHECK(xe.compression == "xz");
  CHECK(xe.name == "xe");
  CHECK(xe.versions_alloc);
  CHECK(xe.versions.size() > 500);
  CHECK(xe.license == "GPL and additional rights");
  CHECK(xe.signature.state == Signature::State::Present);
  CHECK(!xe.signature.signer.empty());
  CHECK(std::any_of(xe.aliases.begin(), xe.aliases.end(), [](const std::string& a) { return a.rfind("pci:v00008086d", 0) == 0; }));
  CHECK(std::count(xe.depends.begin(), xe.depends.end(), "drm_gpuvm") == 1);
}

TEST_CASE("the i915 and its in-tree dependencies of one ABI evaluate together in dependency order") {
  const auto& tree = kernel("k61_same").in_tree;
  std::vector<ModuleInfo> set;
  for (const auto& dep : tree.at("i915").depends) set.push_back(module_of("k61_same", dep));
  set.insert(set.begin(), module_of("k61_same", "i915"));  // given first, must load last
  auto ev = evaluate(set, kernel("k61"));
  REQUIRE(ev.modules.size() == set.size());
  CHECK(ev.modules.back().name == "i915");
  CHECK(ev.all_loadable());
  auto on_old = evaluate(set, kernel("k61_old"));
  CHECK_FALSE(on_old.all_loadable());
}

int main(int argc, char** argv) {
  if (!agent::test::require_roles({"k61", "k61_same", "k61_old", "k612", "k612_old"})) return 77;
  return Catch::Session().run(argc, argv);
}

TEST_CASE("i915's unsafe parameters are read from its __param entries") {
  // The kernel's own answer: with i915.enable_guc= it printed "Setting dangerous option
  // enable_guc - tainting kernel" on each of these kernels (kernel_agreement's
  // i915-own-param_bad_int); i915.modeset is an ordinary parameter (module_param_named).
  for (const char* role : {"k61", "k612"}) {
    INFO(role << " = " << abi_of(role));
    const ModuleInfo i915 = module_of(role, "i915");
    REQUIRE(std::any_of(i915.modinfo.begin(), i915.modinfo.end(),
                        [](const auto& kv) { return kv.first == "parmtype" && kv.second.rfind("enable_guc:", 0) == 0; }));
    CHECK(std::count(i915.unsafe_params.begin(), i915.unsafe_params.end(), "enable_guc") == 1);
    CHECK(std::count(i915.unsafe_params.begin(), i915.unsafe_params.end(), "modeset") == 0);
    CHECK(i915.hw_params.empty());
  }
}
