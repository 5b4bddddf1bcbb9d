// The CPUs a build in this process may use: its affinity, and the cgroup v2 CPU quota (cpu.max)
// of its cgroup and each ancestor. Read from the agent's own view (/proc/self/cgroup,
// /sys/fs/cgroup), not the host root's: the build runs in the agent's cgroup.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kabi/result.h"

namespace agent::probes {

// The CPUs this process may run on (sched_getaffinity); 1 when that cannot be read.
[[nodiscard]] unsigned affinity_cpus();

// cpu.max ("QUOTA PERIOD", "max PERIOD") of this process's cgroup, then of each ancestor that has
// one (the root, a cgroup whose cpu controller is off, has none). `self`: "/" (tests: a tree with
// proc/self/cgroup and sys/fs/cgroup). No cgroup v2 line ("0::"): none. An error when
// /proc/self/cgroup, or a cpu.max that is there, cannot be read.
[[nodiscard]] Result<std::vector<std::string>> cgroup_cpu_max(const std::filesystem::path& self = "/");

}  // namespace agent::probes
