// Small text helpers shared by the libraries and the CLI.
#pragma once

#include <string>
#include <vector>

namespace agent {

// "a, b, c"
[[nodiscard]] inline std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s += sep;
    s += x;
  }
  return s;
}

}  // namespace agent
