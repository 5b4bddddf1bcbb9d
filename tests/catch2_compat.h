// Catch2 v2 or v3, whichever tests/CMakeLists.txt found (it defines AGENT_CATCH2_V3 for v3).
// A test binary's main: v2 compiles it where CATCH_CONFIG_MAIN is defined before this header;
// v3 ignores that macro and takes main() from Catch2::Catch2WithMain (agent_catch2_main).
#pragma once

#if AGENT_CATCH2_V3
#include <catch2/catch_all.hpp>

#include <string>

// v2's string matcher `Contains(str)` is v3's ContainsSubstring; v3's Contains(x) is the range
// matcher (does a container hold x). Non-template overloads win over that template for string
// arguments, so the tests' `Contains("...")` keeps meaning "has this substring".
namespace Catch::Matchers {
inline StringContainsMatcher Contains(const char* s, CaseSensitive cs = CaseSensitive::Yes) {
  return ContainsSubstring(s, cs);
}
inline StringContainsMatcher Contains(const std::string& s, CaseSensitive cs = CaseSensitive::Yes) {
  return ContainsSubstring(s, cs);
}
inline StringContainsMatcher Contains(std::string& s, CaseSensitive cs = CaseSensitive::Yes) {
  return ContainsSubstring(s, cs);
}
inline StringContainsMatcher Contains(std::string&& s, CaseSensitive cs = CaseSensitive::Yes) {
  return ContainsSubstring(s, cs);
}
}  // namespace Catch::Matchers
// v2 also made its matchers visible as Catch::Contains.
namespace Catch {
using Matchers::Contains;
}  // namespace Catch
#else
#include <catch2/catch.hpp>
#endif
