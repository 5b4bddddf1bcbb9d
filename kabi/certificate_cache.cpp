#include "kabi/certificate_cache.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include <unistd.h>

#include <openssl/evp.h>

#include "kabi/handles.h"
#include "kabi/module.h"
#include "kabi/signature.h"
#include "kabi/text.h"

namespace agent::kabi {
namespace {

constexpr std::string_view kHeader = "intel-gpu-agent kernel-certificates 1";

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is not what format_certificate_cache writes
}

bool unhex(std::string_view hex, std::string& out) {
  if (hex.empty() || hex.size() % 2 != 0) return false;
  out.clear();
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi << 4 | lo);
  }
  return true;
}

bool is_sha256_hex(std::string_view s) {
  std::string ignored;
  return s.size() == 64 && unhex(s, ignored);
}

// The next line of `text` from `at` (without its newline); false when no whole line is left.
bool next_line(std::string_view text, size_t& at, std::string_view& line) {
  const size_t nl = text.find('\n', at);
  if (nl == std::string_view::npos) return false;
  line = text.substr(at, nl - at);
  at = nl + 1;
  return true;
}

}  // namespace

std::string format_certificate_cache(const KernelCertificates& scan, std::string_view image_sha256) {
  std::string out(kHeader);
  out += "\nimage-sha256 ";
  out += image_sha256;
  out += "\nextent ";
  out += extent_name(scan.extent);
  out += ' ' + std::to_string(scan.kernel_bytes) + '\n';
  for (const std::string& der : scan.certificates) {
    out += "cert ";
    out += hex_bytes(reinterpret_cast<const unsigned char*>(der.data()), der.size());
    out += '\n';
  }
  out += "sha256 " + sha256_hex(out) + '\n';
  return out;
}

Result<KernelCertificates> parse_certificate_cache(std::string_view text, std::string_view image_sha256,
                                                   const std::string& file) {
  auto bad = [&](const std::string& why) -> Result<KernelCertificates> {
    return fail(EINVAL, "not a kernel certificate cache file: " + why, file);
  };
  // The checksum first: a torn or edited file says so before any field is believed.
  if (text.size() < 2 || text.back() != '\n') return bad("no checksum line at its end");
  const size_t prev = text.rfind('\n', text.size() - 2);
  const size_t last = prev == std::string_view::npos ? 0 : prev + 1;  // where the last line starts
  const std::string_view sum_line = text.substr(last, text.size() - 1 - last);
  if (!sum_line.starts_with("sha256 ") || !is_sha256_hex(sum_line.substr(7))) return bad("no checksum line at its end");
  if (sha256_hex(text.substr(0, last)) != sum_line.substr(7))
    return bad("its checksum does not match its content (torn or edited)");
  const std::string_view body = text.substr(0, last);

  size_t at = 0;
  std::string_view line;
  if (!next_line(body, at, line) || line != kHeader) return bad("the first line is not \"" + std::string(kHeader) + "\"");
  if (!next_line(body, at, line) || !line.starts_with("image-sha256 ") || !is_sha256_hex(line.substr(13)))
    return bad("no image-sha256 line");
  if (line.substr(13) != image_sha256)
    return fail(ESTALE, "the cached certificates are of another kernel image (sha256 " + std::string(line.substr(13)) + ")",
                file);
  KernelCertificates r;
  if (!next_line(body, at, line) || !line.starts_with("extent ")) return bad("no extent line");
  {
    std::string_view rest = line.substr(7);
    const size_t sp = rest.find(' ');
    if (sp == std::string_view::npos) return bad("a malformed extent line");
    const std::string_view name = rest.substr(0, sp), bytes = rest.substr(sp + 1);
    using E = KernelCertificates::Extent;
    if (name == extent_name(E::WholeImage)) r.extent = E::WholeImage;
    else if (name == extent_name(E::Signers)) r.extent = E::Signers;
    else if (name == extent_name(E::KernelKeys)) r.extent = E::KernelKeys;
    else return bad("an unknown extent \"" + std::string(name) + "\"");
    const auto [end, ec] = std::from_chars(bytes.data(), bytes.data() + bytes.size(), r.kernel_bytes);
    if (bytes.empty() || ec != std::errc() || end != bytes.data() + bytes.size()) return bad("a malformed extent line");
  }
  while (next_line(body, at, line)) {
    if (!line.starts_with("cert ")) return bad("an unknown line \"" + std::string(line.substr(0, 40)) + "\"");
    std::string der;
    if (!unhex(line.substr(5), der)) return bad("a certificate line that is not hex");
    if (certificate_key_ids(der).empty()) return bad("a certificate OpenSSL cannot read");
    r.certificates.push_back(std::move(der));
  }
  if (at != body.size()) return bad("a line without its newline");
  if (r.certificates.empty()) return bad("no certificate");
  return r;
}

Result<std::string> file_sha256(const Fd& file, const std::string& name) {
  init_crypto();
  CHandle<EVP_MD_CTX, EVP_MD_CTX_free> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return fail(ENOMEM, "cannot set up SHA-256", name);
  const std::unique_ptr<char[]> buf(new char[size_t{1} << 20]);
  for (off_t pos = 0;;) {
    const ssize_t n = ::pread(file.get(), buf.get(), size_t{1} << 20, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, std::string("read error: ") + std::strerror(errno), name);
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.get(), static_cast<size_t>(n));
    pos += n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return hex_bytes(md, len);
}

}  // namespace agent::kabi
