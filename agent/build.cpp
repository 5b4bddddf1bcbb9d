#include "agent/build.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/build_inputs.h"
#include "agent/build_mounts.h"
#include "agent/node_model.h"
#include "agent/state_files.h"
#include "kabi/module.h"
#include "kabi/report.h"
#include "kabi/rules.h"
#include "kabi/text.h"
#include "probes/build_env.h"
#include "probes/host_root.h"
#include "probes/kernel.h"

namespace agent {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kResultFile = "result.json";
constexpr const char* kFailedFile = "failed.json";
constexpr const char* kLogFile = "build.log";
constexpr size_t kMaxModuleSize = size_t{1} << 30;
// The build could not start here (no mount namespace: not root; no dkms; headers naming what is
// not there): a failure of this node's set-up, never recorded against the inputs.
constexpr const char* kBuildEnvironment = "build_environment";
constexpr int kChildSetupFailed = 125;  // the child's exit before dkms runs

volatile sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// SIGTERM/SIGINT stop the build (the group is killed, the temporary directory removed) instead
// of killing the agent half-way; the previous handlers come back afterwards.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a sleep ends early
    ::sigaction(SIGTERM, &sa, &old_term_);
    ::sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopSignals() {
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGINT, &old_int_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

// A directory of this build's own, removed with everything in it when the build ends.
class TempDir {
 public:
  static Result<TempDir> make() {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/agent-build.XXXXXX";
    if (!::mkdtemp(tmpl.data())) return fail(errno, std::string("cannot create a temporary directory: ") + std::strerror(errno), tmpl);
    return TempDir(tmpl);
  }
  TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (ec) spdlog::warn("cannot remove {}: {}", path_, ec.message());
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

std::string first_line(std::string_view s) {
  const size_t nl = s.find('\n');
  return std::string(s.substr(0, nl));
}

Result<std::string> read_local(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail(errno ? errno : EIO, "cannot read", p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail(EIO, "cannot read", p.string());
  return ss.str();
}

// stdout of a program run with argv (no shell), stdin from /dev/null.
Result<std::string> run_capture(const std::vector<std::string>& argv) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return fail(errno, std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return fail(errno, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) { ::dup2(null, 0); ::dup2(null, 2); }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(ENOENT, "`" + join(argv, " ") + "` failed (exit " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")");
  return out;
}

// The last non-empty line of the log (its last 4 KiB), for the progress line.
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

// The CPUs this process may use, lowered to the cgroup v2 quota of its cgroup and ancestors.
unsigned jobs_for_this_process() {
  cpu_set_t set;
  CPU_ZERO(&set);
  unsigned cpus = 1;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) cpus = static_cast<unsigned>(CPU_COUNT(&set));
  std::vector<std::string> limits;
  std::ifstream cg("/proc/self/cgroup");
  for (std::string line; std::getline(cg, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    fs::path p = line.substr(3);
    for (;;) {
      std::ifstream f(fs::path("/sys/fs/cgroup") / p.relative_path() / "cpu.max");
      if (std::string v; f && std::getline(f, v)) limits.push_back(v);
      if (p == "/" || p.empty() || p == p.parent_path()) break;
      p = p.parent_path();
    }
  }
  return build_jobs(cpus, limits);
}

// The DKMS packages under `sources`: every <dir>/dkms.conf, sorted.
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
    auto text = read_local(conf);
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

// Every file of the packages under `base`: path relative to `base`, sha256 of the content (of
// the target text for a link).
Result<std::vector<std::pair<std::string, std::string>>> hash_sources(const fs::path& base,
                                                                      const std::vector<std::string>& dirs) {
  std::vector<std::pair<std::string, std::string>> files;
  std::error_code ec;
  for (const auto& d : dirs) {
    for (fs::recursive_directory_iterator it(base / d, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string rel = it->path().lexically_relative(base).string();
      if (it->is_symlink(ec)) {
        files.emplace_back("link:" + rel, kabi::sha256_hex(fs::read_symlink(it->path(), ec).string()));
      } else if (it->is_regular_file(ec)) {
        auto bytes = read_local(it->path());
        if (!bytes) return tl::unexpected(bytes.error());
        files.emplace_back(rel, kabi::sha256_hex(*bytes));
      }
    }
    if (ec) return fail(ec.value(), "cannot read the sources: " + ec.message(), (base / d).string());
  }
  return files;
}

Result<void> copy_sources(const fs::path& sources, const std::vector<std::string>& dirs, const fs::path& dst) {
  std::error_code ec;
  fs::create_directories(dst, ec);
  for (const auto& d : dirs) {
    fs::copy(sources / d, dst / d, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) return fail(ec.value(), "cannot copy the sources: " + ec.message(), (sources / d).string());
  }
  return {};
}

struct Inputs {
  BuildOptions options;
  std::string release;
  std::string proc_version;
  std::string headers;  // host path
  std::vector<std::pair<std::string, DkmsPackage>> packages;
  std::string cc;                // the compiler program
  std::string compiler;          // its --version, first line
  std::string compiler_full;     // its --version, whole (the cache key's)
  std::string kernel_compiler;   // CONFIG_CC_VERSION_TEXT, else /proc/version's
};

// The kABI check of a set of modules against the running kernel; empty when all load.
Result<std::string> kabi_refusal(const probes::HostRoot& root, const std::vector<kabi::ModuleInfo>& set) {
  auto node = node_model_for(root, set);
  if (!node) return tl::unexpected(node.error());
  const kabi::Evaluation ev = kabi::evaluate(set, node->model);
  if (ev.all_loadable()) return std::string();
  std::vector<std::string> why;
  for (const auto& v : ev.modules) {
    if (v.verdict == kabi::Verdict::Loadable) continue;
    std::string s = v.name + ": " + kabi::errno_name(v.err);
    for (const auto& r : v.reasons)
      if (r.fatal) { s += " (" + r.code + (r.symbol.empty() ? "" : " " + r.symbol) + ")"; break; }
    why.push_back(s);
  }
  return "refused by the kABI check against " + node->model.release + ": " + join(why);
}

// A cache entry's modules, read through the cache directory and verified against result.json.
Result<std::vector<kabi::ModuleInfo>> read_entry_modules(const WritableDir& entry, const nlohmann::json& meta,
                                                         std::vector<BuiltModule>& listed) {
  std::vector<kabi::ModuleInfo> set;
  if (!meta.contains("modules") || !meta["modules"].is_array() || meta["modules"].empty())
    return fail(EINVAL, "no modules listed", entry.path() + "/" + kResultFile);
  for (const auto& m : meta["modules"]) {
    const std::string file = m.value("file", ""), sha = m.value("sha256", "");
    auto bytes = entry.read(file, kMaxModuleSize);
    if (!bytes) return tl::unexpected(bytes.error());
    if (kabi::sha256_hex(*bytes) != sha) return fail(EINVAL, "changed since it was built (sha256)", entry.path() + "/" + file);
    auto info = kabi::parse_module(*bytes, entry.path() + "/" + file);
    if (!info) return tl::unexpected(info.error());
    listed.push_back({m.value("name", info->name), entry.path() + "/" + file, sha});
    set.push_back(std::move(*info));
  }
  return set;
}

class Builder {
 public:
  Builder(const probes::HostRoot& root, Inputs in, std::ostream& out, std::ostream& err)
      : root_(root), in_(std::move(in)), out_(out), err_(err), start_(Clock::now()) {}

  int run();

 private:
  int finish(BuildResult r, int code) {
    r.kernel = in_.release;
    r.headers = in_.headers;
    r.compiler = in_.compiler;
    r.kernel_compiler = in_.kernel_compiler;
    for (const auto& [d, p] : in_.packages) r.packages.push_back(d);
    r.jobs = jobs_;
    r.build_seconds = build_seconds_;
    r.total_seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    if (in_.options.json) out_ << safe_dump(build_result_json(r)) << '\n';
    else out_ << printable(build_result_text(r));
    return code;
  }
  int input_error(const Error& e) {
    err_ << "agent: " << printable(e.what()) << '\n';
    return kBuildInputError;
  }
  // Runs dkms for every package; the log in `log`. Empty on success, else the failure reason.
  std::pair<std::string, std::string> build_all(const std::string& work, const std::string& log);
  int record_failure(const WritableDir& kdir, const std::string& key, const std::string& log_path,
                     const std::string& reason, const std::string& detail);

  const probes::HostRoot& root_;
  Inputs in_;
  std::ostream& out_;
  std::ostream& err_;
  Clock::time_point start_;
  unsigned jobs_ = 0;
  double build_seconds_ = 0;
};

std::pair<std::string, std::string> Builder::build_all(const std::string& work, const std::string& log) {
  // Headers that name what is not there are the node's problem, not these inputs' failure: not
  // recorded (installing the missing package must be enough for the next run).
  auto plan = plan_header_mounts(root_, in_.headers, in_.release);
  if (!plan) return {kBuildEnvironment, plan.error().what()};
  std::vector<MountSpec> mounts;
  for (const auto& m : *plan) {
    if (!root_.is_directory(m.host_path)) return {kBuildEnvironment, root_.display(m.host_path) + ": not a directory"};
    spdlog::debug("build: {} at {} ({})", root_.display(m.host_path), m.target, m.why);
    mounts.push_back({kabi::normalize_path(root_.root().string() + "/" + m.host_path), m.target, false});
  }
  // dkms would sign with a key it generates under /var/lib/dkms; signing is the agent's (later)
  // business, so its configuration is replaced by one that names no signing tool.
  const std::string framework = work + "/framework.conf";
  {
    std::ofstream f(framework);
    f << "# agent build: no signing by dkms\nsign_file=/nonexistent/agent-build-no-signing\n";
  }
  const std::string empty_dir = work + "/empty";
  ::mkdir(empty_dir.c_str(), 0755);
  std::error_code ec;
  if (fs::exists("/etc/dkms/framework.conf", ec))
    mounts.push_back({framework, "/etc/dkms/framework.conf", true});
  if (fs::is_directory("/etc/dkms/framework.conf.d", ec))
    mounts.push_back({empty_dir, "/etc/dkms/framework.conf.d", false});
  const std::string scratch = work + "/scratch";
  ::mkdir(scratch.c_str(), 0700);
  ::mkdir((work + "/tmp").c_str(), 0700);
  ::mkdir((work + "/dkms").c_str(), 0755);

  const Fd logfd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!logfd) return {"build_failed", "cannot create the log " + log + ": " + std::strerror(errno)};
  // Orphans of the build (make's children whose parent died) come back to the agent, which
  // reaps them, rather than to PID 1 of a container that may be this agent anyway.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  jobs_ = jobs_for_this_process();
  const auto t0 = Clock::now();
  const auto deadline = t0 + in_.options.timeout;

  // --kernelsourcedir: the headers' canonical path, where the namespace shows them.
  auto headers = root_.canonical(in_.headers);
  if (!headers) return {"build_failed", headers.error().what()};
  for (const auto& package : in_.packages) {
    // Named, not structured bindings: lambdas below capture them (clang 14 refuses bindings).
    const std::string& dir = package.first;
    const DkmsPackage& pkg = package.second;
    std::vector<std::string> argv = {in_.options.dkms, "build", "--verbose", "-m", pkg.name, "-v", pkg.version,
                                     "-k", in_.release, "--kernelsourcedir", *headers,
                                     "--dkmstree", work + "/dkms", "--sourcetree", work + "/src",
                                     "-j", std::to_string(jobs_)};
    {
      std::string line = "agent build: " + join(argv, " ") + "\n";
      (void)!::write(logfd.get(), line.data(), line.size());
    }
    spdlog::info("building {} for {} (-j{}), log {}", dir, in_.release, jobs_, log);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const std::string makeflags = "MAKEFLAGS=-j" + std::to_string(jobs_);
    const std::string tmpdir = "TMPDIR=" + work + "/tmp";

    if (g_stop_signal) return {"interrupted", std::string("interrupted by ") + ::strsignal(g_stop_signal) + " before the build"};
    const pid_t pid = ::fork();
    if (pid < 0) return {"build_failed", std::string("fork: ") + std::strerror(errno)};
    if (pid == 0) {
      ::setpgid(0, 0);
      ::dup2(logfd.get(), 1);
      ::dup2(logfd.get(), 2);
      const int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      if (auto ns = enter_build_namespace(mounts, scratch); !ns) {
        std::string m = "agent build: cannot prepare the build's mount namespace: " + ns.error().what() + "\n";
        (void)!::write(2, m.data(), m.size());
        ::_exit(kChildSetupFailed);
      }
      if (::chdir(work.c_str()) != 0) ::_exit(kChildSetupFailed);
      // The node's kernel is given explicitly; nothing of the builder's own may leak in.
      for (const char* v : {"KERNELRELEASE", "KERNEL_SRC", "KDIR", "KLIB", "KLIB_BUILD", "ARCH", "CROSS_COMPILE",
                            "MAKEFLAGS", "MFLAGS", "MAKELEVEL"})
        ::unsetenv(v);
      ::putenv(const_cast<char*>(makeflags.c_str()));
      ::putenv(const_cast<char*>(tmpdir.c_str()));
      ::execvp(args[0], args.data());
      std::string m = "agent build: cannot run " + argv[0] + ": " + std::strerror(errno) + "\n";
      (void)!::write(2, m.data(), m.size());
      ::_exit(kChildSetupFailed);
    }
    ::setpgid(pid, pid);  // also here: no window in which a kill(-pid) misses the child

    // dkms sends make's output to a make.log of its own (moved under <kver>/<arch>/log/ on
    // success): the progress line reads it, and it is appended to the build's log afterwards.
    const fs::path pkg_tree = fs::path(work) / "dkms" / pkg.name / pkg.version;
    const auto make_log = [&]() -> std::string {
      std::error_code e;
      if (fs::exists(pkg_tree / "build/make.log", e)) return (pkg_tree / "build/make.log").string();
      for (fs::directory_iterator it(pkg_tree / in_.release, e), end; !e && it != end; it.increment(e))
        if (fs::exists(it->path() / "log/make.log", e)) return (it->path() / "log/make.log").string();
      return {};
    };
    const auto append_make_log = [&]() {
      const std::string ml = make_log();
      if (ml.empty()) return;
      auto text = read_local(ml);
      if (!text) return;
      const std::string head = "\n---- " + dir + ": make's output (dkms make.log) ----\n";
      (void)!::write(logfd.get(), head.data(), head.size());
      (void)!::write(logfd.get(), text->data(), text->size());
    };

    int status = 0;
    bool exited = false;
    std::string stop;  // why the group is being killed
    auto last_progress = Clock::now();
    while (!exited) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) { exited = true; break; }
      if (g_stop_signal) stop = std::string("interrupted by ") + ::strsignal(g_stop_signal);
      else if (Clock::now() >= deadline) stop = "timed out after " + std::to_string(in_.options.timeout.count()) + " s";
      if (!stop.empty()) break;
      if (Clock::now() - last_progress >= std::chrono::seconds(10)) {
        last_progress = Clock::now();
        const std::string ml = make_log();
        spdlog::info("building {}: {:.0f} s: {}", dir, std::chrono::duration<double>(Clock::now() - t0).count(),
                     last_log_line(ml.empty() ? log : ml));
      }
      ::usleep(200 * 1000);  // a signal ends it early
    }
    if (!stop.empty()) {
      ::kill(-pid, SIGTERM);
      const auto grace = Clock::now() + std::chrono::seconds(5);
      while (Clock::now() < grace && ::kill(-pid, 0) == 0) {
        while (::waitpid(-pid, nullptr, WNOHANG) > 0) {}
        ::usleep(100 * 1000);
      }
      ::kill(-pid, SIGKILL);
    }
    // Whatever is left of the group (background jobs of the build) goes, and is reaped.
    ::kill(-pid, SIGKILL);
    while (::waitpid(-pid, nullptr, 0) > 0 || errno == EINTR) {}
    build_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
    append_make_log();
    if (!stop.empty()) {
      spdlog::warn("build of {} {}; the build's processes are killed", dir, stop);
      return {g_stop_signal ? "interrupted" : "build_timeout", "the build of " + dir + " " + stop};
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == kChildSetupFailed)
      return {kBuildEnvironment, last_log_line(log)};
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      const std::string how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                                : std::string("killed by ") + ::strsignal(WTERMSIG(status));
      return {"build_failed", "dkms build of " + dir + " failed (" + how + "): " + last_log_line(log)};
    }
  }
  return {};
}

int Builder::record_failure(const WritableDir& kdir, const std::string& key, const std::string& log_path,
                            const std::string& reason, const std::string& detail) {
  BuildResult r;
  r.result = "failed";
  r.key = key;
  r.reason = reason;
  r.detail = detail;
  r.log = log_path;
  if (reason == "interrupted" || reason == kBuildEnvironment) {  // nothing recorded: the next run builds again
    r.log.clear();
    return finish(std::move(r), kBuildFailed);
  }
  // Recorded as <key>/failed.json + build.log, installed by rename like a success.
  const std::string tmp = ".tmp-" + key.substr(0, 16) + "-" + std::to_string(::getpid());
  remove_tree(kdir.fd(), tmp);
  auto entry = kdir.subdir(tmp);
  auto log = read_local(log_path);
  nlohmann::json j{{"schema", 1}, {"kernel", in_.release}, {"key", key}, {"reason", reason}, {"detail", detail},
                   {"log", kLogFile}};
  Result<void> w = entry ? entry->write(kLogFile, log ? *log : std::string("(no log)\n")) : tl::unexpected(entry.error());
  if (w) w = entry->write(kFailedFile, safe_dump(j) + "\n");
  if (w && kdir.exists(key)) remove_tree(kdir.fd(), key);
  if (w && ::renameat(kdir.fd(), tmp.c_str(), kdir.fd(), key.c_str()) != 0)
    w = fail(errno, std::string("cannot install: ") + std::strerror(errno), kdir.path() + "/" + key);
  if (!w) {
    remove_tree(kdir.fd(), tmp);
    spdlog::warn("cannot record the failure in the cache: {}", w.error().what());
  } else {
    r.log = kdir.path() + "/" + key + "/" + kLogFile;
  }
  return finish(std::move(r), kBuildFailed);
}

int Builder::run() {
  std::vector<std::string> dirs;
  for (const auto& [d, p] : in_.packages) dirs.push_back(d);
  // Hashed where they are, so that a cache hit copies nothing.
  auto sources = hash_sources(in_.options.sources, dirs);
  if (!sources) return input_error(sources.error());

  auto symvers = root_.fs().read(in_.headers + "/Module.symvers", size_t{256} << 20);
  if (!symvers) return input_error(symvers.error());
  CacheKeyInputs ki;
  ki.release = in_.release;
  ki.proc_version = in_.proc_version;
  ki.symvers_sha256 = kabi::sha256_hex(*symvers);
  ki.compiler_version = in_.compiler_full;
  ki.sources = std::move(*sources);
  std::string key = cache_key(ki);

  auto cache = WritableDir::open(root_.fs(), in_.options.cache, "build cache");
  if (!cache) return input_error(cache.error());
  auto kdir = cache->subdir(in_.release);
  if (!kdir) return input_error(kdir.error());

  if (kdir->exists(key)) {
    auto entry = kdir->subdir(key);
    if (!entry) return input_error(entry.error());
    if (entry->exists(kFailedFile) && !in_.options.rebuild) {
      BuildResult r;
      r.result = "failed";
      r.key = key;
      r.log = entry->path() + "/" + kLogFile;
      auto text = entry->read(kFailedFile);
      const auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
      r.reason = j.is_object() ? j.value("reason", "build_failed") : "build_failed";
      r.detail = (j.is_object() ? j.value("detail", "") : std::string()) +
                 " (recorded; not retried until an input changes, or --rebuild)";
      spdlog::info("a failed build is recorded for these inputs: {}", r.log);
      return finish(std::move(r), kBuildFailed);
    }
    if (entry->exists(kResultFile)) {
      auto text = entry->read(kResultFile);
      const auto meta = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
      BuildResult r;
      auto set = meta.is_object() ? read_entry_modules(*entry, meta, r.modules)
                                  : Result<std::vector<kabi::ModuleInfo>>(fail(EINVAL, "unreadable", entry->path() + "/" + kResultFile));
      if (set) {
        auto refusal = kabi_refusal(root_, *set);
        if (!refusal) return input_error(refusal.error());
        r.key = key;
        r.log = entry->path() + "/" + kLogFile;
        if (refusal->empty()) {
          r.result = "cached";
          return finish(std::move(r), kBuildOk);
        }
        r.result = "failed";
        r.reason = "kabi_refused";
        r.detail = "the cached build is " + *refusal;
        r.modules.clear();
        return finish(std::move(r), kBuildFailed);
      }
      spdlog::warn("cache entry {} is not usable ({}); building again", entry->path(), set.error().what());
    }
  }

  auto tmp = TempDir::make();
  if (!tmp) return input_error(tmp.error());
  const std::string work = tmp->path();
  if (auto c = copy_sources(in_.options.sources, dirs, work + "/src"); !c) return input_error(c.error());
  // What is built is what is keyed: the copy is hashed again (sources changed in between get
  // the key of what was actually built).
  auto copied = hash_sources(work + "/src", dirs);
  if (!copied) return input_error(copied.error());
  ki.sources = std::move(*copied);
  if (const std::string k = cache_key(ki); k != key) {
    spdlog::warn("the sources changed while they were read; the build is keyed by the copy it builds");
    key = k;
  }
  const std::string log = work + "/" + kLogFile;
  auto [reason, detail] = build_all(work, log);
  if (!reason.empty()) return record_failure(*kdir, key, log, reason, detail);

  // Every BUILT_MODULE_NAME, under its DEST_MODULE_NAME, in dkms's tree for this kernel.
  std::vector<kabi::ModuleInfo> set;
  std::vector<std::pair<std::string, fs::path>> files;  // name, where dkms left it
  std::vector<std::string> missing;
  std::error_code ec;
  for (const auto& [dir, pkg] : in_.packages) {
    const fs::path base = fs::path(work) / "dkms" / pkg.name / pkg.version / in_.release;
    std::vector<fs::path> module_dirs;
    for (fs::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec))
      if (fs::is_directory(it->path() / "module", ec)) module_dirs.push_back(it->path() / "module");
    for (const auto& m : pkg.modules) {
      std::optional<fs::path> found;
      for (const auto& md : module_dirs)
        for (const char* ext : {".ko", ".ko.xz", ".ko.zst", ".ko.gz"})
          if (!found && fs::is_regular_file(md / (m.dest_name + ext), ec)) found = md / (m.dest_name + ext);
      if (!found) missing.push_back(dir + ": " + m.dest_name);
      else files.emplace_back(m.dest_name, *found);
    }
  }
  if (!missing.empty())
    return record_failure(*kdir, key, log, "modules_missing", "dkms succeeded without building " + join(missing));
  for (const auto& [name, path] : files) {
    auto info = kabi::read_module(path, {.trusted_certs = nullptr, .sha256 = true});
    if (!info) return record_failure(*kdir, key, log, "modules_missing", info.error().what());
    set.push_back(std::move(*info));
  }
  auto refusal = kabi_refusal(root_, set);
  if (!refusal) return input_error(refusal.error());
  if (!refusal->empty()) return record_failure(*kdir, key, log, "kabi_refused", "the build is " + *refusal);

  // Installed by rename: a reader sees no entry or a whole one.
  const std::string tmpname = ".tmp-" + key.substr(0, 16) + "-" + std::to_string(::getpid());
  remove_tree(kdir->fd(), tmpname);
  auto entry = kdir->subdir(tmpname);
  if (!entry) return input_error(entry.error());
  BuildResult r;
  r.result = "built";
  r.key = key;
  nlohmann::json meta{{"schema", 1}, {"kernel", in_.release}, {"key", key}, {"headers", in_.headers},
                      {"compiler", in_.compiler}, {"modules", nlohmann::json::array()}};
  Result<void> w;
  for (size_t i = 0; w && i < files.size(); ++i) {
    const std::string file = files[i].second.filename().string();
    auto bytes = read_local(files[i].second);
    w = bytes ? entry->write(file, *bytes) : Result<void>(tl::unexpected(bytes.error()));
    meta["modules"].push_back({{"name", set[i].name}, {"file", file}, {"sha256", set[i].sha256}});
    r.modules.push_back({set[i].name, kdir->path() + "/" + key + "/" + file, set[i].sha256});
  }
  if (w) {
    auto bytes = read_local(log);
    w = entry->write(kLogFile, bytes ? *bytes : std::string());
  }
  if (w) w = entry->write(kResultFile, safe_dump(meta) + "\n");
  if (w && kdir->exists(key)) remove_tree(kdir->fd(), key);  // --rebuild over a failure, or an unusable entry
  if (w && ::renameat(kdir->fd(), tmpname.c_str(), kdir->fd(), key.c_str()) != 0)
    w = fail(errno, std::string("cannot install: ") + std::strerror(errno), kdir->path() + "/" + key);
  if (!w) {
    remove_tree(kdir->fd(), tmpname);
    return input_error(w.error());
  }
  r.log = kdir->path() + "/" + key + "/" + kLogFile;
  return finish(std::move(r), kBuildOk);
}

}  // namespace

int run_build(const BuildOptions& o, std::ostream& out, std::ostream& err) {
  StopSignals signals;
  auto root = probes::HostRoot::from_cli_or_env(o.root);
  if (!root) {
    err << "agent: " << printable(root.error().what()) << '\n';
    return kBuildInputError;
  }
  Inputs in;
  in.options = o;
  auto release = probes::probe_release(*root);
  if (!release) {
    err << "agent: " << printable(release.error().what()) << '\n';
    return kBuildInputError;
  }
  in.release = *release;
  if (auto v = root->read_text("/proc/version")) in.proc_version = *v;
  auto packages = find_packages(o.sources, in.release);
  if (!packages) {
    err << "agent: " << printable(packages.error().what()) << '\n';
    return kBuildInputError;
  }
  in.packages = std::move(*packages);

  const probes::BuildEnv env = probes::probe_build_env(*root, in.release);
  if (!env.possible) {
    err << "agent: " << printable(env.detail) << '\n';
    return kBuildInputError;
  }
  in.headers = env.dir;

  // The compiler: the one the headers name (Debian: gcc-12), else gcc; what the kernel was built
  // with: /proc/version's, else the headers' CONFIG_CC_VERSION_TEXT (what kbuild compares with).
  if (auto kv = root->read_text(in.headers + "/.kernelvariables")) in.cc = compiler_from_kernelvariables(*kv);
  if (in.cc.empty()) in.cc = "gcc";
  in.kernel_compiler = compiler_from_proc_version(in.proc_version);
  if (in.kernel_compiler.empty())
    if (auto config = root->fs().read(in.headers + "/.config", size_t{16} << 20)) in.kernel_compiler = cc_version_text(*config);
  auto version = run_capture({in.cc, "--version"});
  if (!version) {
    err << "agent: no compiler " << in.cc << " in this image (" << printable(version.error().what()) << ")\n";
    return kBuildInputError;
  }
  in.compiler = first_line(*version);
  in.compiler_full = *version;
  if (in.compiler != in.kernel_compiler)
    spdlog::warn("the compiler is {}, the kernel was built with {}: kbuild warns, and the modules may differ",
                 in.compiler, in.kernel_compiler.empty() ? "an unknown compiler" : in.kernel_compiler);

  Builder b(*root, std::move(in), out, err);
  return b.run();
}

}  // namespace agent
