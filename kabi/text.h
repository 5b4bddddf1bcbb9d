// Small text helpers shared by the libraries and the CLI.
#pragma once

#include <cstddef>
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

// Lower-case hex of raw bytes: key ids, digests, build ids.
[[nodiscard]] inline std::string hex_bytes(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

}  // namespace agent
