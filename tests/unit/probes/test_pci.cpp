#include "catch2_compat.h"

#include <algorithm>
#include <cerrno>
#include <fstream>

#include "probes/pci.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::TempDir;
namespace fs = std::filesystem;

namespace {

const PciDevice& by_bdf(const PciInventory& inv, const std::string& bdf) {
  auto it = std::find_if(inv.devices.begin(), inv.devices.end(), [&](const auto& d) { return d.bdf == bdf; });
  REQUIRE(it != inv.devices.end());
  return *it;
}

PciOptions sysfs_options() {
  PciOptions o;
  o.backend = PciBackend::Sysfs;
  o.pci_ids = AGENT_PCI_IDS;
  return o;
}

}  // namespace

TEST_CASE("sysfs lists every PCI function of the fixture node, sorted") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  auto inv = discover_pci(root, sysfs_options());
  REQUIRE(inv);
  CHECK(inv->backend == "sysfs");
  REQUIRE(inv->devices.size() == 13);
  CHECK(std::is_sorted(inv->devices.begin(), inv->devices.end(), [](auto& a, auto& b) { return a.bdf < b.bdf; }));
  CHECK(std::count_if(inv->devices.begin(), inv->devices.end(), [](auto& d) { return d.is_display(); }) == 5);
  for (const auto& d : inv->devices) CHECK(d.problems.empty());
}

TEST_CASE("sysfs reads a Data Center GPU Flex 170 as sysfs shows it") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  auto inv = discover_pci(root, sysfs_options()).value();
  const PciDevice& flex = by_bdf(inv, "0000:03:00.0");
  CHECK(flex.vendor == 0x8086);
  CHECK(flex.device == 0x56c0);
  CHECK(flex.subsystem_vendor == 0x8086);
  CHECK(flex.subsystem_device == 0x4905);
  CHECK(flex.class_code == 0x038000);
  CHECK(flex.revision == 0x08);
  CHECK(flex.modalias == "pci:v00008086d000056C0sv00008086sd00004905bc03sc80i00");
  CHECK(flex.numa_node == 0);
  CHECK(flex.driver == "i915");
  CHECK(flex.sysfs_path == "/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0");
  if (!inv.pci_ids.empty()) CHECK(flex.name() == "Intel Corporation Data Center GPU Flex 170");
}

TEST_CASE("sysfs reads the other GPUs: Max 1550 unbound on NUMA node 1, Arc A770, Alder Lake-P, ASPEED") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  auto inv = discover_pci(root, sysfs_options()).value();
  const PciDevice& max = by_bdf(inv, "0000:81:00.0");
  CHECK(max.device == 0x0bd5);
  CHECK(max.revision == 0x2f);
  CHECK(max.driver.empty());
  CHECK(max.numa_node == 1);
  const PciDevice& arc = by_bdf(inv, "0000:04:00.0");
  CHECK(arc.device == 0x56a0);
  CHECK(arc.class_code == 0x030000);
  const PciDevice& adl = by_bdf(inv, "0000:00:02.0");
  CHECK(adl.device == 0x46a6);
  CHECK(adl.subsystem_vendor == 0x17aa);
  const PciDevice& aspeed = by_bdf(inv, "0000:06:00.0");
  CHECK(aspeed.vendor == 0x1a03);
  CHECK(aspeed.driver == "ast");
  CHECK(aspeed.is_display());
  const PciDevice& nic = by_bdf(inv, "0000:82:00.0");
  CHECK_FALSE(nic.is_display());
  CHECK(nic.driver == "mlx5_core");
  if (!inv.pci_ids.empty()) {
    CHECK(max.device_name == "Ponte Vecchio XT (2 Tile) [Data Center GPU Max 1550]");
    CHECK(arc.device_name == "DG2 [Arc A770]");
    CHECK(adl.device_name == "Alder Lake-P Integrated Graphics Controller");
    CHECK(aspeed.vendor_name == "ASPEED Technology, Inc.");
  }
}

TEST_CASE("PCI discovery: no PCI bus under the root is an error, not zero devices") {
  TempDir t;
  auto root = HostRoot::open(t.path()).value();
  auto inv = discover_pci(root, sysfs_options());
  REQUIRE_FALSE(inv);
  CHECK(inv.error().code == ENOENT);
  CHECK(inv.error().path.find("sys/bus/pci/devices") != std::string::npos);
}

TEST_CASE("PCI discovery: an unreadable vendor attribute is reported on that device") {
  TempDir t;
  agent::test::copy_tree(agent::test::base_host() / "sys", t / "sys");
  const fs::path vendor = t / "sys/devices/pci0000:80/0000:80:01.0/0000:81:00.0/vendor";
  fs::remove(vendor);
  fs::create_directory(vendor);  // read() fails with EISDIR, as root cannot be locked out by mode bits
  auto root = HostRoot::open(t.path()).value();
  auto inv = discover_pci(root, sysfs_options());
  REQUIRE(inv);
  REQUIRE(inv->devices.size() == 13);
  const PciDevice& max = by_bdf(*inv, "0000:81:00.0");
  REQUIRE_FALSE(max.problems.empty());
  CHECK(max.problems.front().find("vendor") != std::string::npos);
  CHECK(max.class_code == 0x038000);  // the other attributes still read
  CHECK(max.revision == 0x2f);
  CHECK(max.modalias == "pci:v00008086d00000BD5sv00008086sd00000000bc03sc80i00");
  CHECK(by_bdf(*inv, "0000:03:00.0").problems.empty());
}

TEST_CASE("PCI discovery: a missing modalias is rebuilt from the ids and reported") {
  TempDir t;
  agent::test::copy_tree(agent::test::base_host() / "sys", t / "sys");
  fs::remove(t / "sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0/modalias");
  auto root = HostRoot::open(t.path()).value();
  auto inv = discover_pci(root, sysfs_options()).value();
  const PciDevice& flex = by_bdf(inv, "0000:03:00.0");
  CHECK(flex.modalias == "pci:v00008086d000056C0sv00008086sd00004905bc03sc80i00");
  REQUIRE(flex.problems.size() == 1);
  CHECK(flex.problems[0].find("modalias") != std::string::npos);
}

TEST_CASE("PCI discovery: without pci.ids the devices are listed by id and the gap is reported") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  PciOptions o = sysfs_options();
  o.pci_ids = "/nonexistent/pci.ids";
  auto inv = discover_pci(root, o).value();
  REQUIRE(inv.devices.size() == 13);
  CHECK(inv.pci_ids.empty());
  REQUIRE(inv.problems.size() == 1);
  CHECK(inv.problems[0].code == ENOENT);
  CHECK(by_bdf(inv, "0000:03:00.0").name() == "8086:56c0");
}

TEST_CASE("PCI discovery: pci.ids is read once per process, not at every discovery") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  const TempDir tmp;
  const fs::path ids = tmp.path() / "pci.ids";
  // pci.ids's format: a vendor line, its devices indented by a tab.
  auto write_ids = [&](const std::string& devices) {
    std::ofstream(ids) << "8086  Intel Corporation\n" << devices;
  };
  write_ids("\t56c0  first name\n");
  PciOptions o = sysfs_options();
  o.pci_ids = ids;
  auto first = discover_pci(root, o).value();
  CHECK(first.problems.empty());
  CHECK(by_bdf(first, "0000:03:00.0").name() == "Intel Corporation first name");
  CHECK(by_bdf(first, "0000:00:02.0").device_name.empty());  // 8086:46a6, not in that file
  // Changed on disk: the answers of the first read stand, a name and the absence of one.
  write_ids("\t46a6  integrated\n\t56c0  second name\n");
  auto second = discover_pci(root, o).value();
  CHECK(second.pci_ids == ids.string());
  CHECK(by_bdf(second, "0000:03:00.0").name() == "Intel Corporation first name");
  CHECK(by_bdf(second, "0000:00:02.0").device_name.empty());
  // Another path is another file: read, with today's content.
  const fs::path copy = tmp.path() / "pci.ids.copy";
  fs::copy_file(ids, copy);
  o.pci_ids = copy;
  auto third = discover_pci(root, o).value();
  CHECK(by_bdf(third, "0000:03:00.0").name() == "Intel Corporation second name");
  CHECK(by_bdf(third, "0000:00:02.0").name() == "Intel Corporation integrated");
}

TEST_CASE("PCI discovery: libudev refuses a root other than /") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  PciOptions o = sysfs_options();
  o.backend = PciBackend::Udev;
  auto inv = discover_pci(root, o);
  REQUIRE_FALSE(inv);
  CHECK(inv.error().code == EINVAL);
}

TEST_CASE("pci_modalias formats ids as the kernel does") {
  PciDevice d;
  d.vendor = 0x8086;
  d.device = 0x0bd5;
  d.subsystem_vendor = 0x8086;
  d.subsystem_device = 0;
  d.class_code = 0x038000;
  CHECK(pci_modalias(d) == "pci:v00008086d00000BD5sv00008086sd00000000bc03sc80i00");
}

TEST_CASE("alias matching uses the kernel's and kmod's glob semantics") {
  const std::string flex = "pci:v00008086d000056C0sv00008086sd00004905bc03sc80i00";
  // i915's own alias for the Flex 170, as modinfo prints it.
  CHECK(alias_matches("pci:v00008086d000056C0sv*sd*bc03sc*i*", flex));
  CHECK_FALSE(alias_matches("pci:v00008086d000056C1sv*sd*bc03sc*i*", flex));
  // The class is part of the alias: an Intel NIC id table never matches a display device.
  CHECK_FALSE(alias_matches("pci:v00008086d000056C0sv*sd*bc02sc*i*", flex));
  // Hex in a modalias is upper case; glob matching is case-sensitive, as in the kernel.
  CHECK_FALSE(alias_matches("pci:v00008086d000056c0sv*sd*bc03sc*i*", flex));
  CHECK(alias_matches("pci:v00008086d*sv*sd*bc03sc*i*", flex));
  CHECK(alias_matches("pci:v00008086d000056C[0-9]sv*sd*bc03sc*i*", flex));
}

TEST_CASE("matching_modules: the bundle's aliases decide, in bundle order; Max 1550 is not in 6.1's i915") {
  auto root = HostRoot::open(agent::test::base_host()).value();
  auto inv = discover_pci(root, sysfs_options()).value();
  const std::vector<ModuleAliases> bundle = {
      {"i915", {"pci:v00008086d000056C0sv*sd*bc03sc*i*", "pci:v00008086d000056A0sv*sd*bc03sc*i*",
                "pci:v00008086d000046A6sv*sd*bc03sc*i*"}},
      {"xe", {"pci:v00008086d000056A0sv*sd*bc03sc*i*", "of:NgpuT*Cintel"}},
      {"e1000", {"pci:v00008086d0000100Esv*sd*bc*sc*i*"}},
  };
  CHECK(matching_modules(by_bdf(inv, "0000:03:00.0"), bundle) == std::vector<std::string>{"i915"});
  CHECK(matching_modules(by_bdf(inv, "0000:04:00.0"), bundle) == std::vector<std::string>{"i915", "xe"});
  CHECK(matching_modules(by_bdf(inv, "0000:81:00.0"), bundle).empty());
  CHECK(matching_modules(by_bdf(inv, "0000:06:00.0"), bundle).empty());
}

TEST_CASE("sysfs: device links and attributes that lead out of the root are never read") {
  agent::test::HostCopy host(agent::test::base_host());
  TempDir outside;
  agent::test::write_file(outside / "vendor", "0x1af4\n");  // a marker: virtio's vendor id
  // An attribute that is a link to a file outside the root (absolute, and climbing).
  const std::string dev = "sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0";
  fs::remove(host.root / dev / "vendor");
  fs::create_symlink(outside / "vendor", host.root / dev / "vendor");
  fs::remove(host.root / dev / "device");
  fs::create_symlink("../../../../../../../../../../" + (outside / "vendor").string(), host.root / dev / "device");
  // A device link to the machine's own /sys/devices (as a bind mount gone wrong would show it):
  // a device this machine has and the fixture does not.
  fs::path real_dev;
  for (const auto& e : fs::directory_iterator("/sys/bus/pci/devices")) {
    const fs::path c = fs::canonical(e.path());
    if (!fs::exists(host.root / c.relative_path())) {
      real_dev = c;
      break;
    }
  }
  REQUIRE_FALSE(real_dev.empty());  // this test needs a PCI function of its own machine
  fs::remove(host.root / "sys/bus/pci/devices/0000:00:02.0");
  fs::create_symlink(real_dev, host.root / "sys/bus/pci/devices/0000:00:02.0");
  auto root = HostRoot::open(host.root).value();
  auto inv = discover_pci(root, sysfs_options()).value();
  const PciDevice& flex = by_bdf(inv, "0000:03:00.0");
  CHECK(flex.vendor == 0);  // not the outside 0x1af4
  CHECK(flex.device == 0);
  CHECK(flex.problems.size() >= 2);
  const PciDevice& gone = by_bdf(inv, "0000:00:02.0");
  CHECK(gone.vendor == 0);  // not whatever the agent's own machine has there
  CHECK_FALSE(gone.problems.empty());
}

TEST_CASE("probe_device_binding: the bound driver's module and the DRM nodes; unbound is none, unreadable an error") {
  agent::test::HostCopy h(agent::test::base_host());
  auto root = HostRoot::open(h.root).value();
  const std::string gpu = "/sys/devices/pci0000:00/0000:00:01.0/0000:03:00.0";
  REQUIRE(fs::is_symlink(h.root / ("." + gpu + "/driver")));
  REQUIRE_FALSE(fs::exists(h.root / ("." + gpu + "/drm")));
  auto b = probe_device_binding(root, gpu);
  REQUIRE(b);
  CHECK(b->driver_module == "i915");
  CHECK(b->drm.empty());
  for (const char* n : {"card1", "renderD128", "version"}) h.put("." + gpu + "/drm/" + n + "/dev", "226:1\n");
  CHECK(probe_device_binding(root, gpu).value().drm == std::vector<std::string>{"card1", "renderD128"});
  // Unbound: no driver link.
  fs::remove(h.root / ("." + gpu + "/driver"));
  CHECK(probe_device_binding(root, gpu).value().driver_module.empty());
  // A drm that is no directory cannot be listed: an error naming it, not "no DRM node".
  fs::remove_all(h.root / ("." + gpu + "/drm"));
  h.put("." + gpu + "/drm", "not a directory");
  auto bad = probe_device_binding(root, gpu);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().what().find("0000:03:00.0/drm") != std::string::npos);
}
