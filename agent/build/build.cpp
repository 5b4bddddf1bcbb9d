#include "agent/build/build.h"
#include "agent/base/json_input.h"

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
#include <tuple>

#include <spdlog/spdlog.h>

#include "agent/base/state_files.h"
#include "agent/build/build_mounts.h"
#include "agent/decision/decide.h"
#include "agent/facts/build_inputs.h"
#include "agent/facts/node_model.h"
#include "agent/report/log.h"
#include "kabi/file_io.h"
#include "kabi/module.h"
#include "kabi/report.h"
#include "kabi/rules.h"
#include "kabi/text.h"
#include "probes/build_env.h"
#include "probes/host_root.h"
#include "probes/kernel.h"
#include "probes/policy.h"

namespace agent {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The build's lines in the log, formatted as the entrypoint's (time, level, phase; or JSON).
template <typename... Args>
void say(spdlog::level::level_enum level, fmt::format_string<Args...> f, Args&&... args) {
  log_line(level, "building", fmt::format(f, std::forward<Args>(args)...));
}

constexpr const char* kResultFile = "result.json";
constexpr const char* kFailedFile = "failed.json";
constexpr const char* kLogFile = "build.log";
constexpr size_t kMaxModuleSize = size_t{1} << 30;
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

// The first compiler or linker error of the log ("x.c:12:5: error: ..."), which says why a
// build failed better than its last line (make leaving a directory); else the last line.
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

// The inputs a cache entry records (result.json, failed.json), for readers that did not build.
nlohmann::json recorded_inputs(const std::string& release, const std::string& proc_version, const CacheKeyInputs& ki,
                               const std::string& compiler) {
  return {{"release", release},
          {"proc_version", proc_version},
          {"symvers_sha256", ki.symvers_sha256},
          {"sources_sha256", sources_digest(ki.sources)},
          {"compiler", compiler},
          {"signing_key_id", ki.signing_key_id}};
}

struct Inputs {
  BuildOptions options;
  std::string release;
  std::string proc_version;
  std::string headers;  // host path; with headers_in_image, a path of the agent's own filesystem
  bool headers_in_image = false;  // a Driver Toolkit image's, proven the running kernel's
  SigningFacts signing;           // the certificate, and the key's file (read only to sign)
  bool enforced = false;          // the kernel refuses unsigned modules and unknown keys
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

}  // namespace

Result<CacheRecord> parse_cache_record(std::string_view text, const std::string& file, bool failed) {
  auto j = parse_json_object(text, file);
  if (!j) return tl::unexpected(j.error());
  CacheRecord r;
  r.failed = failed;
  const JsonFields top(*j, file);
  auto inputs = top.object("inputs", true);
  if (!inputs) return tl::unexpected(inputs.error());
  const JsonFields in(**inputs, file, "inputs");
  for (auto [field, key] : {std::pair{&r.release, "release"}, {&r.proc_version, "proc_version"},
                            {&r.sources_sha256, "sources_sha256"}}) {
    auto v = in.string_or(key, "");
    if (!v) return tl::unexpected(v.error());
    *field = std::move(*v);
  }
  auto kernel = top.string_or("kernel", "");
  if (!kernel) return tl::unexpected(kernel.error());
  r.kernel = *kernel;
  if (failed) {
    auto reason = top.string_or("reason", reason::kBuildFailed);
    auto detail = top.string_or("detail", "");
    if (!reason) return tl::unexpected(reason.error());
    if (!detail) return tl::unexpected(detail.error());
    r.reason = *reason;
    r.detail = *detail;
    return r;
  }
  auto signer = top.object("signer");
  if (!signer) return tl::unexpected(signer.error());
  const JsonFields sf(**signer, file, "signer");
  auto signer_name = sf.string_or("name", "");
  auto key_id = sf.string_or("key_id", "");
  if (!signer_name) return tl::unexpected(signer_name.error());
  if (!key_id) return tl::unexpected(key_id.error());
  r.signer = *signer_name;
  r.signing_key_id = *key_id;
  auto modules = top.array("modules", true, true);
  if (!modules) return tl::unexpected(modules.error());
  if ((*modules)->empty()) return fail(EINVAL, "no modules listed", file);
  for (size_t k = 0; k < (*modules)->size(); ++k) {
    const JsonFields m((**modules)[k], file, "modules[" + std::to_string(k) + "]");
    auto f = m.string("file");
    auto sha256 = m.string("sha256");
    auto name = m.string_or("name", "");
    if (!f) return tl::unexpected(f.error());
    if (!sha256) return tl::unexpected(sha256.error());
    if (!name) return tl::unexpected(name.error());
    r.modules.push_back({*name, *f, *sha256});
  }
  return r;
}

namespace {

// A cache entry's modules, read through the cache directory and verified against result.json.
Result<std::vector<kabi::ModuleInfo>> read_entry_modules(const WritableDir& entry, const CacheRecord& record,
                                                         std::vector<BuiltModule>& listed) {
  std::vector<kabi::ModuleInfo> set;
  for (const auto& m : record.modules) {
    // A single file name in the entry (WritableDir::read refuses '/', '..'): never a path elsewhere.
    auto bytes = entry.read(m.file, kMaxModuleSize);
    if (!bytes) return tl::unexpected(bytes.error());
    if (kabi::sha256_hex(*bytes) != m.sha256)
      return fail(EINVAL, "changed since it was built (sha256)", entry.path() + "/" + m.file);
    auto info = kabi::parse_module(*bytes, entry.path() + "/" + m.file);
    if (!info) return tl::unexpected(info.error());
    listed.push_back({m.name.empty() ? info->name : m.name, entry.path() + "/" + m.file, m.sha256});
    set.push_back(std::move(*info));
  }
  return set;
}

// A cache entry as a result: a recorded failure, or its modules (verified against result.json)
// once they pass the kABI check against the running kernel again.
Result<BuildResult> entry_result(const probes::HostRoot& root, const WritableDir& entry, const std::string& key,
                                 bool check_kabi);

// Why a build failed: a build reason (agent/base/vocabulary.h) and one line for people.
struct BuildFailure {
  std::string reason;
  std::string detail;
};

class Builder {
 public:
  Builder(const probes::HostRoot& root, Inputs in) : root_(root), in_(std::move(in)), start_(Clock::now()) {}

  Result<BuildResult> run();

 private:
  BuildResult finish(BuildResult r) {
    r.kernel = in_.release;
    r.headers = in_.headers;
    r.compiler = in_.compiler;
    r.kernel_compiler = in_.kernel_compiler;
    for (const auto& [d, p] : in_.packages) r.packages.push_back(d);
    r.jobs = jobs_;
    r.build_seconds = build_seconds_;
    r.total_seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    return r;
  }
  // Why the build must stop now ("" to go on): the caller's wish.
  std::string stop_requested() const { return in_.options.stop ? in_.options.stop() : std::string(); }
  // Runs dkms for every package; the log in `log`. Nothing on success, else why it failed.
  std::optional<BuildFailure> build_all(const std::string& work, const std::string& log);
  BuildResult record_failure(const WritableDir& kdir, const std::string& key, const std::string& log_path,
                             const std::string& reason, const std::string& detail);

  const probes::HostRoot& root_;
  Inputs in_;
  CacheKeyInputs key_inputs_;
  Clock::time_point start_;
  unsigned jobs_ = 0;
  double build_seconds_ = 0;
};

std::optional<BuildFailure> Builder::build_all(const std::string& work, const std::string& log) {
  // Headers that name what is not there are the node's problem, not these inputs' failure: not
  // recorded (installing the missing package must be enough for the next run).
  auto plan = plan_header_mounts(root_, in_.headers_in_image ? std::string() : in_.headers, in_.release);
  if (!plan) return BuildFailure{reason::kBuildEnvironment, plan.error().what()};
  std::vector<MountSpec> mounts;
  for (const auto& m : *plan) {
    if (!root_.is_directory(m.host_path)) return BuildFailure{reason::kBuildEnvironment, root_.display(m.host_path) + ": not a directory"};
    say(spdlog::level::debug, "build: {} at {} ({})", root_.display(m.host_path), m.target, m.why);
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
  // Hidden from the build (dkms.conf is a shell script run as root): the signing key's Secret,
  // and the host root, which holds the kubelet's copy of every Secret (the build needs nothing
  // of it but what is mounted above at the canonical paths).
  std::vector<std::string> hidden_key_paths;
  if (in_.signing.key_file) {
    std::error_code e;
    hidden_key_paths = {in_.signing.key_file->string(), fs::absolute(*in_.signing.key_file, e).lexically_normal().string()};
    for (auto& h : key_hiding_mounts(*in_.signing.key_file, in_.signing.cert_file.filename().string(), work)) {
      say(spdlog::level::debug, "build: {} hidden", h.target);
      hidden_key_paths.push_back(h.target);
      mounts.push_back(std::move(h));
    }
  }
  {
    std::error_code e;
    const std::string host = fs::weakly_canonical(root_.root(), e).string();
    const std::string at = fs::weakly_canonical(work, e).string() + "/";
    if (!e && host != "/" && !host.empty() && at.compare(0, host.size() + 1, host + "/") != 0)
      mounts.push_back({"", host, false, true});
  }
  const std::string scratch = work + "/scratch";
  ::mkdir(scratch.c_str(), 0700);
  ::mkdir((work + "/tmp").c_str(), 0700);
  ::mkdir((work + "/dkms").c_str(), 0755);

  const Fd logfd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!logfd) return BuildFailure{reason::kBuildFailed, "cannot create the log " + log + ": " + std::strerror(errno)};
  // Orphans of the build (make's children whose parent died) come back to the agent, which
  // reaps them, rather than to PID 1 of a container that may be this agent anyway.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  // While the build runs, its processes (root, without CAP_SYS_PTRACE) cannot open this one's
  // /proc/<pid>/root, where the key's directory is not hidden.
  const NotDumpable no_dump;
  jobs_ = jobs_for_this_process();
  const auto t0 = Clock::now();
  const auto deadline = t0 + in_.options.timeout;

  // --kernelsourcedir: the headers' canonical path, where the namespace shows them.
  auto headers = in_.headers_in_image ? Result<std::string>(in_.headers) : root_.canonical(in_.headers);
  if (!headers) return BuildFailure{reason::kBuildFailed, headers.error().what()};
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
    say(spdlog::level::info, "building {} for {} (-j{}), log {}", dir, in_.release, jobs_, log);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const std::string makeflags = "MAKEFLAGS=-j" + std::to_string(jobs_);
    const std::string tmpdir = "TMPDIR=" + work + "/tmp";

    if (const std::string why = stop_requested(); !why.empty()) return BuildFailure{reason::kInterrupted, why + " before the build"};
    const pid_t pid = ::fork();
    if (pid < 0) return BuildFailure{reason::kBuildFailed, std::string("fork: ") + std::strerror(errno)};
    if (pid == 0) {
      ::setpgid(0, 0);
      // The entrypoint blocks its signals (it reads them from a signalfd): the build's processes
      // must get SIGTERM like any other.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(logfd.get(), 1);
      ::dup2(logfd.get(), 2);
      const int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      if (auto ns = enter_build_namespace(mounts, scratch); !ns) {
        std::string m = "agent build: cannot prepare the build's mount namespace: " + ns.error().what() + "\n";
        (void)!::write(2, m.data(), m.size());
        ::_exit(kChildSetupFailed);
      }
      if (auto caps = drop_build_capabilities(); !caps) {
        std::string m = "agent build: " + caps.error().what() + "\n";
        (void)!::write(2, m.data(), m.size());
        ::_exit(kChildSetupFailed);
      }
      if (::chdir(work.c_str()) != 0) ::_exit(kChildSetupFailed);
      // The node's kernel is given explicitly; nothing of the builder's own may leak in.
      for (const char* v : {"KERNELRELEASE", "KERNEL_SRC", "KDIR", "KLIB", "KLIB_BUILD", "ARCH", "CROSS_COMPILE",
                            "MAKEFLAGS", "MFLAGS", "MAKELEVEL"})
        ::unsetenv(v);
      // No variable names the key's place.
      std::vector<std::string> naming;
      for (char** e = environ; e && *e; ++e) {
        const std::string_view var(*e);
        for (const auto& h : hidden_key_paths)
          if (var.find(h) != std::string_view::npos) naming.emplace_back(var.substr(0, var.find('=')));
      }
      for (const auto& v : naming) ::unsetenv(v.c_str());
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
    bool requested = false;  // by the caller (a signal), not the timeout
    auto last_progress = Clock::now();
    while (!exited) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) { exited = true; break; }
      if (stop = stop_requested(); !stop.empty()) requested = true;
      else if (Clock::now() >= deadline) stop = "timed out after " + std::to_string(in_.options.timeout.count()) + " s";
      if (!stop.empty()) break;
      if (Clock::now() - last_progress >= std::chrono::seconds(10)) {
        last_progress = Clock::now();
        const std::string ml = make_log();
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        const std::string line = last_log_line(ml.empty() ? log : ml);
        say(spdlog::level::info, "building {}: {:.0f} s: {}", dir, elapsed, line);
        if (in_.options.progress) in_.options.progress(elapsed, line);
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
      say(spdlog::level::warn, "build of {} {}; the build's processes are killed", dir, stop);
      return BuildFailure{requested ? reason::kInterrupted : reason::kBuildTimeout, "the build of " + dir + " " + stop};
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == kChildSetupFailed)
      return BuildFailure{reason::kBuildEnvironment, last_log_line(log)};
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      const std::string how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                                : std::string("killed by ") + ::strsignal(WTERMSIG(status));
      return BuildFailure{reason::kBuildFailed, "dkms build of " + dir + " failed (" + how + "): " + first_error_line(log)};
    }
  }
  return {};
}

BuildResult Builder::record_failure(const WritableDir& kdir, const std::string& key, const std::string& log_path,
                                    const std::string& reason, const std::string& detail) {
  BuildResult r;
  r.result = BuildOutcome::Failed;
  r.key = key;
  r.reason = reason;
  r.detail = detail;
  r.log = log_path;
  // Nothing recorded: the next run builds again (a key unusable now is the node's set-up, not
  // these inputs' failure).
  if (reason == reason::kInterrupted || reason == reason::kBuildEnvironment || reason == reason::kSigningKeyUnusable) {
    r.log.clear();
    return finish(std::move(r));
  }
  // Recorded as <key>/failed.json + build.log, installed by rename like a success.
  const std::string tmp = ".tmp-" + key.substr(0, 16) + "-" + std::to_string(::getpid());
  remove_tree(kdir.fd(), tmp);
  auto entry = kdir.subdir(tmp);
  auto log = read_local(log_path);
  nlohmann::json j{{"schema", 1}, {"kernel", in_.release}, {"key", key}, {"reason", reason}, {"detail", detail},
                   {"log", kLogFile}, {"inputs", recorded_inputs(in_.release, in_.proc_version, key_inputs_, in_.compiler)}};
  Result<void> w = entry ? entry->write(kLogFile, log ? *log : std::string("(no log)\n")) : tl::unexpected(entry.error());
  if (w) w = entry->write(kFailedFile, safe_dump(j) + "\n");
  if (w && kdir.exists(key)) remove_tree(kdir.fd(), key);
  if (w && ::renameat(kdir.fd(), tmp.c_str(), kdir.fd(), key.c_str()) != 0)
    w = fail(errno, std::string("cannot install: ") + std::strerror(errno), kdir.path() + "/" + key);
  if (!w) {
    remove_tree(kdir.fd(), tmp);
    say(spdlog::level::warn, "cannot record the failure in the cache: {}", w.error().what());
  } else {
    r.log = kdir.path() + "/" + key + "/" + kLogFile;
    r.entry = kdir.path() + "/" + key;
  }
  return finish(std::move(r));
}

Result<BuildResult> Builder::run() {
  std::vector<std::string> dirs;
  for (const auto& [d, p] : in_.packages) dirs.push_back(d);
  // Hashed where they are, so that a cache hit copies nothing.
  auto sources = hash_sources(in_.options.sources, dirs);
  if (!sources) return tl::unexpected(sources.error());

  auto symvers = in_.headers_in_image ? kabi::read_file(in_.headers + "/Module.symvers", size_t{256} << 20)
                                      : root_.fs().read(in_.headers + "/Module.symvers", size_t{256} << 20);
  if (!symvers) return tl::unexpected(symvers.error());
  // An enforcing kernel takes only modules signed by a key it trusts: said before any build.
  const bool signs = in_.signing.key_file.has_value();
  if (in_.enforced && (!signs || in_.signing.trust.verdict != SigningTrust::Verdict::Trusted)) {
    BuildResult r;
    r.result = BuildOutcome::Failed;
    r.reason = signs ? reason::kSigningKeyUntrusted : reason::kBuildUnsignedEnforced;
    r.detail = signs ? "the kernel enforces module signatures and does not trust the key: " + signing_summary(in_.signing)
                     : "the kernel enforces module signatures and no signing key is given "
                       "(--signing-key, --signing-cert)";
    return finish(std::move(r));
  }
  if (signs && in_.signing.trust.verdict != SigningTrust::Verdict::Trusted)
    say(spdlog::level::warn, "signing with a key the kernel does not trust ({}): the modules load, tainting the kernel",
                 signing_summary(in_.signing));
  CacheKeyInputs& ki = key_inputs_;
  ki.signing_key_id = signs ? in_.signing.cert_sha256 : std::string();
  ki.release = in_.release;
  ki.proc_version = in_.proc_version;
  ki.symvers_sha256 = kabi::sha256_hex(*symvers);
  ki.compiler_version = in_.compiler_full;
  ki.sources = std::move(*sources);
  std::string key = cache_key(ki);

  auto cache = WritableDir::open(root_.fs(), in_.options.cache, "build cache");
  if (!cache) return tl::unexpected(cache.error());
  auto kdir = cache->subdir(in_.release);
  if (!kdir) return tl::unexpected(kdir.error());

  if (kdir->exists(key)) {
    auto entry = kdir->subdir(key);
    if (!entry) return tl::unexpected(entry.error());
    auto r = entry_result(root_, *entry, key, in_.options.check_cached);
    if (!r) say(spdlog::level::warn, "cache entry {} is not usable ({}); building again", entry->path(), r.error().what());
    else if (r->result == BuildOutcome::Failed && in_.options.rebuild) say(spdlog::level::info, "--rebuild: building again over {}", r->log);
    else return finish(std::move(*r));
  }

  // Before an hour of dkms: the key checked (it parses, it is the certificate's) and released at
  // once; it is read again right before the signing.
  if (signs) {
    auto check = load_signing_key(*in_.signing.key_file, in_.signing.cert_file);
    if (!check) return tl::unexpected(check.error());
  }

  auto tmp = ScratchDir::make("agent-build");
  if (!tmp) return tl::unexpected(tmp.error());
  const std::string work = tmp->path();
  if (auto c = copy_sources(in_.options.sources, dirs, work + "/src"); !c) return tl::unexpected(c.error());
  // What is built is what is keyed: the copy is hashed again (sources changed in between get
  // the key of what was actually built).
  auto copied = hash_sources(work + "/src", dirs);
  if (!copied) return tl::unexpected(copied.error());
  ki.sources = std::move(*copied);
  if (const std::string k = cache_key(ki); k != key) {
    say(spdlog::level::warn, "the sources changed while they were read; the build is keyed by the copy it builds");
    key = k;
  }
  const std::string log = work + "/" + kLogFile;
  if (auto failure = build_all(work, log)) return record_failure(*kdir, key, log, failure->reason, failure->detail);

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
    return record_failure(*kdir, key, log, reason::kModulesMissing, "dkms succeeded without building " + join(missing));
  // Signed here, before the kABI check reads them (kbuild signs before it compresses; a module
  // dkms left compressed is refused by sign_module, naming it).
  if (signs) {
    // The key is read now, right before the signing, and released (freed, its bytes cleansed)
    // when `signer` goes, on every path out of this block.
    auto signer = load_signing_key(*in_.signing.key_file, in_.signing.cert_file);
    if (!signer) return record_failure(*kdir, key, log, reason::kSigningKeyUnusable, signer.error().what());
    for (const auto& [name, path] : files) {
      auto bytes = read_local(path);
      auto signed_bytes = bytes ? sign_module(*bytes, *signer, path.string())
                                : Result<std::string>(tl::unexpected(bytes.error()));
      if (!signed_bytes) return record_failure(*kdir, key, log, reason::kSigningFailed, signed_bytes.error().what());
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(signed_bytes->data(), static_cast<std::streamsize>(signed_bytes->size()));
      if (!out.flush()) return tl::unexpected(Error{EIO, "cannot write the signed module", path.string()});
    }
    signer->key.release();
    say(spdlog::level::info, "signed {} module(s) with {}", files.size(), signing_summary(in_.signing));
  }
  for (const auto& [name, path] : files) {
    auto info = kabi::read_module(path, {.trusted_certs = nullptr, .sha256 = true});
    if (!info) return record_failure(*kdir, key, log, reason::kModulesMissing, info.error().what());
    set.push_back(std::move(*info));
  }
  auto refusal = kabi_refusal(root_, set);
  if (!refusal) return tl::unexpected(refusal.error());
  if (!refusal->empty()) return record_failure(*kdir, key, log, reason::kKabiRefused, "the build is " + *refusal);

  // Installed by rename: a reader sees no entry or a whole one.
  const std::string tmpname = ".tmp-" + key.substr(0, 16) + "-" + std::to_string(::getpid());
  remove_tree(kdir->fd(), tmpname);
  auto entry = kdir->subdir(tmpname);
  if (!entry) return tl::unexpected(entry.error());
  BuildResult r;
  r.result = BuildOutcome::Built;
  r.key = key;
  if (signs) {
    r.signer = in_.signing.identity.signer;
    r.signing_key_id = in_.signing.identity.key_ids.empty() ? std::string() : in_.signing.identity.key_ids.back();
  }
  nlohmann::json meta{{"schema", 1}, {"kernel", in_.release}, {"key", key}, {"headers", in_.headers},
                      {"compiler", in_.compiler}, {"modules", nlohmann::json::array()},
                      {"inputs", recorded_inputs(in_.release, in_.proc_version, ki, in_.compiler)}};
  if (!r.signer.empty()) meta["signer"] = {{"name", r.signer}, {"key_id", r.signing_key_id}};
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
    return tl::unexpected(w.error());
  }
  r.log = kdir->path() + "/" + key + "/" + kLogFile;
  r.entry = kdir->path() + "/" + key;
  return finish(std::move(r));
}

// The headers to build against: the node's (probes::probe_build_env), else the image's own when
// they are proven the running kernel's (as diagnose() decides it).
Result<probes::BuildEnv> headers_for_build(const probes::HostRoot& root, const std::string& release,
                                           const std::filesystem::path& image_base) {
  probes::HeadersChoice headers = probes::choose_build_headers(root, release, image_base);
  std::optional<probes::SymversCandidate> verdict;
  if (headers.to_verify) {
    probes::KernelProbeOptions ko;
    ko.also_verify = headers.to_verify;
    auto k = probes::probe_kernel(root, ko);
    if (!k) return tl::unexpected(k.error());
    verdict = k->also_verified;
  }
  probes::consider_image_headers(headers.env, headers.image, release, verdict);
  return headers.env;
}

// What every reader of the cache needs: the node's kernel, and the sources in the image.
Result<Inputs> common_inputs(const probes::HostRoot& root, const BuildOptions& o) {
  Inputs in;
  in.options = o;
  auto release = probes::probe_release(root);
  if (!release) return tl::unexpected(release.error());
  in.release = *release;
  if (auto v = root.read_text("/proc/version")) in.proc_version = *v;
  auto packages = find_packages(o.sources, in.release);
  if (!packages) return tl::unexpected(packages.error());
  in.packages = std::move(*packages);
  return in;
}

// The names in a directory of the cache that are entries (not a .tmp-* being written).
Result<std::vector<std::string>> entry_names(const WritableDir& dir) {
  std::vector<std::string> out;
  const int fd = ::openat(dir.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(errno, "cannot list the build cache", dir.path());
  DIR* d = ::fdopendir(fd);
  if (!d) {
    const int e = errno;
    ::close(fd);
    return fail(e, "cannot list the build cache", dir.path());
  }
  errno = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') out.emplace_back(e->d_name);
  const int e = errno;
  ::closedir(d);
  if (e != 0) return fail(e, "cannot list the build cache", dir.path());
  std::sort(out.begin(), out.end());
  return out;
}

Result<BuildResult> entry_result(const probes::HostRoot& root, const WritableDir& entry, const std::string& key,
                                 bool check_kabi) {
  BuildResult r;
  r.key = key;
  r.entry = entry.path();
  r.log = entry.path() + "/" + kLogFile;
  const bool failed = entry.exists(kFailedFile);
  const char* name = failed ? kFailedFile : kResultFile;
  auto text = entry.read(name);
  if (!text) return tl::unexpected(text.error());
  auto record = parse_cache_record(*text, entry.path() + "/" + name, failed);
  if (!record) return tl::unexpected(record.error());
  r.kernel = record->kernel;
  if (failed) {
    r.result = BuildOutcome::Failed;
    r.reason = record->reason;
    r.detail = record->detail + " (recorded; not retried until an input changes, or --rebuild)";
    return r;
  }
  r.signer = record->signer;
  r.signing_key_id = record->signing_key_id;
  auto set = read_entry_modules(entry, *record, r.modules);
  if (!set) return tl::unexpected(set.error());
  if (!check_kabi) {
    r.result = BuildOutcome::Cached;
    return r;
  }
  auto refusal = kabi_refusal(root, *set);
  if (!refusal) return tl::unexpected(refusal.error());
  if (refusal->empty()) {
    r.result = BuildOutcome::Cached;
    return r;
  }
  r.result = BuildOutcome::Failed;
  r.reason = reason::kKabiRefused;
  r.detail = "the cached build is " + *refusal;
  r.modules.clear();
  return r;
}

}  // namespace

Result<BuildResult> build_for_node(const probes::HostRoot& root, const BuildOptions& o) {
  auto in = common_inputs(root, o);
  if (!in) return tl::unexpected(in.error());
  auto env = headers_for_build(root, in->release, o.image_headers);
  if (!env) return tl::unexpected(env.error());
  if (!env->possible) return fail(ENOENT, env->mismatch.empty() ? env->detail : env->mismatch + "; " + env->detail);
  in->headers = env->dir;
  in->headers_in_image = env->in_image;
  in->signing = probe_signing(root, in->release, o.signing);
  if (!in->signing.problem.empty()) return fail(EINVAL, in->signing.problem);
  for (const auto& w : signing_warnings(in->signing)) say(spdlog::level::warn, "signing: {}", w);
  in->enforced = probes::probe_policy(root).enforced();
  say(spdlog::level::info, "{}", env->detail);
  auto headers_file = [&](const std::string& name, size_t max) {
    return in->headers_in_image ? kabi::read_file(in->headers + "/" + name, max) : root.fs().read(in->headers + "/" + name, max);
  };

  // The compiler: the one the headers name (Debian: gcc-12), else gcc; what the kernel was built
  // with: /proc/version's, else the headers' CONFIG_CC_VERSION_TEXT (what kbuild compares with).
  if (auto kv = headers_file(".kernelvariables", size_t{1} << 20)) in->cc = compiler_from_kernelvariables(*kv);
  if (in->cc.empty()) in->cc = "gcc";
  in->kernel_compiler = compiler_from_proc_version(in->proc_version);
  if (in->kernel_compiler.empty())
    if (auto config = headers_file(".config", size_t{16} << 20)) in->kernel_compiler = cc_version_text(*config);
  auto version = run_capture({in->cc, "--version"});
  if (!version) return fail(ENOENT, "no compiler " + in->cc + " in this image (" + version.error().what() + ")");
  in->compiler = first_line(*version);
  in->compiler_full = *version;
  if (in->compiler != in->kernel_compiler)
    say(spdlog::level::warn, "the compiler is {}, the kernel was built with {}: kbuild warns, and the modules may differ",
                 in->compiler, in->kernel_compiler.empty() ? "an unknown compiler" : in->kernel_compiler);
  Builder b(root, std::move(*in));
  return b.run();
}

Result<std::optional<BuildResult>> find_build(const probes::HostRoot& root, const BuildOptions& o,
                                              std::vector<Error>* skipped) {
  auto in = common_inputs(root, o);
  if (!in) return tl::unexpected(in.error());
  std::vector<std::string> dirs;
  for (const auto& [d, p] : in->packages) dirs.push_back(d);
  auto sources = hash_sources(o.sources, dirs);
  if (!sources) return tl::unexpected(sources.error());
  const std::string digest = sources_digest(*sources);

  auto cache = WritableDir::open(root.fs(), o.cache, "build cache");
  if (!cache) return tl::unexpected(cache.error());
  auto kdir = cache->subdir(in->release);
  if (!kdir) return tl::unexpected(kdir.error());
  // Entries whose recorded inputs are this kernel's and these sources', newest first; successes
  // before failures.
  struct Candidate {
    bool failed;
    struct timespec mtime;
    std::string key;
  };
  std::vector<Candidate> found;
  auto names = entry_names(*kdir);
  if (!names) return tl::unexpected(names.error());
  for (const auto& key : *names) {
    auto entry = kdir->subdir(key);
    if (!entry) {
      if (skipped) skipped->push_back(entry.error());
      continue;
    }
    const bool failed = entry->exists(kFailedFile);
    const std::string file = entry->path() + "/" + (failed ? kFailedFile : kResultFile);
    auto text = entry->read(failed ? kFailedFile : kResultFile);
    if (!text) {
      if (text.error().code != ENOENT && skipped) skipped->push_back(text.error());
      continue;  // an entry still being written has no result yet
    }
    auto record = parse_cache_record(*text, file, failed);
    if (!record) {
      if (skipped) skipped->push_back(record.error());
      continue;
    }
    if (record->release != in->release || record->proc_version != in->proc_version || record->sources_sha256 != digest)
      continue;
    struct stat st {};
    if (::fstatat(entry->fd(), failed ? kFailedFile : kResultFile, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    found.push_back({failed, st.st_mtim, key});
  }
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    if (a.failed != b.failed) return !a.failed;
    return std::tie(a.mtime.tv_sec, a.mtime.tv_nsec) > std::tie(b.mtime.tv_sec, b.mtime.tv_nsec);
  });
  for (const auto& c : found) {
    auto entry = kdir->subdir(c.key);
    if (!entry) continue;
    auto r = entry_result(root, *entry, c.key, o.check_cached);
    if (!r) {
      say(spdlog::level::warn, "cache entry {} is not usable: {}", entry->path(), r.error().what());
      if (skipped) skipped->push_back(r.error());
      continue;
    }
    r->packages = dirs;
    return std::optional<BuildResult>(std::move(*r));
  }
  return std::optional<BuildResult>();
}

int run_build(const BuildOptions& options, std::ostream& out, std::ostream& err) {
  StopSignals signals;
  BuildOptions o = options;
  o.stop = [] { return g_stop_signal ? std::string("interrupted by ") + ::strsignal(g_stop_signal) : std::string(); };
  auto root = probes::HostRoot::from_cli_or_env(o.root);
  auto r = root ? build_for_node(*root, o) : Result<BuildResult>(tl::unexpected(root.error()));
  if (!r) {
    err << "agent: " << printable(r.error().what()) << '\n';
    return kExitInputError;
  }
  if (o.json) out << safe_dump(build_result_json(*r)) << '\n';
  else out << printable(build_result_text(*r));
  return r->result == BuildOutcome::Failed ? kBuildFailed : kBuildOk;
}

}  // namespace agent
