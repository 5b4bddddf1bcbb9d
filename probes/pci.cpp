#include "probes/pci.h"

#include <fnmatch.h>
#include <libudev.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <tuple>
#include <system_error>

#include <spdlog/spdlog.h>

#include "kabi/handles.h"
#include "probes/pci_guard.h"

namespace agent::probes {
namespace fs = std::filesystem;

namespace {

using PciAccess = CHandle<pci_access, pci_cleanup>;
using Udev = CHandle<udev, udev_unref>;
using UdevEnumerate = CHandle<udev_enumerate, udev_enumerate_unref>;
using UdevDevice = CHandle<udev_device, udev_device_unref>;

// Where this image's pci.ids may be; names are data of the image, not state of the host.
constexpr const char* kPciIdsPaths[] = {"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"};

std::string hex4(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04x", v & 0xffffu);
  return buf;
}

// The sysfs directory of the PCI bus under the root; an error when there is none, so "no PCI
// bus visible" is never mistaken for "no devices".
Result<void> check_pci_sysfs(const HostRoot& root) {
  if (!root.is_directory("/sys/bus/pci/devices"))
    return fail(ENOENT, "no PCI devices directory in sysfs", root.display("/sys/bus/pci/devices"));
  return {};
}

// An attribute's value, or why it could not be read (ENOENT: the device has no such attribute).
using AttributeReader = std::function<Result<std::string>(const char* name)>;

// A device's ids, class, revision, modalias and NUMA node from its sysfs attributes, however
// they are read (through the host root, or by libudev); what is unreadable or not a number goes
// to dev.problems, `where` naming the device.
void fill_attributes(PciDevice& dev, const AttributeReader& read, const std::string& where) {
  auto attr = [&](const char* name, bool required) -> std::optional<std::string> {
    auto v = read(name);
    if (v) return *v;
    if (required || v.error().code != ENOENT) dev.problems.push_back("Cannot read " + v.error().what());
    return std::nullopt;
  };
  auto number = [&](const char* name, bool required) -> std::optional<unsigned long> {
    auto v = attr(name, required);
    if (!v) return std::nullopt;
    auto n = parse_number(*v);
    if (!n) dev.problems.push_back("Not a number in " + where + "/" + name + ": " + *v);
    return n;
  };
  if (auto v = number("vendor", true)) dev.vendor = static_cast<uint16_t>(*v);
  if (auto v = number("device", true)) dev.device = static_cast<uint16_t>(*v);
  if (auto v = number("class", true)) dev.class_code = static_cast<uint32_t>(*v);
  if (auto v = number("revision", false)) dev.revision = static_cast<uint8_t>(*v);
  if (auto v = number("subsystem_vendor", false)) dev.subsystem_vendor = static_cast<uint16_t>(*v);
  if (auto v = number("subsystem_device", false)) dev.subsystem_device = static_cast<uint16_t>(*v);
  if (auto v = attr("modalias", false)) dev.modalias = *v;
  if (auto v = attr("numa_node", false)) {
    // sysfs prints -1 for "no node"; parse_number takes unsigned values only.
    if (*v != "-1") {
      if (auto n = parse_number(*v)) dev.numa_node = static_cast<int>(*n);
    }
  }
}

// Every PCI function as sysfs shows it, read through the host root: the device links, the
// attributes and the driver link all resolve inside it (a link that leads out of a fixture or
// a hostile tree leads nowhere, and is reported).
Result<std::vector<PciDevice>> scan_sysfs(const HostRoot& root) {
  if (auto ok = check_pci_sysfs(root); !ok) return tl::unexpected(ok.error());
  auto names = root.list_dir("/sys/bus/pci/devices");
  if (!names) return tl::unexpected(names.error());
  std::vector<PciDevice> out;
  for (const auto& bdf : *names) {
    PciDevice dev;
    dev.bdf = bdf;
    const std::string link = "/sys/bus/pci/devices/" + bdf;
    auto dir = root.canonical(link);
    if (!dir || !root.is_directory(*dir)) {
      dev.problems.push_back("Cannot read " + root.display(link) + ": " +
                             (dir ? "not a directory" : dir.error().message));
      dev.sysfs_path = link;
      out.push_back(std::move(dev));
      continue;
    }
    dev.sysfs_path = *dir;
    fill_attributes(
        dev, [&](const char* name) { return root.read_value(dev.sysfs_path + "/" + name); },
        root.display(dev.sysfs_path));
    if (auto st = root.fs().stat(dev.sysfs_path + "/driver", /*follow=*/false); st) {
      auto drv = root.link_basename(dev.sysfs_path + "/driver");
      if (drv) dev.driver = *drv;
      else dev.problems.push_back("Cannot read " + drv.error().what());
    }
    out.push_back(std::move(dev));
  }
  return out;
}

Result<std::vector<PciDevice>> scan_udev(const HostRoot& root) {
  if (!root.is_live())
    return fail(EINVAL, "libudev reads the live /sys only; use the sysfs reader under host root " + root.root().string());
  if (auto ok = check_pci_sysfs(root); !ok) return tl::unexpected(ok.error());
  Udev u(udev_new());
  if (!u) return fail(ENOMEM, "udev_new failed");
  UdevEnumerate en(udev_enumerate_new(u.get()));
  if (!en) return fail(ENOMEM, "udev_enumerate_new failed");
  if (int rc = udev_enumerate_add_match_subsystem(en.get(), "pci"); rc < 0)
    return fail(-rc, "udev_enumerate_add_match_subsystem failed");
  if (int rc = udev_enumerate_scan_devices(en.get()); rc < 0)
    return fail(-rc, "udev_enumerate_scan_devices failed", "/sys/bus/pci");

  std::vector<PciDevice> out;
  udev_list_entry* entry = nullptr;
  udev_list_entry_foreach(entry, udev_enumerate_get_list_entry(en.get())) {
    const char* syspath = udev_list_entry_get_name(entry);
    UdevDevice d(udev_device_new_from_syspath(u.get(), syspath));
    if (!d) {
      spdlog::warn("udev: cannot open {}", syspath);
      continue;
    }
    PciDevice dev;
    dev.bdf = udev_device_get_sysname(d.get());
    dev.sysfs_path = syspath;
    const std::string where = syspath;
    fill_attributes(
        dev,
        [&](const char* name) -> Result<std::string> {
          errno = 0;
          if (const char* v = udev_device_get_sysattr_value(d.get(), name)) return std::string(trim(v));
          const int err = errno != 0 ? errno : ENOENT;  // libudev leaves errno alone for a missing file
          return fail(err, std::strerror(err), where + "/" + name);
        },
        where);
    if (const char* drv = udev_device_get_driver(d.get())) dev.driver = drv;
    out.push_back(std::move(dev));
  }
  return out;
}

// Names looked up in this process, by pci.ids path and vendor:device (empty: not in the file;
// remembered too, or a device pci.ids lacks would have the file read at every discovery).
// libpci reads the whole file at its first lookup, and a run discovers the PCI bus several
// times (bench/results.md): the file is read once per process, at the first discovery that
// meets a device it has not named yet.
struct NameMemo {
  std::mutex lock;
  std::map<std::tuple<std::string, uint16_t, uint16_t>, std::pair<std::string, std::string>> names;
};
NameMemo& name_memo() {
  static NameMemo memo;
  return memo;
}

// Names devices from pci.ids through libpci's parser (no hwdb: the result must not depend on
// which udev database the image happens to carry).
void name_devices(std::vector<PciDevice>& devices, const fs::path& ids, std::vector<Error>& problems) {
  std::string ids_path = ids.string();  // outlives the access handle
  NameMemo& memo = name_memo();
  const std::lock_guard<std::mutex> held(memo.lock);
  PciAccess pacc;
  char err[512];
  char buf[256];
  const int flags = PCI_LOOKUP_NO_NUMBERS | PCI_LOOKUP_NO_HWDB;
  for (auto& d : devices) {
    if (d.vendor == 0) continue;
    const auto key = std::tuple(ids_path, d.vendor, d.device);
    if (auto it = memo.names.find(key); it != memo.names.end()) {
      d.vendor_name = it->second.first;
      d.device_name = it->second.second;
      continue;
    }
    if (!pacc) {
      pacc.reset(agent_pci_alloc());
      if (!pacc) return;
      pacc->id_lookup_mode = PCI_LOOKUP_NO_HWDB;
      pci_set_name_list_path(pacc.get(), ids_path.data(), 0);
    }
    const char* name = nullptr;
    if (agent_pci_lookup(pacc.get(), buf, sizeof buf, flags | PCI_LOOKUP_VENDOR, d.vendor, 0, &name, err, sizeof err) !=
        0) {
      problems.push_back(Error{EINVAL, std::string("pci.ids: ") + err, ids_path});
      return;
    }
    if (name) d.vendor_name = name;
    if (agent_pci_lookup(pacc.get(), buf, sizeof buf, flags | PCI_LOOKUP_DEVICE, d.vendor, d.device, &name, err,
                         sizeof err) != 0) {
      problems.push_back(Error{EINVAL, std::string("pci.ids: ") + err, ids_path});
      return;
    }
    if (name) d.device_name = name;
    memo.names.emplace(key, std::pair(d.vendor_name, d.device_name));
  }
}

}  // namespace

std::string PciDevice::name() const {
  if (!vendor_name.empty() && !device_name.empty()) return vendor_name + " " + device_name;
  if (!vendor_name.empty()) return vendor_name + " device " + hex4(device);
  return hex4(vendor) + ":" + hex4(device);
}

std::string pci_modalias(const PciDevice& d) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X", unsigned{d.vendor}, unsigned{d.device},
                unsigned{d.subsystem_vendor}, unsigned{d.subsystem_device}, (d.class_code >> 16) & 0xffu,
                (d.class_code >> 8) & 0xffu, d.class_code & 0xffu);
  return buf;
}

bool alias_matches(std::string_view pattern, std::string_view modalias) {
  const std::string p(pattern), s(modalias);
  return ::fnmatch(p.c_str(), s.c_str(), 0) == 0;
}

std::vector<std::string> matching_modules(const PciDevice& d, const std::vector<ModuleAliases>& modules) {
  const std::string modalias = d.modalias.empty() ? pci_modalias(d) : d.modalias;
  std::vector<std::string> out;
  for (const auto& m : modules) {
    const bool hit = std::any_of(m.aliases.begin(), m.aliases.end(), [&](const std::string& a) {
      return a.rfind("pci:", 0) == 0 && alias_matches(a, modalias);
    });
    if (hit) out.push_back(m.module);
  }
  return out;
}

Result<DeviceBinding> probe_device_binding(const HostRoot& root, const std::string& sysfs_path) {
  DeviceBinding b;
  if (auto m = root.link_basename(sysfs_path + "/driver/module")) b.driver_module = *m;
  else if (m.error().code != ENOENT) return tl::unexpected(m.error());
  if (auto entries = root.list_dir(sysfs_path + "/drm")) {
    for (const auto& e : *entries)
      if (e.starts_with("card") || e.starts_with("renderD")) b.drm.push_back(e);
  } else if (entries.error().code != ENOENT) {
    return tl::unexpected(entries.error());
  }
  return b;
}

Result<PciInventory> discover_pci(const HostRoot& root, const PciOptions& options) {
  PciInventory inv;
  PciBackend backend = options.backend;
  if (backend == PciBackend::Auto) backend = root.is_live() ? PciBackend::Udev : PciBackend::Sysfs;
  auto devices = backend == PciBackend::Udev ? scan_udev(root) : scan_sysfs(root);
  if (!devices) return tl::unexpected(devices.error());
  inv.backend = backend == PciBackend::Udev ? "udev" : "sysfs";
  inv.devices = std::move(*devices);
  std::sort(inv.devices.begin(), inv.devices.end(), [](const auto& a, const auto& b) { return a.bdf < b.bdf; });

  for (auto& d : inv.devices) {
    if (d.modalias.empty()) {
      d.modalias = pci_modalias(d);
      d.problems.push_back("modalias not readable in " + root.display(d.sysfs_path) + "; rebuilt from the ids");
    }
  }

  fs::path ids = options.pci_ids;
  if (ids.empty()) {
    for (const char* p : kPciIdsPaths) {
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) {
        ids = p;
        break;
      }
    }
  }
  if (ids.empty()) {
    inv.problems.push_back(Error{ENOENT, "no pci.ids database: devices are shown by id only", kPciIdsPaths[0]});
  } else if (std::FILE* f = std::fopen(ids.c_str(), "r"); !f) {
    const int err = errno;
    inv.problems.push_back(Error{err, "cannot open pci.ids: " + std::error_code(err, std::generic_category()).message(),
                                 ids.string()});
  } else {
    std::fclose(f);
    inv.pci_ids = ids.string();
    name_devices(inv.devices, ids, inv.problems);
  }
  return inv;
}

}  // namespace agent::probes
