#include "kabi/signature.h"

#include <cerrno>
#include <memory>
#include <optional>
#include <string>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "kabi/handles.h"
#include "kabi/text.h"

namespace agent::kabi {
namespace {

constexpr size_t kModSigSize = 12;  // sizeof(struct module_signature)
constexpr unsigned char kPkeyIdPkcs7 = 2;

// One DER item: its tag and contents, within `in`; nothing when it does not fit.
struct DerItem {
  unsigned char tag = 0;
  std::string_view contents;
  std::string_view rest;  // what follows the item
};
std::optional<DerItem> der_item(std::string_view in) {
  if (in.size() < 2) return std::nullopt;
  const auto* b = reinterpret_cast<const unsigned char*>(in.data());
  size_t len = b[1], at = 2;
  if (len & 0x80) {
    const size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in.size() < 2 + n) return std::nullopt;
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | b[2 + i];
    at = 2 + n;
  }
  if (in.size() - at < len) return std::nullopt;
  return DerItem{b[0], in.substr(at, len), in.substr(at + len)};
}
std::optional<unsigned> der_small_int(const DerItem& i) {
  if (i.tag != 0x02 || i.contents.size() != 1) return std::nullopt;
  return static_cast<unsigned char>(i.contents[0]);
}

// What pkcs7_parse_message() (crypto/asymmetric_keys/pkcs7_parser.c) refuses in the structure
// before any key is looked at, in the order its ASN.1 callbacks meet it: the SignedData version
// (1 or 3, else EINVAL), the content type (data, or msIndirectData as Authenticode signs; else
// EINVAL), then each SignerInfo's version against the SignedData's (1 wants 1, 3 wants not 1:
// EBADMSG; another EINVAL) and, for msIndirectData, its signed attributes (none: EBADMSG).
// Empty when it passes; `err` set to the errno.
std::string pkcs7_structure_problem(std::string_view der, int& err) {
  auto ci = der_item(der);  // ContentInfo
  if (!ci) return {};
  auto type = der_item(ci->contents);
  auto explicit0 = type ? der_item(type->rest) : std::nullopt;
  auto sd = explicit0 ? der_item(explicit0->contents) : std::nullopt;  // SignedData
  auto version = sd ? der_item(sd->contents) : std::nullopt;
  const auto sd_version = version ? der_small_int(*version) : std::nullopt;
  if (!sd_version) return {};  // OpenSSL parsed it; leave the rest to it
  if (*sd_version != 1 && *sd_version != 3) {
    err = EINVAL;
    return "PKCS7: Unsupported SignedData version " + std::to_string(*sd_version);
  }
  auto digests = der_item(version->rest);
  auto encap = digests ? der_item(digests->rest) : std::nullopt;
  auto oid = encap ? der_item(encap->contents) : std::nullopt;
  static constexpr std::string_view kData("\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01", 9);  // 1.2.840.113549.1.7.1
  static constexpr std::string_view kMsIndirectData("\x2b\x06\x01\x04\x01\x82\x37\x02\x01\x04", 10);  // 1.3.6.1.4.1.311.2.1.4
  if (!oid || oid->tag != 0x06) return {};
  if (oid->contents != kData && oid->contents != kMsIndirectData) {
    err = EINVAL;
    return "PKCS7: Unsupported data type (content type not data or msIndirectData)";
  }
  // [0] certificates, [1] crls, then the SET of SignerInfo.
  std::string_view rest = encap->rest;
  std::optional<DerItem> infos;
  while (auto i = der_item(rest)) {
    rest = i->rest;
    if (i->tag == 0x31) infos = i;
  }
  if (!infos) return {};
  std::string_view in = infos->contents;
  while (!in.empty()) {
    const auto si = der_item(in);
    if (!si) break;
    in = si->rest;
    auto v = der_item(si->contents);
    const auto si_version = v ? der_small_int(*v) : std::nullopt;
    if (!si_version) continue;
    if (*si_version != 1 && *si_version != 3) {
      err = EINVAL;
      return "PKCS7: Unsupported SignerInfo version " + std::to_string(*si_version);
    }
    if ((*si_version == 1) != (*sd_version == 1)) {
      err = EBADMSG;
      return "PKCS7: SignedData-SignerInfo version mismatch (SignedData " + std::to_string(*sd_version) +
             ", SignerInfo " + std::to_string(*si_version) + ")";
    }
    // pkcs7_note_signed_info(), at the SignerInfo's end.
    bool authattrs = false;
    std::string_view fields = si->contents;
    while (!fields.empty()) {
      const auto item = der_item(fields);
      if (!item) break;
      authattrs = authattrs || item->tag == 0xa0;
      fields = item->rest;
    }
    if (oid->contents == kMsIndirectData && !authattrs) {
      err = EBADMSG;
      return "PKCS7: Authenticode requires AuthAttrs (content type msIndirectData, no signed attributes)";
    }
  }
  return {};
}

// Fills signer, key id and digest algorithm from the CMS SignedData, as far as it parses.
bool describe_cms(std::string_view der, Signature& sig) {
  init_crypto();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  CHandle<CMS_ContentInfo, CMS_ContentInfo_free> cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  if (!cms) return false;
  if (int err = 0; sig.problem.empty()) {
    sig.problem = pkcs7_structure_problem(der, err);
    if (!sig.problem.empty()) sig.malformed_errno = err;
  }
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (!infos || sk_CMS_SignerInfo_num(infos) < 1) return false;
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, 0);
  if (const ASN1_OBJECT* ct = CMS_get0_eContentType(cms.get()); ct && OBJ_obj2nid(ct) != NID_pkcs7_data) {
    char oid[128] = "";
    OBJ_obj2txt(oid, sizeof oid, ct, 1);
    sig.content_type = oid[0] ? oid : "?";
  }
  // Signed attributes, as pkcs7_parse_message() sees them: any signer with some (a set, even
  // empty) gives have_authattrs; one without contentType or messageDigest does not parse.
  for (int i = 0; i < sk_CMS_SignerInfo_num(infos); ++i) {
    CMS_SignerInfo* s = sk_CMS_SignerInfo_value(infos, i);
    if (CMS_signed_get_attr_count(s) < 0) continue;
    sig.signed_attributes = true;
    if (sig.problem.empty() && (CMS_signed_get_attr_by_NID(s, NID_pkcs9_contentType, -1) < 0 ||
                                CMS_signed_get_attr_by_NID(s, NID_pkcs9_messageDigest, -1) < 0))
      sig.problem = "signed attributes without contentType or messageDigest (PKCS7: Missing required AuthAttr)";
  }
  ASN1_OCTET_STRING* keyid = nullptr;
  X509_NAME* issuer = nullptr;
  ASN1_INTEGER* serial = nullptr;
  if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &serial) != 1) return false;
  if (keyid) sig.key_id = hex_bytes(ASN1_STRING_get0_data(keyid), static_cast<size_t>(ASN1_STRING_length(keyid)));
  sig.by_key_identifier = keyid != nullptr;
  if (serial) sig.key_id = hex_bytes(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial)));
  if (issuer) {
    CHandle<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(bio.get(), issuer, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    if (data && len > 0) sig.signer.assign(data, static_cast<size_t>(len));
    sig.issuer_key_name = kernel_key_name(issuer);
  }
  X509_ALGOR* dig = nullptr;
  CMS_SignerInfo_get0_algs(si, nullptr, nullptr, &dig, nullptr);
  if (dig) {
    const ASN1_OBJECT* obj = nullptr;
    X509_ALGOR_get0(&obj, nullptr, nullptr, dig);
    if (obj) sig.hash_algo = OBJ_nid2sn(OBJ_obj2nid(obj));
  }
  return true;
}

// The raw bytes of the last entry of `nid` in a name (the kernel's x509_extract_name_segment
// keeps the last one it meets), as they are in the DER: no conversion of BMP or UTF8 strings.
std::optional<std::string> name_segment(const X509_NAME* name, int nid) {
  std::optional<std::string> found;
  for (int i = -1; (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0;) {
    const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    if (s && ASN1_STRING_length(s) > 0)
      found = std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return found;
}

}  // namespace

std::string kernel_key_name(const X509_name_st* name) {
  const auto cn = name_segment(name, NID_commonName);
  const auto o = name_segment(name, NID_organizationName);
  if (cn && o) {
    // The CN alone when the O is its prefix, or both share a significant (7-byte) start.
    if (cn->size() >= o->size() && cn->compare(0, o->size(), *o) == 0) return *cn;
    if (cn->size() >= 7 && o->size() >= 7 && cn->compare(0, 7, *o, 0, 7) == 0) return *cn;
    return *o + ": " + *cn;
  }
  if (cn) return *cn;
  if (o) return *o;
  if (auto email = name_segment(name, NID_pkcs9_emailAddress)) return *email;
  return {};
}

void init_crypto() {
  static const bool done = OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, nullptr) == 1;
  (void)done;
}

std::string openssl_error() {
  const unsigned long e = ERR_peek_last_error();
  std::string s;
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    s = buf;
  }
  ERR_clear_error();
  return s.empty() ? "unknown OpenSSL error" : s;
}

SignatureTrailer parse_signature_trailer(std::string_view file) {
  SignatureTrailer t;
  t.image_size = file.size();
  if (file.size() < kSignatureMagic.size() || file.substr(file.size() - kSignatureMagic.size()) != kSignatureMagic)
    return t;
  auto malformed = [&](std::string why) {
    t.signature.state = Signature::State::Malformed;
    t.signature.problem = std::move(why);
    t.image_size = file.size() - kSignatureMagic.size();
    return t;
  };
  const size_t before_magic = file.size() - kSignatureMagic.size();
  if (before_magic <= kModSigSize) return malformed("signature trailer no longer than struct module_signature");
  const auto* ms = reinterpret_cast<const unsigned char*>(file.data() + before_magic - kModSigSize);
  const unsigned char id_type = ms[2], signer_len = ms[3], key_id_len = ms[4];
  const size_t sig_len = (size_t{ms[8]} << 24) | (size_t{ms[9]} << 16) | (size_t{ms[10]} << 8) | ms[11];
  // mod_check_sig(), in its order: the length first (EBADMSG, whatever the type), then the
  // type (ENOPKG), then the PKCS#7 header fields (EBADMSG). Its file_len is the file without
  // the magic, so a signature must leave at least one byte of module before it.
  if (sig_len >= before_magic - kModSigSize)
    return malformed("signature length " + std::to_string(sig_len) + " leaves no module before it (" +
                     std::to_string(before_magic - kModSigSize) + " bytes precede struct module_signature)");
  if (id_type != kPkeyIdPkcs7) {
    malformed("signature is not PKCS#7 (id_type " + std::to_string(id_type) + ")");
    t.signature.state = Signature::State::Unsupported;
    return t;
  }
  if (ms[0] != 0 || ms[1] != 0 || signer_len != 0 || key_id_len != 0 || ms[5] || ms[6] || ms[7])
    return malformed("PKCS#7 signature header has non-zero algo/hash/signer/key-id fields");
  // Passes mod_check_sig(); an empty blob then fails pkcs7_parse_message() (EBADMSG).
  if (sig_len == 0) return malformed("empty PKCS#7 signature");
  t.image_size = before_magic - kModSigSize - sig_len;
  t.signature.signed_size = t.image_size;
  t.signature.state = Signature::State::Present;
  if (!describe_cms(file.substr(t.image_size, sig_len), t.signature)) {
    t.signature.state = Signature::State::Malformed;
    t.signature.problem = "PKCS#7 signature does not parse";
  } else if (!t.signature.problem.empty()) {
    t.signature.state = Signature::State::Malformed;  // pkcs7_sig_note_set_of_authattrs: EBADMSG
  }
  return t;
}

}  // namespace agent::kabi
