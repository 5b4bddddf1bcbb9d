#include "kabi/kernel_model.h"

#include <cerrno>

#include <sys/stat.h>

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

TEST_CASE("kernel model: built-ins with /sys/module (parameters, version) and without", "[kernel_model]") {
  // Lines as Debian 6.1.0-56's modules.builtin and modules.builtin.modinfo have them.
  const std::string builtin = "kernel/drivers/input/serio/i8042.ko\nkernel/lib/crc32c_intel.ko\nkernel/drivers/char/hw_random/rng-core.ko\n";
  using namespace std::string_literals;
  const std::string modinfo = "i8042.parm=nokbd:Do not probe or use KBD port.\0i8042.parmtype=nokbd:bool\0"s +
                              "crc32c_intel.license=GPL\0rng_core.version=x\0printk.parmtype=time:bool\0"s;
  std::set<std::string> sysfs, plain;
  parse_builtins(builtin, modinfo, sysfs, plain);
  CHECK(sysfs == std::set<std::string>{"i8042", "printk", "rng_core"});
  CHECK(plain == std::set<std::string>{"crc32c_intel"});
}

TEST_CASE("kernel model: scanning a module tree", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->modules.size() == 4);
  REQUIRE(tree->modules.count("drm"));
  REQUIRE(tree->modules.count("drm_kms_helper"));
  REQUIRE(tree->modules.count("fat"));
  REQUIRE(tree->modules.count("snd_pcm"));  // dashes folded
  CHECK(tree->modules.at("drm").path == tmp / "updates/dkms/drm.ko");
  CHECK(tree->modules.at("drm_kms_helper").path == tmp / "kernel/drivers/gpu/drm/drm_kms_helper.ko.xz");
  CHECK(tree->modules.at("drm_kms_helper").depends == std::vector<std::string>{"drm", "snd_pcm"});
  CHECK(tree->modules.at("drm").depends.empty());
  CHECK(tree->modules.at("fat").name == "fat");
}

TEST_CASE("kernel model: a tree without modules.dep is walked, updates/ over kernel/", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  std::filesystem::remove(tmp / "modules.dep");
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->modules.size() == 4);
  CHECK(tree->modules.at("drm").path == tmp / "updates/dkms/drm.ko");
  CHECK(tree->modules.at("fat").depends.empty());  // no modules.dep: dependencies come from depends=
  CHECK_FALSE(tree->indexed);
  REQUIRE(tree->problems.size() == 1);  // said, not silent
  CHECK(tree->problems[0].path == (tmp / "modules.dep").string());
  CHECK_THAT(tree->problems[0].message, Contains("modules.dep not usable"));
}

TEST_CASE("kernel model: a modules.dep that is a FIFO, a directory or too big is walked past, and said", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  std::filesystem::remove(tmp / "modules.dep");
  SECTION("FIFO (would block a plain read forever)") { REQUIRE(::mkfifo((tmp / "modules.dep").c_str(), 0644) == 0); }
  SECTION("directory") { std::filesystem::create_directory(tmp / "modules.dep"); }
  SECTION("sparse, over the cap") {
    spit(tmp / "modules.dep", "");
    std::filesystem::resize_file(tmp / "modules.dep", std::uintmax_t{1} << 30);
  }
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->modules.size() == 4);
  REQUIRE(tree->problems.size() == 1);
  CHECK(tree->problems[0].path == (tmp / "modules.dep").string());
}

TEST_CASE("kernel model: without modules.dep, the dependencies asked for are read from the modules", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  std::filesystem::remove(tmp / "modules.dep");
  auto root = RootFs::open("/");
  REQUIRE(root);
  auto tree = scan_module_tree(*root, tmp.path().string());
  REQUIRE(tree);
  complete_dependencies(*root, *tree, {"drm_kms_helper"});
  // drm_kms_helper (basic.ko) says depends=drm,drm_kms_helper: itself is no dependency; drm
  // (consumer.ko) says kabi_provider, which the tree does not have.
  CHECK(tree->modules.at("drm_kms_helper").depends == std::vector<std::string>{"drm"});
  CHECK(tree->modules.at("drm").depends.empty());
  CHECK(tree->modules.at("fat").depends.empty());  // not asked for
}

TEST_CASE("kernel model: a stale modules.dep line for a removed module is dropped", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  std::filesystem::remove(tmp / "kernel/fs/fat/fat.ko.zst");
  auto tree = scan_module_tree(tmp.path());
  REQUIRE(tree);
  CHECK(tree->modules.size() == 3);
  CHECK(tree->modules.count("fat") == 0);
  REQUIRE(tree->problems.size() == 1);
  CHECK_THAT(tree->problems[0].message, Contains("not in the tree"));
}

TEST_CASE("kernel model: only the modules asked for", "[kernel_model]") {
  TempDir tmp;
  make_tree(tmp);
  SymbolSet only{"drm_kms_helper", "fat", "not_there"};
  auto tree = scan_module_tree(tmp.path(), &only);
  REQUIRE(tree);
  CHECK(tree->modules.size() == 2);  // drm_kms_helper is also the first line: the facts' sample
  CHECK(tree->modules.at("drm_kms_helper").depends == std::vector<std::string>{"drm", "snd_pcm"});
  std::filesystem::remove(tmp / "modules.dep");
  auto walked = scan_module_tree(tmp.path(), &only);
  REQUIRE(walked);
  CHECK(walked->modules.count("drm_kms_helper") == 1);
  CHECK(walked->modules.count("fat") == 1);
  CHECK(walked->modules.size() <= 3);  // and the first module the walk met
  SymbolSet none{"not_there"};
  auto one = scan_module_tree(tmp.path(), &none);
  REQUIRE(one);
  CHECK(one->modules.size() == 1);  // never empty while the tree has modules
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
  auto facts = read_tree_facts(tree->modules);
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
  auto facts = read_tree_facts(tree->modules);
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

TEST_CASE("kernel model: nothing in a hostile tree leads outside its root", "[kernel_model][hostile]") {
  TempDir tmp;
  // Markers beside the root that must never be read: modules that would change the answer.
  spit(tmp / "outside/e1000.ko", slurp(fixture("consumer.ko")));
  const auto r = tmp / "root";
  const std::string moddir = "/lib/modules/6.1.0-56-amd64";
  spit(r / "lib/modules/6.1.0-56-amd64/kernel/fs/fat/fat.ko.zst", slurp(fixture("basic.ko.zst")));
  std::filesystem::create_directories(r / "lib/modules/6.1.0-56-amd64/kernel/net");
  auto root = RootFs::open(r, GENERATE(RootFs::Resolver::Openat2, RootFs::Resolver::Walk)).value();

  SECTION("a module that is a symlink out of the root (relative and absolute)") {
    std::filesystem::create_symlink("../../../../../../../outside/e1000.ko", r / "lib/modules/6.1.0-56-amd64/kernel/net/e1000.ko");
    std::filesystem::create_symlink(tmp / "outside/e1000.ko", r / "lib/modules/6.1.0-56-amd64/kernel/net/e100.ko");
    auto tree = scan_module_tree(root, moddir);
    REQUIRE(tree);
    CHECK(tree->modules.count("e1000") == 0);  // leads nowhere inside the root
    CHECK(tree->modules.count("e100") == 0);
    CHECK(tree->modules.count("fat") == 1);
  }
  SECTION("an absolute path in modules.dep is the host's path, inside the root") {
    spit(r / "lib/modules/6.1.0-56-amd64/modules.dep",
         (tmp / "outside/e1000.ko").string() + ":\n" + moddir + "/kernel/fs/fat/fat.ko.zst:\n");
    auto tree = scan_module_tree(root, moddir);
    REQUIRE(tree);
    CHECK(tree->modules.count("e1000") == 0);
    REQUIRE(tree->modules.count("fat") == 1);
    CHECK(tree->modules.at("fat").path == moddir + "/kernel/fs/fat/fat.ko.zst");
    REQUIRE(tree->problems.size() == 1);  // the line that leads nowhere is said
    auto facts = read_tree_facts(root, tree->modules);
    REQUIRE(facts);
    CHECK(facts->vermagic == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
  }
  SECTION("a build link to ../../../../.. is not walked") {
    std::filesystem::create_symlink("../../../../..", r / "lib/modules/6.1.0-56-amd64/build");
    std::filesystem::create_symlink("../../../../..", r / "lib/modules/6.1.0-56-amd64/kernel/loop");
    auto tree = scan_module_tree(root, moddir);
    REQUIRE(tree);
    CHECK(tree->modules.size() == 1);
  }
}

TEST_CASE("kernel model: a walk that cannot finish is an error, never a short tree", "[kernel_model][hostile]") {
  TempDir tmp;
  spit(tmp / "kernel/fs/fat/fat.ko.zst", slurp(fixture("basic.ko.zst")));
  std::filesystem::path deep = tmp / "kernel";
  for (int i = 0; i < 20; ++i) deep /= "d";
  std::filesystem::create_directories(deep);
  auto tree = scan_module_tree(tmp.path());
  REQUIRE_FALSE(tree);
  CHECK(tree.error().code == ELOOP);
  CHECK_THAT(tree.error().message, Contains("deeper than"));
}

TEST_CASE("kernel model: the kernel image in each layout packages use", "[kernel_model]") {
  const std::string kver = "7.0.1-amd64";
  CHECK(kernel_image_paths(kver) == std::vector<std::string>{"/boot/vmlinuz-7.0.1-amd64",
                                                             "/lib/modules/7.0.1-amd64/vmlinuz",
                                                             "/usr/lib/modules/7.0.1-amd64/vmlinuz"});
  SECTION("Debian 6.x: /boot/vmlinuz-<kver>, the tree in /lib/modules") {
    TempDir t;
    spit(t / ("lib/modules/" + kver + "/modules.dep"), "");
    REQUIRE_FALSE(find_kernel_image(t / ("lib/modules/" + kver), kver));
    spit(t / ("boot/vmlinuz-" + kver), "image");
    CHECK(find_kernel_image(t / ("lib/modules/" + kver), kver) == std::filesystem::canonical(t / ("boot/vmlinuz-" + kver)));
  }
  SECTION("Debian 7.x: /usr/lib/modules/<kver>/vmlinuz, reached by the tree's usr path or by /lib") {
    TempDir t;
    spit(t / ("usr/lib/modules/" + kver + "/vmlinuz"), "image");
    std::filesystem::create_symlink("usr/lib", t / "lib");
    const auto image = std::filesystem::canonical(t / ("usr/lib/modules/" + kver + "/vmlinuz"));
    CHECK(find_kernel_image(t / ("usr/lib/modules/" + kver), kver) == image);
    CHECK(find_kernel_image(t / ("lib/modules/" + kver), kver) == image);
  }
  SECTION("a usr tree finds the system root's /boot, not /usr/boot") {
    TempDir t;
    spit(t / ("usr/lib/modules/" + kver + "/modules.dep"), "");
    spit(t / ("usr/boot/vmlinuz-" + kver), "not the image");
    REQUIRE_FALSE(find_kernel_image(t / ("usr/lib/modules/" + kver), kver));
    spit(t / ("boot/vmlinuz-" + kver), "image");
    CHECK(find_kernel_image(t / ("usr/lib/modules/" + kver), kver) == std::filesystem::canonical(t / ("boot/vmlinuz-" + kver)));
  }
}
