// libFuzzer target: kernel images (kabi/kernel_keys.h, extract_kernel_certificates) - the x86
// bzImage setup header, the gzip/xz/zstd payload found by header or by scanning for magics, and
// the DER certificate scan over the result. The input reaches the file-based API through a
// memfd, so nothing touches the disk.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kabi/kernel_keys.h"

using namespace agent::kabi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz-vmlinuz", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto certs = extract_kernel_certificates(path);
  if (!certs) {
    if (certs.error().path != path || certs.error().message.empty()) std::abort();
    return 0;
  }
  if (certs->empty()) std::abort();
  for (const auto& der : *certs)
    if (der.size() < 16 || static_cast<unsigned char>(der[0]) != 0x30) std::abort();
  return 0;
}
