// probes/keyrings: the parser of keyctl's describe strings, and the live probe's promise that a
// keyring it could not read is never reported as an empty one.
#include "probes/keyrings.h"

#include <cerrno>
#include <string>
#include <vector>

#include "catch2_compat.h"

using namespace agent::probes;
using Catch::Contains;

TEST_CASE("parse_key_description: keys and keyrings as keyctl_describe prints them") {
  auto d = parse_key_description("asymmetric;0;0;1f030000;Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1",
                                 ".platform");
  REQUIRE(d);
  CHECK(d->type == "asymmetric");
  CHECK(d->uid == 0);
  CHECK(d->gid == 0);
  CHECK(d->perm == 0x1f030000);
  CHECK(d->description == "Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1");

  d = parse_key_description("keyring;0;0;1f0b0000;.builtin_trusted_keys", ".secondary_trusted_keys");
  REQUIRE(d);
  CHECK(d->type == "keyring");
  CHECK(d->perm == 0x1f0b0000);
  CHECK(d->description == ".builtin_trusted_keys");

  // The description is the rest of the line, ';' and all; a trailing NUL or newline is not in it.
  static constexpr char kWithNul[] = "asymmetric;4294967295;1000;3f010000;Org; Unit: key: 01\n";
  d = parse_key_description(std::string(kWithNul, sizeof kWithNul), "x");  // the NUL included
  REQUIRE(d);
  CHECK(d->uid == 4294967295u);
  CHECK(d->gid == 1000);
  CHECK(d->description == "Org; Unit: key: 01");

  // An empty description is a description.
  d = parse_key_description("user;0;0;3f010000;", "x");
  REQUIRE(d);
  CHECK(d->description.empty());
}

TEST_CASE("parse_key_description: malformed strings are errors naming the keyring") {
  for (const char* bad : {"", "asymmetric", "asymmetric;0;0;1f030000", ";0;0;1f030000;desc", "asymmetric;x;0;1f030000;d",
                          "asymmetric;0;-1;1f030000;d", "asymmetric;0;0;zz;d", "asymmetric;0;0;;d",
                          "asymmetric;99999999999;0;1f030000;d", "asymmetric;0;0;1f0300001;d"}) {
    INFO(bad);
    auto d = parse_key_description(bad, ".machine");
    REQUIRE(!d);
    CHECK(d.error().code == EINVAL);
    CHECK(d.error().path == ".machine");
  }
}

TEST_CASE("KernelKeyrings::find and the state names") {
  KernelKeyrings r;
  r.keyrings.push_back({std::string(kPlatformKeyring), Keyring::State::Read, 0, "", {}});
  REQUIRE(r.find(".platform") != nullptr);
  CHECK(r.find(".platform")->state == Keyring::State::Read);
  CHECK(r.find(".machine") == nullptr);
  CHECK(keyring_state_name(Keyring::State::Read) == "read");
  CHECK(keyring_state_name(Keyring::State::NotFound) == "not-found");
  CHECK(keyring_state_name(Keyring::State::Unreadable) == "unreadable");
}

// The live kernel, read-only: whatever this machine (or container) lets us see, every keyring
// comes back in one of the three states, consistent with itself.
TEST_CASE("probe_keyrings: every keyring read, or not read with the reason") {
  const KernelKeyrings r = probe_keyrings();
  REQUIRE(r.keyrings.size() == 4);
  CHECK(r.keyrings[0].name == kBuiltinKeyring);
  CHECK(r.keyrings[1].name == kSecondaryKeyring);
  CHECK(r.keyrings[2].name == kMachineKeyring);
  CHECK(r.keyrings[3].name == kPlatformKeyring);
  for (const Keyring& k : r.keyrings) {
    INFO(k.name << ": " << keyring_state_name(k.state) << " " << k.problem);
    if (k.state == Keyring::State::Read) {
      CHECK(k.error == 0);
      CHECK(k.problem.empty());
      for (const KeyDescription& d : k.keys) CHECK(!d.type.empty());
    } else {
      CHECK(k.error != 0);
      CHECK(!k.problem.empty());
      CHECK(k.keys.empty());
      if (k.state == Keyring::State::NotFound) CHECK(k.error == ENOKEY);
    }
  }
  // Where the secondary keyring was read, it links the builtin one (system_trusted_keyring_init).
  if (const Keyring* s = r.find(kSecondaryKeyring); s && s->state == Keyring::State::Read) {
    bool links_builtin = false;
    for (const KeyDescription& d : s->keys)
      links_builtin = links_builtin || (d.type == "keyring" && d.description == kBuiltinKeyring);
    CHECK(links_builtin);
  }
}

TEST_CASE("blacklisted_binary_hashes: the bin: entries of a read .blacklist keyring") {
  Keyring k;
  k.name = std::string(kBlacklistKeyring);
  k.state = Keyring::State::Read;
  for (const char* text : {"blacklist;0;0;3f010000;bin:0A1b2c3d", "blacklist;0;0;3f010000;tbs:ffee",
                           "blacklist;0;0;3f010000;bin:xyz1", "asymmetric;0;0;1f030000;bin:abcd",
                           "blacklist;0;0;3f010000;bin:", "blacklist;0;0;3f010000;bin:abc"}) {
    auto d = parse_key_description(text, k.name);
    REQUIRE(d);
    k.keys.push_back(*d);
  }
  REQUIRE(k.keys.size() == 6);
  const auto h = blacklisted_binary_hashes(k);
  CHECK(h == std::set<std::string>{"0a1b2c3d"});
  // A keyring that was not read gives nothing, never a guess.
  k.state = Keyring::State::Unreadable;
  CHECK(blacklisted_binary_hashes(k).empty());
}

namespace {
Keyring read_ring(std::string_view name, std::initializer_list<const char*> described) {
  Keyring k;
  k.name = std::string(name);
  k.state = Keyring::State::Read;
  for (const char* text : described) {
    auto d = parse_key_description(text, k.name);
    REQUIRE(d);
    k.keys.push_back(*d);
  }
  return k;
}
}  // namespace

// Descriptions as x509_key_preparse writes them ("<subject>: <skid or serial>"); the signer as
// a PKCS#7 SignerInfo names it (sign-file: issuer + serial; sign-file -k: the key identifier).
TEST_CASE("keyring_key_for_signer: a run-time key the signer may be, by id or by a self-signed issuer's name") {
  KernelKeyrings r;
  r.keyrings.push_back(read_ring(kBuiltinKeyring, {"asymmetric;0;0;1f030000;Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1"}));
  r.keyrings.push_back(read_ring(kSecondaryKeyring, {"keyring;0;0;1f0b0000;.builtin_trusted_keys", "keyring;0;0;1f0b0000;.machine"}));
  r.keyrings.push_back(read_ring(kMachineKeyring, {"asymmetric;0;0;1f010000;Cluster GPU signer: a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"}));
  r.keyrings.push_back(read_ring(kPlatformKeyring, {"asymmetric;0;0;1f010000;Vendor db key: 00c0ffee"}));
  REQUIRE(r.find(kMachineKeyring)->keys.size() == 1);

  // Named by key identifier: the description's hex, either case.
  auto k = keyring_key_for_signer(r, "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678", true, "Someone Else", false);
  REQUIRE(k);
  CHECK(*k == ".machine: Cluster GPU signer: a1b2c3d4e5f60718293a4b5c6d7e8f9012345678");
  // Named by issuer + serial: a self-signed certificate's subject is its issuer.
  k = keyring_key_for_signer(r, "1f", false, "Cluster GPU signer", false);
  REQUIRE(k);
  CHECK(*k == ".machine: Cluster GPU signer: a1b2c3d4e5f60718293a4b5c6d7e8f9012345678");
  // ... but the name says nothing for a signer named by key identifier.
  CHECK_FALSE(keyring_key_for_signer(r, "1f", true, "Cluster GPU signer", false));
  // The built-in keyring is the image's certificates, judged before: not a run-time key.
  CHECK_FALSE(keyring_key_for_signer(r, "6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1", true, "", false));
  // .platform counts only where the kernel verifies modules with it (Debian's).
  CHECK_FALSE(keyring_key_for_signer(r, "00c0ffee", false, "", false));
  k = keyring_key_for_signer(r, "00c0ffee", false, "", true);
  REQUIRE(k);
  CHECK(*k == ".platform: Vendor db key: 00c0ffee");
  // A part of an id is no id; the serial's sign octet the description keeps is none of it.
  CHECK_FALSE(keyring_key_for_signer(r, "a1b2c3d4", true, "", true));
  k = keyring_key_for_signer(r, "C0FFEE", false, "", true);
  REQUIRE(k);
  CHECK(*k == ".platform: Vendor db key: 00c0ffee");
  CHECK(description_has_key_id("Vendor db key: 00c0ffee", "c0ffee"));
  CHECK_FALSE(description_has_key_id("Vendor db key: 00c0ffee", "c0ffe"));
  CHECK_FALSE(description_has_key_id("no separator c0ffee", "c0ffee"));

  // A keyring not read may hold it; none visible at all neither rules it out.
  r.keyrings[2].state = Keyring::State::Unreadable;
  r.keyrings[2].problem = "keyctl_read: Permission denied";
  r.keyrings[2].keys.clear();
  k = keyring_key_for_signer(r, "0e01", false, "Other", false);
  REQUIRE(k);
  CHECK(*k == ".machine could not be read (keyctl_read: Permission denied)");
  for (Keyring& ring : r.keyrings) {
    ring.state = Keyring::State::NotFound;
    ring.problem = "not found";
    ring.keys.clear();
  }
  k = keyring_key_for_signer(r, "0e01", false, "Other", true);
  REQUIRE(k);
  CHECK_THAT(*k, Contains("not visible"));
  // A kernel without the run-time keyrings, the built-in one read: nowhere else to look.
  r.keyrings[0].state = Keyring::State::Read;
  CHECK_FALSE(keyring_key_for_signer(r, "0e01", false, "Other", true));
}

TEST_CASE("builtin_key_ids: the ids of a read .builtin_trusted_keys, or none when not known whole") {
  auto key = [](const char* text) { return parse_key_description(text, ".builtin_trusted_keys").value(); };
  // Debian 6.1's, as /proc/keys shows them: a subject key id; a serial with its sign octet.
  Keyring k{std::string(kBuiltinKeyring), Keyring::State::Read, 0, "", {}};
  k.keys = {key("asymmetric;0;0;1f030000;Debian Secure Boot CA: 6CCECE7E4C6C0D1F6149F3DD27DFCC5CBB419EA1"),
            key("asymmetric;0;0;1f030000;Build time autogenerated kernel key: 00c3e2a1")};
  CHECK(builtin_key_ids(k) == std::vector<std::string>{"6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1", "c3e2a1"});

  Keyring other = k;
  other.keys.push_back(key("keyring;0;0;1f0b0000;.something"));
  CHECK(builtin_key_ids(other).empty());  // a key that is no certificate: the list is not known
  other = k;
  other.keys.push_back(key("asymmetric;0;0;1f030000;no id here"));
  CHECK(builtin_key_ids(other).empty());
  other = k;
  other.keys.push_back(key("asymmetric;0;0;1f030000;odd: abc"));
  CHECK(builtin_key_ids(other).empty());
  other = k;
  other.keys.clear();
  CHECK(builtin_key_ids(other).empty());  // an empty keyring tells nothing of the image
  other = k;
  other.state = Keyring::State::Unreadable;
  CHECK(builtin_key_ids(other).empty());
}
