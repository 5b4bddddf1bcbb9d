// Shared helpers for the kabi unit tests: fixture paths, whole-file I/O, a scratch directory.
#pragma once

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "../temp_dir.h"

namespace kabi_test {

namespace fs = std::filesystem;

// Built at build time from tests/fixtures/kabi (see fixtures.cmake).
inline fs::path fixture(const std::string& name) { return fs::path(KABI_FIXTURE_DIR) / name; }
// Text fixtures, read from the source tree.
inline fs::path source_fixture(const std::string& name) { return fs::path(KABI_FIXTURE_SRC) / name; }

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("test fixture missing: " + p.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void spit(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

// The first word of a `cmake -E sha256sum` output file.
inline std::string sha256_of_fixture(const std::string& name) {
  std::string s = slurp(fixture(name + ".sha256"));
  return s.substr(0, s.find(' '));
}

// A value of type T at `off` in a file's bytes (host byte order: x86 modules on x86), and back:
// for tests that edit an ELF image in place.
template <class T>
T get(const std::string& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

template <class T>
void put(std::string& b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

using TempDir = agent::test::TempDir;

}  // namespace kabi_test
