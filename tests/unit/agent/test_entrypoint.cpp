// The entrypoint's sequencing (agent/load/lifecycle.cpp) without a VM: the real probes, plan,
// journal, status and ready files on a copy of the debian12 fixture node, with a fake kernel in
// place of libkmod that changes the node's /proc/modules and /sys as the kernel does on an
// insert or a removal (the module's line and /sys/module directory, its build id note as objcopy
// extracts it from the file, the devices bound with their DRM nodes), and a script of events in
// place of the signal/uevent watch. The VM tests (lifecycle_vm) remain the kernel's judgment.
#include "catch2_compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/base/state_files.h"
#include "agent/base/vocabulary.h"
#include "agent/load/lifecycle.h"
#include "test_util.h"

using namespace agent;
using agent::test::read_bytes;
using agent::test::TempDir;
using agent::test::write_file;
namespace fs = std::filesystem;

namespace {

// Replaces a file that may be a hard link into the shared fixture without touching that inode.
void put(const fs::path& p, const std::string& text) {
  std::error_code ec;
  fs::remove(p, ec);
  fs::create_directories(p.parent_path());
  write_file(p, text);
}

// The GNU build id note of a module file, the bytes /sys/module/<name>/notes/.note.gnu.build-id
// shows once it is loaded: objcopy's, not the agent's ELF reader.
std::string build_id_note(const fs::path& ko, const fs::path& scratch) {
  const fs::path out = scratch / "note.bin";
  const std::string cmd = "objcopy -O binary --only-section=.note.gnu.build-id '" + ko.string() + "' '" + out.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return read_bytes(out);
}

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string h;
  for (unsigned char c : bytes) h += {digits[c >> 4], digits[c & 15]};
  return h;
}

// The build id as a hex string, from a note (namesz, descsz, type, "GNU\0", the id).
std::string build_id_of_note(const std::string& note) {
  REQUIRE(note.size() > 16);
  uint32_t descsz = 0;
  std::memcpy(&descsz, note.data() + 4, 4);
  return hex(std::string_view(note).substr(16, descsz));
}

// The kernel as the entrypoint sees it through libkmod, acting on a fixture node.
class FakeKernel final : public ModuleControl {
 public:
  FakeKernel(fs::path root, fs::path scratch) : root_(std::move(root)), scratch_(std::move(scratch)) {}

  std::map<std::string, std::vector<std::string>> binds;  // module -> the PCI functions it drives
  std::map<std::string, int> refuse_build;                // build id -> the errno init_module returns
  mutable std::vector<std::string> calls;                 // "insert i915 <build id>", "remove i915"

  Result<void> insert(const Fd& file, const std::string& name, const std::string&) const override {
    const fs::path copy = scratch_ / ("insert-" + std::to_string(calls.size()) + ".ko");
    {
      std::ofstream out(copy, std::ios::binary);
      out << read_bytes("/proc/self/fd/" + std::to_string(file.get()));
    }
    const std::string note = build_id_note(copy, scratch_);
    const std::string id = build_id_of_note(note);
    calls.push_back("insert " + name + " " + id);
    if (auto it = refuse_build.find(id); it != refuse_build.end())
      return fail(it->second, std::string("the kernel refused it: ") + std::strerror(it->second), name);
    if (live(name)) return fail(EEXIST, "the kernel refused it: File exists", name);
    put(root_ / "proc/modules", name + " 16384 0 - Live 0x0000000000000000\n" + read_bytes(root_ / "proc/modules"));
    const fs::path sys = root_ / "sys/module" / name;
    fs::remove_all(sys);
    put(sys / "initstate", "live\n");
    put(sys / "refcnt", "0\n");
    put(sys / "notes/.note.gnu.build-id", note);
    fs::create_directories(sys / "holders");
    const fs::path driver = root_ / "sys/bus/pci/drivers" / name;
    fs::create_directories(driver);
    if (!fs::is_symlink(driver / "module")) fs::create_directory_symlink(fs::relative(sys, driver), driver / "module");
    int card = 0;
    const auto bound = binds.find(name);
    for (const auto& bdf : bound == binds.end() ? std::vector<std::string>{} : bound->second) {
      const fs::path dev = fs::canonical(root_ / "sys/bus/pci/devices" / bdf);
      fs::remove(dev / "driver");
      fs::create_directory_symlink(fs::relative(driver, dev), dev / "driver");
      fs::create_directories(dev / "drm" / ("card" + std::to_string(card)));
      fs::create_directories(dev / "drm" / ("renderD" + std::to_string(128 + card)));
      ++card;
    }
    return {};
  }

  Result<void> remove(const std::string& name) const override {
    calls.push_back("remove " + name);
    if (!live(name)) return fail(ENOENT, "cannot remove: No such file or directory", name);
    std::istringstream in(read_bytes(root_ / "proc/modules"));
    std::string out, line;
    while (std::getline(in, line))
      if (!line.starts_with(name + " ")) out += line + "\n";
    put(root_ / "proc/modules", out);
    fs::remove_all(root_ / "sys/module" / name);
    // Its devices unbound: no driver, no DRM nodes.
    for (const auto& e : fs::directory_iterator(root_ / "sys/bus/pci/devices")) {
      const fs::path dev = fs::canonical(e.path());
      std::error_code ec;
      if (fs::read_symlink(dev / "driver", ec).filename() == name) {
        fs::remove(dev / "driver");
        fs::remove_all(dev / "drm");
      }
    }
    return {};
  }

  bool live(const std::string& name) const {
    const std::string modules = "\n" + read_bytes(root_ / "proc/modules");
    return modules.find("\n" + name + " ") != std::string::npos;
  }

 private:
  fs::path root_, scratch_;
};

// The watch's stand-in: each next() runs the script's next step (which may change the node and
// look at the agent's files), then returns its event; after the script, SIGTERM.
class ScriptedEvents final : public Events {
 public:
  using Step = std::function<WatchEvent()>;
  explicit ScriptedEvents(std::vector<Step> steps) : steps_(std::move(steps)) {}
  bool uevents() const noexcept override { return true; }
  const std::string& uevent_problem() const noexcept override { return none_; }
  WatchEvent next(std::optional<std::chrono::milliseconds>) override {
    if (at_ < steps_.size()) return steps_[at_++]();
    ++after_;
    REQUIRE(after_ < 3);  // the entrypoint asked again after SIGTERM: it did not stop
    return {WatchEvent::Kind::Terminate, "SIGTERM", {}, {}, {}};
  }
  std::optional<WatchEvent> pending_signal() override { return std::nullopt; }
  size_t steps_run() const { return at_; }

 private:
  std::vector<Step> steps_;
  size_t at_ = 0, after_ = 0;
  std::string none_;
};

WatchEvent uevent(const std::string& subsystem, const std::string& action, const std::string& name) {
  return {WatchEvent::Kind::Uevent, {}, subsystem, action, name};
}

const char* kI915 = "kernel/drivers/gpu/drm/i915/i915.ko";
const std::vector<std::string> kI915Devices = {"0000:00:02.0", "0000:03:00.0", "0000:04:00.0"};

// A copy of the debian12 node (the in-tree i915 loaded, unused, bound to three GPUs), the image's
// bundle (k61_same's i915: the same CRCs) and firmware, and the agent's state directory.
struct World {
  TempDir t;
  agent::test::HostCopy node{agent::test::fixture_host("debian12")};
  fs::path bundle, firmware, state, scratch;
  std::string bundle_build_id, in_tree_build_id;

  World() : bundle(t / "bundle"), firmware(t / "firmware"), state(t / "state"), scratch(t / "scratch") {
    const fs::path k = agent::test::kernel_of("k61_same");
    std::ifstream done(k / ".done");
    std::string kver;
    done >> kver;
    fs::create_directories(bundle / kver / "updates");
    fs::copy_file(k / "modules" / kI915, bundle / kver / "updates/i915.ko");
    put(firmware / "i915/test_guc.bin", "firmware bytes\n");
    fs::create_directories(scratch);
    bundle_build_id = build_id_of_note(build_id_note(bundle / kver / "updates/i915.ko", scratch));
    const std::string node_kver = agent::test::fixture_kver(node.root);
    in_tree_build_id = build_id_of_note(build_id_note(node.root / "lib/modules" / node_kver / kI915, scratch));
    REQUIRE(bundle_build_id != in_tree_build_id);
    // The one file the agent writes in place (a sysfs attribute) must not be the shared fixture's
    // inode: its own copy.
    const fs::path fw_param = node.root / "sys/module/firmware_class/parameters/path";
    put(fw_param, read_bytes(fw_param));
    // The in-tree i915 as the kernel shows it once loaded: its build id note.
    put(node.root / "sys/module/i915/notes/.note.gnu.build-id",
        build_id_note(node.root / "lib/modules" / node_kver / kI915, scratch));
  }

  RunOptions options() const {
    RunOptions o;
    o.check.root = node.root;
    o.check.bundle = bundle;
    o.check.pci_ids = AGENT_PCI_IDS;
    o.check.pci_backend = probes::PciBackend::Sysfs;
    o.check.bundle_firmware = firmware;
    o.check.firmware_base = "/var/lib/intel-gpu-driver/firmware";
    o.check.state_dir = state;
    o.state_dir = state;
    o.build_mode = BuildMode::Off;
    o.bind_timeout = std::chrono::seconds(1);
    o.agent_version = "agent test";
    return o;
  }

  int run(const RunOptions& o, FakeKernel& kernel, ScriptedEvents& events) const {
    EntrypointSeams seams;
    seams.kernel = [&]() -> Result<std::unique_ptr<ModuleControl>> { return std::make_unique<Forward>(kernel); };
    seams.events = [&]() -> Result<std::unique_ptr<Events>> { return std::make_unique<ForwardEvents>(events); };
    return run_entrypoint(o, seams);
  }

  nlohmann::json status() const { return nlohmann::json::parse(read_bytes(state / kStatusFile)); }
  nlohmann::json journal() const { return nlohmann::json::parse(read_bytes(state / kJournalFile)); }
  bool ready() const { return fs::exists(state / kReadyFile); }
  std::string firmware_path() const { return read_bytes(node.root / "sys/module/firmware_class/parameters/path"); }

 private:
  // The entrypoint owns what the seams return; the test keeps the fakes to look at them.
  struct Forward final : ModuleControl {
    explicit Forward(const ModuleControl& k) : k_(k) {}
    Result<void> insert(const Fd& f, const std::string& n, const std::string& o) const override { return k_.insert(f, n, o); }
    Result<void> remove(const std::string& n) const override { return k_.remove(n); }
    const ModuleControl& k_;
  };
  struct ForwardEvents final : Events {
    explicit ForwardEvents(Events& e) : e_(e) {}
    bool uevents() const noexcept override { return e_.uevents(); }
    const std::string& uevent_problem() const noexcept override { return e_.uevent_problem(); }
    WatchEvent next(std::optional<std::chrono::milliseconds> t) override { return e_.next(t); }
    std::optional<WatchEvent> pending_signal() override { return e_.pending_signal(); }
    Events& e_;
  };
};

std::vector<std::string> reason_codes(const nlohmann::json& status) {
  std::vector<std::string> codes;
  for (const auto& r : status["reasons"]) codes.push_back(r["code"]);
  return codes;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

TEST_CASE("entrypoint: first load - the in-tree i915 out, the bundle's in, bound, ready; then SIGTERM") {
  World w;
  FakeKernel kernel(w.node.root, w.scratch);
  kernel.binds["i915"] = kI915Devices;
  REQUIRE(kernel.live("i915"));  // the node's own i915 is there to be removed
  REQUIRE((w.firmware_path().empty() || w.firmware_path() == "\n"));
  nlohmann::json while_ready;
  bool was_ready = false;
  ScriptedEvents events({[&] {
    was_ready = w.ready();
    while_ready = w.status();
    return WatchEvent{WatchEvent::Kind::Terminate, "SIGTERM", {}, {}, {}};
  }});
  CHECK(w.run(w.options(), kernel, events) == kRunStopped);

  // The kernel was asked exactly this, in this order: the conflict out, then the bundle's build.
  REQUIRE(kernel.calls.size() == 2);
  CHECK(kernel.calls[0] == "remove i915");
  CHECK(kernel.calls[1] == "insert i915 " + w.bundle_build_id);

  CHECK(was_ready);
  CHECK(while_ready["phase"] == "ready");
  CHECK(while_ready["source"] == "prebuilt");
  CHECK(while_ready["fast_path"] == false);
  CHECK(while_ready["removed"] == nlohmann::json::array({"i915"}));
  CHECK(while_ready["timings"].contains("start_to_ready_ms"));
  // Every GPU bound to the bundle's i915 with its DRM nodes; the Max 1550 (not 6.1's) is not counted.
  size_t bound = 0;
  for (const auto& d : while_ready["devices"])
    if (d["bound"] == true) ++bound;
  CHECK(bound == kI915Devices.size());
  // The firmware copied under the host's firmware directory, and the kernel's path pointed at it.
  const std::string path = w.firmware_path();
  CHECK(path.starts_with("/var/lib/intel-gpu-driver/firmware/"));
  CHECK(read_bytes(w.node.root / path.substr(1) / "i915/test_guc.bin") == "firmware bytes\n");

  // Stopped: not ready, the modules stay, and the journal says what to undo.
  CHECK_FALSE(w.ready());
  CHECK(w.status()["phase"] == "stopping");
  CHECK(kernel.live("i915"));
  const auto j = w.journal();
  REQUIRE(j["inserted"].size() == 1);
  CHECK(j["inserted"][0]["name"] == "i915");
  CHECK(j["inserted"][0]["build_id"] == w.bundle_build_id);
  REQUIRE(j["removed"].size() == 1);
  CHECK(j["removed"][0]["name"] == "i915");
  CHECK(j["firmware_previous_path"] == "");
}

TEST_CASE("entrypoint: restarted with the bundle live (fast path) - nothing inserted or removed, ready") {
  World w;
  FakeKernel kernel(w.node.root, w.scratch);
  kernel.binds["i915"] = kI915Devices;
  ScriptedEvents first({});
  REQUIRE(w.run(w.options(), kernel, first) == kRunStopped);
  REQUIRE(kernel.calls.size() == 2);

  FakeKernel again(w.node.root, w.scratch);
  nlohmann::json while_ready;
  ScriptedEvents events({[&] {
    while_ready = w.status();
    return WatchEvent{WatchEvent::Kind::Terminate, "SIGTERM", {}, {}, {}};
  }});
  CHECK(w.run(w.options(), again, events) == kRunStopped);
  CHECK(again.calls.empty());
  CHECK(while_ready["phase"] == "ready");
  CHECK(while_ready["fast_path"] == true);
  CHECK(while_ready["timings"]["insert_ms"] == 0);
  // The journal of the first run still names what was done: the restart did not lose it.
  CHECK(w.journal()["inserted"][0]["build_id"] == w.bundle_build_id);
  CHECK(w.journal()["removed"][0]["name"] == "i915");
}

TEST_CASE("entrypoint: the kernel refuses the bundle's i915 - everything undone, refused, never ready") {
  World w;
  FakeKernel kernel(w.node.root, w.scratch);
  kernel.binds["i915"] = kI915Devices;
  kernel.refuse_build[w.bundle_build_id] = ENOEXEC;
  RunOptions o = w.options();
  o.exit_on_refuse = true;
  ScriptedEvents events({});
  CHECK(w.run(o, kernel, events) == kRunRefused);
  CHECK(events.steps_run() == 0);

  // Removed, refused, and the node's own i915 inserted again from its tree.
  REQUIRE(kernel.calls.size() == 3);
  CHECK(kernel.calls[0] == "remove i915");
  CHECK(kernel.calls[1] == "insert i915 " + w.bundle_build_id);
  CHECK(kernel.calls[2] == "insert i915 " + w.in_tree_build_id);
  CHECK(kernel.live("i915"));
  // firmware_class.path set back; nothing left to undo (an empty journal is no file).
  INFO("firmware_class.path: '" << w.firmware_path() << "'");
  CHECK((w.firmware_path().empty() || w.firmware_path() == "\n"));
  CHECK_FALSE(fs::exists(w.state / kJournalFile));
  CHECK_FALSE(w.ready());
  const auto s = w.status();
  CHECK(s["phase"] == "refused");
  CHECK(has(reason_codes(s), reason::kInsertFailed));
  CHECK_FALSE(has(reason_codes(s), reason::kRollbackIncomplete));
  CHECK(s["failure"]["module"] == "i915");
  CHECK(s["failure"]["errno"] == ENOEXEC);
  CHECK(s["removed"].empty());
}

TEST_CASE("entrypoint: the driver removed behind its back - ready withdrawn, driver_lost, until SIGHUP loads again") {
  World w;
  FakeKernel kernel(w.node.root, w.scratch);
  kernel.binds["i915"] = kI915Devices;
  bool ready_before = false, ready_after = true, ready_again = false;
  nlohmann::json lost;
  ScriptedEvents events({
      [&] {
        ready_before = w.ready();
        REQUIRE(kernel.remove("i915"));  // rmmod by someone else
        return uevent("module", "remove", "i915");
      },
      [&] {
        ready_after = w.ready();
        lost = w.status();
        return WatchEvent{WatchEvent::Kind::Reload, "SIGHUP", {}, {}, {}};
      },
      [&] {
        ready_again = w.ready();
        return WatchEvent{WatchEvent::Kind::Terminate, "SIGTERM", {}, {}, {}};
      },
  });
  CHECK(w.run(w.options(), kernel, events) == kRunStopped);
  CHECK(ready_before);
  CHECK_FALSE(ready_after);
  CHECK(lost["phase"] == "refused");
  CHECK(has(reason_codes(lost), reason::kDriverLost));
  CHECK(lost["event"].get<std::string>().find("i915 was removed") != std::string::npos);
  // SIGHUP: decided again, the bundle's i915 inserted again (the in-tree one is not back).
  CHECK(ready_again);
  REQUIRE(kernel.calls.size() == 4);
  CHECK(kernel.calls[3] == "insert i915 " + w.bundle_build_id);
}

TEST_CASE("entrypoint: --unload-on-exit - SIGTERM undoes the journal with the same undo as a rollback") {
  World w;
  FakeKernel kernel(w.node.root, w.scratch);
  kernel.binds["i915"] = kI915Devices;
  RunOptions o = w.options();
  o.unload_on_exit = true;
  ScriptedEvents events({});
  CHECK(w.run(o, kernel, events) == kRunStopped);
  REQUIRE(kernel.calls.size() == 4);
  CHECK(kernel.calls[2] == "remove i915");
  CHECK(kernel.calls[3] == "insert i915 " + w.in_tree_build_id);
  CHECK((w.firmware_path().empty() || w.firmware_path() == "\n"));
  CHECK_FALSE(fs::exists(w.state / kJournalFile));
  CHECK_FALSE(w.ready());
}

TEST_CASE("agent unload: a module in use stays, named; the rest is undone; the journal keeps what stayed") {
  World w;
  FakeKernel kernel(w.node.root, w.scratch);
  kernel.binds["i915"] = kI915Devices;
  ScriptedEvents events({});
  REQUIRE(w.run(w.options(), kernel, events) == kRunStopped);
  put(w.node.root / "sys/module/i915/refcnt", "2\n");  // the GPU is in use
  UnloadOptions u;
  u.root = w.node.root;
  u.state_dir = w.state;
  std::ostringstream out, err;
  CHECK(run_unload(u, kernel, out, err) == kUnloadIncomplete);
  INFO(out.str());
  CHECK(out.str().find("not undone: remove i915: in use (refcnt 2)") != std::string::npos);
  // The bundle's i915 stayed, so the node's own cannot come back; firmware_class.path is set back.
  CHECK(kernel.live("i915"));
  CHECK((w.firmware_path().empty() || w.firmware_path() == "\n"));
  const auto j = w.journal();
  REQUIRE(j["inserted"].size() == 1);
  CHECK(j["inserted"][0]["build_id"] == w.bundle_build_id);
  REQUIRE(j["removed"].size() == 1);
  CHECK(j["firmware_previous_path"].is_null());
}

TEST_CASE("entrypoint: nothing is acted on without a journal; a removal the kernel refuses ends the attempt") {
  SECTION("the journal cannot be read (undo.json is a directory): the kernel is asked nothing") {
    World w;
    FakeKernel kernel(w.node.root, w.scratch);
    kernel.binds["i915"] = kI915Devices;
    fs::create_directories(w.state / kJournalFile / "in-the-way");
    RunOptions o = w.options();
    o.exit_on_refuse = true;
    ScriptedEvents events({});
    CHECK(w.run(o, kernel, events) == kRunRefused);
    CHECK(kernel.calls.empty());
    const auto s = w.status();
    CHECK(s["phase"] == "refused");
    CHECK(has(reason_codes(s), reason::kJournalUnreadable));
    CHECK(kernel.live("i915"));
    CHECK((w.firmware_path().empty() || w.firmware_path() == "\n"));
  }
  SECTION("the in-tree i915 cannot be removed (EBUSY): nothing inserted, nothing left journaled") {
    World w;
    struct Busy final : ModuleControl {
      explicit Busy(FakeKernel& k) : k_(k) {}
      Result<void> insert(const Fd& f, const std::string& n, const std::string& o) const override { return k_.insert(f, n, o); }
      Result<void> remove(const std::string& n) const override {
        k_.calls.push_back("remove " + n + " (busy)");
        return fail(EBUSY, "cannot remove: Device or resource busy", n);
      }
      FakeKernel& k_;
    };
    FakeKernel kernel(w.node.root, w.scratch);
    Busy busy(kernel);
    RunOptions o = w.options();
    o.exit_on_refuse = true;
    ScriptedEvents events({});
    EntrypointSeams seams;
    seams.kernel = [&]() -> Result<std::unique_ptr<ModuleControl>> { return std::make_unique<Busy>(kernel); };
    seams.events = [&]() -> Result<std::unique_ptr<Events>> { return std::make_unique<ScriptedEvents>(std::vector<ScriptedEvents::Step>{}); };
    CHECK(run_entrypoint(o, seams) == kRunRefused);
    REQUIRE(kernel.calls == std::vector<std::string>{"remove i915 (busy)"});
    const auto s = w.status();
    CHECK(has(reason_codes(s), reason::kRemoveFailed));
    CHECK(s["failure"]["errno"] == EBUSY);
    CHECK_FALSE(fs::exists(w.state / kJournalFile));
    CHECK_FALSE(w.ready());
  }
}
