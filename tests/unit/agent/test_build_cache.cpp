// find_build: how the entrypoint in sidecar mode recognises a builder's cache entry - by the
// inputs the entry records (kernel release and version, the sources' digest), never by a key
// it cannot compute without the builder's compiler - and what it makes of what it finds.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/build/build.h"
#include "agent/build/cache.h"
#include "catch2_compat.h"
#include "kabi/module.h"
#include "test_util.h"

using namespace agent;
using agent::test::TempDir;
using agent::test::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRelease = "6.1.0-56-amd64";
constexpr const char* kVersion = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian\n";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A node (its /proc), the image's sources (the test driver set's dkms.conf), and a cache.
struct Sidecar {
  TempDir t;
  fs::path node = t / "node";
  fs::path sources = t / "src";
  fs::path kdir = node / "var/lib/intel-gpu-driver/builds" / kRelease;
  std::string conf = slurp(fs::path(AGENT_KMOD_SRC) / "dkms.conf");
  std::string module = slurp(fs::path(KABI_FIXTURE_DIR) / "basic.ko");

  Sidecar() {
    write_file(node / "proc/sys/kernel/osrelease", std::string(kRelease) + "\n");
    write_file(node / "proc/version", kVersion);
    write_file(sources / "agent-test-driver-1.0/dkms.conf", conf);
  }

  // The digest find_build computes of `sources`.
  std::string digest() const {
    return sources_digest({{"agent-test-driver-1.0/dkms.conf", kabi::sha256_hex(conf)}});
  }
  nlohmann::json inputs(const std::string& sources_sha) const {
    return {{"release", kRelease}, {"proc_version", kVersion}, {"sources_sha256", sources_sha},
            {"symvers_sha256", "00"}, {"compiler", "gcc-12 (Debian 12.2.0-14) 12.2.0"}, {"signing_key_id", ""}};
  }
  void success(const std::string& key, const std::string& sources_sha, const std::string& compiler = "") const {
    write_file(kdir / key / "basic.ko", module);
    write_file(kdir / key / "build.log", "built\n");
    nlohmann::json in = inputs(sources_sha);
    if (!compiler.empty()) in["compiler"] = compiler;
    nlohmann::json meta{{"schema", 1}, {"kernel", kRelease}, {"key", key}, {"inputs", in},
                        {"signer", {{"name", "agent tests"}, {"key_id", "0a"}}},
                        {"modules", {{{"name", "basic"}, {"file", "basic.ko"}, {"sha256", kabi::sha256_hex(module)}}}}};
    write_file(kdir / key / "result.json", meta.dump());
  }
  void failure(const std::string& key, const std::string& sources_sha) const {
    write_file(kdir / key / "build.log", "x.c:1:1: error: broken\n");
    nlohmann::json j{{"schema", 1}, {"kernel", kRelease}, {"key", key}, {"reason", "build_failed"},
                     {"detail", "x.c:1:1: error: broken"}, {"log", "build.log"}, {"inputs", inputs(sources_sha)}};
    write_file(kdir / key / "failed.json", j.dump());
  }
  // `skipped`: the entries find_build could not read, when the caller asks.
  Result<std::optional<BuildResult>> find(std::vector<Error>* skipped = nullptr) const {
    BuildOptions o;
    o.sources = sources;
    o.check_cached = false;  // no kernel tree here: the kABI check is the caller's (diagnose)
    return find_build(probes::HostRoot::open(node.string()).value(), o, skipped);
  }
};

}  // namespace

TEST_CASE("find_build: the entry whose recorded inputs are this node's and these sources'") {
  Sidecar s;
  s.success("other-sources", std::string(64, 'f'));
  s.success(".tmp-half-written", s.digest());
  auto none = s.find();
  REQUIRE(none);
  CHECK_FALSE(none->has_value());  // the other sources' build and a half-written one are not ours

  s.success("ours", s.digest());
  auto found = s.find();
  REQUIRE(found);
  REQUIRE(found->has_value());
  const BuildResult& r = **found;
  CHECK(r.result == BuildOutcome::Cached);
  CHECK(r.key == "ours");
  CHECK(r.entry == (s.kdir / "ours").string());  // as this process sees it: under the root
  CHECK(r.log == r.entry + "/build.log");
  CHECK(r.signer == "agent tests");
  REQUIRE(r.modules.size() == 1);
  CHECK(r.modules[0].path == r.entry + "/basic.ko");
  CHECK(r.modules[0].sha256 == kabi::sha256_hex(s.module));
}

TEST_CASE("find_build: an entry built by another compiler is this node's (the reader has none)") {
  Sidecar s;
  s.success("clang-built", s.digest(), "Debian clang version 14.0.6");
  auto found = s.find();
  REQUIRE(found);
  REQUIRE(found->has_value());
  CHECK((*found)->key == "clang-built");
}

TEST_CASE("find_build: a success before a recorded failure; a failure when that is all there is") {
  Sidecar s;
  s.failure("failed", s.digest());
  auto failed = s.find();
  REQUIRE(failed);
  REQUIRE(failed->has_value());
  CHECK((*failed)->result == BuildOutcome::Failed);
  CHECK((*failed)->reason == "build_failed");
  CHECK_THAT((*failed)->detail, Contains("error: broken"));
  CHECK((*failed)->log == (s.kdir / "failed/build.log").string());

  s.success("built", s.digest());
  auto built = s.find();
  REQUIRE(built);
  REQUIRE(built->has_value());
  CHECK((*built)->key == "built");
}

TEST_CASE("find_build: another kernel build, or a module changed since, is not taken") {
  Sidecar s;
  s.success("ours", s.digest());
  SECTION("the same release, another /proc/version (a rebuilt kernel)") {
    write_file(s.node / "proc/version", "Linux version 6.1.0-56-amd64 (someone@elsewhere) #2 SMP\n");
    auto r = s.find();
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
  }
  SECTION("a module whose bytes are not the ones result.json names: skipped, the next one taken") {
    write_file(s.kdir / "ours/basic.ko", s.module + "x");
    s.failure("failed", s.digest());
    auto r = s.find();
    REQUIRE(r);
    REQUIRE(r->has_value());
    CHECK((*r)->key == "failed");
  }
  SECTION("sources that changed in the image: not this entry's") {
    write_file(s.sources / "agent-test-driver-1.0/extra.c", "int x;\n");
    auto r = s.find();
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
  }
}

TEST_CASE("find_build: no sources is an input error, not 'nothing built yet'") {
  Sidecar s;
  fs::remove_all(s.sources);
  auto r = s.find();
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().what(), Contains("sources directory not found"));
}

// Entries of the wrong shape (a hand edit, another tool, a disk that lost half a file): each is
// an error naming the file and the field, given to the caller - never an exception, never
// silently "nothing built yet".
TEST_CASE("find_build: an entry of the wrong shape is named, never a crash") {
  Sidecar s;
  s.success("ours", s.digest());
  auto meta = nlohmann::json::parse(slurp(s.kdir / "ours/result.json"));
  REQUIRE(meta["modules"].is_array());  // the good entry is found first: the edits below matter
  {
    auto good = s.find();
    REQUIRE(good);
    REQUIRE(good->has_value());
  }
  std::string expect;
  SECTION("modules is a string") {
    meta["modules"] = "basic.ko";
    expect = "'modules' is a string, not an array";
  }
  SECTION("a module entry is not an object") {
    meta["modules"] = nlohmann::json::array({"basic.ko"});
    expect = "'modules[0]' is a string, not an object";
  }
  SECTION("a file name that leaves the entry") {
    meta["modules"][0]["file"] = "../../../../proc/version";
    expect = "not a file name";
  }
  SECTION("a number where a string is expected") {
    meta["kernel"] = 61;
    expect = "'kernel' is a number, not a string";
  }
  SECTION("a missing file") {
    meta["modules"][0]["file"] = "gone.ko";
    expect = "gone.ko";
  }
  SECTION("nested 100,000 levels deep") {
    meta = nullptr;
    write_file(s.kdir / "ours/result.json",
               "{\"inputs\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
    expect = "nested deeper";
  }
  if (!meta.is_null()) write_file(s.kdir / "ours/result.json", meta.dump());
  std::vector<Error> skipped;
  auto r = s.find(&skipped);
  REQUIRE(r);
  CHECK_FALSE(r->has_value());
  REQUIRE(skipped.size() == 1);
  CHECK_THAT(skipped[0].what(), Contains(expect));
  CHECK_THAT(skipped[0].what(), Contains("ours"));
}

TEST_CASE("find_build: a failed.json of the wrong shape is named") {
  Sidecar s;
  s.failure("failed", s.digest());
  auto j = nlohmann::json::parse(slurp(s.kdir / "failed/failed.json"));
  REQUIRE(j["reason"].is_string());
  j["reason"] = 7;
  write_file(s.kdir / "failed/failed.json", j.dump());
  std::vector<Error> skipped;
  auto r = s.find(&skipped);
  REQUIRE(r);
  CHECK_FALSE(r->has_value());
  REQUIRE(skipped.size() == 1);
  CHECK_THAT(skipped[0].what(), Contains("failed.json"));
  CHECK_THAT(skipped[0].what(), Contains("'reason' is a number"));
}

// The writer and the readers agree: an entry install_entry writes is the one find_build takes,
// and installing over an entry (--rebuild over a recorded failure) replaces it whole.
TEST_CASE("install_entry: what the builder installs, find_build reads; installed over a failure") {
  Sidecar s;
  s.failure("k1", s.digest());
  auto failed = s.find();
  REQUIRE(failed);
  REQUIRE(failed->has_value());
  REQUIRE((*failed)->result == BuildOutcome::Failed);  // the failure is there to be replaced

  write_file(s.t / "built/basic.ko", s.module);
  auto kdir = WritableDir::open(kabi::RootFs::open(s.node).value(),
                                std::string("/var/lib/intel-gpu-driver/builds/") + kRelease, "build cache");
  REQUIRE(kdir);
  EntryContent c;
  c.files = {{"basic.ko", s.t / "built/basic.ko"}};
  c.log = "built\n";
  c.record = {{"schema", 1}, {"kernel", kRelease}, {"key", "k1"}, {"inputs", s.inputs(s.digest())},
              {"modules", {{{"name", "basic"}, {"file", "basic.ko"}, {"sha256", kabi::sha256_hex(s.module)}}}}};
  auto installed = install_entry(*kdir, "k1", c);
  REQUIRE(installed);
  CHECK(*installed == DirInstall::Ours);
  CHECK_FALSE(fs::exists(s.kdir / "k1/failed.json"));
  CHECK(slurp(s.kdir / "k1/build.log") == "built\n");
  auto found = s.find();
  REQUIRE(found);
  REQUIRE(found->has_value());
  CHECK((*found)->result == BuildOutcome::Cached);
  CHECK((*found)->key == "k1");
  REQUIRE((*found)->modules.size() == 1);
  CHECK((*found)->modules[0].sha256 == kabi::sha256_hex(s.module));
}
