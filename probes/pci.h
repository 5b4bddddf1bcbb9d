// PCI discovery: every PCI function of the host, as sysfs shows it under the host root, named
// from pci.ids (libpci's parser), and matched against a bundle's modalias patterns the way the kernel and kmod do.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent::probes {

struct PciDevice {
  std::string bdf;         // "0000:03:00.0"
  std::string sysfs_path;  // host path of the device directory: "/sys/devices/pci0000:00/.../0000:03:00.0"
  uint16_t vendor = 0, device = 0;
  uint16_t subsystem_vendor = 0, subsystem_device = 0;
  uint32_t class_code = 0;  // 24 bits: base class, subclass, prog-if (0x038000)
  uint8_t revision = 0;
  std::string modalias;     // "pci:v00008086d000056C0sv00008086sd00004905bc03sc80i00"
  std::optional<int> numa_node;  // none when the kernel has no NUMA or reports -1
  std::string driver;       // bound driver ("i915"), empty when unbound
  std::string vendor_name, device_name;  // from pci.ids; empty when unknown
  // Attributes that could not be read; the fields they feed keep their defaults (the modalias is
  // then rebuilt from the ids, as the kernel formats it).
  std::vector<std::string> problems;

  [[nodiscard]] bool is_display() const noexcept { return (class_code >> 16) == 0x03; }
  // "Intel Corporation Data Center GPU Flex 170", or "8086:56c0" when pci.ids does not know it.
  [[nodiscard]] std::string name() const;
};

enum class PciBackend {
  Auto,   // libudev on the live system (root "/"), sysfs through the host root under any other
  Sysfs,  // /sys/bus/pci/devices read through the host root (links resolve inside it)
  Udev,   // libudev enumerate: only for root "/" (libudev always reads the live /sys)
};

struct PciOptions {
  PciBackend backend = PciBackend::Auto;
  // pci.ids to name devices from; empty: this image's /usr/share/misc/pci.ids (or hwdata's).
  // Read once per process: a vendor:device named from a file is named the same way by every
  // later discovery with that path, without reading the file again.
  std::filesystem::path pci_ids;
};

struct PciInventory {
  std::vector<PciDevice> devices;  // sorted by BDF
  std::string backend;             // "sysfs" or "udev"
  std::string pci_ids;             // the database the names came from, empty if none
  std::vector<Error> problems;     // not fatal: e.g. no pci.ids, so no names
};

// Lists every PCI function. An error means the bus could not be listed at all; a device whose
// attributes cannot be read is still listed, with the failures in PciDevice::problems.
[[nodiscard]] Result<PciInventory> discover_pci(const HostRoot& root, const PciOptions& options = {});

// A device's binding as it is now: the module of its bound driver (<dev>/driver/module; "" when
// unbound or the driver is built in) and its DRM nodes (card*, renderD* in <dev>/drm; none
// before the driver registers them). Anything else unreadable is an error.
struct DeviceBinding {
  std::string driver_module;
  std::vector<std::string> drm;
};
[[nodiscard]] Result<DeviceBinding> probe_device_binding(const HostRoot& root, const std::string& sysfs_path);

// The kernel's modalias of a PCI function, from its ids (drivers/pci/pci-driver.c format).
[[nodiscard]] std::string pci_modalias(const PciDevice& d);

// True when a module alias pattern matches a modalias, with the glob semantics kmod and the
// kernel use (fnmatch(3), no flags).
[[nodiscard]] bool alias_matches(std::string_view pattern, std::string_view modalias);

struct ModuleAliases {
  std::string module;                // module name
  std::vector<std::string> aliases;  // its alias= values (only "pci:" ones can match)
};

// The modules whose aliases match the device, in the order given.
[[nodiscard]] std::vector<std::string> matching_modules(const PciDevice& d, const std::vector<ModuleAliases>& modules);

}  // namespace agent::probes
