#include "kabi/kernel_model.h"

#include <cerrno>

#include "catch2_compat.h"

#include "test_util.h"

using namespace agent::kabi;
using Catch::Matchers::Contains;
using kabi_test::fixture;
using kabi_test::slurp;
using kabi_test::spit;
using kabi_test::TempDir;

namespace {

// /lib/modules/6.1.0-56-amd64 in miniature: the fixture modules under in-tree names.
void make_tree(const TempDir& tmp) {
  spit(tmp / "kernel/drivers/gpu/drm/drm.ko", slurp(fixture("provider.ko")));
  spit(tmp / "kernel/drivers/gpu/drm/drm_kms_helper.ko.xz", slurp(fixture("basic.ko.xz")));
  spit(tmp / "kernel/fs/fat/fat.ko.zst", slurp(fixture("basic.ko.zst")));
  spit(tmp / "kernel/sound/core/snd-pcm.ko.gz", slurp(fixture("basic.ko.gz")));
  spit(tmp / "updates/dkms/drm.ko", slurp(fixture("consumer.ko")));  // overrides kernel/
  spit(tmp / "kernel/drivers/gpu/drm/README", "not a module");
  // As depmod writes it: one line per module it chose (updates/ over kernel/), with the
  // module's whole dependency closure.
  spit(tmp / "modules.dep",
       "kernel/drivers/gpu/drm/drm_kms_helper.ko.xz: updates/dkms/drm.ko kernel/sound/core/snd-pcm.ko.gz\n"
       "updates/dkms/drm.ko:\n"
       "kernel/fs/fat/fat.ko.zst:\n"
       "kernel/sound/core/snd-pcm.ko.gz:\n");
}

}  // namespace

TEST_CASE("kernel model: release strings to major.minor", "[kernel_model]") {
  using P = std::pair<int, int>;
  CHECK(parse_release_version("6.1.0-56-amd64") == P{6, 1});
  CHECK(parse_release_version("6.12.94+deb13-amd64") == P{6, 12});
  CHECK(parse_release_version("7.2.13-amd64") == P{7, 2});
  CHECK(parse_release_version("4.18.0-553.el8_10.x86_64") == P{4, 18});
  CHECK(parse_release_version("6") == P{6, 0});
  CHECK(parse_release_version("") == P{0, 0});
  CHECK(parse_release_version("linux-6.1") == P{0, 0});
}

TEST_CASE("kernel model: modversions in a vermagic is a whole word", "[kernel_model]") {
  CHECK(vermagic_has_modversions("6.1.0-56-amd64 SMP preempt mod_unload modversions "));
  CHECK(vermagic_has_modversions("modversions"));
  CHECK_FALSE(vermagic_has_modversions("7.2.13+deb14-amd64 SMP preempt mod_unload "));
  CHECK_FALSE(vermagic_has_modversions("6.1.0 SMP modversionsX"));
  CHECK_FALSE(vermagic_has_modversions(""));
}

TEST_CASE("kernel model: scanning a module tree", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->size() == 4);
  REQUIRE(tree->count("drm"));
  REQUIRE(tree->count("drm_kms_helper"));
  REQUIRE(tree->count("fat"));
  REQUIRE(tree->count("snd_pcm"));  // dashes folded
  CHECK(tree->at("drm").path == tmp / "updates/dkms/drm.ko");
  CHECK(tree->at("drm_kms_helper").path == tmp / "kernel/drivers/gpu/drm/drm_kms_helper.ko.xz");
  CHECK(tree->at("drm_kms_helper").depends == std::vector<std::string>{"drm", "snd_pcm"});
  CHECK(tree->at("drm").depends.empty());
  CHECK(tree->at("fat").name == "fat");
}

TEST_CASE("kernel model: a tree without modules.dep is walked, updates/ over kernel/", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  std::filesystem::remove(tmp / "modules.dep");
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->size() == 4);
  CHECK(tree->at("drm").path == tmp / "updates/dkms/drm.ko");
  CHECK(tree->at("fat").depends.empty());  // no modules.dep: dependencies come from depends=
}

TEST_CASE("kernel model: a stale modules.dep line for a removed module is dropped", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  std::filesystem::remove(tmp / "kernel/fs/fat/fat.ko.zst");
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->size() == 3);
  CHECK(tree->count("fat") == 0);
}

TEST_CASE("kernel model: only the modules asked for", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  SymbolSet only{"drm_kms_helper", "fat", "not_there"};
  auto tree = scan_module_tree(tmp.path(), &only);
  REQUIRE(tree);
  CHECK(tree->size() == 2);  // drm_kms_helper is also the first line: the facts' sample
  CHECK(tree->at("drm_kms_helper").depends == std::vector<std::string>{"drm", "snd_pcm"});
  std::filesystem::remove(tmp / "modules.dep");
  auto walked = scan_module_tree(tmp.path(), &only);
  REQUIRE(walked);
  CHECK(walked->count("drm_kms_helper") == 1);
  CHECK(walked->count("fat") == 1);
  CHECK(walked->size() <= 3);  // and the first module the walk met
  SymbolSet none{"not_there"};
  auto one = scan_module_tree(tmp.path(), &none);
  REQUIRE(one);
  CHECK(one->size() == 1);  // never empty while the tree has modules
}

TEST_CASE("kernel model: bad module trees are errors naming the directory", "[kernel_model]") {
  TempDir tmp;
  SECTION("missing") {
    auto tree = scan_module_tree(tmp / "6.1.0-99-amd64");
    REQUIRE_FALSE(tree);
    CHECK(tree.error().code == ENOENT);
    CHECK(tree.error().path == (tmp / "6.1.0-99-amd64").string());
  }
  SECTION("a file, not a directory") {
    spit(tmp / "file", "x");
    CHECK_FALSE(scan_module_tree(tmp / "file"));
  }
  SECTION("no modules") {
    spit(tmp / "modules.dep", "");
    auto tree = scan_module_tree(tmp.path());
    REQUIRE_FALSE(tree);
    CHECK(tree.error().path == tmp.path().string());
    CHECK_THAT(tree.error().message, Contains("no kernel modules"));
  }
}

TEST_CASE("kernel model: vermagic and struct module size from the tree's own modules", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  auto facts = read_tree_facts(*tree);
  REQUIRE(facts);
  CHECK(facts->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
  CHECK(facts->this_module_size == 1280);
  CHECK(facts->sample == (tmp / "kernel/fs/fat/fat.ko.zst").string());  // a preferred small module
}

TEST_CASE("kernel model: unreadable in-tree modules give an error, not a guess", "[kernel_model]") {
  TempDir tmp;
  spit(tmp / "kernel/a.ko", "garbage");
  spit(tmp / "kernel/b.ko.xz", "\xfd" "7zXZ garbage");
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  auto facts = read_tree_facts(*tree);
  REQUIRE_FALSE(facts);
  CHECK_THAT(facts.error().message, Contains("vermagic"));

  auto k = load_kernel_model(kabi_test::source_fixture("Module.symvers"), tmp.path());
  REQUIRE_FALSE(k);
  CHECK(k.error().path == tmp.path().string());
}

TEST_CASE("kernel model: load_kernel_model puts it together", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  SECTION("a modversions kernel") {
    auto k = load_kernel_model(kabi_test::source_fixture("Module.symvers"), tmp.path());
    REQUIRE(k);
    CHECK(k->release == "6.1.0-56-amd64");
    CHECK(k->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
    CHECK(k->version_major == 6);
    CHECK(k->version_minor == 1);
    CHECK(k->modversions);
    CHECK(k->this_module_size == 1280);
    CHECK(k->symvers_source == kabi_test::source_fixture("Module.symvers").string());
    CHECK(k->symvers.entries.size() == 7);
    CHECK(k->in_tree.size() == 4);
    CHECK(k->policy == MissingVersionPolicy::Strict);  // the default
    CHECK(k->live.empty());
  }
  SECTION("all-zero CRCs: no modversions") {
    auto k = load_kernel_model(kabi_test::source_fixture("Module.symvers.nomodversions"), tmp.path());
    REQUIRE(k);
    CHECK_FALSE(k->modversions);
  }
  SECTION("a compressed symvers (symvers-<kver>.gz)") {
    auto k = load_kernel_model(fixture("Module.symvers.gz"), tmp.path());
    REQUIRE(k);
    CHECK(k->modversions);
    CHECK(k->symvers.entries.size() == 7);
  }
  SECTION("an unreadable symvers names the symvers file") {
    auto k = load_kernel_model(tmp / "Module.symvers", tmp.path());
    REQUIRE_FALSE(k);
    CHECK(k.error().path == (tmp / "Module.symvers").string());
  }
}

TEST_CASE("kernel model: vermagic without 'modversions' means no modversions", "[kernel_model]") {
  TempDir tmp;
  spit(tmp / "kernel/fs/fat/fat.ko", slurp(fixture("noversions.ko")));
  auto k = load_kernel_model(kabi_test::source_fixture("Module.symvers"), tmp.path());
  REQUIRE(k);
  CHECK(k->release == "7.2.13-amd64");
  CHECK(k->version_major == 7);
  CHECK(k->version_minor == 2);
  CHECK_FALSE(k->modversions);
}
