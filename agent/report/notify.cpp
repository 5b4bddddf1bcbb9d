#include "agent/report/notify.h"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "agent/report/log.h"

namespace agent {
namespace {

// The longest prefix of s of at most n bytes that does not end inside a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

std::string notify_message(Phase p, std::string_view message) {
  std::string out;
  switch (p) {
    case Phase::Ready:
    case Phase::Refused:
    case Phase::UpgradePending: out = "READY=1\n"; break;
    case Phase::Stopping: out = "STOPPING=1\n"; break;
    case Phase::Detecting:
    case Phase::Building:
    case Phase::WaitingForBuild:
    case Phase::Loading: break;
  }
  std::string text = std::string(phase_name(p)) + ": ";
  for (char c : message) text += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
  constexpr std::string_view kEllipsis = "...";
  if (text.size() > kMaxNotifyStatus)
    text = std::string(utf8_prefix(text, kMaxNotifyStatus - kEllipsis.size())) + std::string(kEllipsis);
  return out + "STATUS=" + text;
}

void notify_phase(Phase p, std::string_view message) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket == nullptr || *socket == '\0') return;
  // unset_environment 0: every phase change notifies through the same variable.
  const int r = sd_notify(0, notify_message(p, message).c_str());
  static bool warned = false;
  if (r < 0 && !warned) {
    warned = true;
    log_line(spdlog::level::warn, phase_name(p),
             std::string("cannot notify systemd (NOTIFY_SOCKET=") + socket + "): " + std::strerror(-r));
  }
}

}  // namespace agent
