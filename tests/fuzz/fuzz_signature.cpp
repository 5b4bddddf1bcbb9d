// libFuzzer target: the module signature trailer (kabi/signature.h) - struct module_signature
// and the PKCS#7/CMS blob parsed by OpenSSL - and the kernel's signature check on top of it
// (kabi/kernel_keys.h, check_module_signature: signer lookup by issuer + serial or key id, then
// CMS_verify). Neither fails, so the checks are their invariants.
//
// When the first byte is odd the rest of the input gets the "~Module signature appended~\n"
// magic appended, so most runs get past the magic check. Certificates to check against are read
// once from the DER files in $AGENT_FUZZ_CERTS (a directory; run-fuzz.sh points it at the target
// kernel's built-in certificates when the kernel cache has them), so real signed modules among
// the seeds reach CMS_verify.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "kabi/file_io.h"
#include "kabi/kernel_keys.h"
#include "kabi/signature.h"

using namespace agent::kabi;

namespace {
std::vector<std::string> g_certs;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("AGENT_FUZZ_CERTS")) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (auto der = read_file(e.path())) g_certs.push_back(std::move(*der));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string file(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) file += kSignatureMagic;
  const SignatureTrailer t = parse_signature_trailer(file);
  const Signature& s = t.signature;
  if (t.image_size > file.size()) std::abort();
  switch (s.state) {
    case Signature::State::None:
      if (t.image_size != file.size()) std::abort();
      break;
    case Signature::State::Present:
      if (s.signed_size != t.image_size || t.image_size + kSignatureMagic.size() + 12 > file.size()) std::abort();
      break;
    case Signature::State::Unsupported:  // parsed, of a type the kernel treats as unsigned
      if (t.image_size + kSignatureMagic.size() > file.size()) std::abort();
      break;
    case Signature::State::Malformed:
      if (s.problem.empty() || t.image_size + kSignatureMagic.size() > file.size()) std::abort();
      break;
  }
  const SignatureCheck c = check_module_signature(file, g_certs);
  (void)signature_check_name(c);
  if (s.state == Signature::State::None && c != SignatureCheck::Unsigned) std::abort();
  if (s.state == Signature::State::Malformed && c != SignatureCheck::Malformed) std::abort();
  if (s.state == Signature::State::Present && c == SignatureCheck::Unsigned) std::abort();
  return 0;
}
