#include "agent/build/process.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kabi/fd.h"
#include "kabi/text.h"

namespace agent {
namespace {
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

std::string err_text(int e) { return std::strerror(e); }

// Everything `fd` gives until EOF (a signal does not cut it short).
std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// `fd` as the child's `target` (0, 1, 2): kept open across exec even when it is already there.
void place_fd(int fd, int target) {
  if (fd == target) ::fcntl(fd, F_SETFD, 0);
  else ::dup2(fd, target);
}

// The child's side of spawn: never returns. What stops it before exec is written to `report`
// (closed by a successful exec), for the parent to tell.
[[noreturn]] void become(const ProcessSpec& spec, char* const* args, char* const* envp, int null_fd, int report) {
  ::setpgid(0, 0);
  // The entrypoint blocks its signals (it reads them from a signalfd): the process must get
  // SIGTERM like any other.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  place_fd(null_fd, 0);
  place_fd(spec.stdout_fd >= 0 ? spec.stdout_fd : null_fd, 1);
  place_fd(spec.stderr_fd >= 0 ? spec.stderr_fd : null_fd, 2);
  auto give_up = [report](const std::string& why) {
    (void)!::write(report, why.data(), why.size());
    ::_exit(127);
  };
  if (spec.prepare)
    if (auto r = spec.prepare(); !r) give_up(r.error().what());
  if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) != 0) give_up("cannot change to " + spec.cwd + ": " + err_text(errno));
  if (envp) ::execvpe(args[0], args, envp);
  else ::execvp(args[0], args);
  give_up("cannot run " + spec.argv[0] + ": " + err_text(errno));
  ::_exit(127);  // not reached
}

// Forks and execs `spec` in a process group of its own: its pid, or why it did not start.
Result<pid_t> spawn(const ProcessSpec& spec) {
  if (spec.argv.empty()) return fail(EINVAL, "no program to run");
  // Everything the child uses is made before the fork.
  std::vector<std::string> argv = spec.argv, env = spec.env.value_or(std::vector<std::string>());
  std::vector<char*> args, envp;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return fail(errno, "cannot open /dev/null: " + err_text(errno));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail(errno, "pipe: " + err_text(errno));
  const Fd report_read(p[0]);
  Fd report_write(p[1]);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  const pid_t pid = ::fork();
  if (pid < 0) return fail(errno, "fork: " + err_text(errno));
  if (pid == 0) become(spec, args.data(), spec.env ? envp.data() : nullptr, null.get(), report_write.get());
  ::setpgid(pid, pid);  // also here: no window in which a kill(-pid) misses the child
  report_write.reset();
  // Nothing to read: the exec closed the pipe. Else the child said why and exits.
  const std::string why = read_to_eof(report_read.get());
  if (why.empty()) return pid;
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
  return fail(ECHILD, printable(why));
}

// Kills what is left of the group `pgid` and reaps every process of it (the orphans among them
// are this subreaper's children).
void kill_and_reap(pid_t pgid) {
  ::kill(-pgid, SIGKILL);
  while (::waitpid(-pgid, nullptr, 0) > 0 || errno == EINTR) {}
}

// Waits for `pid` (spawned at `t0`) under `sup`; the group is killed and reaped in any case.
ProcessEnd supervise(pid_t pid, const Supervision& sup, Clock::time_point t0) {
  ProcessEnd end;
  int status = 0;
  bool exited = false;
  std::string stop;        // why the group is being killed
  bool requested = false;  // by the supervisor's stop, not the timeout
  const auto deadline = sup.deadline.value_or(Clock::time_point::max());
  auto last_progress = Clock::now();
  // Polled from 10 ms up to 200 ms: a quick process (`cc --version`) costs no fixed 200 ms.
  useconds_t poll = 10 * 1000;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) {
      exited = w == pid;
      break;
    }
    if (sup.stop && !(stop = sup.stop()).empty()) requested = true;
    else if (Clock::now() >= deadline) stop = "timed out";
    if (!stop.empty()) break;
    if (sup.progress && Clock::now() - last_progress >= sup.progress_every) {
      last_progress = Clock::now();
      sup.progress();
    }
    ::usleep(poll);  // a signal ends it early
    poll = std::min<useconds_t>(poll * 2, 200 * 1000);
  }
  if (!stop.empty()) {
    ::kill(-pid, SIGTERM);
    const auto grace = Clock::now() + sup.grace;
    while (Clock::now() < grace && ::kill(-pid, 0) == 0) {
      while (::waitpid(-pid, nullptr, WNOHANG) > 0) {}
      ::usleep(100 * 1000);
    }
  }
  // Whatever is left of the group (background jobs of the process) goes, and is reaped.
  kill_and_reap(pid);
  end.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!stop.empty()) {
    end.how = requested ? ProcessEnd::How::Stopped : ProcessEnd::How::TimedOut;
    if (requested) end.detail = stop;
  } else if (!exited) {
    end.how = ProcessEnd::How::NotStarted;
    end.detail = "lost: " + err_text(ECHILD);
  } else if (WIFEXITED(status)) {
    end.how = ProcessEnd::How::Exited;
    end.code = WEXITSTATUS(status);
  } else {
    end.how = ProcessEnd::How::Killed;
    end.code = WTERMSIG(status);
  }
  return end;
}

}  // namespace

std::string describe(const ProcessEnd& end) {
  switch (end.how) {
    case ProcessEnd::How::Exited: return "exit " + std::to_string(end.code);
    case ProcessEnd::How::Killed: return std::string("killed by ") + ::strsignal(end.code);
    case ProcessEnd::How::TimedOut: return "timed out";
    case ProcessEnd::How::Stopped: return end.detail;
    case ProcessEnd::How::NotStarted: return "cannot start: " + end.detail;
  }
  return end.detail;
}

ProcessEnd run_supervised(const ProcessSpec& spec, const Supervision& sup) {
  const auto t0 = Clock::now();
  auto pid = spawn(spec);
  if (!pid) {
    ProcessEnd end;
    end.how = ProcessEnd::How::NotStarted;
    end.detail = pid.error().what();
    end.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return end;
  }
  return supervise(*pid, sup, t0);
}

Result<std::string> capture_output(const std::vector<std::string>& argv) {
  const std::string command = "`" + join(argv, " ") + "`";
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail(errno, "pipe: " + err_text(errno));
  const Fd out_read(p[0]);
  Fd out_write(p[1]);
  ProcessSpec spec;
  spec.argv = argv;
  spec.stdout_fd = out_write.get();
  const auto t0 = Clock::now();
  auto pid = spawn(spec);
  out_write.reset();
  if (!pid) return fail(pid.error().code, command + " cannot start: " + pid.error().what());
  std::string out = read_to_eof(out_read.get());
  const ProcessEnd end = supervise(*pid, {}, t0);
  if (!end.succeeded()) return fail(ENOENT, command + " failed (" + describe(end) + ")");
  return out;
}

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a sleep ends early
  ::sigaction(SIGTERM, &sa, &old_term_);
  ::sigaction(SIGINT, &sa, &old_int_);
}

StopSignals::~StopSignals() {
  ::sigaction(SIGTERM, &old_term_, nullptr);
  ::sigaction(SIGINT, &old_int_, nullptr);
}

std::string StopSignals::why() const {
  const int sig = g_stop_signal;
  return sig ? std::string("interrupted by ") + ::strsignal(sig) : std::string();
}

}  // namespace agent
