#include "agent/report/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "kabi/fd.h"

#include "agent/report/log.h"

namespace agent {
namespace {

// The longest prefix of s of at most n bytes that does not end inside a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// sd_notify(3)'s protocol: one datagram on the AF_UNIX socket NOTIFY_SOCKET names, a path or,
// with a leading '@', a name in the abstract namespace; systemd takes the sender's pid from the
// kernel's credentials of the datagram. 0 or an errno.
int send_notify(std::string_view address, std::string_view message) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address.empty() || (address[0] != '/' && address[0] != '@')) return EAFNOSUPPORT;  // e.g. systemd's vsock:
  if (address.size() > sizeof sa.sun_path) return ENAMETOOLONG;
  std::memcpy(sa.sun_path, address.data(), address.size());
  if (address[0] == '@') sa.sun_path[0] = '\0';
  // A path's terminating NUL is not needed in the length; an abstract name has none.
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  const Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  if (::sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&sa), len) < 0)
    return errno;
  return 0;
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
  // The variable stays set: every phase change notifies through it.
  const int r = send_notify(socket, notify_message(p, message));
  static bool warned = false;
  if (r != 0 && !warned) {
    warned = true;
    log_line(spdlog::level::warn, phase_name(p),
             std::string("cannot notify systemd (NOTIFY_SOCKET=") + socket + "): " + std::strerror(r));
  }
}

}  // namespace agent
