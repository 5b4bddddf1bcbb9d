#include "probes/cpu_quota.h"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace agent::probes {
namespace fs = std::filesystem;

unsigned affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(CPU_COUNT(&set));
}

Result<std::vector<std::string>> cgroup_cpu_max(const fs::path& self) {
  std::vector<std::string> limits;
  const fs::path cgroup_file = self / "proc/self/cgroup";
  std::ifstream cg(cgroup_file);
  if (!cg) {
    const int e = errno ? errno : EIO;
    return fail(e, std::string("cannot read: ") + std::strerror(e), cgroup_file.string());
  }
  for (std::string line; std::getline(cg, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    // A cgroup above this namespace's root shows as /../..: nothing of it is in this view.
    const fs::path shown = line.substr(3);
    if (std::find(shown.begin(), shown.end(), fs::path("..")) != shown.end()) continue;
    // From the cgroup up to the hierarchy's root (as this namespace shows it).
    for (fs::path p = shown.lexically_normal();; p = p.parent_path()) {
      const fs::path rel = p.relative_path();
      const fs::path file = self / "sys/fs/cgroup" / rel / "cpu.max";
      std::error_code ec;
      if (fs::exists(file, ec)) {
        std::ifstream f(file);
        std::string v;
        if (!f || !std::getline(f, v)) return fail(EIO, "cannot read", file.string());
        limits.push_back(v);
      }
      if (rel.empty() || p == p.parent_path()) break;
    }
  }
  if (cg.bad()) return fail(EIO, "cannot read", cgroup_file.string());
  return limits;
}

}  // namespace agent::probes
