// The dkms invocation (agent/build/dkms.h) without dkms: its command line, its environment, the
// log lines a failure is told by, the packages of a sources directory; and which failures the
// cache records (agent/build/failure.h). A run of a stand-in dkms (a shell script) shows how a
// run's end becomes a failure.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "agent/build/dkms.h"
#include "agent/build/failure.h"
#include "catch2_compat.h"
#include "kabi/fd.h"
#include "test_util.h"

using namespace agent;
using agent::test::read_bytes;
using agent::test::TempDir;
using agent::test::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

DkmsPackage package() {
  DkmsPackage p;
  p.name = "agent-test-driver";
  p.version = "1.0";
  return p;
}

}  // namespace

TEST_CASE("dkms: the command line names the package, the node's kernel, the build's own trees") {
  const DkmsTree t{"dkms", "6.1.0-56-amd64", "/usr/src/linux-headers-6.1.0-56-amd64", "/tmp/w", 3};
  CHECK(dkms_build_argv(t, package()) ==
        std::vector<std::string>{"dkms", "build", "--verbose", "-m", "agent-test-driver", "-v", "1.0", "-k",
                                 "6.1.0-56-amd64", "--kernelsourcedir", "/usr/src/linux-headers-6.1.0-56-amd64",
                                 "--dkmstree", "/tmp/w/dkms", "--sourcetree", "/tmp/w/src", "-j", "3"});
}

TEST_CASE("dkms: the environment keeps nothing of the builder's kernel nor the key's place") {
  const DkmsTree t{"dkms", "6.1.0-56-amd64", "/h", "/tmp/w", 4};
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "KERNELRELEASE=6.12.0-builder", "ARCH=arm64",
                                        "MAKEFLAGS=-j64", "TMPDIR=/var/tmp", "KEYFILE=/secrets/signing/key.pem",
                                        "OTHER=/secrets/signing", "HOME=/root", "KDIRX=kept"};
  const auto out = dkms_environment(env, {"/secrets/signing/key.pem", "/secrets/signing", ""}, t);
  CHECK(out == std::vector<std::string>{"PATH=/usr/bin:/bin", "HOME=/root", "KDIRX=kept", "MAKEFLAGS=-j4",
                                        "TMPDIR=/tmp/w/tmp"});
}

TEST_CASE("dkms: a failure is told by the log's first compiler error, else its last line") {
  TempDir t;
  write_file(t / "log", "make: Entering directory\nx.c:12:5: error: 'foo' undeclared\ny.c:1:1: error: later\nmake: *** [all] Error 2\n\n");
  CHECK(first_error_line((t / "log").string()) == "x.c:12:5: error: 'foo' undeclared");
  write_file(t / "log2", "ERROR: modpost: \"bar\" [m.ko] undefined!\n");
  CHECK(first_error_line((t / "log2").string()) == "ERROR: modpost: \"bar\" [m.ko] undefined!");
  write_file(t / "log3", "one\nthe last one  \n\n");
  CHECK(first_error_line((t / "log3").string()) == "the last one");
  CHECK(last_log_line((t / "log3").string()) == "the last one");
  write_file(t / "log4", "start\n" + std::string(300, 'x') + "\n");
  CHECK(last_log_line((t / "log4").string()) == std::string(200, 'x') + "...");
  CHECK(last_log_line((t / "absent").string()).empty());
}

TEST_CASE("dkms: make.log while dkms runs, and where dkms moves it after a success") {
  TempDir t;
  const DkmsTree tree{"dkms", "6.1.0-56-amd64", "/h", t.path().string(), 1};
  CHECK(dkms_make_log(tree, package()).empty());
  const fs::path done = t / "dkms/agent-test-driver/1.0/6.1.0-56-amd64/x86_64/log/make.log";
  write_file(done, "done\n");
  CHECK(dkms_make_log(tree, package()) == done.string());
  const fs::path running = t / "dkms/agent-test-driver/1.0/build/make.log";
  write_file(running, "running\n");
  CHECK(dkms_make_log(tree, package()) == running.string());
}

TEST_CASE("dkms: the packages of a sources directory, each named as dkms requires") {
  TempDir t;
  const std::string conf = read_bytes(fs::path(AGENT_KMOD_SRC) / "dkms.conf");
  REQUIRE_FALSE(conf.empty());
  CHECK_THAT(find_packages(t / "absent", "6.1.0").error().what(), Contains("sources directory not found"));
  CHECK_THAT(find_packages(t.path(), "6.1.0").error().what(), Contains("no DKMS source tree"));
  write_file(t / "agent-test-driver-1.0/dkms.conf", conf);
  auto p = find_packages(t.path(), "6.1.0");
  REQUIRE(p);
  REQUIRE(p->size() == 1);
  CHECK((*p)[0].first == "agent-test-driver-1.0");
  CHECK((*p)[0].second.name == "agent-test-driver");
  write_file(t / "misnamed/dkms.conf", conf);
  auto bad = find_packages(t.path(), "6.1.0");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().what(), Contains("misnamed") && Contains("agent-test-driver-1.0"));
}

TEST_CASE("build failures: the cache records the inputs' failures, not the node's nor a stop") {
  using K = BuildFailure::Kind;
  // vocabulary.h: interrupted and build_environment are "not recorded"; a key that cannot be
  // used now is the node's set-up; the signing refusals come before any build.
  for (K k : {K::UnsignedEnforced, K::KeyUntrusted, K::KeyUnusable, K::Environment, K::Interrupted}) {
    INFO(failure_reason(k));
    CHECK_FALSE(failure_recorded(k));
  }
  for (K k : {K::Failed, K::TimedOut, K::ModulesMissing, K::SigningFailed, K::KabiRefused}) {
    INFO(failure_reason(k));
    CHECK(failure_recorded(k));
  }
  CHECK(std::string(failure_reason(K::TimedOut)) == "build_timeout");
  CHECK(std::string(failure_reason(K::Environment)) == "build_environment");
  CHECK(std::string(failure_reason(K::Failed)) == "build_failed");
}

// A stand-in dkms: a script that prints, fails or hangs; no namespace (no mounts), so no root.
TEST_CASE("run_dkms_build: a failed run, one that times out, one that cannot start, one stopped") {
  TempDir t;
  const fs::path dkms = t / "bin/dkms";
  const DkmsTree tree{dkms.string(), "6.1.0-56-amd64", "/h", t.path().string(), 1};
  fs::create_directories(t / "scratch");
  const std::string log = (t / "build.log").string();
  const Fd fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  REQUIRE(fd);
  DkmsRun run;
  run.scratch = (t / "scratch").string();
  run.log = log;
  run.log_fd = fd.get();
  run.timeout = std::chrono::seconds(1);
  run.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  SECTION("it fails: the first compiler error, make's log appended") {
    write_file(dkms, "#!/bin/sh\nmkdir -p dkms/agent-test-driver/1.0/build\n"
                     "echo 'a.c:3:1: error: no' > dkms/agent-test-driver/1.0/build/make.log\nexit 10\n");
    fs::permissions(dkms, fs::perms::owner_all);
    // The run enters a mount namespace (none mounted in it): a test runner that may not make one
    // fails here, loudly.
    auto r = run_dkms_build(tree, run, "agent-test-driver-1.0", package());
    REQUIRE_FALSE(r);
    if (r.error().kind == BuildFailure::Kind::Environment) FAIL("this runner cannot make a mount namespace: " << r.error().detail);
    CHECK(r.error().kind == BuildFailure::Kind::Failed);
    CHECK(r.error().detail == "dkms build of agent-test-driver-1.0 failed (exit 10): a.c:3:1: error: no");
    CHECK_THAT(read_bytes(log), Contains("agent build: " + dkms.string() + " build --verbose") &&
                               Contains("make's output (dkms make.log)"));
  }
  SECTION("it hangs: killed at the deadline, told with the build's timeout") {
    write_file(dkms, "#!/bin/sh\nexec sleep 60\n");
    fs::permissions(dkms, fs::perms::owner_all);
    run.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    auto r = run_dkms_build(tree, run, "agent-test-driver-1.0", package());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == BuildFailure::Kind::TimedOut);
    CHECK(r.error().detail == "the build of agent-test-driver-1.0 timed out after 1 s");
  }
  SECTION("it cannot be run: the node's environment, told in the log") {
    auto r = run_dkms_build(tree, run, "agent-test-driver-1.0", package());  // no such program
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == BuildFailure::Kind::Environment);
    CHECK_THAT(read_bytes(log), Contains(r.error().detail));
  }
  SECTION("asked to stop before it starts") {
    run.stop = [] { return std::string("interrupted by Terminated"); };
    auto r = run_dkms_build(tree, run, "agent-test-driver-1.0", package());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == BuildFailure::Kind::Interrupted);
    CHECK(r.error().detail == "interrupted by Terminated before the build");
  }
}
