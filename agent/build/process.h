// A supervised process: a program (no shell) in a process group of its own, this process the
// subreaper of its orphans, the whole group killed on a timeout or a stop and every process of it
// reaped, its end told as a type rather than a string.
#pragma once

#include <signal.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kabi/result.h"

namespace agent {

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] looked up in PATH
  int stdout_fd = -1;             // -1: /dev/null (stdin is /dev/null always)
  int stderr_fd = -1;
  std::optional<std::vector<std::string>> env;  // NAME=VALUE, the whole environment; none: this process's
  std::string cwd;                              // empty: this process's
  // Run in the child between fork and exec (mounts, capabilities: what only the child may
  // change); an error there is the process's NotStarted, with its message.
  std::function<Result<void>()> prepare;
};

struct Supervision {
  // When it is killed as timed out (one deadline may span several processes); none: never.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Asked every 200 ms: a non-empty answer (why) stops the process.
  std::function<std::string()> stop;
  // Called every `progress_every` while it runs.
  std::function<void()> progress;
  std::chrono::seconds progress_every{10};
  std::chrono::seconds grace{5};  // between the group's SIGTERM and its SIGKILL
};

// How a supervised process ended.
struct ProcessEnd {
  enum class How {
    Exited,      // code: its exit status
    Killed,      // code: the signal that ended it
    TimedOut,    // the deadline passed: the group killed
    Stopped,     // the supervisor's stop answered (detail): the group killed
    NotStarted,  // detail: why (fork, the child's preparation, exec)
  };
  How how = How::NotStarted;
  int code = 0;
  std::string detail;
  double seconds = 0;  // from the start until its group was reaped

  [[nodiscard]] bool succeeded() const noexcept { return how == How::Exited && code == 0; }
};

// For people: "exit 2", "killed by Killed", "timed out", the stop's reason, "cannot start: ...".
[[nodiscard]] std::string describe(const ProcessEnd& end);

// Runs `spec` to its end under `supervision`. Sets this process as a child subreaper (for good):
// orphans of the process come back to it and are reaped, rather than to a PID 1 that may be this
// agent anyway.
[[nodiscard]] ProcessEnd run_supervised(const ProcessSpec& spec, const Supervision& supervision);

// The stdout of `argv` (stdin and stderr /dev/null); an error naming the command when it cannot
// start or does not exit 0.
[[nodiscard]] Result<std::string> capture_output(const std::vector<std::string>& argv);

// While it lives, SIGTERM and SIGINT are noted instead of killing this process half-way, for a
// supervisor's `stop` to ask; the previous handlers come back afterwards.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // "interrupted by Terminated" once one came; else empty.
  [[nodiscard]] std::string why() const;

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

}  // namespace agent
