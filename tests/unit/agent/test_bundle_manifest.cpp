// The bundle manifest (agent/facts/bundle_manifest.h): parsed with typed access and a depth limit,
// compared with a bundle read by the same reader as the entrypoint's (a real C-built module of
// the kabi fixtures), never throwing on a wrong shape.
#include "agent/facts/bundle_manifest.h"

#include "catch2_compat.h"

#include <fstream>
#include <sstream>

#include "kabi/module.h"
#include "test_util.h"

using namespace agent;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string kDigest(64, 'a');

// A bundle directory with the fixture module at extra/basic.ko, and the manifest's JSON for it.
struct Bundle {
  TempDir tmp;
  fs::path dir = tmp.path() / "opt/lib/modules/6.1.0-test";
  std::string module = slurp(fs::path(KABI_FIXTURE_DIR) / "basic.ko");
  json manifest;
  Bundle() {
    REQUIRE(module.size() > 1000);
    write_file(dir / "extra/basic.ko", module);
    auto info = kabi::read_module(dir / "extra/basic.ko");
    REQUIRE(info);
    REQUIRE(info->sha256 == kabi::sha256_hex(module));
    manifest = {{"schema", 1},
                {"kernel", {{"release", "6.1.0-test"}, {"compiler", "gcc-12"}}},
                {"sources", {{"name", "agent-test-driver"}, {"version", "1.0"}, {"digest", kDigest}}},
                {"modules",
                 {{{"name", info->name},
                   {"file", "extra/basic.ko"},
                   {"sha256", info->sha256},
                   {"vermagic", info->vermagic},
                   {"build_id", info->build_id}}}}};
  }
  std::vector<kabi::ModuleInfo> read() const {
    auto info = kabi::read_module(dir / "extra/basic.ko");
    REQUIRE(info);
    return {*info};
  }
  void write_manifest(const std::string& text) const { write_file(dir / kBundleManifestFile, text); }
};

}  // namespace

TEST_CASE("bundle manifest: the right one is read and agrees with the bundle") {
  Bundle b;
  b.write_manifest(b.manifest.dump(2));
  auto m = read_bundle_manifest(b.dir);
  REQUIRE(m);
  REQUIRE(m->has_value());
  const BundleManifest& got = **m;
  CHECK(got.path == (b.dir / kBundleManifestFile).string());
  CHECK(got.kernel == "6.1.0-test");
  CHECK(got.sources_name == "agent-test-driver");
  CHECK(got.sources_version == "1.0");
  CHECK(got.sources_digest == kDigest);
  REQUIRE(got.modules.size() == 1);
  CHECK(got.modules[0].sha256 == kabi::sha256_hex(b.module));
  CHECK(manifest_mismatches(got, b.read(), b.dir).empty());
  // What the status shows of it.
  const json id = manifest_identity_json(got);
  CHECK(id["sources"]["version"] == "1.0");
  CHECK(id["sources"]["digest"] == kDigest);
  // Written and read back: the same document.
  auto again = parse_bundle_manifest(to_json(got).dump(), "x");
  REQUIRE(again);
  CHECK(to_json(*again) == to_json(got));
}

TEST_CASE("bundle manifest: a module whose sha256 is not the manifest's is named") {
  Bundle b;
  b.write_manifest(b.manifest.dump());
  // One byte changed at the end of the file: the same module to the ELF reader, another file.
  std::string changed = b.module;
  changed.back() = static_cast<char>(changed.back() ^ 1);
  write_file(b.dir / "extra/basic.ko", changed);
  auto m = read_bundle_manifest(b.dir);
  REQUIRE(m);
  REQUIRE(m->has_value());
  const auto bad = manifest_mismatches(**m, b.read(), b.dir);
  REQUIRE(bad.size() == 1);
  CHECK_THAT(bad[0], Contains("extra/basic.ko") && Contains("sha256 " + kabi::sha256_hex(changed)) &&
                         Contains("the manifest says " + kabi::sha256_hex(b.module)));

  SECTION("a module the manifest does not list, and a listed one that is gone") {
    write_file(b.dir / "extra/basic.ko", b.module);
    fs::rename(b.dir / "extra/basic.ko", b.dir / "other.ko");
    auto info = kabi::read_module(b.dir / "other.ko");
    REQUIRE(info);
    const auto bad2 = manifest_mismatches(**m, {*info}, b.dir);
    REQUIRE(bad2.size() == 2);
    CHECK_THAT(bad2[0], Contains("other.ko: not in the manifest"));
    CHECK_THAT(bad2[1], Contains("extra/basic.ko: in the manifest, not in the bundle"));
  }
}

TEST_CASE("bundle manifest: no file is no manifest; an unreadable one is an error") {
  Bundle b;
  auto none = read_bundle_manifest(b.dir);
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  fs::create_directory(b.dir / kBundleManifestFile);  // there, but not a file
  auto dir = read_bundle_manifest(b.dir);
  REQUIRE_FALSE(dir);
  CHECK_THAT(dir.error().what(), Contains(kBundleManifestFile));
}

TEST_CASE("bundle manifest: wrong shapes are errors naming the file, never exceptions") {
  Bundle b;
  const std::string path = "/opt/lib/modules/6.1.0-test/bundle-manifest.json";
  auto refused = [&](const json& j, const std::string& why) {
    INFO(j.dump());
    Result<BundleManifest> r = tl::unexpected(Error{});
    REQUIRE_NOTHROW(r = parse_bundle_manifest(j.dump(), path));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == EINVAL);
    CHECK(r.error().path == path);
    CHECK_THAT(r.error().message, Contains(why));
  };
  // The right document is accepted: each case below differs from it in one place.
  REQUIRE(parse_bundle_manifest(b.manifest.dump(), path));

  json j = b.manifest;
  j["schema"] = "1";
  refused(j, "'schema' is not an integer");
  j = b.manifest;
  j["schema"] = 2;
  refused(j, "'schema' is 2");
  j = b.manifest;
  j["kernel"] = "6.1.0-test";
  refused(j, "'kernel' is a string, not an object");
  j = b.manifest;
  j["kernel"]["release"] = 61;
  refused(j, "'kernel.release' is a number, not a string");
  j = b.manifest;
  j["sources"].erase("version");
  refused(j, "'sources.version' is missing");
  j = b.manifest;
  j["sources"]["digest"] = "abc";
  refused(j, "not a sha256");
  j = b.manifest;
  j["modules"] = json::object();
  refused(j, "'modules' is an object, not an array");
  j = b.manifest;
  j["modules"] = json::array();
  refused(j, "'modules' is empty");
  j = b.manifest;
  j["modules"][0]["sha256"] = json::array({1, 2});
  refused(j, "'modules[0].sha256' is an array, not a string");
  j = b.manifest;
  j["modules"][0]["sha256"] = std::string(64, 'A');
  refused(j, "lower-case hex");
  j = b.manifest;
  j["modules"][0]["file"] = "../../etc/passwd";
  refused(j, "inside the bundle directory");
  j = b.manifest;
  j["modules"].push_back(j["modules"][0]);
  refused(j, "listed twice");
  j = b.manifest;
  j["modules"][0] = "basic.ko";
  refused(j, "'modules[0]' is a string, not an object");
  refused(json::array({1}), "not a JSON object (array)");

  for (const std::string text : {"", "{", "{\"schema\": 1,}", "null", "\xff\xfe"}) {
    INFO(text);
    auto r = parse_bundle_manifest(text, path);
    REQUIRE_FALSE(r);
    CHECK(r.error().path == path);
  }
}

TEST_CASE("bundle manifest: nesting deeper than the limit is refused while parsing") {
  const std::string path = "/x/bundle-manifest.json";
  auto nested = [](int depth) {
    return "{\"schema\": 1, \"deep\": " + std::string(depth, '[') + std::string(depth, ']') + "}";
  };
  // Within the limit, the extra member is ignored and the document fails on what it lacks.
  auto ok_depth = parse_bundle_manifest(nested(kBundleManifestMaxDepth - 2), path);
  REQUIRE_FALSE(ok_depth);
  CHECK_THAT(ok_depth.error().message, !Contains("nested deeper"));
  // 100,000 levels: refused as too deep, without exhausting the stack.
  Result<BundleManifest> deep = tl::unexpected(Error{});
  REQUIRE_NOTHROW(deep = parse_bundle_manifest(nested(100000), path));
  REQUIRE_FALSE(deep);
  CHECK(deep.error().path == path);
  CHECK_THAT(deep.error().message, Contains("nested deeper than 32 levels"));
  // Just past the limit.
  auto just = parse_bundle_manifest(nested(kBundleManifestMaxDepth + 1), path);
  REQUIRE_FALSE(just);
  CHECK_THAT(just.error().message, Contains("nested deeper"));
}
