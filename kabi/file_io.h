// Whole-file reads, transparently decompressing gzip, xz and zstd (by magic, not by name).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "kabi/fd.h"
#include "kabi/result.h"

namespace agent::kabi {

enum class Compression { None, Gzip, Xz, Zstd };

[[nodiscard]] Compression detect_compression(std::string_view bytes) noexcept;
[[nodiscard]] std::string_view compression_name(Compression c) noexcept;

// Size caps that fit real data with room to spare, so that a hostile input costs little. A file
// over its cap is an error before anything is allocated; decompressed data is capped as it
// streams.
inline constexpr size_t kMaxModuleSize = size_t{64} << 20;   // the largest real module is ~20 MB
inline constexpr size_t kMaxSymversSize = size_t{32} << 20;  // a kernel's Module.symvers: 2-4 MB
inline constexpr size_t kMaxIndexSize = size_t{16} << 20;    // modules.dep, modules.symbols: < 2 MB
inline constexpr size_t kMaxTextSize = size_t{4} << 20;      // sysfs, procfs and /etc text files
inline constexpr size_t kMaxImageSize = size_t{128} << 20;   // a vmlinuz: 8-15 MB
inline constexpr size_t kMaxFileSize = kMaxModuleSize;       // the default of the readers below

// Turns a descriptor that only names a file (O_PATH) into one open for reading, after checking
// its type: a FIFO, socket or device is an error naming the file and is never opened (opening
// a device can have effects; reading a FIFO can block forever). The reopen goes through
// /proc/self/fd, so it is the very inode that was checked.
[[nodiscard]] Result<Fd> open_regular(const Fd& path_fd, const std::string& name);

// Reads an open file to EOF with read(2) (sysfs and procfs files, whose st_size lies, included);
// a regular file whose size is over `max_size` is refused before it is read, anything else
// once it has produced more. `name` names it in errors.
[[nodiscard]] Result<std::string> read_fd(const Fd& fd, const std::string& name, size_t max_size = kMaxFileSize);

// A path on this filesystem, typed and bounded as above.
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
  friend Result<MappedFile> map_fd(Fd fd, const std::string& name, size_t max_size);
  char* map_ = nullptr;
  size_t size_ = 0;
  std::string copy_;
};

// An open file (see open_regular), mapped when it is a regular file of at most `max_size`.
[[nodiscard]] Result<MappedFile> map_fd(Fd fd, const std::string& name, size_t max_size = kMaxFileSize);
[[nodiscard]] Result<MappedFile> map_file(const std::filesystem::path& path, size_t max_size = kMaxFileSize);

// Decompresses `bytes` if they carry a gzip/xz/zstd magic, else returns them unchanged:
// every xz stream and zstd frame in them (a whole file may hold several), the first gzip
// member. `path` only names the input in errors. More than `max_output` bytes is EFBIG; with a
// `magic`, output that does not start with it is ENOEXEC, caught at the first block.
[[nodiscard]] Result<std::string> decompress(std::string_view bytes, const std::string& path,
                                             size_t max_output = kMaxFileSize, std::string_view magic = {});

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

// read_file + decompress, `max_size` capping both.
[[nodiscard]] Result<std::string> read_decompressed(const std::filesystem::path& path, size_t max_size = kMaxFileSize);

}  // namespace agent::kabi
