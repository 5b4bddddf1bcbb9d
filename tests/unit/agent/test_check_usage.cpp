// `agent --check` (agent/check.cpp) on bad input, with the committed base node only (no kernel
// cache): the ctest agent_check. On real kernels: test_check.cpp.
#include "catch2_compat.h"

#include <sstream>

#include "agent/check.h"
#include "test_util.h"

using namespace agent;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;

TEST_CASE("check: usage and input errors exit 2 and say what is wrong") {
  std::ostringstream out, err;
  TempDir t;
  CheckOptions o;
  o.root = t / "absent";
  o.bundle = t.path();
  CHECK(run_check(o, out, err) == kCheckInputError);
  CHECK(err.str().find("absent") != std::string::npos);

  // A root that is not a node: no osrelease.
  err.str("");
  o.root = t.path();
  CHECK(run_check(o, out, err) == kCheckInputError);
  CHECK(err.str().find("osrelease") != std::string::npos);

  // A node, but the bundle is empty or corrupt.
  agent::test::copy_tree(agent::test::base_host(), t / "node");
  o.root = t / "node";
  fs::create_directories(t / "bundle");
  o.bundle = t / "bundle";
  err.str("");
  CHECK(run_check(o, out, err) == kCheckInputError);
  CHECK(err.str().find("no kernel modules") != std::string::npos);
  write_file(t / "bundle/i915.ko", "not an ELF file");
  err.str("");
  CHECK(run_check(o, out, err) == kCheckInputError);
  CHECK(err.str().find("i915.ko") != std::string::npos);
  CHECK(out.str().empty());
}
