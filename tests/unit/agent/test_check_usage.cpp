// `agent --check` (agent/cli/check.cpp) on bad input, with the committed base node only (no kernel
// cache): the ctest agent_check. On real kernels: test_check.cpp.
#include "catch2_compat.h"

#include <sys/stat.h>

#include <sstream>

#include "agent/cli/check.h"
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
  CHECK(run_check(o, out, err) == kExitInputError);
  CHECK(err.str().find("absent") != std::string::npos);

  // A root that is not a node: no osrelease.
  err.str("");
  o.root = t.path();
  CHECK(run_check(o, out, err) == kExitInputError);
  CHECK(err.str().find("osrelease") != std::string::npos);

  // A node, but the bundle is empty or corrupt.
  agent::test::copy_tree(agent::test::base_host(), t / "node");
  o.root = t / "node";
  fs::create_directories(t / "bundle");
  o.bundle = t / "bundle";
  err.str("");
  CHECK(run_check(o, out, err) == kExitInputError);
  CHECK(err.str().find("no kernel modules") != std::string::npos);
  // A file that is no module is no input error: the kernel would refuse it (ENOEXEC), and the
  // check goes on to the node (test_check.cpp: the named refusal), whose missing tree is the
  // error here.
  write_file(t / "bundle/i915.ko", "not an ELF file");
  err.str("");
  CHECK(run_check(o, out, err) == kExitInputError);
  CHECK(err.str().find("i915.ko") == std::string::npos);
  CHECK(err.str().find("no module tree") != std::string::npos);
  CHECK(out.str().empty());
}

TEST_CASE("check: a bundle file named like a module that is not a regular file is an input error naming it") {
  std::ostringstream out, err;
  TempDir t;
  agent::test::copy_tree(agent::test::base_host(), t / "node");
  CheckOptions o;
  o.root = t / "node";
  o.bundle = t / "bundle";
  o.state_dir = t / "state";
  // A real module beside it: without the FIFO the same call goes past the bundle (this base node
  // has no module tree, which is the error then), so the FIFO's is the bundle's own.
  fs::create_directories(t / "bundle");
  fs::copy_file(fs::path(KABI_FIXTURE_DIR) / "basic.ko", t / "bundle/basic.ko");
  (void)run_check(o, out, err);
  REQUIRE(err.str().find("no module tree") != std::string::npos);
  REQUIRE(::mkfifo((t / "bundle/agent_test_nic.ko").c_str(), 0644) == 0);
  out.str("");
  err.str("");
  CHECK(run_check(o, out, err) == kExitInputError);
  CHECK(err.str().find("agent_test_nic.ko") != std::string::npos);
  CHECK(err.str().find("not a regular file") != std::string::npos);
}
