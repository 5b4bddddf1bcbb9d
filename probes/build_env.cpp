#include "probes/build_env.h"

#include <set>
#include <system_error>

#include <sys/stat.h>

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
    h.exists = root.is_directory(p);
    auto real = h.exists ? root.canonical(p) : Result<std::string>(p);
    h.real_path = real ? *real : p;
    if (!seen.insert(h.real_path).second) continue;
    if (h.exists) {
      h.makefile = root.is_regular_file(p + "/Makefile");
      if (auto st = root.fs().stat(p + "/Module.symvers"); st && S_ISREG(st->st_mode)) {
        h.module_symvers = true;
        h.symvers_id = {st->st_dev, st->st_ino};
      }
      h.config = root.is_regular_file(p + "/.config");
      h.autoconf = root.is_regular_file(p + "/include/generated/autoconf.h");
      h.scripts = root.is_directory(p + "/scripts");
    }
    if (h.usable() && !env.possible) {
      env.possible = true;
      env.dir = p;
      env.symvers_id = h.symvers_id;
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
