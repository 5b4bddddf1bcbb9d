#include "kabi/file_io.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "kabi/handles.h"

namespace agent::kabi {
namespace {

// Module and symvers xz files use dictionaries of 1-8 MiB, x86 kernels 32 MiB
// (scripts/xz_wrap.sh); a stream asking for more is refused instead of letting liblzma
// allocate whatever its header says.
constexpr uint64_t kXzMemLimit = uint64_t{256} << 20;
// The kernel compresses with zstd --ultra -22: allow its 128 MiB window.
constexpr int kZstdWindowLogMax = 27;

Result<bool> too_big(const ByteSink& out, const StreamOptions& o, const char* format, const std::string& path) {
  if (out.total() > o.max_output)
    return fail(EFBIG, std::string(format) + " data decompresses to more than " +
                           std::to_string(o.max_output >> 20) + " MiB", path);
  return true;
}

// The first gzip member (modules and symvers are one; a bzImage payload is followed by its size).
Result<bool> gunzip_stream(ByteSource& in, ByteSink& out, const StreamOptions& o, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return fail(ENOMEM, "zlib init failed", path);
  CHandle<z_stream, inflateEnd> guard(&zs);
  for (;;) {
    if (zs.avail_in == 0 && !in.at_end()) {
      auto block = in.next();
      if (!block) return tl::unexpected(block.error());
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block->data()));
      zs.avail_in = static_cast<uInt>(block->size());
    }
    const std::span<char> room = out.space();
    zs.next_out = reinterpret_cast<Bytef*>(room.data());
    zs.avail_out = static_cast<uInt>(std::min<size_t>(room.size(), UINT32_MAX));
    const uInt offered = zs.avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.commit(offered - zs.avail_out);
    if (rc == Z_STREAM_END) return true;
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return fail(EINVAL, std::string("corrupt gzip data: ") + (zs.msg ? zs.msg : "?"), path);
    // Z_BUF_ERROR: no progress possible without more input.
    if (zs.avail_in == 0 && in.at_end() && (rc == Z_BUF_ERROR || zs.avail_out != 0))
      return fail(EINVAL, "truncated gzip data", path);
    if (auto ok = too_big(out, o, "gzip", path); !ok) return ok;
    if (out.done()) return false;
  }
}

Result<bool> unxz_stream(ByteSource& in, ByteSink& out, const StreamOptions& o, const std::string& path) {
  lzma_stream xs = LZMA_STREAM_INIT;
  // Without LZMA_CONCATENATED the decoder stops at the end of the first stream.
  if (lzma_stream_decoder(&xs, kXzMemLimit, o.concatenated ? LZMA_CONCATENATED : 0) != LZMA_OK)
    return fail(ENOMEM, "liblzma init failed", path);
  CHandle<lzma_stream, lzma_end> guard(&xs);
  for (;;) {
    if (xs.avail_in == 0 && !in.at_end()) {
      auto block = in.next();
      if (!block) return tl::unexpected(block.error());
      xs.next_in = reinterpret_cast<const uint8_t*>(block->data());
      xs.avail_in = block->size();
    }
    const std::span<char> room = out.space();
    xs.next_out = reinterpret_cast<uint8_t*>(room.data());
    xs.avail_out = room.size();
    const lzma_ret rc = lzma_code(&xs, in.at_end() ? LZMA_FINISH : LZMA_RUN);
    out.commit(room.size() - xs.avail_out);
    switch (rc) {
      case LZMA_STREAM_END: return true;
      case LZMA_OK: break;
      case LZMA_BUF_ERROR: return fail(EINVAL, "truncated xz data", path);
      case LZMA_MEMLIMIT_ERROR:
        return fail(ENOMEM,
                    "xz data needs " + std::to_string((lzma_memusage(&xs) + (1 << 20) - 1) >> 20) +
                        " MiB of memory to decompress, more than the " + std::to_string(kXzMemLimit >> 20) +
                        " MiB allowed",
                    path);
      case LZMA_MEM_ERROR: return fail(ENOMEM, "out of memory decompressing xz data", path);
      default: return fail(EINVAL, "corrupt xz data", path);
    }
    if (auto ok = too_big(out, o, "xz", path); !ok) return ok;
    if (out.done()) return false;
  }
}

Result<bool> unzstd_stream(ByteSource& in, ByteSink& out, const StreamOptions& o, const std::string& path) {
  CHandle<ZSTD_DStream, ZSTD_freeDStream> ds(ZSTD_createDStream());
  if (!ds) return fail(ENOMEM, "libzstd init failed", path);
  ZSTD_initDStream(ds.get());
  ZSTD_DCtx_setParameter(ds.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax);
  ZSTD_inBuffer ib{nullptr, 0, 0};
  for (;;) {
    if (ib.pos == ib.size && !in.at_end()) {
      auto block = in.next();
      if (!block) return tl::unexpected(block.error());
      ib = ZSTD_inBuffer{block->data(), block->size(), 0};
    }
    const std::span<char> room = out.space();
    ZSTD_outBuffer ob{room.data(), room.size(), 0};
    const size_t before = ib.pos;
    const size_t rc = ZSTD_decompressStream(ds.get(), &ob, &ib);
    if (ZSTD_isError(rc)) {
      if (ZSTD_getErrorCode(rc) == ZSTD_error_frameParameter_windowTooLarge)
        return fail(ENOMEM, "zstd data needs a window larger than 128 MiB", path);
      return fail(EINVAL, std::string("corrupt zstd data: ") + ZSTD_getErrorName(rc), path);
    }
    out.commit(ob.pos);
    // rc 0: the end of a frame; another may follow in a whole file.
    if (rc == 0 && (!o.concatenated || (ib.pos == ib.size && in.at_end()))) return true;
    if (rc != 0 && ob.pos == 0 && before == ib.pos && ib.pos == ib.size && in.at_end())
      return fail(EINVAL, "truncated zstd data", path);
    if (auto ok = too_big(out, o, "zstd", path); !ok) return ok;
    if (out.done()) return false;
  }
}

// A whole buffer as one block.
class WholeSource final : public ByteSource {
 public:
  explicit WholeSource(std::string_view bytes) : bytes_(bytes) {}
  bool at_end() const override { return taken_; }
  Result<std::string_view> next() override {
    if (taken_) return std::string_view();
    taken_ = true;
    return bytes_;
  }

 private:
  std::string_view bytes_;
  bool taken_ = false;
};

// Output collected in a string that grows as needed.
class StringSink final : public ByteSink {
 public:
  explicit StringSink(size_t expect) { out_.resize(std::max<size_t>(expect, kMinRoom)); }
  std::span<char> space() override {
    if (out_.size() - used_ < kMinRoom) out_.resize(std::max(out_.size() * 2, used_ + kMinRoom));
    return {out_.data() + used_, out_.size() - used_};
  }
  void commit(size_t n) override { used_ += n; }
  uint64_t total() const override { return used_; }
  std::string take() && {
    out_.resize(used_);
    return std::move(out_);
  }

 private:
  static constexpr size_t kMinRoom = size_t{1} << 16;
  std::string out_;
  size_t used_ = 0;
};

}  // namespace

Compression detect_compression(std::string_view b) noexcept {
  if (b.size() >= 2 && b[0] == '\x1f' && b[1] == '\x8b') return Compression::Gzip;
  if (b.size() >= 6 && b.substr(0, 6) == std::string_view("\xfd" "7zXZ\0", 6)) return Compression::Xz;
  if (b.size() >= 4 && b.substr(0, 4) == std::string_view("\x28\xb5\x2f\xfd", 4)) return Compression::Zstd;
  return Compression::None;
}

std::string_view compression_name(Compression c) noexcept {
  switch (c) {
    case Compression::Gzip: return "gzip";
    case Compression::Xz: return "xz";
    case Compression::Zstd: return "zstd";
    case Compression::None: break;
  }
  return "none";
}

Result<std::string> read_file(const std::filesystem::path& path, size_t max_size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno, std::string("cannot open: ") + std::strerror(errno), path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(errno, std::string("cannot stat: ") + std::strerror(errno), path);
  if (S_ISDIR(st.st_mode)) return fail(EISDIR, "is a directory, not a file", path);
  std::string data;
  if (S_ISREG(st.st_mode)) data.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, std::string("read error: ") + std::strerror(errno), path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > max_size)
      return fail(EFBIG, "larger than " + std::to_string(max_size >> 20) + " MiB", path);
  }
  return data;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : map_(std::exchange(o.map_, nullptr)), size_(std::exchange(o.size_, 0)), copy_(std::move(o.copy_)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(map_, size_);
    map_ = std::exchange(o.map_, nullptr);
    size_ = std::exchange(o.size_, 0);
    copy_ = std::move(o.copy_);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (map_) ::munmap(map_, size_);
}

Result<MappedFile> map_file(const std::filesystem::path& path) {
  MappedFile f;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno, std::string("cannot open: ") + std::strerror(errno), path);
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
  if (regular) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) {
      f.map_ = static_cast<char*>(p);
      f.size_ = static_cast<size_t>(st.st_size);
      return f;
    }
  } else {
    ::close(fd);
  }
  // Empty files, pipes, procfs, or a failed mapping: read it.
  auto data = read_file(path);
  if (!data) return tl::unexpected(data.error());
  f.copy_ = std::move(*data);
  return f;
}

Result<bool> decompress_stream(Compression c, ByteSource& in, ByteSink& out, const StreamOptions& options,
                               const std::string& path) {
  switch (c) {
    case Compression::Gzip: return gunzip_stream(in, out, options, path);
    case Compression::Xz: return unxz_stream(in, out, options, path);
    case Compression::Zstd: return unzstd_stream(in, out, options, path);
    case Compression::None: break;
  }
  return fail(EINVAL, "no gzip/xz/zstd magic", path);
}

Result<std::string> decompress(std::string_view bytes, const std::string& path) {
  const Compression c = detect_compression(bytes);
  if (c == Compression::None) return std::string(bytes);
  WholeSource in(bytes);
  StringSink out(bytes.size() * 4);  // modules and symvers compress 3-5x
  auto ended = decompress_stream(c, in, out, {.concatenated = true}, path);
  if (!ended) return tl::unexpected(ended.error());
  return std::move(out).take();
}

Result<std::string> read_decompressed(const std::filesystem::path& path) {
  auto raw = read_file(path);
  if (!raw) return tl::unexpected(raw.error());
  if (detect_compression(*raw) == Compression::None) return raw;
  return decompress(*raw, path.string());
}

}  // namespace agent::kabi
