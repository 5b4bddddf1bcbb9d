// What the entrypoint waits on, without using CPU: its signals (read from a signalfd: SIGTERM,
// SIGINT, SIGHUP) and the kernel's uevents for modules and PCI devices (a libudev monitor of
// kernel events, which needs no udevd), with a timeout.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <libudev.h>

#include "kabi/fd.h"
#include "kabi/handles.h"
#include "kabi/result.h"


namespace agent {

struct WatchEvent {
  enum class Kind { Timeout, Terminate, Reload, Uevent };
  Kind kind = Kind::Timeout;
  std::string signal;     // "SIGTERM", "SIGINT", "SIGHUP"
  std::string subsystem;  // uevent: "module", "pci", "drm"
  std::string action;     // uevent: "add", "remove", "bind", "unbind", ...
  std::string name;       // uevent: the module's or device's name ("agent_test_nic", "0000:00:03.0")
};

// What the entrypoint waits on: the seam the unit tests replace with a script of events.
class Events {
 public:
  virtual ~Events() = default;
  // Whether uevents arrive at all; when not, why (said once at start).
  [[nodiscard]] virtual bool uevents() const noexcept = 0;
  [[nodiscard]] virtual const std::string& uevent_problem() const noexcept = 0;
  // The next event, or Timeout after `timeout` (none: wait for ever).
  [[nodiscard]] virtual WatchEvent next(std::optional<std::chrono::milliseconds> timeout) = 0;
  // A signal already pending, without waiting (between the steps of a long action).
  [[nodiscard]] virtual std::optional<WatchEvent> pending_signal() = 0;
};

class Watch final : public Events {
 public:
  // Blocks SIGTERM, SIGINT and SIGHUP in this thread (so they arrive only through the signalfd)
  // and opens the uevent monitor. Without a monitor (no netlink: a pod without host networking
  // sees no uevents) the watch still works, on signals and timeouts; `uevents()` says which.
  [[nodiscard]] static Result<Watch> open();

  [[nodiscard]] bool uevents() const noexcept override { return monitor_ != nullptr; }
  [[nodiscard]] const std::string& uevent_problem() const noexcept override { return uevent_problem_; }
  [[nodiscard]] WatchEvent next(std::optional<std::chrono::milliseconds> timeout) override;
  [[nodiscard]] std::optional<WatchEvent> pending_signal() override;

 private:
  Watch() = default;
  Fd signal_fd_;
  CHandle<udev, udev_unref> udev_;
  CHandle<udev_monitor, udev_monitor_unref> monitor_;  // after udev_: released first
  std::string uevent_problem_;
};

}  // namespace agent
