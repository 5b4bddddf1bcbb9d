#include "catch2_compat.h"

#include <cerrno>

#include "probes/loaded_modules.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;

TEST_CASE("parse_proc_modules reads every column the kernel prints") {
  const char* text =
      "i915 3706880 2 kvmgt, Live 0xffffffffc0a00000 (E)\n"
      "drm 614400 8 ast,drm_buddy,ttm, Live 0x0000000000000000\n"
      "kvmgt 45056 0 - Live 0x0000000000000000 (OE)\n"
      "noise 4096 - - Loading 0x0000000000000000\n"
      // Seen on 6.1 under qemu: a module being removed (rmmod) shows -1.
      "agent_test_nic 16384 -1 - Unloading 0xffffffffc0299000 (OE-)\n";
  auto mods = parse_proc_modules(text, "/proc/modules");
  REQUIRE(mods);
  REQUIRE(mods->size() == 5);
  CHECK((*mods)[4].refcnt == -1);
  CHECK((*mods)[4].state == "Unloading");
  CHECK((*mods)[0].name == "i915");
  CHECK((*mods)[0].size == 3706880);
  CHECK((*mods)[0].refcnt == 2);
  CHECK((*mods)[0].used_by == std::vector<std::string>{"kvmgt"});
  CHECK((*mods)[0].state == "Live");
  CHECK((*mods)[0].taint == "(E)");
  CHECK((*mods)[1].used_by == std::vector<std::string>{"ast", "drm_buddy", "ttm"});
  CHECK((*mods)[2].used_by.empty());
  CHECK_FALSE((*mods)[3].refcnt);  // no CONFIG_MODULE_UNLOAD
  CHECK((*mods)[3].state == "Loading");
}

TEST_CASE("parse_proc_modules names the bad line") {
  auto mods = parse_proc_modules("i915 3706880 0 - Live 0x0\ngarbage here\n", "/host/proc/modules");
  REQUIRE_FALSE(mods);
  CHECK(mods.error().code == EINVAL);
  CHECK(mods.error().path == "/host/proc/modules");
  CHECK(mods.error().message.find("line 2") != std::string::npos);
}

TEST_CASE("parse_modules_builtin turns paths into kernel names") {
  CHECK(parse_modules_builtin("kernel/drivers/char/agp/intel-gtt.ko\nkernel/fs/ext4/ext4.ko\n\n") ==
        std::vector<std::string>{"intel_gtt", "ext4"});
}

TEST_CASE("probe_loaded_modules: /proc/modules plus /sys/module on the fixture node") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  auto inv = probe_loaded_modules(root, "");
  REQUIRE(inv);
  CHECK(inv->problems.empty());
  const LoadedModule& i915 = inv->modules.at("i915");
  CHECK_FALSE(i915.builtin);
  CHECK(i915.refcnt == 0);
  CHECK(i915.initstate == "live");
  CHECK(i915.holders.empty());
  const LoadedModule& cec = inv->modules.at("cec");
  CHECK(cec.refcnt == 2);
  CHECK(cec.holders == std::vector<std::string>{"drm_display_helper", "i915"});
  CHECK(inv->modules.at("drm").holders.size() == 7);
  // Built in: a /sys/module directory for its parameters, no initstate.
  CHECK(inv->modules.at("firmware_class").builtin);
  CHECK(inv->modules.at("module").builtin);
}

TEST_CASE("probe_loaded_modules: modules.builtin marks built-in modules") {
  TempDir t;
  agent::test::copy_tree(agent::test::base_host() / "proc", t / "proc");
  write_file(t / "lib/modules/6.1.0/modules.builtin", "kernel/drivers/char/agp/intel-gtt.ko\nkernel/drivers/gpu/drm/drm.ko\n");
  auto root = HostRoot::open(t.path()).value();
  auto inv = probe_loaded_modules(root, "/lib/modules/6.1.0").value();
  CHECK(inv.modules.at("intel_gtt").builtin);
  CHECK_FALSE(inv.modules.at("drm").builtin);  // in /proc/modules: loadable, whatever the index says
  REQUIRE(inv.problems.size() == 1);           // no /sys/module in this copy: reported
  CHECK(inv.problems[0].code == ENOENT);
  CHECK_FALSE(inv.sys_module_read);  // a built-in's /sys/module is then not known
  CHECK(inv.builtin_read);
}

TEST_CASE("probe_loaded_modules: a built-in's /sys/module/<name> is recorded (mod_sysfs_init refuses that name)") {
  TempDir t;
  agent::test::copy_tree(agent::test::base_host() / "proc", t / "proc");
  agent::test::copy_tree(agent::test::base_host() / "sys/module", t / "sys/module");
  REQUIRE_FALSE(fs::exists(t / "sys/module/intel_gtt"));
  write_file(t / "lib/modules/6.1.0/modules.builtin", "kernel/drivers/char/agp/intel-gtt.ko\nkernel/drivers/input/serio/i8042.ko\n");
  write_file(t / "sys/module/i8042/parameters/nokbd", "N\n");
  auto root = HostRoot::open(t.path()).value();
  auto inv = probe_loaded_modules(root, "/lib/modules/6.1.0").value();
  CHECK(inv.sys_module_read);
  CHECK(inv.modules.at("i8042").builtin);
  CHECK(inv.modules.at("i8042").sysfs);
  CHECK(inv.modules.at("intel_gtt").builtin);
  CHECK_FALSE(inv.modules.at("intel_gtt").sysfs);
  CHECK(inv.modules.at("firmware_class").sysfs);  // built in, not in modules.builtin: still a directory
  CHECK(inv.modules.at("i915").sysfs);
}

TEST_CASE("probe_loaded_modules: srcversion and version come from /sys/module") {
  TempDir t;
  write_file(t / "proc/modules", "i915 4194304 0 - Live 0x0 (OE)\n");
  write_file(t / "sys/module/i915/initstate", "live\n");
  write_file(t / "sys/module/i915/refcnt", "0\n");
  write_file(t / "sys/module/i915/srcversion", "4C2A1B9E58E5E9C0D1F2A3B\n");
  write_file(t / "sys/module/i915/version", "backport-24.10\n");
  auto root = HostRoot::open(t.path()).value();
  auto inv = probe_loaded_modules(root, "").value();
  CHECK(inv.modules.at("i915").srcversion == "4C2A1B9E58E5E9C0D1F2A3B");
  CHECK(inv.modules.at("i915").version == "backport-24.10");
  CHECK(inv.modules.at("i915").taint == "(OE)");
}

TEST_CASE("probe_loaded_modules: no /proc/modules is an error, not 'nothing loaded'") {
  TempDir t;
  auto root = HostRoot::open(t.path()).value();
  auto inv = probe_loaded_modules(root, "");
  REQUIRE_FALSE(inv);
  CHECK(inv.error().code == ENOENT);
}

TEST_CASE("probe_build_id: the note's hex, none for a module without one, an error when unreadable") {
  TempDir t;
  // An ELF note as the kernel shows it: namesz 4, descsz 4, NT_GNU_BUILD_ID (3), "GNU\0", the id.
  const std::string note("\x04\0\0\0\x04\0\0\0\x03\0\0\0GNU\0\xde\xad\xbe\xef", 20);
  write_file(t / "proc/modules", "i915 4194304 0 - Live 0x0\nxe 4194304 0 - Live 0x0\n");
  for (const char* m : {"i915", "xe"}) write_file(t / "sys/module" / m / "initstate", "live\n");
  auto root = HostRoot::open(t.path()).value();
  CHECK(probe_build_id(root, "i915").value().empty());
  write_file(t / "sys/module/i915/notes/.note.gnu.build-id", note);
  CHECK(probe_build_id(root, "i915").value() == "deadbeef");
  fs::create_directories(t / "sys/module/xe/notes/.note.gnu.build-id");
  auto bad = probe_build_id(root, "xe");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().what().find("xe/notes") != std::string::npos);
  // The inventory reads it the same way, and says what it could not read.
  auto inv = probe_loaded_modules(root, "").value();
  CHECK(inv.modules.at("i915").build_id == "deadbeef");
  CHECK(inv.modules.at("xe").build_id.empty());
  REQUIRE(inv.problems.size() == 1);
  CHECK(inv.problems[0].what().find("xe/notes") != std::string::npos);
}
