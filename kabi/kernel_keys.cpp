#include "kabi/kernel_keys.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "kabi/file_io.h"
#include "kabi/handles.h"
#include "kabi/signature.h"
#include "kabi/text.h"

namespace agent::kabi {
namespace {

constexpr size_t kModSigSize = 12;  // sizeof(struct module_signature)

// The decompressed kernel is scanned this many bytes at a time.
constexpr size_t kDefaultChunk = size_t{1} << 20;
// The compressed image is read this many bytes at a time.
constexpr size_t kReadBlock = size_t{256} << 10;
// A decompressed vmlinux is tens of MiB; stop decompressing past this (decompression bomb: it
// would cost time, not memory).
constexpr uint64_t kMaxVmlinux = uint64_t{256} << 20;  // a vmlinux is 40-100 MB
// A hostile image full of compression magics costs a bounded amount of work: so many streams
// tried, so much decompressed in all.
constexpr size_t kMaxStreamsTried = 16;
constexpr uint64_t kMaxScanOutput = uint64_t{512} << 20;

// The largest certificate the scan finds: SEQUENCE with a two-byte length (30 82 hi lo) and up
// to 65535 bytes of content. A certificate with a three-byte length (30 83, >= 64 KiB) is no
// module-signing certificate, and the kernel's own are 1-2 KiB.
constexpr size_t kMaxCertificate = 4 + 0xffff;

bool is_elf(std::string_view b) { return b.size() >= 4 && b.substr(0, 4) == "\x7f" "ELF"; }

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::vector<std::string> key_ids_of(const X509* cert) {
  std::vector<std::string> ids;
  if (const ASN1_INTEGER* serial = X509_get0_serialNumber(cert))
    ids.push_back(hex_bytes(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial))));
  // X509_get0_subject_key_id caches the extensions; it takes a non-const X509.
  if (const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(const_cast<X509*>(cert)))
    ids.push_back(hex_bytes(ASN1_STRING_get0_data(skid), static_cast<size_t>(ASN1_STRING_length(skid))));
  return ids;
}

// Key ids to find among the certificates, each once.
class IdSet {
 public:
  explicit IdSet(const std::vector<std::string>& ids) {
    for (const std::string& id : ids)
      if (!id.empty()) ids_.push_back(canonical_key_id(id));
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
    matched_.assign(ids_.size(), false);
    remaining_ = ids_.size();
  }
  // A certificate's ids (certificate_key_ids).
  void match(const std::vector<std::string>& cert_ids) {
    if (remaining_ == 0) return;
    for (const std::string& raw : cert_ids) {
      const std::string id = canonical_key_id(raw);
      const auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
      if (it == ids_.end() || *it != id) continue;
      const auto i = static_cast<size_t>(it - ids_.begin());
      if (!matched_[i]) {
        matched_[i] = true;
        --remaining_;
      }
    }
  }
  // Every id matched (false when there is none).
  bool done() const { return remaining_ == 0 && !ids_.empty(); }

 private:
  std::vector<std::string> ids_;  // sorted, canonical, non-empty
  std::vector<bool> matched_;
  size_t remaining_ = 0;
};

// ---- scanning the decompressed kernel for certificates, a chunk at a time --------------------
// Every DER X.509 certificate: SEQUENCE (30 82 len16) holding a SEQUENCE (30 82) - the
// tbsCertificate - that d2i_X509 accepts, consuming exactly the outer length.
//
// The producer (a decompressor or a file read) writes into space() and commit()s; each time
// the chunk is full it is scanned. The buffer is [tail | chunk]: the tail keeps the last
// kMaxCertificate - 1 bytes of what came before, so a certificate starting in one chunk and
// ending in a later one is parsed whole. Positions are decided only once a whole certificate
// starting there would be in the buffer; the rest wait for the next chunk or finish().
class CertificateScanner final : public ByteSink {
 public:
  static constexpr size_t kTail = kMaxCertificate - 1;
  static size_t buffer_size(size_t chunk) { return kTail + std::max<size_t>(chunk, 1); }

  // `buf` holds buffer_size(chunk) bytes, whatever they are (a scanner never reads what it
  // wasn't given). `elf_only`: stop early only if the output starts like an ELF (a stream found
  // by its magic alone may be something else, which is then read to its end).
  CertificateScanner(char* buf, size_t chunk, const CertificateScanStop& stop, bool elf_only = false)
      : buf_(buf), size_(buffer_size(chunk)), signers_(stop.wanted_key_ids), kernel_keys_(stop.kernel_key_ids),
        elf_only_(elf_only) {}

  // Where the producer writes next: the rest of the current chunk, never empty.
  std::span<char> space() override { return {buf_ + filled_, size_ - filled_}; }

  void commit(size_t n) override {
    for (size_t i = 0; i < n && head_.size() < 4; ++i) head_ += buf_[filled_ + i];
    filled_ += n;
    total_ += n;
    if (filled_ == size_) {
      scan(false);
      // Keep the last kTail bytes; positions move down by a chunk.
      const size_t shift = filled_ - kTail;
      std::memmove(buf_, buf_ + shift, kTail);
      filled_ = kTail;
      next_ -= shift;
      valid_ -= std::min(valid_, shift);
    }
  }

  // The end of the kernel: scans what is left.
  void finish() { scan(true); }

  // Every wanted key id, or every key of the kernel's, has been found (false when none is
  // wanted: then everything is read).
  bool done() const override { return (signers_.done() || kernel_keys_.done()) && (!elf_only_ || is_elf(head_)); }
  // Why the scan stopped before the end: every kernel key matched (else the signers).
  bool kernel_keys_done() const { return kernel_keys_.done(); }

  uint64_t total() const override { return total_; }
  // The first bytes produced (up to 4), to tell an ELF.
  const std::string& head() const { return head_; }
  std::vector<std::string> take_certificates() { return std::move(certs_); }

 private:
  void scan(bool final) {
    const std::string_view blob(buf_, filled_);
    // Not final: only positions where a whole certificate would fit before filled_.
    const size_t limit = final ? filled_ : filled_ - kTail;
    const auto* base = reinterpret_cast<const unsigned char*>(blob.data());
    size_t at = next_;
    for (;;) {
      at = blob.find("\x30\x82", at);
      if (at == std::string_view::npos || at >= limit) break;
      if (blob.size() - at < 16) break;
      const unsigned char* p = base + at;
      const size_t len = size_t{p[2]} << 8 | p[3];
      const size_t tbs_len = size_t{p[6]} << 8 | p[7];
      if (p[4] != 0x30 || p[5] != 0x82 || len > blob.size() - at - 4 || tbs_len + 4 > len ||
          (p[8] != 0xa0 && p[8] != 0x02)) {  // [0] version (v3) or the serial number (v1)
        ++at;
        continue;
      }
      const unsigned char* q = p;
      CHandle<X509, X509_free> cert(d2i_X509(nullptr, &q, static_cast<long>(len + 4)));
      if (!cert || static_cast<size_t>(q - p) != len + 4) {
        ERR_clear_error();
        ++at;
        continue;
      }
      std::string der(blob.substr(at, len + 4));
      if (seen_.insert(der).second) {
        certs_.push_back(std::move(der));
        const std::vector<std::string> ids = key_ids_of(cert.get());
        signers_.match(ids);
        kernel_keys_.match(ids);
      }
      at += len + 4;  // certificates don't overlap; resume after this one
    }
    // Resume at the first undecided position: a "30 82" at or past the limit, the end of the
    // last certificate, or the limit (a 30 at the very end may begin a certificate with the next
    // chunk's 82) - but never before the data (while less than kTail bytes have come).
    next_ = std::max(at == std::string_view::npos ? limit : std::max(at, limit), valid_);
  }

  char* buf_;
  size_t size_;
  size_t filled_ = kTail;  // end of the data in buf_
  size_t valid_ = kTail;   // start of the data in buf_
  size_t next_ = kTail;    // first position not yet decided
  uint64_t total_ = 0;
  std::string head_;
  std::vector<std::string> certs_;
  std::set<std::string, std::less<>> seen_;
  IdSet signers_;
  IdSet kernel_keys_;
  bool elf_only_;
};

// ---- reading the image ---------------------------------------------------------------------
// A regular file is read where needed (pread); anything else (a pipe) is read whole first.
class Image {
 public:
  static Result<Image> open(const std::filesystem::path& path) {
    Fd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!fd) return fail(errno, std::string("cannot open: ") + std::strerror(errno), path.string());
    auto file = open_regular(fd, path.string());
    if (!file) return tl::unexpected(file.error());
    return from_fd(std::move(*file), path.string());
  }
  // An open regular file (see open_regular).
  static Result<Image> from_fd(Fd fd, std::string name) {
    Image img;
    img.path_ = std::move(name);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail(errno, std::string("cannot stat: ") + std::strerror(errno), img.path_);
    if (!S_ISREG(st.st_mode)) return fail(EINVAL, "not a regular file", img.path_);
    if (static_cast<uint64_t>(st.st_size) > kMaxImageSize)
      return fail(EFBIG, "is " + std::to_string(static_cast<uint64_t>(st.st_size) >> 20) + " MiB, more than the " +
                             std::to_string(kMaxImageSize >> 20) + " MiB a kernel image may be",
                  img.path_);
    img.size_ = static_cast<uint64_t>(st.st_size);
    img.fd_ = fd.release();
    return img;
  }

  Image() = default;
  Image(Image&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), size_(o.size_), in_memory_(o.in_memory_), mem_(std::move(o.mem_)),
        path_(std::move(o.path_)) {}
  Image& operator=(Image&&) = delete;
  ~Image() {
    if (fd_ >= 0) ::close(fd_);
  }

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Up to n bytes at `offset` (fewer only at the end of the file).
  Result<size_t> read_at(uint64_t offset, char* out, size_t n) const {
    if (offset >= size_) return size_t{0};
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
    if (in_memory_) {
      std::memcpy(out, mem_.data() + offset, n);
      return n;
    }
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, out + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return fail(errno, std::string("read error: ") + std::strerror(errno), path_);
      }
      if (r == 0) break;  // the file shrank
      got += static_cast<size_t>(r);
    }
    return got;
  }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  bool in_memory_ = false;
  std::string mem_;
  std::string path_;
};

// Bytes [begin, end) of the image, a block at a time.
class Source final : public ByteSource {
 public:
  Source(const Image& image, uint64_t begin, uint64_t end, std::string& buf)
      : image_(image), pos_(begin), end_(std::min(end, image.size())), buf_(buf) {}

  bool at_end() const override { return pos_ >= end_; }

  // The next block (empty at the end).
  Result<std::string_view> next() override {
    if (at_end()) return std::string_view();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf_.size(), end_ - pos_));
    auto got = image_.read_at(pos_, buf_.data(), want);
    if (!got) return tl::unexpected(got.error());
    if (*got < want) end_ = pos_ + *got;  // the file shrank: what is there is all there is
    pos_ += *got;
    return std::string_view(buf_.data(), *got);
  }

 private:
  const Image& image_;
  uint64_t pos_, end_;
  std::string& buf_;
};

// Decompresses the stream at [begin, end) of the image through `sink`.
Result<bool> decompress_at(const Image& image, uint64_t begin, uint64_t end, std::string& read_buf,
                           CertificateScanner& sink) {
  char magic[8] = {};
  auto got = image.read_at(begin, magic, sizeof magic);
  if (!got) return tl::unexpected(got.error());
  const Compression c = detect_compression(std::string_view(magic, std::min<size_t>(*got, end - begin)));
  Source in(image, begin, end, read_buf);
  // One stream: a bzImage payload is the compressed vmlinux followed by its 4-byte size, and a
  // scan of the image finds magics with anything behind them.
  return decompress_stream(c, in, sink, {.concatenated = false, .max_output = kMaxVmlinux}, image.path());
}

uint32_t le32(std::string_view b, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data() + at);
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Offsets of every gzip, xz and zstd magic in the image, in order.
Result<std::vector<uint64_t>> find_magics(const Image& image, std::string& read_buf) {
  static constexpr std::string_view kMagics[] = {
      std::string_view("\x1f\x8b\x08", 3), std::string_view("\xfd" "7zXZ\0", 6), std::string_view("\x28\xb5\x2f\xfd", 4)};
  constexpr size_t kKeep = 5;  // longest magic - 1: a magic across two blocks is found whole
  std::vector<uint64_t> offsets;
  std::string window;  // the last kKeep bytes of the previous block + this block
  uint64_t window_at = 0;  // image offset of window[0]
  for (uint64_t pos = 0; pos < image.size();) {
    auto got = image.read_at(pos, read_buf.data(), read_buf.size());
    if (!got) return tl::unexpected(got.error());
    if (*got == 0) break;
    const size_t keep = std::min(window.size(), kKeep);
    window.erase(0, window.size() - keep);
    window_at = pos - keep;
    window.append(read_buf.data(), *got);
    pos += *got;
    for (std::string_view magic : kMagics)
      for (size_t at = window.find(magic); at != std::string::npos; at = window.find(magic, at + 1))
        if (at + magic.size() > keep) offsets.push_back(window_at + at);  // not found before
  }
  std::sort(offsets.begin(), offsets.end());
  return offsets;
}

detail::KernelCertificateScan result_of(CertificateScanner& sink, bool ended) {
  if (ended) sink.finish();
  detail::KernelCertificateScan r;
  r.kernel_bytes = sink.total();
  r.stopped_early = !ended;
  r.kernel_keys_found = !ended && sink.kernel_keys_done();
  r.certificates = sink.take_certificates();
  return r;
}

// The uncompressed kernel inside the image, scanned: the image itself if it is an ELF, else the
// payload the x86 boot protocol (2.08+) points at, else the first gzip/xz/zstd stream anywhere
// in the image that decompresses (preferring one that yields an ELF, as vmlinux.bin is).
Result<detail::KernelCertificateScan> scan_image(const Image& image, const CertificateScanStop& wanted,
                                                 size_t chunk) {
  const std::string& path = image.path();
  std::string header(0x250, '\0');
  auto got = image.read_at(0, header.data(), header.size());
  if (!got) return tl::unexpected(got.error());
  header.resize(*got);

  std::string read_buf(kReadBlock, '\0');
  // One scan buffer for every attempt (uninitialized: the scanner reads only what it is given).
  const std::unique_ptr<char[]> scan_buf(new char[CertificateScanner::buffer_size(chunk)]);

  if (is_elf(header)) {
    CertificateScanner sink(scan_buf.get(), chunk, wanted);
    for (uint64_t pos = 0; !sink.done();) {
      const std::span<char> room = sink.space();
      auto n = image.read_at(pos, room.data(), room.size());
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) break;
      pos += *n;
      sink.commit(*n);
    }
    return result_of(sink, !sink.done());
  }

  std::optional<Error> payload_error;  // the boot header's payload didn't decompress
  // struct setup_header: boot_flag 0xAA55 at 0x1fe, "HdrS" at 0x202, version at 0x206,
  // setup_sects at 0x1f1, payload_offset/payload_length at 0x248/0x24c. The payload ends with
  // the uncompressed size (le32); it is not needed (nor trusted) here.
  if (header.size() >= 0x250 && header.compare(0x202, 4, "HdrS") == 0) {
    const unsigned version = static_cast<unsigned char>(header[0x206]) | unsigned{static_cast<unsigned char>(header[0x207])} << 8;
    uint64_t setup_sects = static_cast<unsigned char>(header[0x1f1]);
    if (setup_sects == 0) setup_sects = 4;
    if (version >= 0x208) {
      const uint64_t start = (setup_sects + 1) * 512 + le32(header, 0x248);
      const uint64_t length = le32(header, 0x24c);
      if (length >= 4 && start < image.size() && length <= image.size() - start) {
        CertificateScanner sink(scan_buf.get(), chunk, wanted);
        auto ended = decompress_at(image, start, start + length, read_buf, sink);
        if (ended && sink.total() > 0) return result_of(sink, *ended);
        if (!ended) payload_error = ended.error();
      }
    }
  }

  // Scan for magics. Try each occurrence in image order. A stream that is no ELF is read to its
  // end (it must decompress, as a whole, to be taken) and kept in case no ELF turns up.
  auto offsets = find_magics(image, read_buf);
  if (!offsets) return tl::unexpected(offsets.error());
  std::optional<detail::KernelCertificateScan> first_non_elf;
  Error last_error{EINVAL, "no gzip, xz or zstd stream in the image", path};
  size_t tried = 0;
  uint64_t produced = 0;
  for (uint64_t at : *offsets) {
    if (tried++ == kMaxStreamsTried || produced > kMaxScanOutput) {
      last_error = Error{EFBIG, "gave up after " + std::to_string(tried - 1) + " compressed streams (" +
                                    std::to_string(produced >> 20) + " MiB decompressed)", path};
      break;
    }
    CertificateScanner sink(scan_buf.get(), chunk, wanted, /*elf_only=*/true);
    auto ended = decompress_at(image, at, image.size(), read_buf, sink);
    produced += sink.total();
    if (!ended) {
      last_error = ended.error();
      continue;
    }
    if (sink.total() == 0) continue;
    if (is_elf(sink.head())) return result_of(sink, *ended);
    if (!first_non_elf) first_non_elf = result_of(sink, *ended);
  }
  if (first_non_elf) return std::move(*first_non_elf);
  // Why the payload the boot header names failed says most; else why the last stream did.
  if (payload_error) return fail(payload_error->code, "cannot decompress the kernel payload: " + payload_error->message, path);
  return fail(last_error.code, "cannot find the compressed kernel in the image (" + last_error.message + ")", path);
}

Result<std::vector<std::string>> extract(const std::filesystem::path& vmlinuz, const std::vector<std::string>& wanted) {
  auto scan = detail::scan_kernel_certificates(vmlinuz, {.wanted_key_ids = wanted, .kernel_key_ids = {}}, kDefaultChunk);
  if (!scan) return tl::unexpected(scan.error());
  if (scan->certificates.empty()) return fail(ENOKEY, "no X.509 certificate in the kernel image", vmlinuz.string());
  return std::move(scan->certificates);
}

// sk_X509_free is a macro; the stack holds borrowed certificates.
void free_x509_stack(STACK_OF(X509) * s) { sk_X509_free(s); }

}  // namespace

namespace detail {

Result<KernelCertificateScan> scan_kernel_certificates(const std::filesystem::path& vmlinuz,
                                                       const CertificateScanStop& stop, size_t chunk_size) {
  init_crypto();
  auto image = Image::open(vmlinuz);
  if (!image) return tl::unexpected(image.error());
  return scan_image(*image, stop, chunk_size);
}

}  // namespace detail

Result<std::vector<std::string>> extract_kernel_certificates(const std::filesystem::path& vmlinuz) {
  return extract(vmlinuz, {});
}

Result<std::vector<std::string>> extract_kernel_certificates(const std::filesystem::path& vmlinuz,
                                                             const std::vector<std::string>& wanted_key_ids) {
  return extract(vmlinuz, wanted_key_ids);
}

std::string canonical_key_id(std::string_view hex) {
  while (hex.size() > 2 && hex.substr(0, 2) == "00") hex.remove_prefix(2);
  return lower(std::string(hex));
}

std::vector<std::string> certificate_key_ids(std::string_view der) {
  init_crypto();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  CHandle<X509, X509_free> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) {
    ERR_clear_error();
    return {};
  }
  return key_ids_of(cert.get());
}

std::string_view signature_check_name(SignatureCheck c) noexcept {
  switch (c) {
    case SignatureCheck::Verified: return "verified";
    case SignatureCheck::BadSignature: return "bad-signature";
    case SignatureCheck::UnknownKey: return "unknown-key";
    case SignatureCheck::Unsigned: return "unsigned";
    case SignatureCheck::Unsupported: return "unsupported";
    case SignatureCheck::Malformed: return "malformed";
  }
  return "?";
}

SignatureCheck check_module_signature(std::string_view file, const std::vector<std::string>& certs_der) {
  init_crypto();
  const SignatureTrailer trailer = parse_signature_trailer(file);
  switch (trailer.signature.state) {
    case Signature::State::None: return SignatureCheck::Unsigned;
    case Signature::State::Unsupported: return SignatureCheck::Unsupported;
    case Signature::State::Malformed: return SignatureCheck::Malformed;
    case Signature::State::Present: break;
  }
  // pkcs7_verify() refuses these for a module before it looks for the key (EKEYREJECTED).
  if (!trailer.signature.content_type.empty() || trailer.signature.signed_attributes)
    return SignatureCheck::BadSignature;
  const std::string_view image = file.substr(0, trailer.image_size);
  const std::string_view blob =
      file.substr(trailer.image_size, file.size() - kSignatureMagic.size() - kModSigSize - trailer.image_size);

  const auto* p = reinterpret_cast<const unsigned char*>(blob.data());
  CHandle<CMS_ContentInfo, CMS_ContentInfo_free> cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(blob.size())));
  STACK_OF(CMS_SignerInfo)* infos = cms ? CMS_get0_SignerInfos(cms.get()) : nullptr;
  if (!infos || sk_CMS_SignerInfo_num(infos) < 1) {
    ERR_clear_error();
    return SignatureCheck::Malformed;
  }

  std::vector<CHandle<X509, X509_free>> certs;
  for (const std::string& der : certs_der) {
    const auto* q = reinterpret_cast<const unsigned char*>(der.data());
    if (X509* x = d2i_X509(nullptr, &q, static_cast<long>(der.size()))) certs.emplace_back(x);
  }
  ERR_clear_error();

  // The kernel (pkcs7_validate_trust) looks each signer up in the keyring by its id - issuer +
  // serial, or subject key id - and verifies against that key. sign-file makes one signer.
  CHandle<STACK_OF(X509), free_x509_stack> signers(sk_X509_new_null());
  if (!signers) return SignatureCheck::Malformed;
  int known = 0;
  const int n = sk_CMS_SignerInfo_num(infos);
  for (int i = 0; i < n; ++i) {
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, i);
    for (const auto& cert : certs) {
      if (CMS_SignerInfo_cert_cmp(si, cert.get()) == 0) {
        sk_X509_push(signers.get(), cert.get());  // not owned by the stack
        ++known;
        break;
      }
    }
  }
  if (known == 0) return SignatureCheck::UnknownKey;
  // A module with several signers, only some of them known, is not something sign-file makes;
  // CMS_verify needs every signer's certificate, so it is reported as an unknown key.
  if (known < n) return SignatureCheck::UnknownKey;

  // CMS_verify copies a memory BIO it is given into a new one, and loses that copy when it
  // cannot set the signed data up (OpenSSL 3.0, e.g. a digest algorithm it does not know: found
  // by fuzz_signature as a leak). A buffer BIO in front is no memory BIO: read through, never
  // copied.
  CHandle<BIO, BIO_free_all> content(BIO_new(BIO_f_buffer()));
  BIO* bytes = BIO_new_mem_buf(image.data(), static_cast<int>(image.size()));
  if (!content || !bytes) {
    BIO_free(bytes);
    return SignatureCheck::Malformed;
  }
  BIO_push(content.get(), bytes);
  const int ok = CMS_verify(cms.get(), signers.get(), nullptr, content.get(), nullptr,
                            CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY);
  ERR_clear_error();
  return ok == 1 ? SignatureCheck::Verified : SignatureCheck::BadSignature;
}

std::vector<std::string> signer_key_ids(const std::vector<ModuleInfo>& set) {
  std::vector<std::string> signers;
  for (const auto& m : set)
    if (m.signature.state == Signature::State::Present && !m.signature.key_id.empty())
      signers.push_back(m.signature.key_id);
  return signers;
}

Result<void> check_module_signatures(std::vector<ModuleInfo>& set, const std::vector<std::string>& certs) {
  for (auto& m : set) {
    if (m.signature.state != Signature::State::Present) continue;
    auto bytes = read_decompressed(m.path);  // the signature covers the decompressed module
    if (!bytes) return tl::unexpected(bytes.error());
    m.signature.key_check = key_check_of(check_module_signature(*bytes, certs));
    m.signature.module_sha256 = sha256_hex(*bytes);
  }
  return {};
}

std::string_view extent_name(KernelCertificates::Extent e) noexcept {
  switch (e) {
    case KernelCertificates::Extent::WholeImage: return "whole-image";
    case KernelCertificates::Extent::Signers: return "signers";
    case KernelCertificates::Extent::KernelKeys: return "kernel-keys";
  }
  return "?";
}

Result<KernelCertificates> scan_kernel_image(Fd kernel_image, const std::string& name, const CertificateScanStop& stop) {
  init_crypto();
  auto image = Image::from_fd(std::move(kernel_image), name);
  if (!image) return tl::unexpected(image.error());
  auto scan = scan_image(*image, stop, kDefaultChunk);
  if (!scan) return tl::unexpected(scan.error());
  if (scan->certificates.empty()) return fail(ENOKEY, "no X.509 certificate in the kernel image", name);
  KernelCertificates r;
  r.certificates = std::move(scan->certificates);
  r.kernel_bytes = scan->kernel_bytes;
  r.extent = !scan->stopped_early      ? KernelCertificates::Extent::WholeImage
             : scan->kernel_keys_found ? KernelCertificates::Extent::KernelKeys
                                       : KernelCertificates::Extent::Signers;
  return r;
}

bool certificates_suffice(const KernelCertificates& scan, const CertificateScanStop& stop) {
  if (scan.extent == KernelCertificates::Extent::WholeImage) return true;
  IdSet signers(stop.wanted_key_ids), kernel_keys(stop.kernel_key_ids);
  for (const std::string& der : scan.certificates) {
    const std::vector<std::string> ids = certificate_key_ids(der);
    signers.match(ids);
    kernel_keys.match(ids);
  }
  return signers.done() || kernel_keys.done();
}

Result<std::vector<std::string>> verify_module_signatures(std::vector<ModuleInfo>& set,
                                                          const std::filesystem::path& kernel_image) {
  const auto signers = signer_key_ids(set);
  if (signers.empty()) return std::vector<std::string>{};
  auto certs = extract_kernel_certificates(kernel_image, signers);
  if (!certs) return tl::unexpected(certs.error());
  if (auto ok = check_module_signatures(set, *certs); !ok) return tl::unexpected(ok.error());
  return certs;
}

Result<std::vector<std::string>> verify_module_signatures(std::vector<ModuleInfo>& set, Fd kernel_image,
                                                          const std::string& name) {
  const auto signers = signer_key_ids(set);
  if (signers.empty()) return std::vector<std::string>{};
  auto scan = scan_kernel_image(std::move(kernel_image), name, {.wanted_key_ids = signers, .kernel_key_ids = {}});
  if (!scan) return tl::unexpected(scan.error());
  if (auto ok = check_module_signatures(set, scan->certificates); !ok) return tl::unexpected(ok.error());
  return std::move(scan->certificates);
}

Signature::KeyCheck key_check_of(SignatureCheck c) noexcept {
  using KC = Signature::KeyCheck;
  switch (c) {
    case SignatureCheck::Verified: return KC::Verified;
    case SignatureCheck::BadSignature: return KC::BadSignature;
    case SignatureCheck::UnknownKey: return KC::UnknownKey;
    case SignatureCheck::Unsigned:
    case SignatureCheck::Unsupported:
    case SignatureCheck::Malformed: break;
  }
  return KC::NotChecked;
}

}  // namespace agent::kabi
