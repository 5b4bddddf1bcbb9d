#include "agent/build/dkms.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <string_view>

#include <spdlog/spdlog.h>

#include "agent/build/process.h"
#include "agent/report/log.h"
#include "kabi/file_io.h"
#include "kabi/text.h"

namespace agent {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxLogSize = size_t{1} << 30;

void append(int fd, std::string_view text) { (void)!::write(fd, text.data(), text.size()); }

}  // namespace

Result<std::vector<std::pair<std::string, DkmsPackage>>> find_packages(const fs::path& sources, const std::string& release) {
  std::error_code ec;
  if (!fs::is_directory(sources, ec)) return fail(ENOENT, "sources directory not found", sources.string());
  std::vector<std::pair<std::string, DkmsPackage>> out;
  std::vector<std::string> dirs;
  for (fs::directory_iterator it(sources, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec) && fs::is_regular_file(it->path() / "dkms.conf", ec)) dirs.push_back(it->path().filename());
  if (ec) return fail(ec.value(), "cannot list: " + ec.message(), sources.string());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    const fs::path conf = sources / d / "dkms.conf";
    auto text = kabi::read_file(conf, kabi::kMaxTextSize);
    if (!text) return tl::unexpected(text.error());
    auto p = parse_dkms_conf(*text, release, conf.string());
    if (!p) return tl::unexpected(p.error());
    // dkms looks for <source_tree>/<PACKAGE_NAME>-<PACKAGE_VERSION>.
    if (d != p->name + "-" + p->version)
      return fail(EINVAL, "the directory must be named " + p->name + "-" + p->version + " (PACKAGE_NAME-PACKAGE_VERSION)",
                  (sources / d).string());
    out.emplace_back(d, std::move(*p));
  }
  if (out.empty()) return fail(ENOENT, "no DKMS source tree (<name>-<version>/dkms.conf)", sources.string());
  return out;
}

std::vector<std::string> dkms_build_argv(const DkmsTree& t, const DkmsPackage& pkg) {
  return {t.dkms, "build", "--verbose", "-m", pkg.name, "-v", pkg.version, "-k", t.release,
          "--kernelsourcedir", t.headers, "--dkmstree", t.work + "/dkms", "--sourcetree", t.work + "/src",
          "-j", std::to_string(t.jobs)};
}

std::vector<std::string> dkms_environment(const std::vector<std::string>& current, const std::vector<std::string>& hidden,
                                          const DkmsTree& t) {
  // The node's kernel is given explicitly; nothing of the builder's own may leak in.
  static constexpr std::string_view kDropped[] = {"KERNELRELEASE", "KERNEL_SRC", "KDIR", "KLIB", "KLIB_BUILD", "ARCH",
                                                  "CROSS_COMPILE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TMPDIR"};
  std::vector<std::string> out;
  for (const auto& var : current) {
    const std::string_view name = std::string_view(var).substr(0, var.find('='));
    if (std::find(std::begin(kDropped), std::end(kDropped), name) != std::end(kDropped)) continue;
    // No variable names the key's place.
    if (std::any_of(hidden.begin(), hidden.end(), [&](const std::string& h) { return !h.empty() && var.find(h) != std::string::npos; }))
      continue;
    out.push_back(var);
  }
  out.push_back("MAKEFLAGS=-j" + std::to_string(t.jobs));
  out.push_back("TMPDIR=" + t.work + "/tmp");
  return out;
}

std::string dkms_make_log(const DkmsTree& t, const DkmsPackage& pkg) {
  const fs::path tree = fs::path(t.work) / "dkms" / pkg.name / pkg.version;
  std::error_code e;
  if (fs::exists(tree / "build/make.log", e)) return (tree / "build/make.log").string();
  for (fs::directory_iterator it(tree / t.release, e), end; !e && it != end; it.increment(e))
    if (fs::exists(it->path() / "log/make.log", e)) return (it->path() / "log/make.log").string();
  return {};
}

std::string last_log_line(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<long long>(in.tellg());
  const long long from = std::max(0LL, size - 4096);
  in.seekg(from);
  std::string tail((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' ')) tail.pop_back();
  const size_t nl = tail.find_last_of('\n');
  std::string line = nl == std::string::npos ? tail : tail.substr(nl + 1);
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return printable(line);
}

std::string first_error_line(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  for (std::string line; in && std::getline(in, line);) {
    if (line.find(": error: ") == std::string::npos && line.find(": fatal error: ") == std::string::npos &&
        line.find("ERROR: modpost: ") == std::string::npos)
      continue;
    if (line.size() > 300) line = line.substr(0, 300) + "...";
    return printable(line);
  }
  return last_log_line(path);
}

tl::expected<void, BuildFailure> run_dkms_build(const DkmsTree& tree, const DkmsRun& run, const std::string& dir,
                                                const DkmsPackage& pkg) {
  using Kind = BuildFailure::Kind;
  auto failure = [](Kind k, std::string detail) { return tl::unexpected(BuildFailure{k, std::move(detail)}); };
  ProcessSpec spec;
  spec.argv = dkms_build_argv(tree, pkg);
  spec.stdout_fd = spec.stderr_fd = run.log_fd;
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  spec.env = dkms_environment(env, run.hidden, tree);
  spec.cwd = tree.work;
  spec.prepare = [&run]() -> Result<void> {
    if (auto ns = enter_build_namespace(run.mounts, run.scratch); !ns)
      return fail(ns.error().code, "cannot prepare the build's mount namespace: " + ns.error().what());
    return drop_build_capabilities();
  };
  append(run.log_fd, "agent build: " + join(spec.argv, " ") + "\n");
  log_line(spdlog::level::info, "building",
           fmt::format("building {} for {} (-j{}), log {}", dir, tree.release, tree.jobs, run.log));
  if (const std::string why = run.stop ? run.stop() : std::string(); !why.empty())
    return failure(Kind::Interrupted, why + " before the build");

  Supervision sup;
  sup.deadline = run.deadline;
  sup.stop = run.stop;
  sup.progress = run.progress;
  const ProcessEnd end = run_supervised(spec, sup);

  // dkms sends make's output to a make.log of its own: appended to the build's log.
  if (const std::string ml = dkms_make_log(tree, pkg); !ml.empty())
    if (auto text = kabi::read_file(ml, kMaxLogSize)) {
      append(run.log_fd, "\n---- " + dir + ": make's output (dkms make.log) ----\n");
      append(run.log_fd, *text);
    }
  switch (end.how) {
    case ProcessEnd::How::Exited:
    case ProcessEnd::How::Killed:
      if (end.succeeded()) return {};
      return failure(Kind::Failed, "dkms build of " + dir + " failed (" + describe(end) + "): " + first_error_line(run.log));
    case ProcessEnd::How::NotStarted:
      append(run.log_fd, "agent build: " + end.detail + "\n");
      return failure(Kind::Environment, last_log_line(run.log));
    case ProcessEnd::How::TimedOut:
    case ProcessEnd::How::Stopped: {
      const std::string stop = end.how == ProcessEnd::How::TimedOut
                                   ? "timed out after " + std::to_string(run.timeout.count()) + " s"
                                   : end.detail;
      log_line(spdlog::level::warn, "building", fmt::format("build of {} {}; the build's processes are killed", dir, stop));
      return failure(end.how == ProcessEnd::How::TimedOut ? Kind::TimedOut : Kind::Interrupted,
                     "the build of " + dir + " " + stop);
    }
  }
  return failure(Kind::Failed, "dkms build of " + dir + ": " + describe(end));
}

}  // namespace agent
