// libFuzzer target: gzip / xz / zstd decoding by magic (kabi/file_io.h). Truncated, corrupt
// or hostile streams (decompression bombs, huge dictionaries) must give an error, not a crash
// or an unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kabi/file_io.h"

using namespace agent::kabi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  const Compression c = detect_compression(in);
  (void)compression_name(c);
  auto out = decompress(in, "fuzz.bin");
  if (!out) {
    if (out.error().path != "fuzz.bin" || out.error().message.empty()) std::abort();
    if (c == Compression::None) std::abort();  // uncompressed input is returned as it is
    return 0;
  }
  if (c == Compression::None && *out != in) std::abort();
  return 0;
}
