// Whether text goes to a person's terminal: wrapping helps there and nowhere else (a pipe, a
// file or a log is read by grep, and a kernel message split across lines is not found).
#pragma once

#include <cstddef>
#include <iosfwd>

namespace agent {

// The columns to wrap at for text written to `out`: the terminal's width when `out` writes to
// this process's stdout or stderr and that descriptor is a terminal (80 if it does not say);
// 0, never wrap, for anything else.
[[nodiscard]] size_t terminal_width(const std::ostream& out);

}  // namespace agent
