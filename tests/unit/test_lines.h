// Text helpers shared by the tests of the agent's and kabi's printed output.
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace agent::test {

// The lines of `text` that contain `what`.
inline std::vector<std::string> lines_with(const std::string& text, const std::string& what) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(what) != std::string::npos) out.push_back(line);
  return out;
}

}  // namespace agent::test
