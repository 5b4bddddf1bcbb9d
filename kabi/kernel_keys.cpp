#include "kabi/kernel_keys.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>

#include <lzma.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <zlib.h>
#include <zstd.h>

#include "kabi/file_io.h"
#include "kabi/handles.h"
#include "kabi/signature.h"

namespace agent::kabi {
namespace {

// A decompressed vmlinux is tens of MiB; refuse to grow past this (decompression bomb).
constexpr size_t kMaxVmlinux = size_t{1} << 30;
constexpr size_t kModSigSize = 12;  // sizeof(struct module_signature)

// ---- decompressing one stream that may be followed by other bytes ---------------------------
// A bzImage payload is the compressed vmlinux followed by its 4-byte size (and a scan of the
// image finds magics with anything behind them), so these stop at the end of the first stream
// and ignore what follows, unlike file_io's whole-file decompressors.

Result<std::string> gunzip_prefix(std::string_view in, size_t size_hint, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return fail(ENOMEM, "zlib init failed", path);
  CHandle<z_stream, inflateEnd> guard(&zs);
  std::string out;
  out.reserve(size_hint);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), UINT32_MAX));
  std::string buf(size_t{1} << 16, '\0');
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    zs.avail_out = static_cast<uInt>(buf.size());
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf.data(), buf.size() - zs.avail_out);
    if (rc == Z_STREAM_END) return out;
    if (rc == Z_BUF_ERROR || (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0))
      return fail(EINVAL, "truncated gzip data", path);
    if (rc != Z_OK) return fail(EINVAL, std::string("corrupt gzip data: ") + (zs.msg ? zs.msg : "?"), path);
    if (out.size() > kMaxVmlinux) return fail(EFBIG, "gzip data decompresses to more than 1 GiB", path);
  }
}

Result<std::string> unxz_prefix(std::string_view in, size_t size_hint, const std::string& path) {
  lzma_stream xs = LZMA_STREAM_INIT;
  // Without LZMA_CONCATENATED the decoder stops at the end of the first stream.
  if (lzma_stream_decoder(&xs, UINT64_MAX, 0) != LZMA_OK) return fail(ENOMEM, "liblzma init failed", path);
  CHandle<lzma_stream, lzma_end> guard(&xs);
  std::string out;
  out.reserve(size_hint);
  xs.next_in = reinterpret_cast<const uint8_t*>(in.data());
  xs.avail_in = in.size();
  std::string buf(size_t{1} << 16, '\0');
  for (;;) {
    xs.next_out = reinterpret_cast<uint8_t*>(buf.data());
    xs.avail_out = buf.size();
    const lzma_ret rc = lzma_code(&xs, LZMA_FINISH);  // all input is there
    out.append(buf.data(), buf.size() - xs.avail_out);
    if (rc == LZMA_STREAM_END) return out;
    if (rc != LZMA_OK) return fail(EINVAL, rc == LZMA_BUF_ERROR ? "truncated xz data" : "corrupt xz data", path);
    if (out.size() > kMaxVmlinux) return fail(EFBIG, "xz data decompresses to more than 1 GiB", path);
  }
}

Result<std::string> unzstd_prefix(std::string_view in, size_t size_hint, const std::string& path) {
  CHandle<ZSTD_DStream, ZSTD_freeDStream> ds(ZSTD_createDStream());
  if (!ds) return fail(ENOMEM, "libzstd init failed", path);
  ZSTD_initDStream(ds.get());
  // The kernel compresses with --ultra -22: allow its 128 MiB window (the default is 8 MiB).
  ZSTD_DCtx_setParameter(ds.get(), ZSTD_d_windowLogMax, 27);
  std::string out;
  out.reserve(size_hint);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  for (;;) {
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    const size_t before = ib.pos;
    const size_t rc = ZSTD_decompressStream(ds.get(), &ob, &ib);
    if (ZSTD_isError(rc)) return fail(EINVAL, std::string("corrupt zstd data: ") + ZSTD_getErrorName(rc), path);
    out.append(buf.data(), ob.pos);
    if (rc == 0) return out;  // end of the first frame
    if (ob.pos == 0 && before == ib.pos) return fail(EINVAL, "truncated zstd data", path);
    if (out.size() > kMaxVmlinux) return fail(EFBIG, "zstd data decompresses to more than 1 GiB", path);
  }
}

Result<std::string> decompress_prefix(std::string_view in, size_t size_hint, const std::string& path) {
  switch (detect_compression(in)) {
    case Compression::Gzip: return gunzip_prefix(in, size_hint, path);
    case Compression::Xz: return unxz_prefix(in, size_hint, path);
    case Compression::Zstd: return unzstd_prefix(in, size_hint, path);
    case Compression::None: break;
  }
  return fail(EINVAL, "no gzip/xz/zstd magic", path);
}

uint32_t le32(std::string_view b, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data() + at);
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

bool is_elf(std::string_view b) { return b.size() >= 4 && b.substr(0, 4) == "\x7f" "ELF"; }

// The uncompressed kernel inside `image`: the image itself if it is an ELF, else the payload
// the x86 boot protocol (2.08+) points at, else the first gzip/xz/zstd stream anywhere in the
// image that decompresses (preferring one that yields an ELF, as vmlinux.bin is).
Result<std::string> uncompressed_kernel(std::string image, const std::string& path) {
  if (is_elf(image)) return image;

  // struct setup_header: boot_flag 0xAA55 at 0x1fe, "HdrS" at 0x202, version at 0x206,
  // setup_sects at 0x1f1, payload_offset/payload_length at 0x248/0x24c.
  if (image.size() > 0x250 && image.compare(0x202, 4, "HdrS") == 0) {
    const unsigned version = static_cast<unsigned char>(image[0x206]) | unsigned{static_cast<unsigned char>(image[0x207])} << 8;
    size_t setup_sects = static_cast<unsigned char>(image[0x1f1]);
    if (setup_sects == 0) setup_sects = 4;
    if (version >= 0x208) {
      const size_t start = (setup_sects + 1) * 512 + le32(image, 0x248);
      const size_t length = le32(image, 0x24c);
      if (length >= 4 && start < image.size() && length <= image.size() - start) {
        const std::string_view payload = std::string_view(image).substr(start, length);
        // The build appends the uncompressed size (le32) to the payload.
        const size_t hint = std::min<size_t>(le32(payload, length - 4), kMaxVmlinux);
        if (auto out = decompress_prefix(payload, hint, path); out && !out->empty()) return out;
      }
    }
  }

  // Scan for magics. Try each occurrence in image order.
  static constexpr std::string_view kMagics[] = {
      std::string_view("\x1f\x8b\x08", 3), std::string_view("\xfd" "7zXZ\0", 6), std::string_view("\x28\xb5\x2f\xfd", 4)};
  std::vector<size_t> offsets;
  for (std::string_view magic : kMagics)
    for (size_t at = image.find(magic); at != std::string::npos; at = image.find(magic, at + 1)) offsets.push_back(at);
  std::sort(offsets.begin(), offsets.end());
  std::optional<std::string> first_non_elf;
  std::string last_error = "no gzip, xz or zstd stream in the image";
  for (size_t at : offsets) {
    auto out = decompress_prefix(std::string_view(image).substr(at), 0, path);
    if (!out) {
      last_error = out.error().message;
      continue;
    }
    if (out->empty()) continue;
    if (is_elf(*out)) return out;
    if (!first_non_elf) first_non_elf = std::move(*out);
  }
  if (first_non_elf) return std::move(*first_non_elf);
  return fail(EINVAL, "cannot find the compressed kernel in the image (" + last_error + ")", path);
}

// Every DER X.509 certificate in `blob`: SEQUENCE (30 82 len16) holding a SEQUENCE (30 82) -
// the tbsCertificate - that d2i_X509 accepts, consuming exactly the outer length.
std::vector<std::string> scan_certificates(std::string_view blob) {
  std::vector<std::string> certs;
  std::set<std::string, std::less<>> seen;
  const auto* base = reinterpret_cast<const unsigned char*>(blob.data());
  for (size_t at = blob.find("\x30\x82"); at != std::string_view::npos; at = blob.find("\x30\x82", at + 1)) {
    if (blob.size() - at < 16) break;
    const unsigned char* p = base + at;
    const size_t len = size_t{p[2]} << 8 | p[3];
    if (p[4] != 0x30 || p[5] != 0x82 || len > blob.size() - at - 4) continue;
    const size_t tbs_len = size_t{p[6]} << 8 | p[7];
    if (tbs_len + 4 > len) continue;
    if (p[8] != 0xa0 && p[8] != 0x02) continue;  // [0] version (v3) or the serial number (v1)
    const unsigned char* q = p;
    CHandle<X509, X509_free> cert(d2i_X509(nullptr, &q, static_cast<long>(len + 4)));
    if (!cert || static_cast<size_t>(q - p) != len + 4) {
      ERR_clear_error();
      continue;
    }
    std::string der(blob.substr(at, len + 4));
    if (seen.insert(der).second) certs.push_back(std::move(der));
    at += len + 3;  // certificates don't overlap; resume after this one
  }
  return certs;
}

// sk_X509_free is a macro; the stack holds borrowed certificates.
void free_x509_stack(STACK_OF(X509) * s) { sk_X509_free(s); }

}  // namespace

Result<std::vector<std::string>> extract_kernel_certificates(const std::filesystem::path& vmlinuz) {
  auto image = read_file(vmlinuz);
  if (!image) return tl::unexpected(image.error());
  auto kernel = uncompressed_kernel(std::move(*image), vmlinuz.string());
  if (!kernel) return tl::unexpected(kernel.error());
  auto certs = scan_certificates(*kernel);
  if (certs.empty()) return fail(ENOKEY, "no X.509 certificate in the kernel image", vmlinuz.string());
  return certs;
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
  const SignatureTrailer trailer = parse_signature_trailer(file);
  switch (trailer.signature.state) {
    case Signature::State::None: return SignatureCheck::Unsigned;
    case Signature::State::Unsupported: return SignatureCheck::Unsupported;
    case Signature::State::Malformed: return SignatureCheck::Malformed;
    case Signature::State::Present: break;
  }
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

  CHandle<BIO, BIO_free> content(BIO_new_mem_buf(image.data(), static_cast<int>(image.size())));
  if (!content) return SignatureCheck::Malformed;
  const int ok = CMS_verify(cms.get(), signers.get(), nullptr, content.get(), nullptr,
                            CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY);
  ERR_clear_error();
  return ok == 1 ? SignatureCheck::Verified : SignatureCheck::BadSignature;
}

}  // namespace agent::kabi
