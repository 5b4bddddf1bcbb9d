#include "catch2_compat.h"

#include <cerrno>
#include <cstdlib>

#include "probes/host_root.h"
#include "test_util.h"

using agent::probes::HostRoot;
using agent::test::make_link;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;

TEST_CASE("HostRoot re-roots absolute symlinks like chroot") {
  TempDir t;
  // RHEL: /lib/modules/<kver>/build -> /usr/src/kernels/<kver> means the host's kernel-devel.
  write_file(t / "usr/src/kernels/5.14.0/Module.symvers", "x");
  make_link(t / "lib/modules/5.14.0/build", "/usr/src/kernels/5.14.0");
  auto root = HostRoot::open(t.path());
  REQUIRE(root);
  auto p = root->resolve("/lib/modules/5.14.0/build/Module.symvers");
  REQUIRE(p);
  CHECK(*p == fs::canonical(t.path()) / "usr/src/kernels/5.14.0/Module.symvers");
  CHECK(root->host_path_of(*p) == "/usr/src/kernels/5.14.0/Module.symvers");
  CHECK(root->read_text("/lib/modules/5.14.0/build/Module.symvers").value() == "x");
}

TEST_CASE("HostRoot follows a usr-merged /lib -> usr/lib link") {
  TempDir t;
  write_file(t / "usr/lib/modules/6.12/modules.dep", "dep");
  make_link(t / "lib", "usr/lib");
  auto root = HostRoot::open(t.path()).value();
  CHECK(root.read_text("/lib/modules/6.12/modules.dep").value() == "dep");
  CHECK(root.is_directory("/lib/modules/6.12"));
}

TEST_CASE("HostRoot never climbs above the root") {
  TempDir t;
  write_file(t / "etc/os-release", "inside");
  make_link(t / "a/b/up", "../../../../../../etc");
  auto root = HostRoot::open(t.path()).value();
  CHECK(root.read_text("/a/b/up/os-release").value() == "inside");
  CHECK(root.read_text("/../../etc/os-release").value() == "inside");
}

TEST_CASE("HostRoot reports a symlink loop") {
  TempDir t;
  make_link(t / "x", "y");
  make_link(t / "y", "x");
  auto root = HostRoot::open(t.path()).value();
  auto p = root.resolve("/x/file");
  REQUIRE_FALSE(p);
  CHECK(p.error().code == ELOOP);
}

TEST_CASE("HostRoot: a missing file is an error naming it, not an empty value") {
  TempDir t;
  auto root = HostRoot::open(t.path()).value();
  auto v = root.read_value("/proc/sys/kernel/osrelease");
  REQUIRE_FALSE(v);
  CHECK(v.error().code == ENOENT);
  CHECK(v.error().path == (fs::canonical(t.path()) / "proc/sys/kernel/osrelease").string());
  auto l = root.list_dir("/sys/module");
  REQUIRE_FALSE(l);
  CHECK(l.error().code == ENOENT);
}

TEST_CASE("HostRoot: an unreadable attribute is an error") {
  TempDir t;
  std::filesystem::create_directories(t / "sys/module/module/parameters/sig_enforce");  // a directory: EISDIR
  auto root = HostRoot::open(t.path()).value();
  auto v = root.read_value("/sys/module/module/parameters/sig_enforce");
  REQUIRE_FALSE(v);
  CHECK(v.error().code == EISDIR);
}

TEST_CASE("HostRoot::open rejects what is not a directory") {
  TempDir t;
  write_file(t / "file", "x");
  CHECK_FALSE(HostRoot::open(t / "file"));
  CHECK_FALSE(HostRoot::open(t / "absent"));
  CHECK_FALSE(HostRoot::open(""));
}

TEST_CASE("HostRoot::from_cli_or_env: --root, then HOST_ROOT, then /") {
  TempDir a, b;
  ::setenv("HOST_ROOT", a.path().c_str(), 1);
  CHECK(HostRoot::from_cli_or_env(std::nullopt).value().root() == fs::canonical(a.path()));
  CHECK(HostRoot::from_cli_or_env(b.path()).value().root() == fs::canonical(b.path()));
  ::unsetenv("HOST_ROOT");
  auto live = HostRoot::from_cli_or_env(std::nullopt).value();
  CHECK(live.root() == "/");
  CHECK(live.is_live());
}

TEST_CASE("HostRoot reads the bound driver through sysfs's relative links") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  CHECK(root.link_basename("/sys/bus/pci/devices/0000:03:00.0/driver").value() == "i915");
  auto none = root.link_basename("/sys/bus/pci/devices/0000:81:00.0/driver");
  REQUIRE_FALSE(none);
  CHECK(none.error().code == ENOENT);
  CHECK(root.host_path_of(root.resolve("/sys/bus/pci/devices/0000:06:00.0").value()) ==
        "/sys/devices/pci0000:00/0000:00:1c.0/0000:05:00.0/0000:06:00.0");
}

TEST_CASE("parse_number takes sysfs hex and decimal") {
  using agent::probes::parse_number;
  CHECK(parse_number("0x8086\n") == 0x8086u);
  CHECK(parse_number("0x038000") == 0x038000u);
  CHECK(parse_number("1") == 1u);
  CHECK_FALSE(parse_number(""));
  CHECK_FALSE(parse_number("0x"));
  CHECK_FALSE(parse_number("12ab"));
}
