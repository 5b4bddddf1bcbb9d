// plan_header_mounts(): what Debian's and RHEL's headers need at their canonical paths, from
// trees laid out as those distributions install them.
#include "agent/build/build_mounts.h"

#include <fstream>

#include "../temp_dir.h"
#include "catch2_compat.h"

using namespace agent;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::vector<std::string> describe(const std::vector<BindMount>& v) {
  std::vector<std::string> out;
  for (const auto& m : v) out.push_back(m.host_path + " -> " + m.target);
  return out;
}

}  // namespace

TEST_CASE("Debian: the headers, the -common they include, linux-kbuild their links name, the module tree") {
  test::TempDir t;
  const std::string k = "6.1.0-56-amd64";
  const fs::path r = t.path();
  write(r / ("usr/src/linux-headers-" + k + "/Makefile"), "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n");
  write(r / ("usr/src/linux-headers-" + k + "/Module.symvers"), "");
  fs::create_directory_symlink("../../lib/linux-kbuild-6.1/scripts", r / ("usr/src/linux-headers-" + k + "/scripts"));
  write(r / "usr/src/linux-headers-6.1.0-56-common/Makefile", "VERSION = 6\n-include $(srctree)/x\n");
  fs::create_directory_symlink("../../lib/linux-kbuild-6.1/scripts", r / "usr/src/linux-headers-6.1.0-56-common/scripts");
  fs::create_directory_symlink("../../lib/linux-kbuild-6.1/tools", r / "usr/src/linux-headers-6.1.0-56-common/tools");
  fs::create_directories(r / "usr/lib/linux-kbuild-6.1/scripts");
  fs::create_directories(r / "usr/lib/linux-kbuild-6.1/tools");
  fs::create_directories(r / ("lib/modules/" + k));
  fs::create_directory_symlink("/usr/src/linux-headers-" + k, r / ("lib/modules/" + k + "/build"));

  auto root = probes::HostRoot::open(r);
  REQUIRE(root);
  auto plan = plan_header_mounts(*root, "/lib/modules/" + k + "/build", k);
  REQUIRE(plan);
  CHECK(describe(*plan) == std::vector<std::string>{
                               "/usr/src/linux-headers-6.1.0-56-amd64 -> /usr/src/linux-headers-6.1.0-56-amd64",
                               "/usr/src/linux-headers-6.1.0-56-common -> /usr/src/linux-headers-6.1.0-56-common",
                               "/usr/lib/linux-kbuild-6.1 -> /usr/lib/linux-kbuild-6.1",
                               "/lib/modules/6.1.0-56-amd64 -> /lib/modules/6.1.0-56-amd64",
                           });
}

TEST_CASE("RHEL: kernel-devel is self-contained; a usr-merged module tree appears at /lib/modules") {
  test::TempDir t;
  const std::string k = "5.14.0-427.el9.x86_64";
  const fs::path r = t.path();
  write(r / ("usr/src/kernels/" + k + "/Makefile"), "VERSION = 5\n");
  fs::create_directories(r / ("usr/lib/modules/" + k));
  fs::create_directory_symlink("usr/lib", r / "lib");
  fs::create_directory_symlink("/usr/src/kernels/" + k, r / ("usr/lib/modules/" + k + "/build"));
  auto root = probes::HostRoot::open(r);
  REQUIRE(root);
  auto plan = plan_header_mounts(*root, "/lib/modules/" + k + "/build", k);
  REQUIRE(plan);
  // Parents before children: by the depth of the target.
  CHECK(describe(*plan) == std::vector<std::string>{
                               "/usr/lib/modules/" + k + " -> /lib/modules/" + k,
                               "/usr/src/kernels/" + k + " -> /usr/src/kernels/" + k,
                           });
}

TEST_CASE("headers whose Makefile includes a directory that is not there are an error naming it") {
  test::TempDir t;
  const fs::path r = t.path();
  write(r / "usr/src/linux-headers-x/Makefile", "include /usr/src/linux-headers-x-common/Makefile\n");
  fs::create_directories(r / "lib/modules/x");
  auto root = probes::HostRoot::open(r);
  REQUIRE(root);
  auto plan = plan_header_mounts(*root, "/usr/src/linux-headers-x", "x");
  REQUIRE_FALSE(plan);
  CHECK(plan.error().message.find("linux-headers-x-common") != std::string::npos);
}
