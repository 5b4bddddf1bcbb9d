#include "kabi/btf.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>

namespace agent::kabi {
namespace {

constexpr uint16_t kBtfMagic = 0xeB9F;
constexpr uint8_t kBtfVersion = 1;
constexpr uint32_t kMaxNameOffset = 0x00ffffff;  // BTF_MAX_NAME_OFFSET
constexpr uint32_t kTypeSize = 12;               // struct btf_type
constexpr int kENOTSUPP = 524;                   // the kernel's ENOTSUPP (no userspace name)

enum Kind : uint32_t {
  kUnkn = 0, kInt, kPtr, kArray, kStruct, kUnion, kEnum, kFwd, kTypedef, kVolatile, kConst, kRestrict,
  kFunc, kFuncProto, kVar, kDatasec, kFloat, kDeclTag, kTypeTag, kEnum64,
  kKindMax = kEnum64,  // the last kind 6.1, 6.12 and 7.2 know
};

uint32_t le32(std::string_view b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
uint64_t le64(std::string_view b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}

// The info word's layout: 6.x kind bits 24-28 and vlen 0-15 (other bits must be 0,
// BTF_INFO_MASK); 7.x kind bits 24-30 and vlen 0-23 (the format with a layout section).
struct Format {
  bool v7 = false;
  uint32_t header_size = 24;  // sizeof(struct btf_header): 7.x adds layout_off, layout_len
  [[nodiscard]] uint32_t kind(uint32_t info) const { return (info >> 24) & (v7 ? 0x7f : 0x1f); }
  [[nodiscard]] uint32_t vlen(uint32_t info) const { return info & (v7 ? 0xffffff : 0xffff); }
};

// Bytes after struct btf_type for a kind (btf_*_check_meta's meta_needed).
uint64_t extra_size(uint32_t kind, uint32_t vlen) {
  switch (kind) {
    case kInt: case kVar: case kDeclTag: return 4;
    case kArray: return 12;
    case kStruct: case kUnion: case kDatasec: case kEnum64: return uint64_t{vlen} * 12;
    case kEnum: case kFuncProto: return uint64_t{vlen} * 8;
    default: return 0;
  }
}

bool is_modifier(uint32_t kind) {
  return kind == kTypedef || kind == kVolatile || kind == kConst || kind == kRestrict || kind == kTypeTag;
}

constexpr size_t kKsymNameLen = 512;  // KSYM_NAME_LEN: the longest name btf.c accepts, minus 1

// btf_str_by_offset(): a valid offset's string (the base's below its length).
std::string_view str_at(const BaseBtf* base, std::string_view own, uint32_t off) {
  const uint32_t start = base ? base->str_len : 0;
  const std::string_view all = off < start ? std::string_view(base->strings) : own;
  const size_t at = off < start ? off : off - start;
  const size_t end = all.find('\0', at);
  return all.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
}

// btf_name_valid_identifier(): [A-Za-z_.][A-Za-z0-9_.]*, shorter than KSYM_NAME_LEN.
// The "C" locale's classes, inline: <cctype> asks the locale for each character of each of the
// kernel's BTF names, a measurable part of a first load (bench/results.md).
bool valid_identifier(std::string_view n) {
  auto ok = [](char c, bool first) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return alpha || (!first && c >= '0' && c <= '9') || c == '_' || c == '.';
  };
  if (n.empty() || n.size() >= kKsymNameLen || !ok(n[0], true)) return false;
  return std::all_of(n.begin() + 1, n.end(), [&](char c) { return ok(c, false); });
}

// btf_name_valid_section(): printable, not empty, shorter than KSYM_NAME_LEN.
bool valid_section(std::string_view n) {
  return !n.empty() && n.size() < kKsymNameLen &&
         std::all_of(n.begin(), n.end(), [](char c) { return std::isprint(static_cast<unsigned char>(c)); });
}

struct Failure {
  int err;
  std::string problem;
};

// One BTF blob parsed as the kernel's btf_parse_module()/btf_parse_base() do, on top of `base`
// (nullptr: standalone). On success `out` holds base's types and these (ids continue).
std::optional<Failure> parse(std::string_view data, const BaseBtf* base, const Format& f, BaseBtf& out) {
  // btf_parse_hdr()
  if (data.size() < 8) return Failure{EINVAL, "hdr_len not found"};
  const uint32_t hdr_len = le32(data, 4);
  if (data.size() < hdr_len) return Failure{EINVAL, "btf_header not found"};
  for (uint64_t i = f.header_size; i < hdr_len; ++i)
    if (data[i] != 0) return Failure{E2BIG, "Unsupported btf_header"};
  uint8_t hdr[32] = {};
  std::memcpy(hdr, data.data(), std::min<uint32_t>(hdr_len, f.header_size));
  const std::string_view h(reinterpret_cast<const char*>(hdr), sizeof(hdr));
  const uint16_t magic = static_cast<uint16_t>(hdr[0] | hdr[1] << 8);
  if (magic != kBtfMagic) return Failure{EINVAL, "Invalid magic"};
  if (hdr[2] != kBtfVersion) return Failure{kENOTSUPP, "Unsupported version"};
  if (hdr[3] != 0) return Failure{kENOTSUPP, "Unsupported flags"};
  if (!base && data.size() == hdr_len) return Failure{EINVAL, "No data"};
  const uint32_t type_off = le32(h, 8), type_len = le32(h, 12), str_off = le32(h, 16), str_len = le32(h, 20);
  const uint32_t layout_off = le32(h, 24), layout_len = le32(h, 28);
  // btf_check_sec_info(): the sections, sorted by offset, tile the data after the header.
  struct Sec { uint32_t off, len; };
  std::vector<Sec> secs{{type_off, type_len}, {str_off, str_len}};
  const bool has_layout = f.v7 && hdr_len >= f.header_size && layout_len != 0;
  if (has_layout) secs.push_back({layout_off, layout_len});
  // The kernel's comparator, (int)(x->off - y->off) ?: (int)(x->len - y->len), is no strict weak
  // order for offsets 2 GiB apart (std::sort would be undefined on such a file): an exchange
  // sort of the two or three entries is bounded whatever it says, and such an offset is past
  // the data, EINVAL in any order.
  auto before = [](Sec a, Sec b) {
    const int d = static_cast<int>(a.off - b.off);
    return (d ? d : static_cast<int>(a.len - b.len)) < 0;
  };
  for (size_t i = 0; i < secs.size(); ++i)
    for (size_t j = i + 1; j < secs.size(); ++j)
      if (before(secs[j], secs[i])) std::swap(secs[i], secs[j]);
  const uint32_t expected_total = static_cast<uint32_t>(data.size()) - hdr_len;
  uint32_t total = 0;
  for (const Sec& s : secs) {
    if (expected_total < s.off) return Failure{EINVAL, "Invalid section offset"};
    if (total < s.off) return Failure{EINVAL, "Unsupported section found"};
    if (total > s.off) return Failure{EINVAL, "Section overlap found"};
    if (expected_total - total < s.len) return Failure{EINVAL, "Total section length too long"};
    total += s.len;
  }
  if (expected_total != total) return Failure{EINVAL, "Unsupported section found"};

  // btf_parse_str_sec()
  const std::string_view body = data.substr(hdr_len);
  const std::string_view strings = body.substr(str_off, str_len);
  if ((!f.v7 || hdr_len < f.header_size) && uint64_t{hdr_len} + str_off + str_len != data.size())
    return Failure{EINVAL, "String section is not at the end"};
  if (!(base && str_len == 0)) {
    if (str_len == 0 || str_len - 1 > kMaxNameOffset || strings.back() != '\0')
      return Failure{EINVAL, "Invalid string section"};
    if (!base && strings.front() != '\0') return Failure{EINVAL, "Invalid string section"};
  }

  // btf_check_all_metas(): each type's record, kind and name offset.
  out = base ? *base : BaseBtf{};
  if (!base) {  // id 0 is void
    out.info.assign(1, 0);
    out.size_type.assign(1, 0);
  }
  const uint32_t start_str = base ? base->str_len : 0;
  const std::string_view types = body.substr(type_off, type_len);
  uint32_t id = base ? base->nr_types : 1;
  for (size_t at = 0; at < types.size(); ++id) {
    const std::string at_id = "[" + std::to_string(id) + "] ";
    const size_t left = types.size() - at;
    if (left < kTypeSize)
      return Failure{EINVAL, at_id + "meta_left:" + std::to_string(left) + " meta_needed:12"};
    const uint32_t name_off = le32(types, at), info = le32(types, at + 4);
    if (!f.v7 && (info & ~0x9f00ffffu)) return Failure{EINVAL, at_id + "Invalid btf_info"};
    const uint32_t kind = f.kind(info);
    if (kind > kKindMax || kind == kUnkn) return Failure{EINVAL, at_id + "Invalid kind:" + std::to_string(kind)};
    // btf_name_offset_valid(): below the module's first offset, the base's strings
    const bool name_ok = name_off <= kMaxNameOffset && (name_off < start_str || name_off - start_str < str_len);
    if (!name_ok) return Failure{EINVAL, at_id + "Invalid name_offset:" + std::to_string(name_off)};
    const uint64_t extra = extra_size(kind, f.vlen(info));
    if (left - kTypeSize < extra)
      return Failure{EINVAL, at_id + "meta_left:" + std::to_string(left - kTypeSize) + " meta_needed:" + std::to_string(extra)};
    // The names each kind's check_meta requires (the same in 6.1, 6.12 and 7.2).
    const uint32_t vlen = f.vlen(info);
    auto name = [&](uint32_t off) { return str_at(base, strings, off); };
    auto offset_ok = [&](uint32_t off) { return off <= kMaxNameOffset && (off < start_str || off - start_str < str_len); };
    bool named_ok = true;
    switch (kind) {
      case kPtr: case kVolatile: case kConst: case kRestrict: case kArray: case kFuncProto:
        named_ok = name_off == 0;
        break;
      case kTypedef: case kFwd: case kFunc: case kVar:
        named_ok = name_off != 0 && valid_identifier(name(name_off));
        break;
      case kTypeTag: case kDeclTag:
        named_ok = !name(name_off).empty();
        break;
      case kDatasec:
        named_ok = name_off != 0 && valid_section(name(name_off));
        break;
      case kStruct: case kUnion: case kEnum: case kEnum64:
        named_ok = name_off == 0 || valid_identifier(name(name_off));
        break;
      default:
        break;
    }
    if (!named_ok) return Failure{EINVAL, at_id + "Invalid name"};
    if (kind == kStruct || kind == kUnion || kind == kEnum || kind == kEnum64) {
      const size_t stride = kind == kEnum ? 8 : 12;
      for (uint32_t i = 0; i < vlen; ++i) {
        const uint32_t off = le32(types, at + kTypeSize + i * stride);
        const bool member = kind == kStruct || kind == kUnion;
        if (!offset_ok(off))
          return Failure{EINVAL, at_id + (member ? "Invalid member name_offset:" : "Invalid name_offset:") + std::to_string(off)};
        if (member ? off != 0 && !valid_identifier(name(off)) : off == 0 || !valid_identifier(name(off)))
          return Failure{EINVAL, at_id + "Invalid name"};
      }
    }
    out.info.push_back(info);
    out.size_type.push_back(le32(types, at + 8));
    at += kTypeSize + extra;
  }
  out.nr_types = static_cast<uint32_t>(out.info.size());
  out.str_len = str_len;
  out.strings = std::string(strings);

  // 6.x btf_check_type_tags(), 7.x btf_check_modifier_chain_length(): every modifier chain of
  // these types ends in a type that exists within 32 steps (6.x: type tags first).
  const uint32_t first = base ? base->nr_types : 1;
  uint32_t good = first - 1;
  for (uint32_t i = first; i < out.nr_types; ++i) {
    uint32_t kind = f.kind(out.info[i]);
    if (!is_modifier(kind)) continue;
    int chain_limit = 32;
    uint32_t cur = i;
    bool in_tags = kind == kTypeTag;
    while (is_modifier(kind)) {
      if (!chain_limit--) return Failure{ELOOP, "Max chain length or cycle detected"};
      if (!f.v7) {
        if (kind == kTypeTag) {
          if (!in_tags) return Failure{EINVAL, "Type tags don't precede modifiers"};
        } else {
          in_tags = false;
        }
      }
      if (cur <= good) break;
      cur = out.size_type[cur];
      if (cur >= out.nr_types)
        return Failure{EINVAL, "[" + std::to_string(i) + "] refers to type " + std::to_string(cur) +
                                   ", past the last type id " + std::to_string(out.nr_types - 1)};
      kind = f.kind(out.info[cur]);
    }
    good = i;
  }
  return std::nullopt;
}

Format format_of(int major) {
  Format f;
  f.v7 = major >= 7;
  f.header_size = f.v7 ? 32 : 24;
  return f;
}

}  // namespace

Result<BaseBtf> parse_base_btf(std::string_view bytes, const std::string& what) {
  std::string_view btf = bytes;
  if (bytes.size() >= 4 && bytes.substr(0, 4) == "\x7f" "ELF") {
    // A 64-bit little-endian vmlinux: its .BTF section.
    if (bytes.size() < 64 || bytes[4] != 2 || bytes[5] != 1)
      return fail(EINVAL, "not a 64-bit little-endian ELF file (looking for its .BTF section)", what);
    const uint64_t shoff = le64(bytes, 0x28);
    const uint16_t shentsize = static_cast<uint16_t>(le32(bytes, 0x3a) & 0xffff);
    const uint16_t shnum = static_cast<uint16_t>(le32(bytes, 0x3c) & 0xffff);
    const uint16_t shstrndx = static_cast<uint16_t>(le32(bytes, 0x3e) & 0xffff);
    if (shentsize != 64 || shstrndx >= shnum || shoff > bytes.size() || (bytes.size() - shoff) / 64 < shnum)
      return fail(EINVAL, "ELF section header table is invalid", what);
    auto sh = [&](size_t i) { return bytes.substr(shoff + i * 64, 64); };
    const uint64_t names_off = le64(sh(shstrndx), 24), names_size = le64(sh(shstrndx), 32);
    if (names_off > bytes.size() || names_size > bytes.size() - names_off)
      return fail(EINVAL, "ELF section name table is outside the file", what);
    const std::string_view names = bytes.substr(names_off, names_size);
    bool found = false;
    for (size_t i = 1; i < shnum && !found; ++i) {
      const uint32_t name = le32(sh(i), 0);
      if (name >= names.size() || names.substr(name, names.find('\0', name) - name) != ".BTF") continue;
      const uint64_t off = le64(sh(i), 24), size = le64(sh(i), 32);
      if (le32(sh(i), 4) == 8 /* SHT_NOBITS */ || off > bytes.size() || size > bytes.size() - off)
        return fail(EINVAL, "its .BTF section is outside the file", what);
      btf = bytes.substr(off, size);
      found = true;
    }
    if (!found) return fail(ENOENT, "no .BTF section (a kernel built without CONFIG_DEBUG_INFO_BTF?)", what);
  }
  // The kernel's own BTF is checked as a standalone BTF of the 6.x format (vmlinux's header is
  // 24 bytes on 7.2 too): what does not parse is no base to judge modules against.
  BaseBtf out;
  if (auto bad = parse(btf, nullptr, format_of(6), out))
    return fail(EINVAL, "not usable as the kernel's BTF: " + bad->problem, what);
  out.source = what;
  return out;
}

Result<BaseBtf> read_kernel_btf(const RootFs& root, const std::string& path) {
  auto bytes = root.read(path, kMaxBaseBtfFile);
  if (!bytes) return tl::unexpected(bytes.error());
  return parse_base_btf(*bytes, root.display(path));
}

ModuleBtfCheck check_module_btf(std::string_view btf, std::string_view btf_base, const BaseBtf& base,
                                int version_major, int version_minor) {
  ModuleBtfCheck r;
  const Format f = format_of(version_major);
  BaseBtf distilled;
  const BaseBtf* on = &base;
  // 6.11+ (btf_relocate.c): the module's types sit on its distilled base, parsed standalone.
  if (!btf_base.empty() && (version_major > 6 || (version_major == 6 && version_minor >= 11))) {
    r.relocation = true;
    if (auto bad = parse(btf_base, nullptr, f, distilled)) {
      r.err = bad->err;
      r.problem = ".BTF.base: " + bad->problem;
      return r;
    }
    on = &distilled;
  }
  BaseBtf all;
  if (auto bad = parse(btf, on, f, all)) {
    r.err = bad->err;
    r.problem = bad->problem;
  }
  return r;
}

}  // namespace agent::kabi
