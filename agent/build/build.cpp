#include "agent/build/build.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <ostream>
#include <variant>

#include <spdlog/spdlog.h>

#include "agent/base/state_files.h"
#include "agent/build/build_mounts.h"
#include "agent/build/cache.h"
#include "agent/build/dkms.h"
#include "agent/build/failure.h"
#include "agent/build/process.h"
#include "agent/facts/build_inputs.h"
#include "agent/report/log.h"
#include "kabi/file_io.h"
#include "kabi/module.h"
#include "kabi/text.h"
#include "probes/build_env.h"
#include "probes/cpu_quota.h"
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

constexpr size_t kMaxModuleSize = size_t{1} << 30;
constexpr size_t kMaxLogSize = size_t{1} << 30;

std::string first_line(std::string_view s) {
  const size_t nl = s.find('\n');
  return std::string(s.substr(0, nl));
}

// make's -j: this process's CPUs, lowered to its cgroup's CPU quota.
unsigned jobs_for_this_process() {
  auto limits = probes::cgroup_cpu_max();
  if (!limits) say(spdlog::level::warn, "no CPU quota known ({}): -j from the CPU affinity alone", limits.error().what());
  return build_jobs(probes::affinity_cpus(), limits ? *limits : std::vector<std::string>());
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
  std::string headers;  // host path; with headers_in_image, a path of the agent's own filesystem
  bool headers_in_image = false;  // a Driver Toolkit image's, proven the running kernel's
  SigningFacts signing;           // the certificate, and the key's file (read only to sign)
  bool enforced = false;          // the kernel refuses unsigned modules and unknown keys
  std::vector<std::pair<std::string, DkmsPackage>> packages;
  std::string cc;                // the compiler program
  std::string compiler;          // its --version, first line
  std::string compiler_full;     // its --version, whole (the cache key's)
  std::string kernel_compiler;   // CONFIG_CC_VERSION_TEXT, else /proc/version's

  [[nodiscard]] std::vector<std::string> package_dirs() const {
    std::vector<std::string> dirs;
    for (const auto& [d, p] : packages) dirs.push_back(d);
    return dirs;
  }
};

// Where a step of the build ends when it does not go on: a failure of the build (recorded or
// not, by its kind), or an error - of the inputs, or of the cache that cannot be written.
using Stop = std::variant<BuildFailure, Error>;
template <class T>
using Step = tl::expected<T, Stop>;

tl::unexpected<Stop> stop_with(BuildFailure::Kind kind, std::string detail) {
  return tl::unexpected<Stop>(BuildFailure{kind, std::move(detail)});
}
tl::unexpected<Stop> stop_with(Error e) { return tl::unexpected<Stop>(std::move(e)); }

// A built module: its name and where dkms left it.
struct BuiltFile {
  std::string name;
  fs::path path;
};

// The build of the node's kernel, step by step (run()): the key, the signing policy, the cache,
// then dkms in its namespace, the modules collected, signed, kABI-checked and installed.
class Builder {
 public:
  Builder(const probes::HostRoot& root, Inputs in) : root_(root), in_(std::move(in)), start_(Clock::now()) {}

  Result<BuildResult> run();

 private:
  bool signs() const { return in_.signing.key_file.has_value(); }
  Result<void> key_inputs();
  std::optional<BuildFailure> signing_refusal() const;
  Result<std::optional<BuildResult>> cached();
  Step<BuildResult> build();
  Step<void> run_dkms(const std::string& work);
  Step<std::vector<BuiltFile>> collect_modules(const std::string& work) const;
  Step<void> sign(const std::vector<BuiltFile>& files) const;
  Step<BuildResult> install(const std::vector<BuiltFile>& files, const std::vector<kabi::ModuleInfo>& set);
  BuildResult failed(const BuildFailure& f);
  BuildResult finish(BuildResult r) const;

  const probes::HostRoot& root_;
  Inputs in_;
  Clock::time_point start_;
  CacheKeyInputs ki_;
  std::string key_;                   // set once the signing policy allows a build
  std::optional<WritableDir> kdir_;   // <cache>/<kver>
  std::optional<ScratchDir> work_;    // the build's own directory, its log in it
  std::string log_;
  unsigned jobs_ = 0;
  double build_seconds_ = 0;
};

Result<BuildResult> Builder::run() {
  if (auto k = key_inputs(); !k) return tl::unexpected(k.error());
  if (auto refusal = signing_refusal()) return failed(*refusal);
  key_ = cache_key(ki_);
  auto cache = WritableDir::open(root_.fs(), in_.options.cache, "build cache");
  if (!cache) return tl::unexpected(cache.error());
  auto kdir = cache->subdir(in_.release);
  if (!kdir) return tl::unexpected(kdir.error());
  kdir_ = std::move(*kdir);
  auto hit = cached();
  if (!hit) return tl::unexpected(hit.error());
  if (*hit) return finish(std::move(**hit));
  auto built = build();
  if (built) return finish(std::move(*built));
  if (auto* f = std::get_if<BuildFailure>(&built.error())) return failed(*f);
  return tl::unexpected(std::get<Error>(built.error()));
}

// What the key is computed over: the sources where they are (a cache hit copies nothing), the
// headers' Module.symvers, the compiler, the signing certificate.
Result<void> Builder::key_inputs() {
  auto sources = hash_sources(in_.options.sources, in_.package_dirs());
  if (!sources) return tl::unexpected(sources.error());
  auto symvers = in_.headers_in_image ? kabi::read_file(in_.headers + "/Module.symvers", size_t{256} << 20)
                                      : root_.fs().read(in_.headers + "/Module.symvers", size_t{256} << 20);
  if (!symvers) return tl::unexpected(symvers.error());
  ki_.signing_key_id = signs() ? in_.signing.cert_sha256 : std::string();
  ki_.release = in_.release;
  ki_.proc_version = in_.proc_version;
  ki_.symvers_sha256 = kabi::sha256_hex(*symvers);
  ki_.compiler_version = in_.compiler_full;
  ki_.sources = std::move(*sources);
  return {};
}

// An enforcing kernel takes only modules signed by a key it trusts: said before any build.
std::optional<BuildFailure> Builder::signing_refusal() const {
  const bool trusted = in_.signing.trust.verdict == SigningTrust::Verdict::Trusted;
  if (in_.enforced && !signs())
    return BuildFailure{BuildFailure::Kind::UnsignedEnforced,
                        "the kernel enforces module signatures and no signing key is given (--signing-key, --signing-cert)"};
  if (in_.enforced && !trusted)
    return BuildFailure{BuildFailure::Kind::KeyUntrusted,
                        "the kernel enforces module signatures and does not trust the key: " + signing_summary(in_.signing)};
  if (signs() && !trusted)
    say(spdlog::level::warn, "signing with a key the kernel does not trust ({}): the modules load, tainting the kernel",
        signing_summary(in_.signing));
  return std::nullopt;
}

// The entry for this key, when it can be used: a success whose modules pass the kABI check
// again, or a recorded failure (unless --rebuild). An unusable entry is built again.
Result<std::optional<BuildResult>> Builder::cached() {
  if (!kdir_->exists(key_)) return std::optional<BuildResult>();
  auto entry = kdir_->subdir(key_);
  if (!entry) return tl::unexpected(entry.error());
  auto r = entry_result(root_, *entry, key_, in_.options.check_cached);
  if (!r) say(spdlog::level::warn, "cache entry {} is not usable ({}); building again", entry->path(), r.error().what());
  else if (r->result == BuildOutcome::Failed && in_.options.rebuild) say(spdlog::level::info, "--rebuild: building again over {}", r->log);
  else return std::optional<BuildResult>(std::move(*r));
  return std::optional<BuildResult>();
}

Step<BuildResult> Builder::build() {
  // Before an hour of dkms: the key checked (it parses, it is the certificate's) and released at
  // once; it is read again right before the signing.
  if (signs()) {
    auto check = load_signing_key(*in_.signing.key_file, in_.signing.cert_file);
    if (!check) return stop_with(check.error());
  }
  auto tmp = ScratchDir::make("agent-build");
  if (!tmp) return stop_with(tmp.error());
  work_ = std::move(*tmp);
  const std::string work = work_->path();
  log_ = work + "/" + kLogFile;
  const std::vector<std::string> dirs = in_.package_dirs();
  if (auto c = copy_sources(in_.options.sources, dirs, work + "/src"); !c) return stop_with(c.error());
  // What is built is what is keyed: the copy is hashed again (sources changed in between get
  // the key of what was actually built).
  auto copied = hash_sources(work + "/src", dirs);
  if (!copied) return stop_with(copied.error());
  ki_.sources = std::move(*copied);
  if (const std::string k = cache_key(ki_); k != key_) {
    say(spdlog::level::warn, "the sources changed while they were read; the build is keyed by the copy it builds");
    key_ = k;
  }
  if (auto d = run_dkms(work); !d) return tl::unexpected(d.error());
  auto files = collect_modules(work);
  if (!files) return tl::unexpected(files.error());
  // Signed here, before the kABI check reads them (kbuild signs before it compresses; a module
  // dkms left compressed is refused by sign_module, naming it).
  if (auto s = sign(*files); !s) return tl::unexpected(s.error());
  std::vector<kabi::ModuleInfo> set;
  for (const auto& f : *files) {
    auto info = kabi::read_module(f.path, {.trusted_certs = nullptr, .sha256 = true});
    if (!info) return stop_with(BuildFailure::Kind::ModulesMissing, info.error().what());
    set.push_back(std::move(*info));
  }
  auto refusal = kabi_refusal(root_, set);
  if (!refusal) return stop_with(refusal.error());
  if (!refusal->empty()) return stop_with(BuildFailure::Kind::KabiRefused, "the build is " + *refusal);
  return install(*files, set);
}

// dkms for every package, in a private mount namespace with the node's headers at their
// canonical paths, supervised: one deadline for all.
Step<void> Builder::run_dkms(const std::string& work) {
  using Kind = BuildFailure::Kind;
  // Headers that name what is not there are the node's problem, not these inputs' failure: not
  // recorded (installing the missing package must be enough for the next run).
  auto plan = plan_header_mounts(root_, in_.headers_in_image ? std::string() : in_.headers, in_.release);
  if (!plan) return stop_with(Kind::Environment, plan.error().what());
  DkmsRun run;
  for (const auto& m : *plan) {
    if (!root_.is_directory(m.host_path)) return stop_with(Kind::Environment, root_.display(m.host_path) + ": not a directory");
    say(spdlog::level::debug, "build: {} at {} ({})", root_.display(m.host_path), m.target, m.why);
    run.mounts.push_back({kabi::normalize_path(root_.root().string() + "/" + m.host_path), m.target, false});
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
  if (fs::exists("/etc/dkms/framework.conf", ec)) run.mounts.push_back({framework, "/etc/dkms/framework.conf", true});
  if (fs::is_directory("/etc/dkms/framework.conf.d", ec))
    run.mounts.push_back({empty_dir, "/etc/dkms/framework.conf.d", false});
  // Hidden from the build (dkms.conf is a shell script run as root): the signing key's Secret,
  // and the host root, which holds the kubelet's copy of every Secret (the build needs nothing
  // of it but what is mounted above at the canonical paths).
  if (in_.signing.key_file) {
    std::error_code e;
    run.hidden = {in_.signing.key_file->string(), fs::absolute(*in_.signing.key_file, e).lexically_normal().string()};
    for (auto& h : key_hiding_mounts(*in_.signing.key_file, in_.signing.cert_file.filename().string(), work)) {
      say(spdlog::level::debug, "build: {} hidden", h.target);
      run.hidden.push_back(h.target);
      run.mounts.push_back(std::move(h));
    }
  }
  {
    std::error_code e;
    const std::string host = fs::weakly_canonical(root_.root(), e).string();
    const std::string at = fs::weakly_canonical(work, e).string() + "/";
    if (!e && host != "/" && !host.empty() && at.compare(0, host.size() + 1, host + "/") != 0)
      run.mounts.push_back({"", host, false, true});
  }
  run.scratch = work + "/scratch";
  ::mkdir(run.scratch.c_str(), 0700);
  ::mkdir((work + "/tmp").c_str(), 0700);
  ::mkdir((work + "/dkms").c_str(), 0755);

  const Fd logfd(::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!logfd) return stop_with(Kind::Failed, "cannot create the log " + log_ + ": " + std::strerror(errno));
  run.log = log_;
  run.log_fd = logfd.get();
  // While the build runs, its processes (root, without CAP_SYS_PTRACE) cannot open this one's
  // /proc/<pid>/root, where the key's directory is not hidden.
  const NotDumpable no_dump;
  jobs_ = jobs_for_this_process();
  const auto t0 = Clock::now();
  run.deadline = t0 + in_.options.timeout;
  run.timeout = in_.options.timeout;
  run.stop = in_.options.stop;

  // --kernelsourcedir: the headers' canonical path, where the namespace shows them.
  auto headers = in_.headers_in_image ? Result<std::string>(in_.headers) : root_.canonical(in_.headers);
  if (!headers) return stop_with(Kind::Failed, headers.error().what());
  const DkmsTree tree{in_.options.dkms, in_.release, *headers, work, jobs_};
  for (const auto& [dir, pkg] : in_.packages) {
    run.progress = [&, dir = dir, pkg = &pkg] {
      const std::string ml = dkms_make_log(tree, *pkg);
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      const std::string line = last_log_line(ml.empty() ? log_ : ml);
      say(spdlog::level::info, "building {}: {:.0f} s: {}", dir, elapsed, line);
      if (in_.options.progress) in_.options.progress(elapsed, line);
    };
    auto done = run_dkms_build(tree, run, dir, pkg);
    build_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!done) return tl::unexpected<Stop>(done.error());
  }
  return {};
}

// Every BUILT_MODULE_NAME, under its DEST_MODULE_NAME, in dkms's tree for this kernel.
Step<std::vector<BuiltFile>> Builder::collect_modules(const std::string& work) const {
  std::vector<BuiltFile> files;
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
      else files.push_back({m.dest_name, *found});
    }
  }
  if (!missing.empty()) return stop_with(BuildFailure::Kind::ModulesMissing, "dkms succeeded without building " + join(missing));
  return files;
}

Step<void> Builder::sign(const std::vector<BuiltFile>& files) const {
  if (!signs()) return {};
  // The key is read now, right before the signing, and released (freed, its bytes cleansed)
  // when `signer` goes, on every path out of this function.
  auto signer = load_signing_key(*in_.signing.key_file, in_.signing.cert_file);
  if (!signer) return stop_with(BuildFailure::Kind::KeyUnusable, signer.error().what());
  for (const auto& f : files) {
    auto bytes = kabi::read_file(f.path, kMaxModuleSize);
    auto signed_bytes = bytes ? sign_module(*bytes, *signer, f.path.string())
                              : Result<std::string>(tl::unexpected(bytes.error()));
    if (!signed_bytes) return stop_with(BuildFailure::Kind::SigningFailed, signed_bytes.error().what());
    std::ofstream out(f.path, std::ios::binary | std::ios::trunc);
    out.write(signed_bytes->data(), static_cast<std::streamsize>(signed_bytes->size()));
    if (!out.flush()) return stop_with(Error{EIO, "cannot write the signed module", f.path.string()});
  }
  signer->key.release();
  say(spdlog::level::info, "signed {} module(s) with {}", files.size(), signing_summary(in_.signing));
  return {};
}

// The modules, the log and result.json installed as the entry <key>, by rename.
Step<BuildResult> Builder::install(const std::vector<BuiltFile>& files, const std::vector<kabi::ModuleInfo>& set) {
  BuildResult r;
  r.result = BuildOutcome::Built;
  r.key = key_;
  if (signs()) {
    r.signer = in_.signing.identity.signer;
    r.signing_key_id = in_.signing.identity.key_ids.empty() ? std::string() : in_.signing.identity.key_ids.back();
  }
  const std::string at = kdir_->path() + "/" + key_;
  EntryContent c;
  c.record = {{"schema", 1}, {"kernel", in_.release}, {"key", key_}, {"headers", in_.headers},
              {"compiler", in_.compiler}, {"modules", nlohmann::json::array()},
              {"inputs", recorded_inputs(ki_, in_.compiler)}};
  if (!r.signer.empty()) c.record["signer"] = {{"name", r.signer}, {"key_id", r.signing_key_id}};
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string file = files[i].path.filename().string();
    c.files.emplace_back(file, files[i].path);
    c.record["modules"].push_back({{"name", set[i].name}, {"file", file}, {"sha256", set[i].sha256}});
    r.modules.push_back({set[i].name, at + "/" + file, set[i].sha256});
  }
  if (auto log = kabi::read_file(log_, kMaxLogSize)) c.log = std::move(*log);
  auto installed = install_entry(*kdir_, key_, c);
  if (!installed) return stop_with(installed.error());
  if (*installed == DirInstall::Theirs) {
    // Another builder of the same inputs was first: its entry is the one there, so the result.
    say(spdlog::level::info, "another build of {} was installed first; it is used", at);
    auto entry = kdir_->subdir(key_);
    if (!entry) return stop_with(entry.error());
    auto theirs = entry_result(root_, *entry, key_, in_.options.check_cached);
    if (!theirs) return stop_with(theirs.error());
    return *theirs;
  }
  r.log = at + "/" + kLogFile;
  r.entry = at;
  return r;
}

// A failure as the result, recorded in the cache as <key>/failed.json + build.log when its kind
// is (not: the next run builds again).
BuildResult Builder::failed(const BuildFailure& f) {
  BuildResult r;
  r.result = BuildOutcome::Failed;
  r.key = key_;
  r.reason = failure_reason(f.kind);
  r.detail = f.detail;
  if (!failure_recorded(f.kind) || !kdir_) return finish(std::move(r));
  r.log = log_;
  EntryContent c;
  auto log = kabi::read_file(log_, kMaxLogSize);
  c.log = log ? *log : std::string("(no log)\n");
  c.record_file = kFailedFile;
  c.record = {{"schema", 1}, {"kernel", in_.release}, {"key", key_}, {"reason", r.reason}, {"detail", f.detail},
              {"log", kLogFile}, {"inputs", recorded_inputs(ki_, in_.compiler)}};
  if (auto installed = install_entry(*kdir_, key_, c); !installed) {
    say(spdlog::level::warn, "cannot record the failure in the cache: {}", installed.error().what());
  } else {
    r.log = kdir_->path() + "/" + key_ + "/" + kLogFile;
    r.entry = kdir_->path() + "/" + key_;
  }
  return finish(std::move(r));
}

BuildResult Builder::finish(BuildResult r) const {
  r.kernel = in_.release;
  r.headers = in_.headers;
  r.compiler = in_.compiler;
  r.kernel_compiler = in_.kernel_compiler;
  r.packages = in_.package_dirs();
  r.jobs = jobs_;
  r.build_seconds = build_seconds_;
  r.total_seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  return r;
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
  auto version = capture_output({in->cc, "--version"});
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
  const std::vector<std::string> dirs = in->package_dirs();
  auto sources = hash_sources(o.sources, dirs);
  if (!sources) return tl::unexpected(sources.error());
  auto cache = WritableDir::open(root.fs(), o.cache, "build cache");
  if (!cache) return tl::unexpected(cache.error());
  auto kdir = cache->subdir(in->release);
  if (!kdir) return tl::unexpected(kdir.error());
  auto found = find_entry(root, *kdir, {in->release, in->proc_version, sources_digest(*sources)}, o.check_cached, skipped);
  if (found && *found) (*found)->packages = dirs;
  return found;
}

int run_build(const BuildOptions& options, std::ostream& out, std::ostream& err) {
  const StopSignals signals;
  BuildOptions o = options;
  o.stop = [&signals] { return signals.why(); };
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
