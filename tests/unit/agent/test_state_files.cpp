// The entrypoint's files: atomic writes through a root, the single-instance lock, the journal,
// the firmware copy and the status document. Temporary directories only; no kernel.
#include "agent/base/clock.h"
#include "agent/base/state_files.h"
#include "agent/cli/ready.h"
#include "agent/load/firmware.h"
#include "agent/load/journal.h"
#include "agent/load/lifecycle.h"
#include "agent/load/undo.h"
#include "agent/report/status.h"

#include "catch2_compat.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "test_util.h"

using namespace agent;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

kabi::RootFs root_of(const fs::path& p) { return kabi::RootFs::open(p).value(); }

}  // namespace

TEST_CASE("WritableDir: creates the directory, replaces files whole, leaves no temporary behind") {
  TempDir t;
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/run/intel-gpu-driver", "state directory");
  REQUIRE(dir);
  REQUIRE(dir->write("status.json", "{\"a\":1}\n"));
  REQUIRE(dir->write("status.json", "{\"a\":2}\n"));
  CHECK(slurp(t / "run/intel-gpu-driver/status.json") == "{\"a\":2}\n");
  CHECK(dir->read("status.json").value() == "{\"a\":2}\n");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(t / "run/intel-gpu-driver")) ++entries;
  CHECK(entries == 1);
  CHECK(dir->exists("status.json"));
  REQUIRE(dir->remove("status.json"));
  REQUIRE(dir->remove("status.json"));  // not there: still success
  CHECK_FALSE(dir->exists("status.json"));
  CHECK(dir->read("status.json").error().code == ENOENT);
  CHECK_FALSE(dir->write("../escape", "x"));
  CHECK_FALSE(dir->write("a/b", "x"));
}

TEST_CASE("WritableDir: a link in the path is not followed out of the root, and errors name the directory") {
  TempDir t, outside;
  fs::create_directories(t / "run");
  fs::create_symlink(outside.path(), t / "run/intel-gpu-driver");
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/run/intel-gpu-driver/sub", "state directory");
  // Resolved inside the root the absolute link names <root>/<outside>, which is not there; the
  // link itself is never followed when the directory is created.
  REQUIRE_FALSE(dir);
  CHECK_THAT(dir.error().what(), Contains("symbolic link") && Contains("state directory"));
  CHECK(fs::is_empty(outside.path()));

  // A regular file where a directory must be: a clear error naming it.
  write_file(t / "var/lib", "not a directory");
  auto bad = WritableDir::open(root, "/var/lib/intel-gpu-driver", "state directory");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().what(), Contains("state directory") && Contains("/var/lib"));
}

TEST_CASE("WritableDir: a read-only directory is an error at the first write, never a partial file") {
  if (::geteuid() == 0) {
    // root ignores permission bits: use a read-only bind mount in a private namespace.
    TempDir t;
    fs::create_directories(t / "ro");
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (::unshare(CLONE_NEWNS) != 0) _exit(77);
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(77);
      const std::string ro = (t / "ro").string();
      if (::mount(ro.c_str(), ro.c_str(), nullptr, MS_BIND, nullptr) != 0) _exit(77);
      if (::mount(nullptr, ro.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) _exit(77);
      auto root = kabi::RootFs::open(t.path());
      if (!root) _exit(3);
      auto dir = WritableDir::open(*root, "/ro", "state directory");
      if (!dir) _exit(4);  // opening an existing directory works; writing must not
      auto w = dir->write("status.json", "{}");
      if (w || w.error().code != EROFS || w.error().what().find("status.json") == std::string::npos) _exit(5);
      auto lock = InstanceLock::acquire(*dir);
      if (lock) _exit(6);
      auto sub = WritableDir::open(*root, "/ro/sub", "state directory");
      if (sub || sub.error().what().find("state directory") == std::string::npos) _exit(7);
      _exit(0);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) FAIL("no private mount namespace here: the read-only case was not run");
    CHECK(WEXITSTATUS(st) == 0);
    CHECK(fs::is_empty(t / "ro"));
  } else {
    TempDir t;
    fs::create_directories(t / "ro");
    fs::permissions(t / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    auto root = root_of(t.path());
    auto dir = WritableDir::open(root, "/ro", "state directory");
    REQUIRE(dir);
    CHECK_FALSE(dir->write("status.json", "{}"));
  }
}

TEST_CASE("InstanceLock: a second agent is refused and told the holder's pid") {
  TempDir t;
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/state", "state directory").value();
  auto first = InstanceLock::acquire(dir);
  REQUIRE(first);
  CHECK(slurp(t / "state/agent.lock") == std::to_string(::getpid()) + "\n");
  auto second = InstanceLock::acquire(dir);  // another open file description: flock refuses it
  REQUIRE_FALSE(second);
  CHECK(second.error().code == EWOULDBLOCK);
  CHECK_THAT(second.error().what(), Contains("pid " + std::to_string(::getpid())) && Contains("agent.lock"));
}

TEST_CASE("journal: round trip; another boot's journal is empty; a corrupt one is an error") {
  TempDir t;
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/state", "state directory").value();
  CHECK(load_journal(dir, "boot-1").value().empty());
  Journal j;
  j.boot_id = "boot-1";
  j.inserted = {{"agent_test_helper", "aa"}, {"agent_test_nic", "bb"}};
  j.removed = {{"e1000", "/lib/modules/6.1.0-56-amd64/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"}};
  j.firmware_previous_path = "";
  j.firmware_path = "/var/lib/intel-gpu-driver/firmware/abc";
  j.source = "built";
  REQUIRE(save_journal(dir, j));
  auto back = load_journal(dir, "boot-1").value();
  CHECK(back.source == "built");
  CHECK(back.inserted.size() == 2);
  CHECK(back.inserted[1].name == "agent_test_nic");
  CHECK(back.inserted[1].build_id == "bb");
  CHECK(back.removed.at(0).restore_path.ends_with("e1000.ko"));
  CHECK(back.firmware_previous_path == std::optional<std::string>(""));
  CHECK(back.firmware_path == j.firmware_path);
  CHECK(load_journal(dir, "boot-2").value().empty());
  REQUIRE(save_journal(dir, Journal{"boot-1", {}, {}, {}, std::nullopt, {}, true, {}}));  // nothing left: no file
  CHECK_FALSE(fs::exists(t / "state/undo.json"));
  write_file(t / "state/undo.json", "{not json");
  auto bad = load_journal(dir, "boot-1");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().what(), Contains("undo.json"));
}

TEST_CASE("firmware: scanned sorted with a stable digest, copied whole under its digest, reused") {
  TempDir img, host;
  write_file(img / "fw/i915/b.bin", "second");
  write_file(img / "fw/i915/a.bin", "first");
  write_file(img / "fw/top.bin", "top");
  fs::create_symlink("top.bin", img / "fw/link.bin");  // links are not firmware files
  auto fw = scan_bundle_firmware(img / "fw").value();
  REQUIRE(fw.files.size() == 3);
  CHECK(fw.files[0].rel == "i915/a.bin");
  CHECK(fw.files[2].rel == "top.bin");
  CHECK(fw.digest.size() == 64);
  CHECK(scan_bundle_firmware(img / "fw").value().digest == fw.digest);
  CHECK(scan_bundle_firmware(img / "absent").value().files.empty());
  write_file(img / "notdir", "x");
  CHECK_FALSE(scan_bundle_firmware(img / "notdir"));

  auto root = root_of(host.path());
  auto dir = install_firmware(root, fw, "/var/lib/intel-gpu-driver/firmware");
  REQUIRE(dir);
  CHECK(*dir == "/var/lib/intel-gpu-driver/firmware/" + fw.digest);
  CHECK(slurp(host / (dir->substr(1) + "/i915/b.bin")) == "second");
  CHECK(slurp(host / (dir->substr(1) + "/top.bin")) == "top");
  size_t entries = 0;  // no temporary left beside it
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(host / "var/lib/intel-gpu-driver/firmware")) ++entries;
  CHECK(entries == 1);
  REQUIRE(install_firmware(root, fw, "/var/lib/intel-gpu-driver/firmware").value() == *dir);

  // A changed image file after the scan: nothing half-copied is renamed into place.
  write_file(img / "fw/top.bin", "changed");
  auto fw2 = fw;
  fw2.digest = std::string(64, 'e');
  auto bad = install_firmware(root, fw2, "/var/lib/intel-gpu-driver/firmware");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().what(), Contains("top.bin"));
  CHECK_FALSE(fs::exists(host / ("var/lib/intel-gpu-driver/firmware/" + fw2.digest)));
}

TEST_CASE("firmware: firmware_class.path is written through the root") {
  TempDir host;
  write_file(host / "sys/module/firmware_class/parameters/path", "\n");
  auto root = root_of(host.path());
  REQUIRE(set_firmware_path(root, "/var/lib/intel-gpu-driver/firmware/abc"));
  CHECK(slurp(host / "sys/module/firmware_class/parameters/path") == "/var/lib/intel-gpu-driver/firmware/abc");
  TempDir none;
  auto r = set_firmware_path(root_of(none.path()), "/x");
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().what(), Contains("firmware_class"));
}

TEST_CASE("ScratchDir: private, and removed with what is in it, links not followed") {
  TempDir outside;
  write_file(outside / "keep", "x");
  std::string path;
  {
    auto d = ScratchDir::make("agent-test-scratch");
    REQUIRE(d);
    path = d->path();
    CHECK((fs::status(path).permissions() & fs::perms::all) == fs::perms::owner_all);
    write_file(fs::path(path) / "a/b/c.ko", "module");
    fs::create_symlink(outside.path(), fs::path(path) / "link");
    ScratchDir moved = std::move(*d);
    CHECK(moved.path() == path);
  }
  CHECK_FALSE(fs::exists(path));
  CHECK(fs::exists(outside / "keep"));
}

TEST_CASE("status: every documented field, phases by name") {
  Status s;
  s.agent_version = "agent 0.1.0";
  s.boot_id = "b";
  s.release = "6.1.0-56-amd64";
  s.phase = Phase::WaitingForBuild;
  s.decision = "build";
  s.since = "t0";
  s.failure = LoadFailure{"agent_test_nic", ENXIO, "init failed", {"agent_test_nic: fail_init set"}};
  kabi::ModuleVerdict v;
  v.name = "agent_test_nic";
  v.path = "/opt/lib/modules/x/agent_test_nic.ko";
  s.modules.push_back({v, "sha", "bid", true, false});
  const auto j = to_json(s, "t1");
  for (const char* k : {"schema", "agent_version", "boot_id", "pid", "kernel", "phase", "decision", "source", "since",
                        "updated", "devices", "modules", "reasons", "conflicts", "removed", "firmware", "failure",
                        "event", "fast_path", "timings", "build"})
    CHECK(j.contains(k));
  CHECK(j["phase"] == "waiting-for-build");
  CHECK(j["build"].is_null());
  s.phase = Phase::Building;
  s.build = BuildState{"node", std::nullopt, "12 s: CC [M] agent_test_nic.o"};
  auto building = to_json(s, "t2");
  CHECK(building["phase"] == "building");
  CHECK(building["build"]["mode"] == "node");
  CHECK(building["build"]["result"].is_null());
  CHECK(building["build"]["progress"] == "12 s: CC [M] agent_test_nic.o");
  BuildResult r;
  r.result = BuildOutcome::Failed;
  r.reason = "build_failed";
  r.log = "/var/lib/intel-gpu-driver/builds/k/key/build.log";
  r.key = "key";
  s.build = BuildState{"sidecar", r, ""};
  auto failed = to_json(s, "t3");
  CHECK(failed["build"]["result"] == "failed");
  CHECK(failed["build"]["reason"] == "build_failed");
  CHECK(failed["build"]["log"] == r.log);
  CHECK(failed["build"]["signer"].is_null());
  CHECK(failed["build"]["progress"].is_null());
  CHECK(j["source"].is_null());
  CHECK(j["failure"]["errno_name"] == "ENXIO");
  CHECK(j["modules"][0]["inserted"] == true);
  CHECK(j["modules"][0]["sha256"] == "sha");
  CHECK(std::string(phase_name(Phase::UpgradePending)) == "upgrade-pending");
  CHECK(utc_now().size() == 24);
}

TEST_CASE("WritableDir: an existing directory reached through a link is refused too (one policy)") {
  TempDir t, outside;
  fs::create_directories(t / "var/lib/intel-gpu-driver");
  fs::create_directories(outside / "etc");
  // The firmware directory planted as a link to another directory that exists: never written through.
  fs::create_symlink(outside / "etc", t / "var/lib/intel-gpu-driver/firmware");
  REQUIRE(fs::is_directory(t / "var/lib/intel-gpu-driver/firmware"));  // it resolves: the refusal is the policy's
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/var/lib/intel-gpu-driver/firmware", "firmware directory");
  REQUIRE_FALSE(dir);
  CHECK_THAT(dir.error().what(), Contains("symbolic link"));
  auto sub = WritableDir::open(root, "/var/lib/intel-gpu-driver/firmware/abc", "firmware directory");
  REQUIRE_FALSE(sub);
  CHECK(fs::is_empty(outside / "etc"));
}

TEST_CASE("WritableDir::remove_any: a file, a link (not followed), a directory with contents") {
  TempDir t, outside;
  write_file(outside / "keep", "x");
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/state", "state directory").value();
  SECTION("file") { write_file(t / "state/ready", ""); }
  SECTION("link") { fs::create_symlink(outside.path(), t / "state/ready"); }
  SECTION("directory") {
    write_file(t / "state/ready/sub/file", "x");
    fs::create_symlink(outside.path(), t / "state/ready/sub/link");
  }
  REQUIRE(fs::symlink_status(t / "state/ready").type() != fs::file_type::not_found);
  REQUIRE(dir.remove_any(kReadyFile));
  CHECK(fs::symlink_status(t / "state/ready").type() == fs::file_type::not_found);
  CHECK(fs::exists(outside / "keep"));
  CHECK(dir.remove_any(kReadyFile));  // none: success
}

TEST_CASE("agent ready: the ready file, this boot's ready status, and a live agent holding the lock") {
  TempDir t;
  auto root = root_of(t.path());
  auto dir = WritableDir::open(root, "/state", "state directory").value();
  write_file(t / "host/proc/sys/kernel/random/boot_id", "boot-1\n");
  ReadyOptions o;
  o.root = t / "host";
  o.state_dir = t / "state";
  auto status = [&](const std::string& phase, const std::string& boot) {
    write_file(t / "state/status.json", nlohmann::json{{"schema", 1}, {"phase", phase}, {"boot_id", boot}}.dump());
  };
  status("ready", "boot-1");
  CHECK_THAT(why_not_ready(o), Contains("no ready file"));
  write_file(t / "state/ready", "");
  CHECK_THAT(why_not_ready(o), Contains("agent.lock"));  // no agent ever ran: no lock file
  {
    auto lock = InstanceLock::acquire(dir);
    REQUIRE(lock);
    CHECK(why_not_ready(o).empty());
    std::ostringstream out;
    CHECK(run_ready(o, out) == kReadyYes);
    CHECK(out.str() == "ready\n");
    status("refused", "boot-1");
    CHECK_THAT(why_not_ready(o), Contains("refused"));
    status("ready", "boot-0");
    CHECK_THAT(why_not_ready(o), Contains("another boot"));
    write_file(t / "state/status.json", "{\"phase\": " + std::string(1000, '[') + std::string(1000, ']') + "}");
    CHECK_THAT(why_not_ready(o), Contains("nested deeper"));
    write_file(t / "state/status.json", "{\"phase\": 1}");
    CHECK_THAT(why_not_ready(o), Contains("'phase' is a number"));
    status("ready", "boot-1");
    fs::remove(t / "state/ready");
    fs::create_directory(t / "state/ready");
    CHECK_THAT(why_not_ready(o), Contains("not a regular file"));
    fs::remove(t / "state/ready");
    write_file(t / "state/ready", "");
    CHECK(why_not_ready(o).empty());
  }
  // The agent is gone (its lock released with it): the same files are a stale claim.
  const std::string stale = why_not_ready(o);
  CHECK_THAT(stale, Contains("stale"));
  std::ostringstream out;
  CHECK(run_ready(o, out) == kReadyNo);
  // The probe's instant of a shared lock never keeps an agent from starting.
  CHECK(InstanceLock::acquire(dir));
}

TEST_CASE("undo: only what can be verified the agent's own is acted on") {
  TempDir t;
  write_file(t / "proc/modules", "");
  auto root = probes::HostRoot::open(t.path().string()).value();
  auto kernel = KernelModules::open().value();
  const UndoScope scope{"6.1.0-56-amd64", "/var/lib/intel-gpu-driver/firmware",
                        "/etc/kubernetes/node-feature-discovery/features.d"};
  SECTION("an insert without a build id is not removed") {
    auto r = undo_insert(root, kernel, {"dummy", "", true});
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().what(), Contains("no build id"));
  }
  SECTION("a removal whose restore path is not that module in the running kernel's tree") {
    for (const std::string p : {"/tmp/loop.ko", "/lib/modules/6.1.0-47-amd64/kernel/loop.ko",
                                "/lib/modules/6.1.0-56-amd64/kernel/other.ko", "/lib/modules/6.1.0-56-amd64/../x/loop.ko"}) {
      auto r = undo_removal(root, kernel, {"loop", p, true}, "", scope);
      REQUIRE_FALSE(r);
      CHECK_THAT(r.error().what(), Contains("not inserted"));
    }
    // The right shape gets past the check (and fails later only because this tree has no file).
    auto ok = undo_removal(root, kernel, {"loop", "/lib/modules/6.1.0-56-amd64/kernel/drivers/block/loop.ko", true}, "", scope);
    REQUIRE_FALSE(ok);
    CHECK_THAT(ok.error().what(), !Contains("not inserted"));
  }
  SECTION("a firmware path outside the agent's directory is not set back") {
    auto r = undo_firmware_path(root, "/tmp/notours", "/anything", scope);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().what(), Contains("not under the agent's firmware directory"));
  }
  SECTION("an NFD file that is not the agent's") {
    CHECK(check_nfd_file("/etc/kubernetes/node-feature-discovery/features.d/intel-gpu-driver", scope));
    CHECK_FALSE(check_nfd_file("/etc/passwd", scope));
    CHECK_FALSE(check_nfd_file("/etc/kubernetes/node-feature-discovery/features.d/other", scope));
    CHECK_FALSE(check_nfd_file("/tmp/intel-gpu-driver", scope));
    CHECK_FALSE(check_nfd_file("/etc/kubernetes/node-feature-discovery/features.d/intel-gpu-driver",
                               UndoScope{"6.1.0-56-amd64", "/var/lib/intel-gpu-driver/firmware", ""}));
  }
}
