#include "catch2_compat.h"

#include "probes/build_env.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::make_link;
using agent::test::TempDir;
using agent::test::write_file;

TEST_CASE("build env: Debian linux-headers through the absolute build link") {
  TempDir t;
  write_file(t / "usr/src/linux-headers-6.1.0-56-amd64/Makefile", "include x\n");
  write_file(t / "usr/src/linux-headers-6.1.0-56-amd64/Module.symvers", "");
  make_link(t / "lib/modules/6.1.0-56-amd64/build", "/usr/src/linux-headers-6.1.0-56-amd64");
  auto env = probe_build_env(HostRoot::open(t.path()).value(), "6.1.0-56-amd64");
  CHECK(env.possible);
  CHECK(env.dir == "/lib/modules/6.1.0-56-amd64/build");
  // The build link and the headers directory are one directory: listed once.
  CHECK(env.candidates.size() == 3);
}

TEST_CASE("build env: RHEL kernel-devel without a build link") {
  TempDir t;
  write_file(t / "usr/src/kernels/5.14.0-427.el9.x86_64/Makefile", "");
  write_file(t / "usr/src/kernels/5.14.0-427.el9.x86_64/Module.symvers", "");
  write_file(t / "usr/src/kernels/5.14.0-427.el9.x86_64/include/generated/autoconf.h", "");
  auto env = probe_build_env(HostRoot::open(t.path()).value(), "5.14.0-427.el9.x86_64");
  CHECK(env.possible);
  CHECK(env.dir == "/usr/src/kernels/5.14.0-427.el9.x86_64");
  auto it = std::find_if(env.candidates.begin(), env.candidates.end(), [](auto& h) { return h.exists; });
  REQUIRE(it != env.candidates.end());
  CHECK(it->autoconf);
  CHECK_FALSE(it->config);
}

TEST_CASE("build env: headers without Module.symvers cannot build modules with the kernel's CRCs") {
  TempDir t;
  write_file(t / "usr/src/linux-headers-6.1.0-56-amd64/Makefile", "");
  auto env = probe_build_env(HostRoot::open(t.path()).value(), "6.1.0-56-amd64");
  CHECK_FALSE(env.possible);
  CHECK(env.detail.find("incomplete") != std::string::npos);
}

TEST_CASE("build env: nothing installed") {
  TempDir t;
  auto env = probe_build_env(HostRoot::open(t.path()).value(), "6.1.0-56-amd64");
  CHECK_FALSE(env.possible);
  CHECK(env.detail.find("no kernel headers for 6.1.0-56-amd64") == 0);
}
