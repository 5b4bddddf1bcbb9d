#include "agent/base/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <iostream>

namespace agent {

size_t terminal_width(const std::ostream& out) {
  const std::streambuf* buf = out.rdbuf();
  const int fd = buf == std::cout.rdbuf() ? STDOUT_FILENO
                 : (buf == std::cerr.rdbuf() || buf == std::clog.rdbuf()) ? STDERR_FILENO
                                                                           : -1;
  if (fd < 0 || ::isatty(fd) != 1) return 0;
  struct winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

}  // namespace agent
