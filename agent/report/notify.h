// systemd's service notification (the sd_notify(3) protocol, without libsystemd) for the entrypoint run by
// systemd/intel-gpu-driver.service (Type=notify): the phases as STATUS= lines, READY=1 once the
// agent has settled, STOPPING=1 on stop. Without NOTIFY_SOCKET (a container, a shell) nothing is
// sent and nothing is formatted.
#pragma once

#include <string>
#include <string_view>

#include "agent/report/status.h"

namespace agent {

// What one phase change tells systemd: "STATUS=<phase>: <message>", preceded by
//   READY=1     for ready, refused and upgrade-pending: the start is over, the agent stays up
//               (systemd cannot take READY back, so a later refused is told by STATUS= alone);
//   STOPPING=1  for stopping.
// The message is made one line of printable text (newlines and control characters become
// spaces) and cut to kMaxNotifyStatus bytes at a UTF-8 boundary: systemd ignores a STATUS= that
// is not UTF-8 and a datagram larger than its buffer.
[[nodiscard]] std::string notify_message(Phase p, std::string_view message);
inline constexpr size_t kMaxNotifyStatus = 1024;

// Sends notify_message(p, message) when NOTIFY_SOCKET is set; a failure is logged once, never
// fatal (the driver does not depend on systemd hearing about it).
void notify_phase(Phase p, std::string_view message);

}  // namespace agent
