#include "kabi/file_io.h"

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

namespace agent::kabi {
namespace {

// A decompressed module or symvers file larger than this is not something the kernel
// would load either; refusing it keeps a decompression bomb from exhausting memory.
constexpr size_t kMaxDecompressed = size_t{1} << 30;

Result<std::string> gunzip(std::string_view in, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return fail(ENOMEM, "zlib init failed", path);
  std::string out;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  char buf[1 << 16];
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return fail(EINVAL, std::string("corrupt gzip data: ") + (zs.msg ? zs.msg : "truncated"), path);
    }
    out.append(buf, sizeof buf - zs.avail_out);
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return fail(EINVAL, "truncated gzip data", path);
    }
    if (out.size() > kMaxDecompressed) {
      inflateEnd(&zs);
      return fail(EFBIG, "gzip data decompresses to more than 1 GiB", path);
    }
  }
  inflateEnd(&zs);
  return out;
}

// Module and symvers xz files use dictionaries of 1-8 MiB; a stream asking for more is refused
// instead of letting liblzma allocate whatever its header says.
constexpr uint64_t kXzMemLimit = uint64_t{256} << 20;

Result<std::string> unxz(std::string_view in, const std::string& path) {
  lzma_stream xs = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&xs, kXzMemLimit, LZMA_CONCATENATED) != LZMA_OK)
    return fail(ENOMEM, "liblzma init failed", path);
  std::string out;
  xs.next_in = reinterpret_cast<const uint8_t*>(in.data());
  xs.avail_in = in.size();
  uint8_t buf[1 << 16];
  lzma_ret rc = LZMA_OK;
  while (rc != LZMA_STREAM_END) {
    xs.next_out = buf;
    xs.avail_out = sizeof buf;
    rc = lzma_code(&xs, xs.avail_in == 0 ? LZMA_FINISH : LZMA_RUN);
    out.append(reinterpret_cast<char*>(buf), sizeof buf - xs.avail_out);
    if (rc != LZMA_OK && rc != LZMA_STREAM_END) {
      lzma_end(&xs);
      return fail(EINVAL,
                  rc == LZMA_BUF_ERROR      ? "truncated xz data"
                  : rc == LZMA_MEMLIMIT_ERROR ? "xz data needs more than 256 MiB of memory to decompress"
                                            : "corrupt xz data",
                  path);
    }
    if (out.size() > kMaxDecompressed) {
      lzma_end(&xs);
      return fail(EFBIG, "xz data decompresses to more than 1 GiB", path);
    }
  }
  lzma_end(&xs);
  return out;
}

Result<std::string> unzstd(std::string_view in, const std::string& path) {
  std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> ds(ZSTD_createDStream(), ZSTD_freeDStream);
  if (!ds) return fail(ENOMEM, "libzstd init failed", path);
  ZSTD_initDStream(ds.get());
  std::string out;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  size_t rc = 1;
  while (ib.pos < ib.size || rc != 0) {
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    size_t before = ib.pos;
    rc = ZSTD_decompressStream(ds.get(), &ob, &ib);
    if (ZSTD_isError(rc)) return fail(EINVAL, std::string("corrupt zstd data: ") + ZSTD_getErrorName(rc), path);
    out.append(buf.data(), ob.pos);
    if (out.size() > kMaxDecompressed) return fail(EFBIG, "zstd data decompresses to more than 1 GiB", path);
    if (rc != 0 && ib.pos == ib.size && ob.pos == 0 && before == ib.pos)
      return fail(EINVAL, "truncated zstd data", path);
  }
  return out;
}

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

Result<std::string> decompress(std::string bytes, const std::string& path) {
  switch (detect_compression(bytes)) {
    case Compression::Gzip: return gunzip(bytes, path);
    case Compression::Xz: return unxz(bytes, path);
    case Compression::Zstd: return unzstd(bytes, path);
    case Compression::None: break;
  }
  return bytes;
}

Result<std::string> read_decompressed(const std::filesystem::path& path) {
  auto raw = read_file(path);
  if (!raw) return tl::unexpected(raw.error());
  return decompress(std::move(*raw), path.string());
}

}  // namespace agent::kabi
