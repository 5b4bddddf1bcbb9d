// Whole-file reads, transparently decompressing gzip, xz and zstd (by magic, not by name).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "kabi/result.h"

namespace agent::kabi {

enum class Compression { None, Gzip, Xz, Zstd };

[[nodiscard]] Compression detect_compression(std::string_view bytes) noexcept;
[[nodiscard]] std::string_view compression_name(Compression c) noexcept;

// Reads a file as it is on disk, to EOF with read(2) (sysfs and procfs files, whose st_size
// lies, included); a file larger than `max_size` is an error.
inline constexpr size_t kMaxFileSize = size_t{1} << 30;
[[nodiscard]] Result<std::string> read_file(const std::filesystem::path& path, size_t max_size = kMaxFileSize);

// A read-only view of a whole file: mapped when it is a regular file, else read.
class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  [[nodiscard]] std::string_view bytes() const noexcept { return map_ ? std::string_view(map_, size_) : std::string_view(copy_); }

 private:
  friend Result<MappedFile> map_file(const std::filesystem::path& path);
  char* map_ = nullptr;
  size_t size_ = 0;
  std::string copy_;
};

[[nodiscard]] Result<MappedFile> map_file(const std::filesystem::path& path);

// Decompresses `bytes` if they carry a gzip/xz/zstd magic, else returns them unchanged.
// `path` only names the input in errors.
[[nodiscard]] Result<std::string> decompress(std::string bytes, const std::string& path);

// read_file + decompress.
[[nodiscard]] Result<std::string> read_decompressed(const std::filesystem::path& path);

}  // namespace agent::kabi
