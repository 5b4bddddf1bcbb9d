#include "agent/decision/hints.h"

#include <array>
#include <regex>
#include <utility>

#include "agent/decision/decide.h"

namespace agent {
namespace {

// {kver}: the running kernel; {headers}: headers_package(). A code missing here has no hint.
constexpr std::array<std::pair<std::string_view, std::string_view>, 26> kHints{{
    // The decision's (agent/decision/decide.h).
    {"no_device", "nothing to do on this node; to drive a GPU here, ship a bundle whose modules list its PCI id "
                  "(modinfo -F alias), or schedule the driver only on nodes with one"},
    {"modules_refused", "ship an image built for {kver}, or let the agent build on the node ({headers} installed)"},
    {"symvers_incomplete", "install {headers} (its Module.symvers has every CRC), or give --symvers with the "
                           "running kernel's Module.symvers"},
    {"symvers_facts_unknown", "install {headers} (its Module.symvers records licences and namespaces), or give "
                              "--symvers with the running kernel's Module.symvers"},
    {"symvers_unverified", "give --symvers with the Module.symvers of {kver} ({headers})"},
    {"conflict_in_use", "stop what holds the module (the users named; for a GPU: the display manager, fbcon, "
                        "device plugins), then send the agent SIGHUP"},
    {"conflict_builtin", "a driver built into the kernel cannot be replaced: boot a kernel that builds it as a module"},
    {"upgrade_pending", "the new bundle loads once the older one is unused: drain the node's GPU workloads (the "
                        "agent retries every --retry-interval)"},
    {"no_kernel_headers", "install {headers} on the node; or use --build-mode sidecar with a Driver Toolkit image "
                          "for {kver}; or ship an image built for {kver}"},
    {"kernel_headers_mismatch", "install {headers}, the running kernel's own: modules built against another "
                                "kernel's headers are refused"},
    {"build_unsigned_enforced", "give --signing-key and --signing-cert with a key the kernel trusts (built in, or "
                                "enrolled with mokutil --import and a reboot)"},
    {"signing_key_unusable", "fix the file named (--signing-key, --signing-cert): a PEM or DER private key and its "
                             "X.509 certificate"},
    {"signing_key_untrusted", "enroll the certificate (mokutil --import CERT, confirmed at the next boot), or sign "
                              "with a key the kernel already trusts"},
    {"bundle_manifest_mismatch", "the image's bundle changed after the image was built: rebuild or pull the image again"},
    // The entrypoint's (agent/load/lifecycle.cpp).
    {"remove_failed", "stop what uses the module, then send the agent SIGHUP"},
    {"firmware_failed", "make the firmware directory (--firmware-dir) writable, then send the agent SIGHUP"},
    {"insert_failed", "the kernel's own lines are in failure.kernel_log (dmesg); a refusal the check did not "
                      "predict is a bug of the agent worth reporting"},
    {"module_mismatch", "the bundle changed after it was checked: restart the agent"},
    {"device_not_bound", "the driver's probe error is in the kernel log (dmesg); raise --bind-timeout for a slow device"},
    {"rollback_incomplete", "run `agent unload` to undo the rest (what is left is named)"},
    {"journal_unreadable", "repair or remove the file named, then send the agent SIGHUP"},
    {"journal_unwritable", "make the state directory (--state-dir) writable, then send the agent SIGHUP"},
    {"status_unwritable", "make the state directory (--state-dir) writable, then send the agent SIGHUP"},
    {"build_failed", "read the build log named; once the cause is fixed, `agent build --rebuild` builds again"},
    {"build_disabled", "use --build-mode node (the node's kernel headers) or --build-mode sidecar (a Driver Toolkit "
                       "sidecar builds), or ship an image built for {kver}"},
    {"build_wait_timeout", "check that the Driver Toolkit sidecar runs and read its log; or raise --build-timeout"},
}};

void replace_all(std::string& s, std::string_view what, const std::string& with) {
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + with.size()))
    s.replace(at, what.size(), with);
}

}  // namespace

std::string headers_package(const HintFacts& f) {
  static const std::regex rhel(R"(\.(el|fc)[0-9]+)");
  if (std::regex_search(f.release, rhel)) return "kernel-devel-" + f.release;
  if (f.proc_version.find("Debian") != std::string::npos || f.proc_version.find("Ubuntu") != std::string::npos)
    return "linux-headers-" + f.release;
  return "the kernel headers package for " + f.release;
}

std::string reason_hint(std::string_view code, const HintFacts& f) {
  for (const auto& [c, text] : kHints) {
    if (c != code) continue;
    std::string hint(text);
    replace_all(hint, "{headers}", headers_package(f));
    replace_all(hint, "{kver}", f.release);
    return hint;
  }
  return {};
}

void attach_hints(std::vector<DecisionReason>& reasons, const HintFacts& f) {
  for (auto& r : reasons) r.hint = reason_hint(r.code, f);
}

}  // namespace agent
