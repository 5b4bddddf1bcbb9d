#include "probes/pci.h"

#include <fnmatch.h>
#include <libudev.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
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

std::string format_bdf(int domain, unsigned bus, unsigned dev, unsigned func) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%u", static_cast<unsigned>(domain), bus & 0xffu, dev & 0x1fu,
                func & 0x7u);
  return buf;
}

void collect_warning(void* ctx, const char* message) {
  static_cast<std::vector<std::string>*>(ctx)->emplace_back(message);
}

// The sysfs directory of the PCI bus under the root; an error when there is none, so "no PCI
// bus visible" is never mistaken for "no devices".
Result<fs::path> pci_sysfs_dir(const HostRoot& root) {
  auto dir = root.resolve("/sys/bus/pci");
  if (!dir) return tl::unexpected(dir.error());
  std::error_code ec;
  if (!fs::is_directory(*dir / "devices", ec))
    return fail(ENOENT, "no PCI devices directory in sysfs", (*dir / "devices").string());
  return *dir;
}

Result<std::vector<PciDevice>> scan_libpci(const HostRoot& root) {
  auto sysfs = pci_sysfs_dir(root);
  if (!sysfs) return tl::unexpected(sysfs.error());
  std::string sysfs_path = sysfs->string();  // outlives the access handle
  PciAccess pacc(agent_pci_alloc());
  if (!pacc) return fail(ENOMEM, "pci_alloc failed");
  pacc->method = PCI_ACCESS_SYS_BUS_PCI;
  pacc->id_lookup_mode = PCI_LOOKUP_NO_HWDB;
  char param[] = "sysfs.path";
  if (pci_set_param(pacc.get(), param, sysfs_path.data()) != 0) return fail(EINVAL, "libpci has no sysfs.path parameter");

  char err[512];
  std::vector<std::string> warnings;
  if (agent_pci_init(pacc.get(), err, sizeof err, collect_warning, &warnings) != 0)
    return fail(EIO, std::string("libpci: ") + err, sysfs_path);
  if (agent_pci_scan_bus(pacc.get(), err, sizeof err, collect_warning, &warnings) != 0)
    return fail(EIO, std::string("libpci: ") + err, sysfs_path + "/devices");

  std::vector<PciDevice> out;
  for (pci_dev* d = pacc->devices; d; d = d->next) {
    PciDevice dev;
    dev.bdf = format_bdf(d->domain, d->bus, d->dev, d->func);
    if (auto real = root.resolve("/sys/bus/pci/devices/" + dev.bdf)) dev.sysfs_path = root.host_path_of(*real);

    // One attribute group per call, so one unreadable file costs only the fields it feeds.
    auto fill = [&](int flag) {
      warnings.clear();
      const bool ok = agent_pci_fill_info(d, flag, err, sizeof err, collect_warning, &warnings) == 0;
      if (!ok) dev.problems.emplace_back(err);
      for (auto& w : warnings) dev.problems.push_back(std::move(w));
      return ok && (d->known_fields & static_cast<unsigned>(flag)) != 0;
    };
    if (fill(PCI_FILL_IDENT)) {
      dev.vendor = d->vendor_id;
      dev.device = d->device_id;
    }
    // device_class is the upper 16 bits of the class attribute, prog_if the lower 8.
    if (fill(PCI_FILL_CLASS)) dev.class_code = static_cast<uint32_t>(d->device_class) << 8;
    if (fill(PCI_FILL_CLASS_EXT)) {
      dev.revision = d->rev_id;
      dev.class_code = (dev.class_code & ~0xffu) | d->prog_if;
    }
    if (fill(PCI_FILL_SUBSYS)) {
      dev.subsystem_vendor = d->subsys_vendor_id;
      dev.subsystem_device = d->subsys_id;
    }
    if (fill(PCI_FILL_MODULE_ALIAS) && d->module_alias) dev.modalias = std::string(trim(d->module_alias));
    if (fill(PCI_FILL_NUMA_NODE) && d->numa_node >= 0) dev.numa_node = d->numa_node;
    if (fill(PCI_FILL_DRIVER)) {
      if (const char* drv = pci_get_string_property(d, PCI_FILL_DRIVER)) dev.driver = drv;
    }
    out.push_back(std::move(dev));
  }
  return out;
}

Result<std::vector<PciDevice>> scan_udev(const HostRoot& root) {
  if (!root.is_live())
    return fail(EINVAL, "libudev reads the live /sys only; use libpci under host root " + root.root().string());
  auto sysfs = pci_sysfs_dir(root);
  if (!sysfs) return tl::unexpected(sysfs.error());
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
    auto attr = [&](const char* name, bool required) -> std::optional<std::string> {
      errno = 0;
      const char* v = udev_device_get_sysattr_value(d.get(), name);
      if (v) return std::string(trim(v));
      if (required || (errno != 0 && errno != ENOENT))
        dev.problems.push_back(std::string("Cannot read ") + syspath + "/" + name);
      return std::nullopt;
    };
    auto number = [&](const char* name, bool required) -> std::optional<unsigned long> {
      auto v = attr(name, required);
      if (!v) return std::nullopt;
      auto n = parse_number(*v);
      if (!n) dev.problems.push_back(std::string("Not a number in ") + syspath + "/" + name + ": " + *v);
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
    if (const char* drv = udev_device_get_driver(d.get())) dev.driver = drv;
    out.push_back(std::move(dev));
  }
  return out;
}

// Names devices from pci.ids through libpci's parser (no hwdb: the result must not depend on
// which udev database the image happens to carry).
void name_devices(std::vector<PciDevice>& devices, const fs::path& ids, std::vector<Error>& problems) {
  std::string ids_path = ids.string();  // outlives the access handle
  PciAccess pacc(agent_pci_alloc());
  if (!pacc) return;
  pacc->id_lookup_mode = PCI_LOOKUP_NO_HWDB;
  pci_set_name_list_path(pacc.get(), ids_path.data(), 0);
  char err[512];
  char buf[256];
  const int flags = PCI_LOOKUP_NO_NUMBERS | PCI_LOOKUP_NO_HWDB;
  for (auto& d : devices) {
    if (d.vendor == 0) continue;
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

Result<PciInventory> discover_pci(const HostRoot& root, const PciOptions& options) {
  PciInventory inv;
  PciBackend backend = options.backend;
  if (backend == PciBackend::Auto) backend = root.is_live() ? PciBackend::Udev : PciBackend::Libpci;
  auto devices = backend == PciBackend::Udev ? scan_udev(root) : scan_libpci(root);
  if (!devices) return tl::unexpected(devices.error());
  inv.backend = backend == PciBackend::Udev ? "udev" : "libpci";
  inv.devices = std::move(*devices);
  std::sort(inv.devices.begin(), inv.devices.end(), [](const auto& a, const auto& b) { return a.bdf < b.bdf; });

  for (auto& d : inv.devices) {
    if (d.modalias.empty()) {
      d.modalias = pci_modalias(d);
      d.problems.push_back("modalias not readable in " + d.sysfs_path + "; rebuilt from the ids");
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
