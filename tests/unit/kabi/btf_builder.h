// Hand-made BTF blobs for the tests (layout: include/uapi/linux/btf.h): a 24-byte header, the
// type section, then the string section.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kabi_test {

enum BtfKind : uint32_t {
  kBtfInt = 1, kBtfPtr = 2, kBtfStruct = 4, kBtfTypedef = 8, kBtfConst = 10, kBtfTypeTag = 18,
};

struct BtfBuilder {
  std::string types, strings;
  // Base BTF starts its strings with the empty name; split BTF's own section may too.
  explicit BtfBuilder(std::string first_strings = std::string(1, '\0')) : strings(std::move(first_strings)) {}

  void u32(uint32_t v) { types.append(reinterpret_cast<const char*>(&v), 4); }
  // struct btf_type; `extra` words follow it (int encoding, members...).
  BtfBuilder& type(uint32_t name_off, uint32_t kind, uint32_t vlen, uint32_t size_or_type,
                   const std::vector<uint32_t>& extra = {}) {
    u32(name_off);
    u32(kind << 24 | vlen);
    u32(size_or_type);
    for (uint32_t e : extra) u32(e);
    return *this;
  }
  // Appends a name to the string section: its offset within this section.
  uint32_t name(const std::string& s) {
    const auto off = static_cast<uint32_t>(strings.size());
    strings += s;
    strings += '\0';
    return off;
  }
  [[nodiscard]] std::string bytes() const {
    std::string b(24, '\0');
    const uint32_t hdr[6] = {0x0001eB9F, 24, 0, static_cast<uint32_t>(types.size()), static_cast<uint32_t>(types.size()),
                             static_cast<uint32_t>(strings.size())};
    std::memcpy(b.data(), hdr, sizeof hdr);
    return b + types + strings;
  }
};

}  // namespace kabi_test
