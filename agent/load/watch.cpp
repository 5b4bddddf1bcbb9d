#include "agent/load/watch.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <libudev.h>

namespace agent {
namespace {

std::string signal_name(uint32_t sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
  }
  return "signal " + std::to_string(sig);
}

std::optional<WatchEvent> read_signal(int fd) {
  signalfd_siginfo si{};
  if (::read(fd, &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return std::nullopt;
  WatchEvent e;
  e.kind = si.ssi_signo == SIGHUP ? WatchEvent::Kind::Reload : WatchEvent::Kind::Terminate;
  e.signal = signal_name(si.ssi_signo);
  return e;
}

}  // namespace

Result<Watch> Watch::open() {
  Watch w;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return fail(errno, std::string("sigprocmask: ") + std::strerror(errno));
  w.signal_fd_ = Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!w.signal_fd_) return fail(errno, std::string("signalfd: ") + std::strerror(errno));

  w.udev_.reset(udev_new());
  if (!w.udev_) {
    w.uevent_problem_ = "libudev: cannot create a context";
    return w;
  }
  w.monitor_.reset(udev_monitor_new_from_netlink(w.udev_.get(), "kernel"));
  if (!w.monitor_) {
    w.uevent_problem_ = "no uevent netlink socket (a pod without host networking sees no uevents)";
    return w;
  }
  for (const char* sub : {"module", "pci", "drm"}) udev_monitor_filter_add_match_subsystem_devtype(w.monitor_.get(), sub, nullptr);
  if (udev_monitor_enable_receiving(w.monitor_.get()) < 0) {
    w.uevent_problem_ = std::string("cannot receive uevents: ") + std::strerror(errno);
    w.monitor_.reset();
  }
  return w;
}

std::optional<WatchEvent> Watch::pending_signal() { return read_signal(signal_fd_.get()); }

WatchEvent Watch::next(std::optional<std::chrono::milliseconds> timeout) {
  const auto deadline = timeout ? std::chrono::steady_clock::now() + *timeout : std::chrono::steady_clock::time_point::max();
  for (;;) {
    pollfd fds[2] = {{signal_fd_.get(), POLLIN, 0}, {monitor_ ? udev_monitor_get_fd(monitor_.get()) : -1, POLLIN, 0}};
    int wait_ms = -1;
    if (timeout) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return WatchEvent{};
      wait_ms = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
    }
    const int n = ::poll(fds, monitor_ ? 2 : 1, wait_ms);
    if (n < 0 && errno != EINTR) return WatchEvent{};
    if (n <= 0) continue;
    if (fds[0].revents & POLLIN)
      if (auto e = read_signal(signal_fd_.get())) return *e;
    if (monitor_ && (fds[1].revents & POLLIN)) {
      CHandle<udev_device, udev_device_unref> dev(udev_monitor_receive_device(monitor_.get()));
      if (!dev) continue;
      WatchEvent e;
      e.kind = WatchEvent::Kind::Uevent;
      const char* sub = udev_device_get_subsystem(dev.get());
      const char* act = udev_device_get_action(dev.get());
      const char* name = udev_device_get_sysname(dev.get());
      e.subsystem = sub ? sub : "";
      e.action = act ? act : "";
      e.name = name ? name : "";
      return e;
    }
  }
}

}  // namespace agent
