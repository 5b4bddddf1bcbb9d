// The module signature trailer appended by scripts/sign-file:
//   [module image][PKCS#7 / CMS signature][struct module_signature]["~Module signature appended~\n"]
#pragma once

#include <string_view>

#include "kabi/module.h"

namespace agent::kabi {

inline constexpr std::string_view kSignatureMagic = "~Module signature appended~\n";

struct SignatureTrailer {
  Signature signature;
  size_t image_size = 0;  // bytes before the signature: what the kernel's ELF loader sees
};

// Never fails: a file without the magic is unsigned; one with a trailer the kernel could not
// parse is Malformed (with the problem), and the image is then taken to end before the magic.
[[nodiscard]] SignatureTrailer parse_signature_trailer(std::string_view file);

}  // namespace agent::kabi
