#include "catch2_compat.h"

#include <cerrno>
#include <cstdlib>

#include <sys/stat.h>

#include "probes/host_root.h"
#include "test_util.h"

using agent::kabi::RootFs;
using agent::probes::HostRoot;
using agent::test::make_link;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;

namespace {
// Every confinement test runs with both resolvers: openat2(RESOLVE_IN_ROOT) and the walk over
// directory descriptors that stands in for it on kernels before 5.6.
RootFs::Resolver any_resolver() { return GENERATE(RootFs::Resolver::Openat2, RootFs::Resolver::Walk); }
}  // namespace

TEST_CASE("HostRoot re-roots absolute symlinks like chroot") {
  TempDir t;
  const auto resolver = any_resolver();
  // RHEL: /lib/modules/<kver>/build -> /usr/src/kernels/<kver> means the host's kernel-devel.
  write_file(t / "usr/src/kernels/5.14.0/Module.symvers", "x");
  make_link(t / "lib/modules/5.14.0/build", "/usr/src/kernels/5.14.0");
  auto root = HostRoot::open(t.path(), resolver);
  REQUIRE(root);
  CHECK(root->fs().resolver() == resolver);
  CHECK(root->canonical("/lib/modules/5.14.0/build/Module.symvers").value() == "/usr/src/kernels/5.14.0/Module.symvers");
  CHECK(root->display("/usr/src/x") == (fs::canonical(t.path()) / "usr/src/x").string());
  CHECK(root->read_text("/lib/modules/5.14.0/build/Module.symvers").value() == "x");
}

TEST_CASE("HostRoot: no link, relative or absolute, leads outside the root") {
  TempDir t;
  const auto resolver = any_resolver();
  // A marker beside the root that must never be read.
  write_file(t / "outside/secret", "SECRET");
  write_file(t / "root/etc/os-release", "inside");
  const fs::path r = t / "root";
  make_link(r / "up", "../outside/secret");
  make_link(r / "deep/up", "../../../../../../outside/secret");
  make_link(r / "abs", (t / "outside/secret").string());  // the agent's own path of the marker
  make_link(r / "lib/modules/6.1/build", "../../../../..");   // a build link to "the root's parent"
  auto root = HostRoot::open(r, resolver).value();
  for (const char* p : {"/up", "/deep/up", "/abs", "/lib/modules/6.1/build/outside/secret", "/../outside/secret"}) {
    INFO(p);
    auto v = root.read_text(p);
    REQUIRE_FALSE(v);
    CHECK(v.error().code == ENOENT);
  }
  // ".." through the build link stops at the root: its etc/ is the root's own.
  CHECK(root.read_text("/lib/modules/6.1/build/etc/os-release").value() == "inside");
  CHECK(root.canonical("/lib/modules/6.1/build").value() == "/");
}

TEST_CASE("HostRoot: a FIFO, a socket or a device is an error naming it, and is never opened") {
  TempDir t;
  const auto resolver = any_resolver();
  REQUIRE(::mkfifo((t / "fifo").c_str(), 0644) == 0);
  auto root = HostRoot::open(t.path(), resolver).value();
  auto v = root.read_text("/fifo");  // a plain open() would block here forever
  REQUIRE_FALSE(v);
  CHECK(v.error().code == EINVAL);
  CHECK(v.error().path == (fs::canonical(t.path()) / "fifo").string());
  CHECK_THAT(v.error().message, Catch::Matchers::Contains("FIFO"));
  // A link to a device resolves inside the root (no /dev there) ...
  make_link(t / "zero", "/dev/zero");
  CHECK(root.read_text("/zero").error().code == ENOENT);
  // ... and a device node reached inside the root is refused by its type.
  auto live = RootFs::open("/", resolver).value();
  auto dev = live.read("/dev/zero", 1 << 20);
  REQUIRE_FALSE(dev);
  CHECK_THAT(dev.error().message, Catch::Matchers::Contains("character device"));
}

TEST_CASE("HostRoot: a huge sparse file is refused by its size before anything is read") {
  TempDir t;
  write_file(t / "proc/version", "");
  fs::resize_file(t / "proc/version", std::uintmax_t{200} << 30);  // 200 GiB, sparse
  auto root = HostRoot::open(t.path(), any_resolver()).value();
  auto v = root.read_text("/proc/version");
  REQUIRE_FALSE(v);
  CHECK(v.error().code == EFBIG);
}

TEST_CASE("RootFs refuses magic links on the live system") {
  auto live = RootFs::open("/", RootFs::Resolver::Openat2).value();
  // /proc/self/root is a magic link: openat2 with RESOLVE_NO_MAGICLINKS does not follow it.
  auto v = live.read("/proc/self/root/etc/os-release", 1 << 20);
  REQUIRE_FALSE(v);
  CHECK(v.error().code == ELOOP);
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
  auto root = HostRoot::open(t.path(), any_resolver()).value();
  CHECK(root.read_text("/a/b/up/os-release").value() == "inside");
  CHECK(root.read_text("/../../etc/os-release").value() == "inside");
}

TEST_CASE("HostRoot reports a symlink loop") {
  TempDir t;
  make_link(t / "x", "y");
  make_link(t / "y", "x");
  auto root = HostRoot::open(t.path(), any_resolver()).value();
  auto p = root.read_text("/x/file");
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
  CHECK(root.canonical("/sys/bus/pci/devices/0000:06:00.0").value() ==
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
