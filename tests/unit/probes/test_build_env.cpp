#include "catch2_compat.h"

#include "probes/build_env.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::make_link;
using agent::test::TempDir;
using agent::test::write_file;
using Catch::Matchers::Contains;

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
  // Only what is missing is named.
  CHECK_THAT(env.detail, Contains("/usr/src/linux-headers-6.1.0-56-amd64 (incomplete: needs Module.symvers)"));
  CHECK_THAT(env.detail, !Contains("needs Makefile"));
}

TEST_CASE("build env: each headers directory says exactly what it lacks") {
  TempDir t;
  // The build link's directory has the kernel's Module.symvers but no Makefile (the case where
  // the CRCs are verified from it while a build cannot run); the other one has neither.
  write_file(t / "usr/src/linux-headers-6.1.0-56-amd64/Module.symvers", "0x1\tx\tvmlinux\tEXPORT_SYMBOL\t\n");
  make_link(t / "lib/modules/6.1.0-56-amd64/build", "/usr/src/linux-headers-6.1.0-56-amd64");
  write_file(t / "usr/src/kernels/6.1.0-56-amd64/.config", "");
  auto env = probe_build_env(HostRoot::open(t.path()).value(), "6.1.0-56-amd64");
  CHECK_FALSE(env.possible);
  CHECK_THAT(env.detail, Contains("/lib/modules/6.1.0-56-amd64/build (incomplete: needs Makefile)"));
  CHECK_THAT(env.detail, Contains("/usr/src/kernels/6.1.0-56-amd64 (incomplete: needs Makefile and Module.symvers)"));
  CHECK_THAT(env.detail, Contains("/usr/lib/modules/6.1.0-56-amd64/build (absent)"));
}

TEST_CASE("build env: nothing installed") {
  TempDir t;
  auto env = probe_build_env(HostRoot::open(t.path()).value(), "6.1.0-56-amd64");
  CHECK_FALSE(env.possible);
  CHECK(env.detail.find("no kernel headers for 6.1.0-56-amd64") == 0);
}

TEST_CASE("build env: a Driver Toolkit image's headers only when proven the running kernel's") {
  TempDir t;
  write_file(t / "image/kernels/6.1.0-47-amd64/Makefile", "");
  write_file(t / "image/kernels/6.1.0-47-amd64/Module.symvers", "");
  write_file(t / "image/kernels/6.1.0-56-amd64/Makefile", "");
  write_file(t / "image/kernels/6.1.0-56-amd64/Module.symvers", "");
  write_file(t / "image/kernels/not-headers/README", "");
  std::filesystem::create_directories(t / "node");
  const std::string release = "6.1.0-56-amd64";
  BuildEnv env = probe_build_env(HostRoot::open((t / "node").string()).value(), release);
  REQUIRE_FALSE(env.possible);

  const ImageHeaders image = find_image_headers(t / "image/kernels", release);
  CHECK(image.dir == (t / "image/kernels/6.1.0-56-amd64").string());
  CHECK(image.releases == std::vector<std::string>{"6.1.0-47-amd64", "6.1.0-56-amd64"});

  SECTION("verified: used, from the image") {
    SymversCandidate v;
    v.state = SymversCandidate::State::Verified;
    v.detail = "120 CRCs of 12 own modules agree";
    consider_image_headers(env, image, release, v);
    CHECK(env.possible);
    CHECK(env.in_image);
    CHECK(env.dir == image.dir);
    CHECK_THAT(env.detail, Contains("proven the running kernel's: 120 CRCs"));
    CHECK(env.mismatch.empty());
  }
  SECTION("rejected: a named mismatch, not usable") {
    SymversCandidate v;
    v.state = SymversCandidate::State::Rejected;
    v.detail = "40 of 120 CRCs differ";
    consider_image_headers(env, image, release, v);
    CHECK_FALSE(env.possible);
    CHECK_THAT(env.mismatch, Contains("do not match the running kernel: 40 of 120 CRCs differ"));
  }
  SECTION("not verifiable (no MODVERSIONS, or not compared): not proven, not used") {
    SymversCandidate v;
    v.state = SymversCandidate::State::Unverifiable;
    v.detail = "the kernel's own modules carry no CRCs";
    consider_image_headers(env, image, release, v);
    CHECK_FALSE(env.possible);
    CHECK_THAT(env.mismatch, Contains("cannot be shown to be the running kernel's"));
    BuildEnv env2 = probe_build_env(HostRoot::open((t / "node").string()).value(), release);
    consider_image_headers(env2, image, release, std::nullopt);
    CHECK_FALSE(env2.possible);
    CHECK_THAT(env2.mismatch, Contains("not compared"));
  }
  SECTION("headers for other kernels only") {
    const ImageHeaders other = find_image_headers(t / "image/kernels", "6.1.0-57-amd64");
    CHECK(other.dir.empty());
    BuildEnv e = probe_build_env(HostRoot::open((t / "node").string()).value(), "6.1.0-57-amd64");
    consider_image_headers(e, other, "6.1.0-57-amd64", std::nullopt);
    CHECK_FALSE(e.possible);
    CHECK_THAT(e.mismatch, Contains("are for 6.1.0-47-amd64, 6.1.0-56-amd64; the node runs 6.1.0-57-amd64"));
  }
  SECTION("no image headers at all: nothing to say") {
    const ImageHeaders none = find_image_headers(t / "image/absent", release);
    consider_image_headers(env, none, release, std::nullopt);
    CHECK_FALSE(env.possible);
    CHECK(env.mismatch.empty());
  }
}

TEST_CASE("build env: the node's own headers come before the image's") {
  TempDir t;
  write_file(t / "usr/src/linux-headers-6.1.0-56-amd64/Makefile", "");
  write_file(t / "usr/src/linux-headers-6.1.0-56-amd64/Module.symvers", "");
  write_file(t / "image/6.1.0-56-amd64/Makefile", "");
  write_file(t / "image/6.1.0-56-amd64/Module.symvers", "");
  BuildEnv env = probe_build_env(HostRoot::open(t.path()).value(), "6.1.0-56-amd64");
  REQUIRE(env.possible);
  SymversCandidate v;
  v.state = SymversCandidate::State::Verified;
  consider_image_headers(env, find_image_headers(t / "image", "6.1.0-56-amd64"), "6.1.0-56-amd64", v);
  CHECK_FALSE(env.in_image);
  CHECK(env.dir == "/usr/src/linux-headers-6.1.0-56-amd64");
}

TEST_CASE("build env: the image's headers are looked at only when the node's cannot build") {
  TempDir t;
  write_file(t / "host/proc/sys/kernel/osrelease", "6.1.0-56-amd64\n");
  write_file(t / "image/kernels/6.1.0-56-amd64/Makefile", "");
  write_file(t / "image/kernels/6.1.0-56-amd64/Module.symvers", "");
  auto root = HostRoot::open(t / "host").value();
  auto none = choose_build_headers(root, "6.1.0-56-amd64", "");
  CHECK_FALSE(none.env.possible);
  CHECK_FALSE(none.to_verify);
  auto image = choose_build_headers(root, "6.1.0-56-amd64", t / "image/kernels");
  CHECK_FALSE(image.env.possible);
  REQUIRE(image.to_verify);
  CHECK(*image.to_verify == t / "image/kernels/6.1.0-56-amd64/Module.symvers");
  write_file(t / "host/usr/src/linux-headers-6.1.0-56-amd64/Makefile", "");
  write_file(t / "host/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers", "");
  agent::test::make_link(t / "host/lib/modules/6.1.0-56-amd64/build", "/usr/src/linux-headers-6.1.0-56-amd64");
  auto node = choose_build_headers(root, "6.1.0-56-amd64", t / "image/kernels");
  CHECK(node.env.possible);
  CHECK_FALSE(node.to_verify);
  CHECK(node.image.dir.empty());
}
