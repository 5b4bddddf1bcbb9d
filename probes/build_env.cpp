#include "probes/build_env.h"

#include <set>
#include <system_error>

namespace agent::probes {
namespace fs = std::filesystem;

std::vector<std::string> headers_candidates(const std::string& r) {
  return {"/lib/modules/" + r + "/build", "/usr/lib/modules/" + r + "/build", "/usr/src/kernels/" + r,
          "/usr/src/linux-headers-" + r};
}

BuildEnv probe_build_env(const HostRoot& root, const std::string& release) {
  BuildEnv env;
  std::set<std::string> seen;
  for (const auto& p : headers_candidates(release)) {
    HeadersDir h;
    h.path = p;
    auto real = root.resolve(p);
    if (!real) continue;
    std::error_code ec;
    h.exists = fs::is_directory(*real, ec);
    h.real_path = h.exists ? fs::canonical(*real, ec).string() : real->string();
    if (!seen.insert(h.real_path).second) continue;
    if (h.exists) {
      h.makefile = root.is_regular_file(p + "/Makefile");
      h.module_symvers = root.is_regular_file(p + "/Module.symvers");
      h.config = root.is_regular_file(p + "/.config");
      h.autoconf = root.is_regular_file(p + "/include/generated/autoconf.h");
      h.scripts = root.is_directory(p + "/scripts");
    }
    if (h.usable() && !env.possible) {
      env.possible = true;
      env.dir = p;
    }
    env.candidates.push_back(std::move(h));
  }
  if (env.possible) {
    env.detail = "kernel headers for " + release + " at " + env.dir + " (Makefile and Module.symvers present)";
  } else {
    std::string tried;
    for (const auto& h : env.candidates) {
      if (!tried.empty()) tried += ", ";
      tried += h.path + (h.exists ? " (incomplete: needs Makefile and Module.symvers)" : " (absent)");
    }
    env.detail = "no kernel headers for " + release + ": " + tried;
  }
  return env;
}

}  // namespace agent::probes
