// sd_notify from the entrypoint (agent/report/notify.cpp): a real AF_UNIX datagram socket stands in
// for systemd's notification socket; what arrives on it is what systemd would read.
#include "agent/report/notify.h"

#include "catch2_compat.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>

#include "temp_dir.h"

namespace {

// A bound SOCK_DGRAM socket and NOTIFY_SOCKET naming it, for the test's lifetime (the variable
// is unset again after it).
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& address) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    REQUIRE(address.size() < sizeof(sa.sun_path));
    std::memcpy(sa.sun_path, address.data(), address.size());
    if (address[0] == '@') sa.sun_path[0] = '\0';  // the abstract namespace, as systemd may use
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len) == 0);
    REQUIRE(::setenv("NOTIFY_SOCKET", address.c_str(), 1) == 0);
  }
  ~NotifySocket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  // The next datagram, or nullopt when none is waiting (sd_notify's send is synchronous).
  std::optional<std::string> next() {
    char buf[8192];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
      return std::nullopt;
    }
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
};

}  // namespace

TEST_CASE("notify: each phase as the datagram systemd reads", "[notify]") {
  agent::test::TempDir dir;
  NotifySocket sock((dir / "notify").string());

  agent::notify_phase(agent::Phase::Detecting, "probing the node");
  CHECK(sock.next() == std::optional<std::string>("STATUS=detecting: probing the node"));
  agent::notify_phase(agent::Phase::Loading, "1 module(s) to insert");
  CHECK(sock.next() == std::optional<std::string>("STATUS=loading: 1 module(s) to insert"));
  agent::notify_phase(agent::Phase::Ready, "2 module(s) live, 1 device(s) bound (0000:00:03.0 -> agent_test_nic)");
  CHECK(sock.next() ==
        std::optional<std::string>("READY=1\nSTATUS=ready: 2 module(s) live, 1 device(s) bound (0000:00:03.0 -> agent_test_nic)"));
  // Refused is settled too (the unit becomes active, not ready: STATUS says why).
  agent::notify_phase(agent::Phase::Refused, "decision build: module_layout");
  CHECK(sock.next() == std::optional<std::string>("READY=1\nSTATUS=refused: decision build: module_layout"));
  agent::notify_phase(agent::Phase::UpgradePending, "in use");
  CHECK(sock.next() == std::optional<std::string>("READY=1\nSTATUS=upgrade-pending: in use"));
  agent::notify_phase(agent::Phase::Building, "building");
  CHECK(sock.next() == std::optional<std::string>("STATUS=building: building"));
  agent::notify_phase(agent::Phase::WaitingForBuild, "waiting");
  CHECK(sock.next() == std::optional<std::string>("STATUS=waiting-for-build: waiting"));
  agent::notify_phase(agent::Phase::Stopping, "stopping; the modules stay loaded");
  CHECK(sock.next() == std::optional<std::string>("STOPPING=1\nSTATUS=stopping: stopping; the modules stay loaded"));
  CHECK(sock.next() == std::nullopt);  // one datagram per call
}

TEST_CASE("notify: a message is one line of bounded size", "[notify]") {
  agent::test::TempDir dir;
  NotifySocket sock((dir / "notify").string());

  // A newline would start another assignment (a forged READY=1 here).
  agent::notify_phase(agent::Phase::Refused, "first line\nREADY=1\tand a tab");
  CHECK(sock.next() == std::optional<std::string>("READY=1\nSTATUS=refused: first line READY=1 and a tab"));

  // Cut at a UTF-8 boundary: "é" is 2 bytes, none may be split.
  std::string lots;
  while (lots.size() < 5000) lots += "\xC3\xA9";
  agent::notify_phase(agent::Phase::Loading, lots);
  auto d = sock.next();
  REQUIRE(d);
  const std::string status = d->substr(std::string("STATUS=").size());
  CHECK(status.size() <= agent::kMaxNotifyStatus);
  CHECK(status.size() > agent::kMaxNotifyStatus - 8);
  CHECK(status.substr(0, 9) == "loading: ");
  CHECK(status.substr(status.size() - 3) == "...");
  const std::string body = status.substr(9, status.size() - 12);
  REQUIRE(body.size() % 2 == 0);
  for (size_t i = 0; i < body.size(); i += 2) CHECK(body.substr(i, 2) == "\xC3\xA9");
}

TEST_CASE("notify: the abstract namespace address", "[notify]") {
  const std::string name = "@agent-test-notify-" + std::to_string(::getpid());
  NotifySocket sock(name);
  agent::notify_phase(agent::Phase::Ready, "x");
  CHECK(sock.next() == std::optional<std::string>("READY=1\nSTATUS=ready: x"));
}

TEST_CASE("notify: nothing is sent without NOTIFY_SOCKET", "[notify]") {
  agent::test::TempDir dir;
  NotifySocket sock((dir / "notify").string());
  // The data is there when the variable is: the check below can fail.
  agent::notify_phase(agent::Phase::Ready, "x");
  REQUIRE(sock.next());

  ::unsetenv("NOTIFY_SOCKET");
  for (auto p : {agent::Phase::Detecting, agent::Phase::Ready, agent::Phase::Refused, agent::Phase::Stopping})
    agent::notify_phase(p, "x");
  CHECK(sock.next() == std::nullopt);
  ::setenv("NOTIFY_SOCKET", "", 1);
  agent::notify_phase(agent::Phase::Ready, "x");
  CHECK(sock.next() == std::nullopt);
}

TEST_CASE("notify: a socket nobody listens on is not fatal", "[notify]") {
  agent::test::TempDir dir;
  ::setenv("NOTIFY_SOCKET", (dir / "nobody").c_str(), 1);
  agent::notify_phase(agent::Phase::Ready, "x");  // ENOENT, logged once
  agent::notify_phase(agent::Phase::Stopping, "y");
  ::setenv("NOTIFY_SOCKET", "not-a-path", 1);  // neither absolute nor abstract: EINVAL
  agent::notify_phase(agent::Phase::Ready, "x");
  ::unsetenv("NOTIFY_SOCKET");
  SUCCEED("no crash, no exception");
}
