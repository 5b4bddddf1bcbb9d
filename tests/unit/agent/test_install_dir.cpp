// install_dir (agent/base/state_files.h): the one directory-install of the build cache and the
// firmware copy - written under a temporary name, renamed into place, another writer's entry
// kept when it wins the race, no temporary left on any path. Temporary directories only.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "agent/base/state_files.h"
#include "catch2_compat.h"
#include "test_util.h"

using namespace agent;
using agent::test::read_bytes;
using agent::test::TempDir;
using agent::test::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> names_in(const fs::path& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

struct Cache {
  TempDir t;
  WritableDir dir = WritableDir::open(kabi::RootFs::open(t.path()).value(), "/cache", "cache").value();
  fs::path at = t / "cache";
};

Result<void> write_ours(const WritableDir& d) {
  if (auto w = d.write("a", "ours a"); !w) return w;
  auto sub = d.subdir("sub");
  if (!sub) return tl::unexpected(sub.error());
  return sub->write("b", "ours b");
}

}  // namespace

TEST_CASE("install_dir: written whole under a temporary name, renamed into place, kept or replaced") {
  Cache c;
  auto r = install_dir(c.dir, "entry", IfPresent::Keep, write_ours);
  REQUIRE(r);
  CHECK(*r == DirInstall::Ours);
  CHECK(read_bytes(c.at / "entry/a") == "ours a");
  CHECK(read_bytes(c.at / "entry/sub/b") == "ours b");
  CHECK(names_in(c.at) == std::vector<std::string>{"entry"});

  // Keep: what is there stays, and nothing is written.
  bool called = false;
  auto kept = install_dir(c.dir, "entry", IfPresent::Keep, [&](const WritableDir&) -> Result<void> {
    called = true;
    return {};
  });
  REQUIRE(kept);
  CHECK(*kept == DirInstall::Theirs);
  CHECK_FALSE(called);

  // Replace: the old entry goes, the new one is whole.
  auto replaced = install_dir(c.dir, "entry", IfPresent::Replace, [](const WritableDir& d) { return d.write("c", "new"); });
  REQUIRE(replaced);
  CHECK(*replaced == DirInstall::Ours);
  CHECK(names_in(c.at / "entry") == std::vector<std::string>{"c"});
  CHECK(names_in(c.at) == std::vector<std::string>{"entry"});
}

TEST_CASE("install_dir: another writer's entry renamed into place between the write and the rename wins") {
  Cache c;
  auto r = install_dir(c.dir, "entry", IfPresent::Keep, [&](const WritableDir& d) -> Result<void> {
    if (auto w = write_ours(d); !w) return w;
    // The other writer, complete, in between.
    write_file(c.at / "entry/theirs", "theirs");
    REQUIRE(fs::is_directory(c.at / "entry"));
    return {};
  });
  REQUIRE(r);
  CHECK(*r == DirInstall::Theirs);
  CHECK(names_in(c.at / "entry") == std::vector<std::string>{"theirs"});
  CHECK(names_in(c.at) == std::vector<std::string>{"entry"});  // our temporary is gone
}

TEST_CASE("install_dir: a failed write leaves no temporary and no entry") {
  Cache c;
  auto r = install_dir(c.dir, "entry", IfPresent::Replace, [&](const WritableDir& d) -> Result<void> {
    if (auto w = d.write("a", "half"); !w) return w;
    REQUIRE(names_in(c.at).size() == 1);  // the temporary, with a file in it
    return fail(EIO, "the source went", "/image/x");
  });
  REQUIRE_FALSE(r);
  CHECK(r.error().code == EIO);
  CHECK_THAT(r.error().what(), Contains("/image/x"));
  CHECK(names_in(c.at).empty());
}

TEST_CASE("install_dir: a file in the way is an error naming it; a bad name is refused") {
  Cache c;
  write_file(c.at / "entry", "a file");
  auto r = install_dir(c.dir, "entry", IfPresent::Keep, write_ours);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == EEXIST);
  CHECK_THAT(r.error().what(), Contains("cache/entry") && Contains("not a directory"));
  CHECK(read_bytes(c.at / "entry") == "a file");
  CHECK(names_in(c.at) == std::vector<std::string>{"entry"});

  auto bad = install_dir(c.dir, "../up", IfPresent::Keep, write_ours);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == EINVAL);
  CHECK(names_in(c.at) == std::vector<std::string>{"entry"});
}
