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

TEST_CASE("union_of_modules knows which facts it has not seen: licence, and namespace up to what users import") {
  agent::kabi::ExportedSymbol e;
  e.name = "drm_dev_put";
  e.crc = 0x22;
  e.ns = "";
  auto i915 = module_with("i915", {{"printk", 0x11}, {"dma_buf_get", 0x44}, {"drm_dev_put", 0x22}, {"ksym_x", 5}});
  i915.import_ns = {"DMA_BUF", "X_NS"};
  auto xe = module_with("xe", {{"dma_buf_get", 0x44}, {"ksym_x", 5}});
  xe.import_ns = {"DMA_BUF"};
  auto sv = union_of_modules({i915, xe, module_with("drm", {}, {e})}, {}, "union");
  REQUIRE(sv);
  // An export record knows everything.
  CHECK(sv->find("drm_dev_put")->type_known);
  CHECK(sv->find("drm_dev_put")->ns_known);
  // Seen only in __versions: GPL-only or not is unknown ...
  CHECK_FALSE(sv->find("printk")->type_known);
  // ... and the namespace is none, or one that every importing module imports.
  CHECK(sv->find("printk")->ns_possible == std::vector<std::string>{"", "DMA_BUF", "X_NS"});
  CHECK_FALSE(sv->find("printk")->ns_known);
  CHECK(sv->find("dma_buf_get")->ns_possible == std::vector<std::string>{"", "DMA_BUF"});
  CHECK(sv->find("ksym_x")->ns_possible == std::vector<std::string>{"", "DMA_BUF"});  // X_NS: xe does not import it
  auto plain = module_with("plain", {{"ksym_x", 5}});
  auto sv2 = union_of_modules({xe, plain}, {}, "union");
  REQUIRE(sv2);
  CHECK(sv2->find("ksym_x")->ns_known);  // a user that imports nothing: certainly no namespace
  CHECK(sv2->find("ksym_x")->ns.empty());
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

TEST_CASE("find_kernel_image: /boot first, then the module trees (Debian 7.x's /usr/lib/modules)") {
  TempDir t;
  const std::string kver = "7.0.1-amd64";
  auto root = HostRoot::open(t.path()).value();
  REQUIRE_FALSE(find_kernel_image(root, kver));
  write_file(t / ("usr/lib/modules/" + kver + "/vmlinuz"), "image");
  CHECK(find_kernel_image(root, kver) == "/usr/lib/modules/" + kver + "/vmlinuz");
  write_file(t / ("lib/modules/" + kver + "/vmlinuz"), "image");
  CHECK(find_kernel_image(root, kver) == "/lib/modules/" + kver + "/vmlinuz");
  fs::create_directories(t / ("boot/vmlinuz-" + kver));  // a directory is no image
  CHECK(find_kernel_image(root, kver) == "/lib/modules/" + kver + "/vmlinuz");
  fs::remove(t / ("boot/vmlinuz-" + kver));
  write_file(t / ("boot/vmlinuz-" + kver), "image");
  CHECK(find_kernel_image(root, kver) == "/boot/vmlinuz-" + kver);
}

TEST_CASE("probe_boot_id: the trimmed id; missing or empty is an error naming the file") {
  TempDir t;
  auto root = HostRoot::open(t.path()).value();
  auto none = probe_boot_id(root);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == ENOENT);
  write_file(t / "proc/sys/kernel/random/boot_id", "\n");
  auto empty = probe_boot_id(root);
  REQUIRE_FALSE(empty);
  CHECK(empty.error().what().find("/proc/sys/kernel/random/boot_id") != std::string::npos);
  write_file(t / "proc/sys/kernel/random/boot_id", "6f1c2e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6\n");
  CHECK(probe_boot_id(root).value() == "6f1c2e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6");
}
