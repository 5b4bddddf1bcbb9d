// The supervised process (agent/build/process.h) with real processes: /bin/sh scripts whose exit
// status, background children and output are known by construction, so each expected value comes
// from the script, not from the supervisor.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "agent/build/process.h"
#include "catch2_compat.h"
#include "kabi/fd.h"
#include "test_util.h"

using namespace agent;
using agent::test::read_bytes;
using agent::test::TempDir;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// Whether `pid` is still a process (a zombie counts: not reaped).
bool alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

pid_t pid_in(const fs::path& p) {
  const std::string s = read_bytes(p);
  REQUIRE_FALSE(s.empty());
  return static_cast<pid_t>(std::stol(s));
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

ProcessSpec sh(const std::string& script) {
  ProcessSpec s;
  s.argv = {"/bin/sh", "-c", script};
  return s;
}

}  // namespace

TEST_CASE("run_supervised: the exit status, a signal, the output where it was sent") {
  TempDir t;
  const Fd out(::open((t / "out").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  REQUIRE(out);
  ProcessSpec spec = sh("echo to-out; echo to-err >&2; exit 3");
  spec.stdout_fd = out.get();
  spec.stderr_fd = out.get();
  const ProcessEnd e = run_supervised(spec, {});
  CHECK(e.how == ProcessEnd::How::Exited);
  CHECK(e.code == 3);
  CHECK_FALSE(e.succeeded());
  CHECK(describe(e) == "exit 3");
  CHECK(read_bytes(t / "out") == "to-out\nto-err\n");

  const ProcessEnd ok = run_supervised(sh("exit 0"), {});
  CHECK(ok.succeeded());

  const ProcessEnd killed = run_supervised(sh("kill -KILL $$"), {});
  CHECK(killed.how == ProcessEnd::How::Killed);
  CHECK(killed.code == SIGKILL);
}

TEST_CASE("run_supervised: the environment and directory given, and stdin empty") {
  TempDir t;
  ProcessSpec spec = sh("printf '%s|%s|' \"$ONLY\" \"$HOME\" > out; pwd >> out; cat >> out");
  spec.env = std::vector<std::string>{"ONLY=this", "PATH=/usr/bin:/bin"};
  spec.cwd = t.path().string();
  REQUIRE(run_supervised(spec, {}).succeeded());
  CHECK(read_bytes(t / "out") == "this||" + fs::canonical(t.path()).string() + "\n");
}

TEST_CASE("run_supervised: a timeout kills the group, a grandchild included, and reaps it") {
  TempDir t;
  // The grandchild sleeps in the background; the child waits for it.
  ProcessSpec spec = sh("sleep 60 & echo $! > " + (t / "grandchild").string() + "; wait");
  Supervision sup;
  sup.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  const ProcessEnd e = run_supervised(spec, sup);
  CHECK(e.how == ProcessEnd::How::TimedOut);
  CHECK(describe(e) == "timed out");
  CHECK(e.seconds >= 1.0);
  CHECK(e.seconds < 10.0);  // not the sleep's 60 s
  CHECK_FALSE(alive(pid_in(t / "grandchild")));
}

TEST_CASE("run_supervised: a grandchild left running when the child exits is killed and reaped") {
  TempDir t;
  const ProcessEnd e = run_supervised(sh("sleep 60 & echo $! > " + (t / "grandchild").string()), {});
  CHECK(e.succeeded());
  CHECK(e.seconds < 10.0);
  CHECK_FALSE(alive(pid_in(t / "grandchild")));
}

TEST_CASE("run_supervised: the supervisor's stop kills the group; progress is reported while it runs") {
  TempDir t;
  int asked = 0;
  int progressed = 0;
  Supervision sup;
  sup.progress_every = std::chrono::seconds(0);
  sup.progress = [&] { ++progressed; };
  sup.stop = [&]() -> std::string { return ++asked >= 3 ? "asked to stop" : ""; };
  const ProcessEnd e = run_supervised(sh("sleep 60 & echo $! > " + (t / "grandchild").string() + "; wait"), sup);
  CHECK(e.how == ProcessEnd::How::Stopped);
  CHECK(describe(e) == "asked to stop");
  CHECK(asked == 3);
  CHECK(progressed >= 1);
  CHECK_FALSE(alive(pid_in(t / "grandchild")));
}

TEST_CASE("run_supervised: a program that cannot be executed, or a preparation that fails, did not start") {
  const size_t fds = open_fds();
  ProcessSpec spec;
  spec.argv = {"/nonexistent/agent-test-program", "x"};
  const ProcessEnd e = run_supervised(spec, {});
  CHECK(e.how == ProcessEnd::How::NotStarted);
  CHECK_THAT(e.detail, Contains("cannot run /nonexistent/agent-test-program") && Contains("No such file"));
  CHECK_THAT(describe(e), Contains("cannot start"));

  ProcessSpec prepared = sh("exit 0");
  prepared.prepare = []() -> Result<void> { return fail(EPERM, "no namespace for you", "/proc/self/ns/mnt"); };
  const ProcessEnd p = run_supervised(prepared, {});
  CHECK(p.how == ProcessEnd::How::NotStarted);
  CHECK(p.detail == "/proc/self/ns/mnt: no namespace for you");

  ProcessSpec nowhere = sh("exit 0");
  nowhere.cwd = "/nonexistent/agent-test-dir";
  CHECK(run_supervised(nowhere, {}).how == ProcessEnd::How::NotStarted);
  CHECK(open_fds() == fds);  // no pipe, no /dev/null left open
}

TEST_CASE("capture_output: stdout, or an error naming the command") {
  const size_t fds = open_fds();
  auto out = capture_output({"/bin/sh", "-c", "echo first; echo second; echo noise >&2"});
  REQUIRE(out);
  CHECK(*out == "first\nsecond\n");
  auto failed = capture_output({"/bin/sh", "-c", "exit 4"});
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().what(), Contains("`/bin/sh -c exit 4`") && Contains("exit 4"));
  auto missing = capture_output({"/nonexistent/agent-test-cc", "--version"});
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().what(), Contains("/nonexistent/agent-test-cc") && Contains("No such file"));
  CHECK(open_fds() == fds);
}
