#include "probes/build_env.h"

#include <algorithm>
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
      if (!h.exists) {
        tried += h.path + " (absent)";
        continue;
      }
      // Exactly what is missing: a directory with a Makefile but no Module.symvers is another fix
      // (a headers package cut short) than one without a Makefile.
      std::string missing = h.makefile ? "" : "Makefile";
      if (!h.module_symvers) missing += std::string(missing.empty() ? "" : " and ") + "Module.symvers";
      tried += h.path + " (incomplete: needs " + missing + ")";
    }
    env.detail = "no kernel headers for " + release + ": " + tried;
  }
  return env;
}

ImageHeaders find_image_headers(const fs::path& base, const std::string& release) {
  ImageHeaders h;
  h.base = base.string();
  std::error_code ec;
  for (fs::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec) && fs::is_regular_file(it->path() / "Makefile", ec))
      h.releases.push_back(it->path().filename().string());
  std::sort(h.releases.begin(), h.releases.end());
  const fs::path dir = base / release;
  if (fs::is_regular_file(dir / "Makefile", ec) && fs::is_regular_file(dir / "Module.symvers", ec)) h.dir = dir.string();
  return h;
}

HeadersChoice choose_build_headers(const HostRoot& root, const std::string& release,
                                   const std::filesystem::path& image_base) {
  HeadersChoice c;
  c.env = probe_build_env(root, release);
  if (c.env.possible || image_base.empty()) return c;
  c.image = find_image_headers(image_base, release);
  if (!c.image.dir.empty()) c.to_verify = std::filesystem::path(c.image.dir) / "Module.symvers";
  return c;
}

void consider_image_headers(BuildEnv& env, const ImageHeaders& image, const std::string& release,
                            const std::optional<SymversCandidate>& verdict) {
  if (env.possible) return;  // the node's own headers come first
  if (image.dir.empty()) {
    if (!image.releases.empty()) {
      std::string list;
      for (const auto& r : image.releases) list += (list.empty() ? "" : ", ") + r;
      env.mismatch = "the image's kernel headers (" + image.base + ") are for " + list + "; the node runs " + release;
    }
    return;
  }
  using State = SymversCandidate::State;
  const State state = verdict ? verdict->state : State::NotTried;
  const std::string detail = verdict ? verdict->detail : std::string("not compared with the node's modules");
  if (state == State::Verified) {
    env.possible = true;
    env.in_image = true;
    env.dir = image.dir;
    env.detail = "the image's kernel headers for " + release + " at " + image.dir +
                 ", proven the running kernel's: " + detail;
    return;
  }
  env.mismatch = "the image's kernel headers at " + image.dir + " are named " + release + " but " +
                 (state == State::Rejected ? "do not match the running kernel: " + detail
                                           : "cannot be shown to be the running kernel's: " + detail);
}

}  // namespace agent::probes
