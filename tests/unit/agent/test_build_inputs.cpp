// The pure parts of `agent build`: dkms.conf's module list, -j, the cache key, the result JSON.
#include "agent/facts/build_inputs.h"

#include <fstream>
#include <sstream>

#include "catch2_compat.h"

using namespace agent;

namespace {

std::string fixture_dkms_conf() {
  std::ifstream in(AGENT_KMOD_SRC "/dkms.conf");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

CacheKeyInputs base_inputs() {
  CacheKeyInputs in;
  in.release = "6.1.0-56-amd64";
  in.proc_version = "Linux version 6.1.0-56-amd64 (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld) #1 SMP";
  in.symvers_sha256 = "aa";
  in.compiler_version = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\n";
  in.sources = {{"pkg-1.0/dkms.conf", "11"}, {"pkg-1.0/a/a.c", "22"}};
  return in;
}

}  // namespace

TEST_CASE("the test driver set's dkms.conf names its modules in their subdirectories") {
  auto p = parse_dkms_conf(fixture_dkms_conf(), "6.1.0-56-amd64", "dkms.conf");
  REQUIRE(p);
  CHECK(p->name == "agent-test-driver");
  CHECK(p->version == "1.0");
  REQUIRE(p->modules.size() == 2);
  CHECK(p->modules[0].name == "agent_test_helper");
  CHECK(p->modules[0].location == "agent_test_helper/");
  CHECK(p->modules[0].dest_name == "agent_test_helper");
  CHECK(p->modules[1].name == "agent_test_nic");
  CHECK(p->modules[1].location == "agent_test_nic/");
}

TEST_CASE("dkms.conf values are unquoted and expanded; DEST_MODULE_NAME renames") {
  const std::string conf = R"(
PACKAGE_NAME='intel-i915-dkms'
PACKAGE_VERSION="1.24.${MINOR}"   # unknown variable: not a plain value
PACKAGE_VERSION=1.24.6  # comment
BASE=compat
BUILT_MODULE_NAME[0]="${BASE}"
BUILT_MODULE_LOCATION[0]="$BASE/"
BUILT_MODULE_NAME[1]=i915_$kernelver
DEST_MODULE_NAME[1]="i915"
MAKE[0]="make -j$(nproc) KLIB=/lib/modules/$kernelver"
)";
  auto p = parse_dkms_conf(conf, "6.1", "x");
  REQUIRE(p);
  CHECK(p->name == "intel-i915-dkms");
  CHECK(p->version == "1.24.6");
  REQUIRE(p->modules.size() == 2);
  CHECK(p->modules[0].name == "compat");
  CHECK(p->modules[0].location == "compat/");
  CHECK(p->modules[1].name == "i915_6.1");
  CHECK(p->modules[1].dest_name == "i915");
}

TEST_CASE("a dkms.conf without the module list, or with a computed one, is an input error") {
  CHECK_FALSE(parse_dkms_conf("PACKAGE_NAME=a\nPACKAGE_VERSION=1\n", "k", "x"));
  CHECK_FALSE(parse_dkms_conf("PACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=a\n", "k", "x"));
  auto computed = parse_dkms_conf("PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=\"$(ls)\"\n", "k", "x");
  REQUIRE_FALSE(computed);
  CHECK(computed.error().code == EINVAL);
  CHECK_FALSE(parse_dkms_conf("PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=a/b\n", "k", "x"));
}

TEST_CASE("-j: the CPUs allowed, lowered to the cgroup quota, at least 1") {
  CHECK(cpu_max_limit("max 100000") == std::nullopt);
  CHECK(cpu_max_limit("200000 100000\n") == 2u);
  CHECK(cpu_max_limit("150000 100000") == 2u);  // rounded up
  CHECK(cpu_max_limit("50000 100000") == 1u);
  CHECK(cpu_max_limit("garbage") == std::nullopt);
  CHECK(cpu_max_limit("10 0") == std::nullopt);
  CHECK(build_jobs(8, {}) == 8);
  CHECK(build_jobs(8, {"max 100000", "300000 100000"}) == 3);
  CHECK(build_jobs(2, {"800000 100000"}) == 2);
  CHECK(build_jobs(8, {"400000 100000", "200000 100000"}) == 2);  // the tightest ancestor
  CHECK(build_jobs(0, {}) == 1);
}

TEST_CASE("the cache key changes with every input and not with the order of the sources") {
  const auto base = base_inputs();
  const std::string k = cache_key(base);
  CHECK(k.size() == 64);
  auto reordered = base;
  std::swap(reordered.sources[0], reordered.sources[1]);
  CHECK(cache_key(reordered) == k);
  auto changed = [&](auto mutate) {
    auto in = base;
    mutate(in);
    return cache_key(in) != k;
  };
  CHECK(changed([](CacheKeyInputs& in) { in.release = "6.1.0-57-amd64"; }));
  CHECK(changed([](CacheKeyInputs& in) { in.proc_version += " "; }));
  CHECK(changed([](CacheKeyInputs& in) { in.symvers_sha256 = "ab"; }));
  CHECK(changed([](CacheKeyInputs& in) { in.compiler_version = "gcc-13"; }));
  CHECK(changed([](CacheKeyInputs& in) { in.signing_key_id = "01"; }));
  CHECK(changed([](CacheKeyInputs& in) { in.sources[1].second = "23"; }));
  CHECK(changed([](CacheKeyInputs& in) { in.sources[1].first = "pkg-1.0/a/b.c"; }));
  CHECK(changed([](CacheKeyInputs& in) { in.sources.pop_back(); }));
  // Inputs never run together: moving a byte from one field to the next is another key.
  CHECK(changed([](CacheKeyInputs& in) { in.release = "6.1.0-56-amd6"; in.proc_version = "4" + in.proc_version; }));
}

TEST_CASE("the sources digest: order-free, and what the cache key says of the sources") {
  const auto base = base_inputs();
  const std::string d = sources_digest(base.sources);
  CHECK(d.size() == 64);
  auto reordered = base.sources;
  std::swap(reordered[0], reordered[1]);
  CHECK(sources_digest(reordered) == d);
  auto changed = base.sources;
  changed[0].second = "ff";
  CHECK(sources_digest(changed) != d);
  auto renamed = base.sources;
  renamed[1].first = "pkg-1.0/a/b.c";
  CHECK(sources_digest(renamed) != d);
  // The compiler is in the key but not in the digest: a reader without the builder's compiler
  // matches on the digest (test_build_cache: an entry built by another compiler is found).
}

TEST_CASE("the result JSON carries the contract's fields") {
  BuildResult r;
  r.result = BuildOutcome::Built;
  r.kernel = "6.1.0-56-amd64";
  r.key = "abc";
  r.log = "/var/lib/intel-gpu-driver/builds/6.1.0-56-amd64/abc/build.log";
  r.modules = {{"agent_test_helper", "/x/agent_test_helper.ko", "00"}};
  r.compiler = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0";
  r.kernel_compiler = r.compiler;
  const auto j = build_result_json(r);
  CHECK(j["schema"] == 1);
  CHECK(j["result"] == "built");
  CHECK(j["kernel"] == "6.1.0-56-amd64");
  CHECK(j["key"] == "abc");
  CHECK(j["log"] == r.log);
  REQUIRE(j["modules"].size() == 1);
  CHECK(j["modules"][0]["name"] == "agent_test_helper");
  CHECK(j["modules"][0]["path"] == "/x/agent_test_helper.ko");
  CHECK(j["modules"][0]["sha256"] == "00");
  CHECK(j["compiler"]["matches_kernel"] == true);
  CHECK_FALSE(j.contains("reason"));
  CHECK_FALSE(j.contains("signer"));
  r.entry = "/var/lib/intel-gpu-driver/builds/6.1.0-56-amd64/abc";
  r.signer = "Example Corp module signing";
  r.signing_key_id = "0a1b";
  const auto signed_json = build_result_json(r);
  CHECK(signed_json["entry"] == r.entry);
  CHECK(signed_json["signer"]["name"] == r.signer);
  CHECK(signed_json["signer"]["key_id"] == "0a1b");
  CHECK(build_result_text(r).find("signed by: Example Corp module signing (key 0a1b)") != std::string::npos);
  r.signer.clear();
  r.result = BuildOutcome::Failed;
  r.reason = "build_failed";
  r.modules.clear();
  r.compiler = "gcc (Debian 12.2.0-14) 12.2.0";
  const auto f = build_result_json(r);
  CHECK(f["reason"] == "build_failed");
  CHECK(f["modules"].is_array());
  CHECK(f["modules"].empty());
  CHECK(f["compiler"]["matches_kernel"] == false);
  CHECK(build_result_text(r).find("the kernel was built with") != std::string::npos);
}

TEST_CASE("the kernel's compiler from /proc/version, .config and .kernelvariables") {
  CHECK(compiler_from_proc_version("Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian "
                                   "12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP") ==
        "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0");
  CHECK(compiler_from_proc_version("Linux version 6.1.0") == "");
  CHECK(cc_version_text("CONFIG_X=y\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\n") ==
        "gcc-12 (Debian 12.2.0-14) 12.2.0");
  CHECK(cc_version_text("# CONFIG_CC_VERSION_TEXT is not set\n") == "");
  CHECK(compiler_from_kernelvariables("CCACHE = ccache\nCC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) "
                                      "$(CROSS_COMPILE)gcc-12\n") == "gcc-12");
  CHECK(compiler_from_kernelvariables("ARCH = x86\n") == "");
}
