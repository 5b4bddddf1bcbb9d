// The kernel's system keyrings - the keys it trusts for signatures - as this process can see
// them through keyctl(2) (libkeyutils).
//
// Keys are kernel-global, but the system keyrings are visible only from the initial user
// namespace: a container in a user namespace of its own finds none of them. Hence three states,
// never "empty" for "could not look": a keyring read (its keys listed), one not found (ENOKEY:
// the kernel was built without it - or nothing is visible, which a missing
// .builtin_trusted_keys gives away, since every kernel with module signing has it), and one
// found but not readable (errno).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kabi/result.h"

namespace agent::probes {

// The keyrings that decide what a signature is trusted for (certs/system_keyring.c,
// security/integrity/): the first three can vouch for modules, .platform cannot.
inline constexpr std::string_view kBuiltinKeyring = ".builtin_trusted_keys";
inline constexpr std::string_view kSecondaryKeyring = ".secondary_trusted_keys";
inline constexpr std::string_view kMachineKeyring = ".machine";
inline constexpr std::string_view kPlatformKeyring = ".platform";
// certs/blacklist.c: hashes and certificates the kernel refuses ("bin:<hex>", "tbs:<hex>").
inline constexpr std::string_view kBlacklistKeyring = ".blacklist";

// One line of keyctl_describe: "type;uid;gid;perm;description", e.g.
// "asymmetric;0;0;1f030000;Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1".
// The description is the rest of the line and may itself hold ';'.
struct KeyDescription {
  std::string type;  // "asymmetric", "keyring", ...
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t perm = 0;  // hex in the string
  std::string description;
};

// Pure: EINVAL (naming `source` as the path) when a field is missing, a number does not parse
// or does not fit, or the type is empty.
[[nodiscard]] Result<KeyDescription> parse_key_description(std::string_view text, const std::string& source);

struct Keyring {
  enum class State { Read, NotFound, Unreadable };
  std::string name;
  State state = State::NotFound;
  int error = 0;        // errno of the failed step (NotFound: ENOKEY or what the search said)
  std::string problem;  // for a person: which step failed and why
  // The keyring's direct contents (State::Read): keys, and keyrings linked into it (type
  // "keyring": .secondary_trusted_keys links .builtin_trusted_keys and, with
  // CONFIG_INTEGRITY_MACHINE_KEYRING, .machine). A key that vanished between the listing and
  // its description is left out.
  std::vector<KeyDescription> keys;
};

struct KernelKeyrings {
  std::vector<Keyring> keyrings;  // kBuiltinKeyring, kSecondaryKeyring, kMachineKeyring, kPlatformKeyring
  // nullptr when `name` was not probed.
  [[nodiscard]] const Keyring* find(std::string_view name) const;
};

[[nodiscard]] std::string_view keyring_state_name(Keyring::State s) noexcept;

// Reads the four keyrings of the running kernel (the live kernel: keyrings have no host root).
// Never fails as a whole; each keyring carries its own state.
[[nodiscard]] KernelKeyrings probe_keyrings();

// Reads one keyring by name, as probe_keyrings does each of its four.
[[nodiscard]] Keyring probe_keyring(std::string_view name);

// Pure: the hashes of binaries on a read .blacklist keyring - its "blacklist" keys described
// "bin:<hex>" (certs/blacklist.c; root may view them: KEY_USR_VIEW) - as lowercase hex.
// "tbs:" entries (certificates) and anything else are not module hashes and are left out.
[[nodiscard]] std::set<std::string> blacklisted_binary_hashes(const Keyring& blacklist);

// Pure: the ids of the keys on a read .builtin_trusted_keys - the hex each key's description
// ends with (x509_key_preparse: the subject key identifier, else the serial number) - for
// kabi::CertificateScanStop::kernel_key_ids. Empty (not known) unless the keyring was read
// whole, holds a key, and every key on it is an asymmetric key described "<name>: <hex>".
[[nodiscard]] std::vector<std::string> builtin_key_ids(const Keyring& builtin);

// Pure: whether a key described "<name>: <hex>" (x509_key_preparse: the subject key identifier,
// or without one the serial number's DER content) carries `key_id` (hex, as kabi::Signature::key_id
// or kabi::certificate_key_ids give it): the same bytes, compared without case and without the
// leading 00 octet the kernel keeps of a serial number's sign.
[[nodiscard]] bool description_has_key_id(std::string_view description, std::string_view key_id);

// Pure: where the kernel's key lookup may find a module signer that no certificate the agent
// holds is, as far as keyctl shows - keys on the keyrings verified after the built-in one
// (.secondary_trusted_keys, .machine, and .platform when `platform_for_modules`) are described
// "<subject name>: <subject key id, or serial>", their public keys are not readable. A key
// whose description ends with the signer's `key_id`, or - for a signer named by issuer and
// serial - whose subject name is `issuer_name` (a self-signed certificate's subject is its
// issuer), "<keyring>: <description>"; else a keyring that could not be read, "<keyring> could
// not be read (<problem>)", or none visible (no .builtin_trusted_keys); else nothing: the signer
// is on none of them. `key_id` is lowercase
// or uppercase hex, as kabi::Signature::key_id.
[[nodiscard]] std::optional<std::string> keyring_key_for_signer(const KernelKeyrings& keyrings, std::string_view key_id,
                                                                bool by_key_identifier, std::string_view issuer_name,
                                                                bool platform_for_modules);

}  // namespace agent::probes
