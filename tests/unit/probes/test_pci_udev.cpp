// libudev discovery, run under umockdev-wrapper: the testbed's /sys is the committed fixture
// node's sysfs, so libudev (which always reads "/sys") and the sysfs reader see the same devices,
// and the two back ends must agree field by field. Started without the preload, the binary runs
// itself again under umockdev-wrapper; where that cannot work it exits 77 (ctest: SKIPPED).
#define CATCH_CONFIG_RUNNER
#include "catch2_compat.h"

#include <unistd.h>
#include <umockdev.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <iostream>

#include "probes/pci.h"
#include "test_util.h"

using namespace agent::probes;
namespace fs = std::filesystem;

namespace {

struct Testbed {
  UMockdevTestbed* tb = nullptr;
  Testbed() {
    tb = umockdev_testbed_new();
    gchar* dir = umockdev_testbed_get_root_dir(tb);
    root = dir;
    g_free(dir);
    agent::test::copy_tree(agent::test::base_host() / "sys", root / "sys");
  }
  ~Testbed() { g_object_unref(tb); }
  Testbed(const Testbed&) = delete;
  Testbed& operator=(const Testbed&) = delete;
  fs::path root;
};

// The live root, which libudev reads through umockdev's preload; or, for the sysfs back end
// (which opens with openat2, beyond the preload's reach), the testbed's own root.
PciInventory discover(PciBackend b, const fs::path& root = "/") {
  PciOptions o;
  o.backend = b;
  o.pci_ids = AGENT_PCI_IDS;
  auto inv = discover_pci(HostRoot::open(root).value(), o);
  REQUIRE(inv);
  return *inv;
}

}  // namespace

TEST_CASE("libudev enumerates the testbed's PCI functions like the sysfs reader does") {
  Testbed bed;  // in_mock_environment() is true only once a testbed exists
  REQUIRE(umockdev_in_mock_environment());  // main() made sure
  const PciInventory udev = discover(PciBackend::Udev);
  CHECK(udev.backend == "udev");
  REQUIRE(udev.devices.size() == 13);
  const PciInventory pci = discover(PciBackend::Sysfs, bed.root);
  REQUIRE(pci.devices.size() == udev.devices.size());
  for (size_t i = 0; i < udev.devices.size(); ++i) {
    const PciDevice& a = udev.devices[i];
    const PciDevice& b = pci.devices[i];
    INFO(a.bdf);
    CHECK(a.bdf == b.bdf);
    CHECK(a.sysfs_path == b.sysfs_path);
    CHECK(a.vendor == b.vendor);
    CHECK(a.device == b.device);
    CHECK(a.subsystem_vendor == b.subsystem_vendor);
    CHECK(a.subsystem_device == b.subsystem_device);
    CHECK(a.class_code == b.class_code);
    CHECK(a.revision == b.revision);
    CHECK(a.modalias == b.modalias);
    CHECK(a.numa_node == b.numa_node);
    CHECK(a.driver == b.driver);
    CHECK(a.name() == b.name());
    CHECK(a.problems.empty());
  }
  // Auto picks libudev for the live root.
  CHECK(discover(PciBackend::Auto).backend == "udev");
}

TEST_CASE("libudev: the Flex 170 as the kernel would show it") {
  Testbed bed;
  REQUIRE(umockdev_in_mock_environment());
  const PciInventory udev = discover(PciBackend::Udev);
  auto it = std::find_if(udev.devices.begin(), udev.devices.end(), [](auto& d) { return d.bdf == "0000:03:00.0"; });
  REQUIRE(it != udev.devices.end());
  CHECK(it->device == 0x56c0);
  CHECK(it->driver == "i915");
  CHECK(it->sysfs_path == "/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0");
}

int main(int argc, char** argv) {
  bool mocked = false;
  {
    Testbed probe;  // in_mock_environment() is true only once a testbed exists
    mocked = umockdev_in_mock_environment();
  }
  if (!mocked) {
    if (std::getenv("AGENT_UDEV_TEST_REEXEC") == nullptr) {
      setenv("AGENT_UDEV_TEST_REEXEC", "1", 1);
      std::vector<char*> args{const_cast<char*>(AGENT_UMOCKDEV_WRAPPER)};
      args.insert(args.end(), argv, argv + argc);
      args.push_back(nullptr);
      execv(AGENT_UMOCKDEV_WRAPPER, args.data());
      std::cerr << "SKIP: cannot run " << AGENT_UMOCKDEV_WRAPPER << ": " << std::strerror(errno) << '\n';
    } else {
      std::cerr << "SKIP: the umockdev preload is not active under " << AGENT_UMOCKDEV_WRAPPER << '\n';
    }
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
