// Shared helpers for the kabi unit tests: fixture paths, whole-file I/O, a scratch directory.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

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

// A fresh directory under $TMPDIR, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kabi-unit-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] fs::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  fs::path path_;
};

}  // namespace kabi_test
