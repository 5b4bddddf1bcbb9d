// The journal (agent/journal): its file as written and read back, the checks on every field of
// a journal read from disk, and the restart's reconciling of intended steps with the kernel.
#include <string>

#include <nlohmann/json.hpp>

#include "agent/base/json_input.h"
#include "agent/load/journal.h"
#include "catch2_compat.h"

using namespace agent;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

constexpr const char* kBoot = "5b1f8f6e-6a2e-4c27-9d55-1b2c3d4e5f60";
constexpr const char* kFile = "/run/intel-gpu-driver/undo.json";

json sample() {
  return {{"schema", 2},
          {"boot_id", kBoot},
          {"inserted", {{{"name", "agent_test_helper"}, {"build_id", "ab12"}, {"state", "done"}},
                        {{"name", "agent_test_nic"}, {"build_id", "cd34"}, {"state", "intended"}}}},
          {"source", "prebuilt"},
          {"removed", {{{"name", "i915"}, {"restore_path", "/lib/modules/6.1.0-56-amd64/kernel/i915.ko"}, {"state", "done"}}}},
          {"firmware_previous_path", ""},
          {"firmware_path", "/var/lib/intel-gpu-driver/firmware/0abc"},
          {"firmware_state", "intended"},
          {"nfd_file", "/etc/kubernetes/node-feature-discovery/features.d/intel-gpu-driver"}};
}

}  // namespace

TEST_CASE("journal: what is written is what is read back, states included") {
  auto j = journal_from_json(sample(), kBoot, kFile);
  REQUIRE(j);
  REQUIRE(j->inserted.size() == 2);
  CHECK(j->inserted[0].done);
  CHECK_FALSE(j->inserted[1].done);
  CHECK(j->inserted[1].build_id == "cd34");
  REQUIRE(j->removed.size() == 1);
  CHECK(j->removed[0].restore_path == "/lib/modules/6.1.0-56-amd64/kernel/i915.ko");
  CHECK(j->firmware_previous_path == std::optional<std::string>(""));
  CHECK_FALSE(j->firmware_done);
  auto again = journal_from_json(to_json(*j), kBoot, kFile);
  REQUIRE(again);
  CHECK(to_json(*again) == to_json(*j));
  CHECK(to_json(*j) == sample());  // the format itself: another reader (a preStop script) may read it
}

TEST_CASE("journal: another boot's is empty; schema 1 (no states) is all done") {
  auto other = journal_from_json(sample(), "another-boot", kFile);
  REQUIRE(other);
  CHECK(other->empty());
  json v1 = sample();
  v1["schema"] = 1;
  for (auto& i : v1["inserted"]) i.erase("state");
  v1.erase("firmware_state");
  auto j = journal_from_json(v1, kBoot, kFile);
  REQUIRE(j);
  REQUIRE(j->inserted.size() == 2);
  CHECK(j->inserted[1].done);
  CHECK(j->firmware_done);
}

TEST_CASE("journal: a field of the wrong type or value is an error naming the file and the field") {
  json j = sample();
  REQUIRE(journal_from_json(j, kBoot, kFile));  // the unedited sample is fine: the edits are what fail
  std::string expect;
  SECTION("a name that is a number") {
    j["inserted"][0]["name"] = 5;
    expect = "'inserted[0].name' is a number, not a string";
  }
  SECTION("an entry that is not an object") {
    j["inserted"][1] = "agent_test_nic";
    expect = "'inserted[1]' is a string, not an object";
  }
  SECTION("inserted that is an object") {
    j["inserted"] = json::object();
    expect = "'inserted' is an object, not an array";
  }
  SECTION("a module name with a slash") {
    j["inserted"][0]["name"] = "../x";
    expect = "'inserted[0].name' is not a module name";
  }
  SECTION("a restore path that climbs out") {
    j["removed"][0]["restore_path"] = "/lib/modules/6.1.0-56-amd64/../../../tmp/x.ko";
    expect = "'removed[0].restore_path' is not a clean absolute path";
  }
  SECTION("a relative NFD file") {
    j["nfd_file"] = "features.d/intel-gpu-driver";
    expect = "'nfd_file' is not a clean absolute path";
  }
  SECTION("an unknown state") {
    j["removed"][0]["state"] = "half";
    expect = "'removed[0].state' is 'half'";
  }
  SECTION("a schema from the future") {
    j["schema"] = 9;
    expect = "schema 9";
  }
  auto r = journal_from_json(j, kBoot, kFile);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().what(), Contains(expect));
  CHECK_THAT(r.error().what(), Contains(kFile));
}

TEST_CASE("journal: nested 100,000 levels deep is an error, not a crash") {
  const std::string deep = std::string("{\"boot_id\":\"") + kBoot + "\",\"inserted\":" + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  auto r = parse_journal(deep, kBoot, kFile);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().what(), Contains("nested deeper than"));
  auto not_json = parse_journal("{\"boot_id\": ", kBoot, kFile);
  REQUIRE_FALSE(not_json);
  CHECK_THAT(not_json.error().what(), Contains("not JSON"));
  auto array = parse_json_object("[1]", kFile);
  REQUIRE_FALSE(array);
  CHECK_THAT(array.error().what(), Contains("not a JSON object"));
  // At the limit it parses: the limit is what fails the deep one.
  std::string ok = "{\"a\":" + std::string(kMaxJsonDepth - 1, '[') + std::string(kMaxJsonDepth - 1, ']') + "}";
  CHECK(parse_json_object(ok, kFile));
}

TEST_CASE("reconcile: intended steps against what the kernel shows") {
  auto j = journal_from_json(sample(), kBoot, kFile).value();
  j.removed[0].done = false;
  SECTION("live with the recorded build id: adopted; the removed module gone: done; our path: done") {
    KernelNow now{{{"agent_test_helper", "ab12"}, {"agent_test_nic", "cd34"}}, "/var/lib/intel-gpu-driver/firmware/0abc"};
    const auto said = reconcile(j, now);
    CHECK(said.size() == 3);
    REQUIRE(j.inserted.size() == 2);
    CHECK(j.inserted[1].done);
    CHECK(j.removed.size() == 1);
    CHECK(j.removed[0].done);
    CHECK(j.firmware_done);
    CHECK(j.firmware_previous_path.has_value());
  }
  SECTION("not live, or another build: dropped; the removed module still loaded: dropped; another path: dropped") {
    KernelNow now{{{"agent_test_helper", "ab12"}, {"i915", "ffff"}}, std::string("/elsewhere")};
    SECTION("not live") {}
    SECTION("another build") { now.loaded["agent_test_nic"] = "9999"; }
    const auto said = reconcile(j, now);
    REQUIRE(j.inserted.size() == 1);
    CHECK(j.inserted[0].name == "agent_test_helper");
    CHECK(j.removed.empty());
    CHECK_FALSE(j.firmware_previous_path.has_value());
    CHECK(j.firmware_path.empty());
    CHECK(said.size() == 3);
  }
  SECTION("nothing intended: nothing to say, nothing changed") {
    j.inserted[1].done = true;
    j.removed[0].done = true;
    j.firmware_done = true;
    const json before = to_json(j);
    CHECK(reconcile(j, KernelNow{}).empty());
    CHECK(to_json(j) == before);
  }
}
