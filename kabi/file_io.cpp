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

// Output collected in a string that grows as needed, never much past `cap` (the decoder stops
// with EFBIG once more than the cap was committed); with a `magic`, decoding stops as soon as
// the first bytes show the output is not what it must be.
class StringSink final : public ByteSink {
 public:
  StringSink(size_t expect, size_t cap, std::string_view magic)
      : cap_(cap), magic_(magic) { out_.resize(std::max<size_t>(expect, kMinRoom)); }
  std::span<char> space() override {
    if (out_.size() - used_ < kMinRoom)
      out_.resize(std::min(std::max(out_.size() * 2, used_ + kMinRoom), std::max(cap_, used_) + kMinRoom));
    return {out_.data() + used_, out_.size() - used_};
  }
  void commit(size_t n) override { used_ += n; }
  uint64_t total() const override { return used_; }
  bool done() const override { return wrong_magic(); }
  bool wrong_magic() const {
    return used_ >= magic_.size() && std::string_view(out_.data(), magic_.size()) != magic_;
  }
  std::string take() && {
    out_.resize(used_);
    return std::move(out_);
  }

 private:
  static constexpr size_t kMinRoom = size_t{1} << 16;
  size_t cap_;
  std::string_view magic_;
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

namespace {

std::string errno_text(int err) { return std::strerror(err); }

const char* type_name(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

Result<struct stat> stat_fd(const Fd& fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(errno, "cannot stat: " + errno_text(errno), name);
  return st;
}

Result<void> check_size(const struct stat& st, const std::string& name, size_t max_size) {
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > max_size)
    return fail(EFBIG, "is " + std::to_string(static_cast<uint64_t>(st.st_size) >> 20) + " MiB, more than the " +
                           std::to_string(max_size >> 20) + " MiB allowed",
                name);
  return {};
}

}  // namespace

Result<Fd> open_regular(const Fd& path_fd, const std::string& name) {
  auto st = stat_fd(path_fd, name);
  if (!st) return tl::unexpected(st.error());
  if (S_ISDIR(st->st_mode)) return fail(EISDIR, "is a directory, not a file", name);
  if (!S_ISREG(st->st_mode)) return fail(EINVAL, std::string("is ") + type_name(st->st_mode) + ", not a file", name);
  const std::string proc = "/proc/self/fd/" + std::to_string(path_fd.get());
  Fd fd(::open(proc.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    const int err = errno;
    return fail(err, "cannot open: " + errno_text(err) + (err == ENOENT ? " (is /proc mounted?)" : ""), name);
  }
  auto again = stat_fd(fd, name);
  if (!again) return tl::unexpected(again.error());
  if (again->st_dev != st->st_dev || again->st_ino != st->st_ino)
    return fail(EAGAIN, "changed while it was being opened", name);
  return fd;
}

Result<std::string> read_fd(const Fd& fd, const std::string& name, size_t max_size) {
  auto st = stat_fd(fd, name);
  if (!st) return tl::unexpected(st.error());
  if (auto ok = check_size(*st, name, max_size); !ok) return tl::unexpected(ok.error());
  std::string data;
  if (S_ISREG(st->st_mode)) data.reserve(static_cast<size_t>(st->st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "read error: " + errno_text(errno), name);
    }
    if (n == 0) break;
    if (data.size() + static_cast<size_t>(n) > max_size)
      return fail(EFBIG, "larger than the " + std::to_string(max_size >> 20) + " MiB allowed", name);
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

namespace {
Result<Fd> open_path(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) return fail(errno, "cannot open: " + errno_text(errno), path.string());
  return open_regular(fd, path.string());
}
}  // namespace

Result<std::string> read_file(const std::filesystem::path& path, size_t max_size) {
  auto fd = open_path(path);
  if (!fd) return tl::unexpected(fd.error());
  return read_fd(*fd, path.string(), max_size);
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

Result<MappedFile> map_fd(Fd fd, const std::string& name, size_t max_size) {
  MappedFile f;
  auto st = stat_fd(fd, name);
  if (!st) return tl::unexpected(st.error());
  if (auto ok = check_size(*st, name, max_size); !ok) return tl::unexpected(ok.error());
  if (S_ISREG(st->st_mode) && st->st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st->st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p != MAP_FAILED) {
      f.map_ = static_cast<char*>(p);
      f.size_ = static_cast<size_t>(st->st_size);
      return f;
    }
  }
  // Empty files (procfs), or a failed mapping: read it.
  auto data = read_fd(fd, name, max_size);
  if (!data) return tl::unexpected(data.error());
  f.copy_ = std::move(*data);
  return f;
}

Result<MappedFile> map_file(const std::filesystem::path& path, size_t max_size) {
  auto fd = open_path(path);
  if (!fd) return tl::unexpected(fd.error());
  return map_fd(std::move(*fd), path.string(), max_size);
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

Result<std::string> decompress(std::string_view bytes, const std::string& path, size_t max_output,
                               std::string_view magic) {
  const Compression c = detect_compression(bytes);
  if (c == Compression::None) {
    if (bytes.size() > max_output)
      return fail(EFBIG, "larger than the " + std::to_string(max_output >> 20) + " MiB allowed", path);
    return std::string(bytes);
  }
  WholeSource in(bytes);
  // Modules and symvers compress 3-5x; the sink never grows past the cap.
  StringSink out(std::min(bytes.size() * 4, max_output), max_output, magic);
  auto ended = decompress_stream(c, in, out, {.concatenated = true, .max_output = max_output}, path);
  // Too much, or the wrong kind, says more than the decoder's complaint about what followed;
  // and a stream's last block ends it before the decoder's own size check.
  if (out.total() > max_output)
    return fail(EFBIG, std::string(compression_name(c)) + " data decompresses to more than " +
                           std::to_string(max_output >> 20) + " MiB", path);
  if (out.wrong_magic()) return fail(ENOEXEC, "decompressed data does not start with the expected magic", path);
  if (!ended) return tl::unexpected(ended.error());
  return std::move(out).take();
}

Result<std::string> read_decompressed(const std::filesystem::path& path, size_t max_size) {
  auto raw = read_file(path, max_size);
  if (!raw) return tl::unexpected(raw.error());
  if (detect_compression(*raw) == Compression::None) return raw;
  return decompress(*raw, path.string(), max_size);
}

}  // namespace agent::kabi
