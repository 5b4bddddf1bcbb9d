#include "probes/keyrings.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <keyutils.h>

#include "kabi/kernel_keys.h"

namespace agent::probes {
namespace {

// A buffer keyctl_*_alloc() allocated with malloc.
struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
using MallocBuffer = std::unique_ptr<void, FreeDeleter>;

bool parse_u32(std::string_view s, int base, uint32_t& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string errno_text(int e) { return std::strerror(e); }

Keyring read_keyring(std::string_view name) {
  Keyring k;
  k.name = std::string(name);
  errno = 0;
  const key_serial_t id = find_key_by_type_and_desc("keyring", k.name.c_str(), 0);
  if (id < 0) {
    k.error = errno != 0 ? errno : ENOKEY;
    // ENOKEY: no such keyring in sight. Anything else (/proc/keys missing, EACCES) is a failure
    // to look, not an absence.
    k.state = k.error == ENOKEY ? Keyring::State::NotFound : Keyring::State::Unreadable;
    k.problem = "cannot find the keyring: " + errno_text(k.error);
    return k;
  }
  void* raw = nullptr;
  const long len = keyctl_read_alloc(id, &raw);
  MallocBuffer list(raw);
  if (len < 0) {
    k.error = errno;
    k.state = Keyring::State::Unreadable;
    k.problem = "cannot read the keyring: " + errno_text(k.error);
    return k;
  }
  const auto count = static_cast<size_t>(len) / sizeof(key_serial_t);
  for (size_t i = 0; i < count; ++i) {
    key_serial_t key = 0;
    std::memcpy(&key, static_cast<const char*>(list.get()) + i * sizeof key, sizeof key);
    char* text = nullptr;
    const long n = keyctl_describe_alloc(key, &text);
    MallocBuffer owned(text);
    if (n < 0) {
      // Revoked or unlinked since the listing, or a key we may not view: it can't be named, so
      // the keyring is not fully known.
      if (errno == ENOKEY || errno == EKEYREVOKED || errno == EKEYEXPIRED) continue;
      k.error = errno;
      k.state = Keyring::State::Unreadable;
      k.problem = "cannot describe key " + std::to_string(key) + ": " + errno_text(k.error);
      k.keys.clear();
      return k;
    }
    auto d = parse_key_description(text ? std::string_view(text) : std::string_view(), k.name);
    if (!d) {
      k.error = d.error().code;
      k.state = Keyring::State::Unreadable;
      k.problem = d.error().message;
      k.keys.clear();
      return k;
    }
    k.keys.push_back(std::move(*d));
  }
  k.state = Keyring::State::Read;
  return k;
}

}  // namespace

Result<KeyDescription> parse_key_description(std::string_view text, const std::string& source) {
  // keyctl_describe_alloc's length counts no NUL, but a caller may hand one in.
  while (!text.empty() && (text.back() == '\0' || text.back() == '\n')) text.remove_suffix(1);
  std::string_view fields[4];
  std::string_view rest = text;
  for (auto& f : fields) {
    const size_t semi = rest.find(';');
    if (semi == std::string_view::npos)
      return fail(EINVAL, "key description \"" + std::string(text) + "\" has fewer than 5 ';'-separated fields", source);
    f = rest.substr(0, semi);
    rest.remove_prefix(semi + 1);
  }
  KeyDescription d;
  if (fields[0].empty()) return fail(EINVAL, "key description \"" + std::string(text) + "\" has no type", source);
  d.type = std::string(fields[0]);
  // As keyctl_describe prints them: uid and gid in decimal, perm in hex (%08x).
  if (!parse_u32(fields[1], 10, d.uid) || !parse_u32(fields[2], 10, d.gid) || !parse_u32(fields[3], 16, d.perm))
    return fail(EINVAL, "key description \"" + std::string(text) + "\" has a malformed uid, gid or perm", source);
  d.description = std::string(rest);
  return d;
}

const Keyring* KernelKeyrings::find(std::string_view name) const {
  for (const Keyring& k : keyrings)
    if (k.name == name) return &k;
  return nullptr;
}

std::string_view keyring_state_name(Keyring::State s) noexcept {
  switch (s) {
    case Keyring::State::Read: return "read";
    case Keyring::State::NotFound: return "not-found";
    case Keyring::State::Unreadable: return "unreadable";
  }
  return "?";
}

Keyring probe_keyring(std::string_view name) { return read_keyring(name); }

std::set<std::string> blacklisted_binary_hashes(const Keyring& blacklist) {
  std::set<std::string> out;
  if (blacklist.state != Keyring::State::Read) return out;
  for (const KeyDescription& k : blacklist.keys) {
    if (k.type != "blacklist" || k.description.rfind("bin:", 0) != 0) continue;
    std::string hex = k.description.substr(4);
    bool ok = !hex.empty() && hex.size() % 2 == 0;
    for (char& c : hex) {
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
      ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    if (ok) out.insert(std::move(hex));
  }
  return out;
}

std::vector<std::string> builtin_key_ids(const Keyring& builtin) {
  if (builtin.state != Keyring::State::Read || builtin.keys.empty()) return {};
  std::vector<std::string> ids;
  for (const KeyDescription& k : builtin.keys) {
    const size_t colon = k.description.rfind(": ");
    if (k.type != "asymmetric" || colon == std::string::npos) return {};
    const std::string id = kabi::canonical_key_id(std::string_view(k.description).substr(colon + 2));
    if (id.empty() || id.size() % 2 != 0 ||
        id.find_first_not_of("0123456789abcdef") != std::string::npos)
      return {};
    ids.push_back(id);
  }
  return ids;
}

bool description_has_key_id(std::string_view description, std::string_view key_id) {
  const size_t colon = description.rfind(": ");
  if (colon == std::string_view::npos || key_id.empty()) return false;
  const std::string suffix = kabi::canonical_key_id(description.substr(colon + 2));
  return !suffix.empty() && suffix == kabi::canonical_key_id(key_id);
}

std::optional<std::string> keyring_key_for_signer(const KernelKeyrings& keyrings, std::string_view key_id,
                                                  bool by_key_identifier, std::string_view issuer_name,
                                                  bool platform_for_modules) {
  std::optional<std::string> unread;
  if (const Keyring* b = keyrings.find(kBuiltinKeyring); b && b->state == Keyring::State::NotFound)
    unread = "the system keyrings are not visible (no " + std::string(kBuiltinKeyring) + ": " + b->problem + ")";
  for (std::string_view name : {kSecondaryKeyring, kMachineKeyring, kPlatformKeyring}) {
    if (name == kPlatformKeyring && !platform_for_modules) continue;
    const Keyring* k = keyrings.find(name);
    if (!k || k->state == Keyring::State::NotFound) continue;
    if (k->state == Keyring::State::Unreadable) {
      if (!unread) unread = std::string(name) + " could not be read (" + k->problem + ")";
      continue;
    }
    for (const KeyDescription& key : k->keys) {
      if (key.type != "asymmetric") continue;
      const size_t colon = key.description.rfind(": ");
      if (colon == std::string::npos) continue;
      const std::string_view subject = std::string_view(key.description).substr(0, colon);
      if (description_has_key_id(key.description, key_id) ||
          (!by_key_identifier && !issuer_name.empty() && subject == issuer_name))
        return std::string(name) + ": " + key.description;
    }
  }
  return unread;
}

KernelKeyrings probe_keyrings() {
  KernelKeyrings r;
  for (std::string_view name : {kBuiltinKeyring, kSecondaryKeyring, kMachineKeyring, kPlatformKeyring})
    r.keyrings.push_back(read_keyring(name));
  return r;
}

}  // namespace agent::probes
