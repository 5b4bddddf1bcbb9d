// probe_cpu_quota on fixture trees (proc/self/cgroup, sys/fs/cgroup): which cpu.max files it
// reads, in which order, and what it refuses to take for "no quota".
#include "catch2_compat.h"

#include <sched.h>

#include <filesystem>
#include <string>
#include <vector>

#include "probes/cpu_quota.h"
#include "test_util.h"

using namespace agent::probes;
using agent::test::TempDir;
using agent::test::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

using Values = std::vector<std::string>;

TEST_CASE("cgroup_cpu_max: cpu.max of the cgroup, then of each ancestor that has one") {
  TempDir t;
  write_file(t / "proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  write_file(t / "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");
  write_file(t / "sys/fs/cgroup/kubepods/pod1/cpu.max", "300000 100000\n");
  fs::create_directories(t / "sys/fs/cgroup/kubepods");  // no cpu controller here: no quota
  write_file(t / "sys/fs/cgroup/other/cpu.max", "100000 100000\n");  // not an ancestor
  auto q = cgroup_cpu_max(t.path());
  REQUIRE(q);
  CHECK(*q == Values{"max 100000", "300000 100000"});
}

TEST_CASE("affinity_cpus: this process's affinity mask") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  CHECK(affinity_cpus() == static_cast<unsigned>(CPU_COUNT(&set)));
}

TEST_CASE("cgroup_cpu_max: a container's own namespace (0::/), cgroup v1 only, a path above the namespace") {
  TempDir t;
  write_file(t / "sys/fs/cgroup/cpu.max", "150000 100000\n");
  write_file(t / "proc/self/cgroup", "0::/\n");
  CHECK(cgroup_cpu_max(t.path()).value() == Values{"150000 100000"});
  write_file(t / "proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n");
  CHECK(cgroup_cpu_max(t.path()).value().empty());
  // A process outside the namespace's root shows as /../..: nothing of it is in this view.
  write_file(t / "proc/self/cgroup", "0::/../../elsewhere\n");
  CHECK(cgroup_cpu_max(t.path()).value().empty());
}

TEST_CASE("cgroup_cpu_max: an unreadable /proc/self/cgroup or cpu.max is an error naming it") {
  TempDir t;
  auto none = cgroup_cpu_max(t.path());
  REQUIRE_FALSE(none);
  CHECK_THAT(none.error().what(), Contains("proc/self/cgroup"));
  write_file(t / "proc/self/cgroup", "0::/a\n");
  fs::create_directories(t / "sys/fs/cgroup/a/cpu.max");  // a directory: cannot be read
  auto bad = cgroup_cpu_max(t.path());
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().what(), Contains("a/cpu.max"));
}
