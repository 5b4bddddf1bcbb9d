// Whole-file reads, transparently decompressing gzip, xz and zstd (by magic, not by name).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
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

// Decompresses `bytes` if they carry a gzip/xz/zstd magic, else returns them unchanged:
// every xz stream and zstd frame in them (a whole file may hold several), the first gzip
// member. `path` only names the input in errors.
[[nodiscard]] Result<std::string> decompress(std::string_view bytes, const std::string& path);

// ---- streaming: for input that is not one whole file (a compressed kernel inside a bzImage)
// or output nobody needs whole (a kernel scanned for its certificates) ----

// Where a decoder reads: a block at a time.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  [[nodiscard]] virtual bool at_end() const = 0;
  virtual Result<std::string_view> next() = 0;  // the next block; empty only at the end
};

// Where a decoder writes: into space() (never empty), then commit() what it wrote there.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual std::span<char> space() = 0;
  virtual void commit(size_t n) = 0;
  [[nodiscard]] virtual uint64_t total() const = 0;          // bytes committed so far
  [[nodiscard]] virtual bool done() const { return false; }  // has all it wants: stop early
};

struct StreamOptions {
  // Decode xz streams and zstd frames that follow the first (a whole file); else stop at the
  // end of the first and ignore whatever follows it (a payload with a trailer).
  bool concatenated = false;
  uint64_t max_output = uint64_t{1} << 30;  // a decompression bomb is an error, not a 4 GiB string
};

// Decompresses from `in` into `out`: true at the end of the data, false when out.done() said
// stop first. Errors name `path`: EINVAL corrupt, truncated or not compressed; EFBIG more than
// max_output; ENOMEM a stream that asks for more memory than allowed (an xz dictionary over
// 256 MiB, a zstd window over 128 MiB - the kernel's own images need 32 and 128 MiB).
[[nodiscard]] Result<bool> decompress_stream(Compression c, ByteSource& in, ByteSink& out,
                                             const StreamOptions& options, const std::string& path);

// read_file + decompress.
[[nodiscard]] Result<std::string> read_decompressed(const std::filesystem::path& path);

}  // namespace agent::kabi
