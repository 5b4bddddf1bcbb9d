// build_for_node on a kernel that enforces module signatures: refused before anything is built
// when there is no key, or when the kernel does not trust the key's certificate. The node is a
// tree (its /proc, /sys and headers); the key a throwaway one, which no kernel trusts. dkms is a
// program that does not exist: a build that went on would fail with another reason.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "../temp_dir.h"
#include "../test_certs.h"
#include "agent/build/build.h"
#include "catch2_compat.h"
#include "test_util.h"

using namespace agent;
using agent::test::write_file;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRelease = "6.1.0-56-amd64";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// PKCS#8 PEM, as `openssl genpkey` writes it.
std::string pem_key(EVP_PKEY* key) {
  CHandle<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

struct EnforcingNode {
  test::TempDir t;
  fs::path node = t.path() / "node";
  fs::path sources = t.path() / "src";
  fs::path headers = node / "usr/src" / (std::string("linux-headers-") + kRelease);

  explicit EnforcingNode(const char* sig_enforce) {
    write_file(node / "proc/sys/kernel/osrelease", std::string(kRelease) + "\n");
    write_file(node / "proc/version", std::string("Linux version ") + kRelease + " (gcc-12) #1 SMP Debian\n");
    write_file(node / "sys/module/module/parameters/sig_enforce", std::string(sig_enforce) + "\n");
    write_file(headers / "Makefile", "# the headers' Makefile\n");
    write_file(headers / "Module.symvers", "0x12345678\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n");
    write_file(sources / "agent-test-driver-1.0/dkms.conf", slurp(fs::path(AGENT_KMOD_SRC) / "dkms.conf"));
  }

  BuildOptions options() const {
    BuildOptions o;
    o.root = node;
    o.sources = sources;
    o.image_headers.clear();
    o.dkms = (t.path() / "no-dkms-here").string();
    return o;
  }

  Result<BuildResult> build(const BuildOptions& o) const {
    auto root = probes::HostRoot::open(node.string());
    REQUIRE(root);
    return build_for_node(*root, o);
  }

  bool cache_written() const { return fs::exists(node / "var/lib/intel-gpu-driver/builds"); }
};

}  // namespace

TEST_CASE("build_for_node, sig_enforce: refused before any build without a key the kernel trusts") {
  EnforcingNode n("Y");
  BuildOptions o = n.options();
  SECTION("a key and certificate the kernel does not trust") {
    auto key = test::rsa_key();
    auto cert = test::make_cert(key.get());
    write_file(n.t.path() / "keys/signing.pem", pem_key(key.get()));
    write_file(n.t.path() / "keys/cert.der", test::der_of(cert.get()));
    o.signing.key = n.t.path() / "keys/signing.pem";
    o.signing.cert = n.t.path() / "keys/cert.der";
    auto r = n.build(o);
    INFO((r ? r->detail : r.error().what()));
    REQUIRE(r);
    CHECK(r->result == BuildOutcome::Failed);
    CHECK(r->reason == "signing_key_untrusted");
    CHECK_THAT(r->detail, Catch::Matchers::Contains("does not trust the key"));
    CHECK_THAT(r->detail, Catch::Matchers::Contains("agent test signing key"));
    CHECK(r->build_seconds == 0);
    CHECK(r->modules.empty());
    CHECK_FALSE(n.cache_written());
  }
  SECTION("no key") {
    auto r = n.build(o);
    INFO((r ? r->detail : r.error().what()));
    REQUIRE(r);
    CHECK(r->result == BuildOutcome::Failed);
    CHECK(r->reason == "build_unsigned_enforced");
    CHECK(r->build_seconds == 0);
    CHECK_FALSE(n.cache_written());
  }
}
