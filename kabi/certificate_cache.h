// A kernel image's certificates as a file: what a scan of the image (kernel_keys.h) found, kept
// so that the next start does not decompress the image again. The file names the image by the
// SHA-256 of its bytes and carries a checksum of itself, so a file for another image, a torn or
// edited file, reads as an error (the caller warns and scans again), never as certificates.
//
//   intel-gpu-agent kernel-certificates 1
//   image-sha256 <64 hex>
//   extent whole-image|signers|kernel-keys <kernel bytes>
//   cert <DER as hex>            (one line per certificate, in image order)
//   sha256 <64 hex: of every line above, newlines included>
#pragma once

#include <string>
#include <string_view>

#include "kabi/fd.h"
#include "kabi/kernel_keys.h"
#include "kabi/result.h"

namespace agent::kabi {

// Pure: the file for `scan` of the image whose SHA-256 (lowercase hex) is `image_sha256`.
[[nodiscard]] std::string format_certificate_cache(const KernelCertificates& scan, std::string_view image_sha256);

// Pure: the scan a file holds. EINVAL naming `file` when the file is not one of these (a
// header, field, hex string or checksum that does not parse or agree, a certificate OpenSSL does
// not read, no certificate); ESTALE when it is whole but for another image than `image_sha256`.
[[nodiscard]] Result<KernelCertificates> parse_certificate_cache(std::string_view text, std::string_view image_sha256,
                                                                 const std::string& file);

// The lowercase hex SHA-256 of an open regular file's bytes, read a block at a time; `name`
// names it in errors.
[[nodiscard]] Result<std::string> file_sha256(const Fd& file, const std::string& name);

}  // namespace agent::kabi
