// The signing key only where it is needed: the decision reads the certificate alone and stats
// the key file; the key is held (counted, the process not dumpable) only between
// load_signing_key and its release, and its bytes are cleansed on every path; the build's
// namespace hides the key's directory; the warnings reach the status.
#include "agent/facts/signing.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "../temp_dir.h"
#include "../test_certs.h"
#include "agent/build/build_mounts.h"
#include "agent/facts/node_signing.h"
#include "agent/report/status.h"
#include "catch2_compat.h"

using namespace agent;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

using test::Cert;
using test::bio_text;
using test::CertSpec;
using test::Key;
using test::make_cert;
using test::pem_cert;
using test::rsa_key;


std::string pem_key(EVP_PKEY* key) {
  CHandle<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return bio_text(bio.get());
}

void spit(const fs::path& p, const std::string& bytes, mode_t mode = 0600) {
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
  }
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

SecretBytes secret_of(const std::string& s) {
  SecretBytes b(s.size() + 1);
  std::copy(s.begin(), s.end(), b.data());
  b.set_size(s.size());
  return b;
}

int dumpable() { return ::prctl(PR_GET_DUMPABLE); }

// A key, its certificate and another key's certificate, in a temp dir.
struct Files {
  test::TempDir dir;
  Key key = rsa_key();
  fs::path key_file = dir / "key.pem", cert_file = dir / "cert.pem", other_cert = dir / "other.pem";
  Files() {
    spit(key_file, pem_key(key.get()), 0400);
    spit(cert_file, pem_cert(make_cert(key.get()).get()), 0644);
    Key other = rsa_key();
    spit(other_cert, pem_cert(make_cert(other.get()).get()), 0644);
  }
};

probes::HostRoot empty_root(const test::TempDir& t) {
  auto r = probes::HostRoot::open(t.path());
  REQUIRE(r);
  return std::move(*r);
}

}  // namespace

TEST_CASE("parse_private_key: the key's bytes are cleansed on success and on every error") {
  Key key = rsa_key();
  SECTION("a key") {
    SecretBytes bytes = secret_of(pem_key(key.get()));
    REQUIRE(bytes.capacity() > 0);
    auto held = parse_private_key(bytes, "k");
    REQUIRE(held);
    CHECK(bytes.empty());
    CHECK(bytes.capacity() == 0);
  }
  SECTION("garbage, PEM-looking garbage") {
    for (const std::string& text : {std::string(300, '\x42'), std::string("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
      SecretBytes bytes = secret_of(text);
      REQUIRE(!bytes.empty());
      auto held = parse_private_key(bytes, "k");
      REQUIRE(!held);
      CHECK(held.error().path == "k");
      CHECK(bytes.empty());
      CHECK(bytes.capacity() == 0);
    }
  }
  CHECK(signing_keys_held() == 0);
}

TEST_CASE("a held key: counted, the process not dumpable, both undone by release or by the holder going") {
  Files f;
  REQUIRE(signing_keys_held() == 0);
  const int before = dumpable();
  REQUIRE(before == 1);  // the data: a test process is dumpable, so a change is seen
  {
    auto k = load_signing_key(f.key_file, f.cert_file);
    INFO((k ? std::string() : k.error().what()));
    REQUIRE(k);
    REQUIRE(k->key);
    CHECK(signing_keys_held() == 1);
    CHECK(dumpable() == 0);
    {
      SigningKey moved = std::move(*k);  // a move is the same key, not a second one
      CHECK(signing_keys_held() == 1);
      moved.key.release();
      CHECK(!moved.key);
      CHECK(signing_keys_held() == 0);
      CHECK(dumpable() == before);
    }
  }
  {
    auto k = load_signing_key(f.key_file, f.cert_file);
    REQUIRE(k);
    CHECK(signing_keys_held() == 1);
  }
  CHECK(signing_keys_held() == 0);
  CHECK(dumpable() == before);
  SECTION("NotDumpable nests with a held key") {
    {
      const NotDumpable guard;
      CHECK(dumpable() == 0);
      auto k = load_signing_key(f.key_file, f.cert_file);
      REQUIRE(k);
      k->key.release();
      CHECK(dumpable() == 0);  // the guard still holds
    }
    CHECK(dumpable() == before);
  }
}

TEST_CASE("load_signing_key: nothing held on an error path; the key never read when the certificate fails") {
  Files f;
  SECTION("the certificate unreadable: the error names it, not the key (a FIFO the key reader would refuse)") {
    REQUIRE(::mkfifo((f.dir / "fifo").c_str(), 0600) == 0);
    spit(f.dir / "garbage.pem", std::string(100, 'x'));
    auto r = load_signing_key(f.dir / "fifo", f.dir / "garbage.pem");
    REQUIRE(!r);
    CHECK(r.error().path == (f.dir / "garbage.pem").string());
    r = load_signing_key(f.key_file, f.dir / "missing.pem");
    REQUIRE(!r);
    CHECK(r.error().path == (f.dir / "missing.pem").string());
  }
  SECTION("the key not the certificate's: parsed, held, and released on the way out") {
    auto r = load_signing_key(f.key_file, f.other_cert);
    REQUIRE(!r);
    CHECK(r.error().code == EKEYREJECTED);
  }
  SECTION("a key that does not parse") {
    spit(f.dir / "bad.pem", std::string(200, 'x'));
    auto r = load_signing_key(f.dir / "bad.pem", f.cert_file);
    REQUIRE(!r);
    CHECK(r.error().path == (f.dir / "bad.pem").string());
  }
  CHECK(signing_keys_held() == 0);
  CHECK(dumpable() == 1);
}

TEST_CASE("read_secret_file: the file's mode, and a file changed while read") {
  Files f;
  mode_t mode = 0;
  auto b = read_secret_file(f.key_file, &mode);
  REQUIRE(b);
  CHECK((mode & 0777) == 0400);
  CHECK(b->view().find("PRIVATE KEY") != std::string_view::npos);
  fs::create_symlink(f.key_file, f.dir / "tls.key");
  mode = 0;
  REQUIRE(read_secret_file(f.dir / "tls.key", &mode));
  CHECK((mode & 0777) == 0400);  // the file's, through the link (a Secret's are links)
  auto d = read_secret_file(f.dir.path());
  REQUIRE(!d);
  CHECK(d.error().path == f.dir.path().string());
}

TEST_CASE("probe_signing: the certificate alone decides; the key file is checked, never read") {
  Files f;
  test::TempDir root_dir;
  const probes::HostRoot root = empty_root(root_dir);
  SECTION("garbage where the key should be: no problem, the certificate's identity") {
    spit(f.dir / "garbage.key", std::string(64, 'g'), 0400);
    const SigningFacts s = probe_signing(root, "6.1.0-test", {f.dir / "garbage.key", f.cert_file});
    INFO(s.problem);
    CHECK(s.configured);
    CHECK(s.problem.empty());
    CHECK(s.identity.signer == "agent test signing key");
    CHECK(s.key_file == f.dir / "garbage.key");
    CHECK(s.key_mode_warning.empty());
    CHECK(signing_keys_held() == 0);
  }
  SECTION("a key its owner alone may read: no warning; group or others: a warning naming the file and mode") {
    for (const auto& [mode, warned] : {std::pair{0400u, false}, {0600u, false}, {0440u, true}, {0604u, true}, {0620u, true}}) {
      REQUIRE(::chmod(f.key_file.c_str(), mode) == 0);
      struct stat st {};
      REQUIRE(::stat(f.key_file.c_str(), &st) == 0);
      REQUIRE((st.st_mode & 0777) == mode);  // the data is what the test set
      const SigningFacts s = probe_signing(root, "6.1.0-test", {f.key_file, f.cert_file});
      INFO(mode);
      CHECK(s.problem.empty());
      CHECK(s.key_mode_warning.empty() == !warned);
      if (warned) {
        char octal[8];
        std::snprintf(octal, sizeof octal, "%04o", mode);
        CHECK_THAT(s.key_mode_warning, Contains(f.key_file.string()) && Contains(octal));
        CHECK_THAT(signing_summary(s), Contains(octal));
        CHECK(signing_warnings(s) == std::vector<std::string>{s.key_mode_warning});
      }
    }
  }
  SECTION("through a Secret's links: the mode of the file they lead to") {
    fs::create_directories(f.dir / "secret/..2026_12_07");
    spit(f.dir / "secret/..2026_12_07/key", "k", 0644);
    fs::create_directory_symlink("..2026_12_07", f.dir / "secret/..data");
    fs::create_symlink("..data/key", f.dir / "secret/key");
    const SigningFacts s = probe_signing(root, "6.1.0-test", {f.dir / "secret/key", f.cert_file});
    CHECK_THAT(s.key_mode_warning, Contains("0644"));
  }
  SECTION("a key file that is not there, or not a file: a problem naming it") {
    SigningFacts s = probe_signing(root, "6.1.0-test", {f.dir / "nope.key", f.cert_file});
    CHECK_THAT(s.problem, Contains((f.dir / "nope.key").string()));
    s = probe_signing(root, "6.1.0-test", {f.dir.path(), f.cert_file});
    CHECK_THAT(s.problem, Contains("not a regular file"));
  }
  SECTION("an expired certificate: a warning, in the summary the decision quotes") {
    CertSpec spec;
    spec.not_before_days = -20;
    spec.not_after_days = -10;
    spit(f.dir / "old.pem", pem_cert(make_cert(f.key.get(), spec).get()), 0644);
    const SigningFacts s = probe_signing(root, "6.1.0-test", {f.key_file, f.dir / "old.pem"});
    CHECK(s.problem.empty());
    CHECK_THAT(s.validity_warning, Contains("expired"));
    CHECK_THAT(signing_summary(s), Contains("expired"));
  }
  CHECK(signing_keys_held() == 0);
}

TEST_CASE("status.json: signing warnings") {
  Status st;
  CHECK(to_json(st, "t")["signing"].is_null());
  st.signing = SigningState{"agent test signing key", "abcd", "untrusted", "", {"certificate expired on X", "mode 0644"}};
  const auto j = to_json(st, "t")["signing"];
  CHECK(j["signer"] == "agent test signing key");
  CHECK(j["trust"] == "untrusted");
  CHECK(j["problem"].is_null());
  CHECK(j["warnings"] == nlohmann::json::array({"certificate expired on X", "mode 0644"}));
}

TEST_CASE("key_hiding_mounts: a Secret's directory, else the key file alone") {
  test::TempDir t;
  const std::string work = (t / "work").string();
  fs::create_directories(work);
  SECTION("a Secret as kubelet lays it out: the directory, and nothing else") {
    const fs::path s = t / "secret";
    fs::create_directories(s / "..2026_12_07_11_00_00.1");
    spit(s / "..2026_12_07_11_00_00.1/key", "k");
    spit(s / "..2026_12_07_11_00_00.1/crt", "c");
    fs::create_directory_symlink("..2026_12_07_11_00_00.1", s / "..data");
    fs::create_symlink("..data/key", s / "key");
    fs::create_symlink("..data/crt", s / "crt");
    const auto m = key_hiding_mounts(s / "key", "crt", work);
    REQUIRE(m.size() == 1);
    CHECK(m[0].target == s.string());
    CHECK(m[0].hide);
    CHECK(!m[0].file);
  }
  SECTION("a directory with other files: the key file alone, where its link leads") {
    fs::create_directories(t / "etc/real");
    spit(t / "etc/real/signing.key", "k");
    spit(t / "etc/other.conf", "x");
    fs::create_symlink(t / "etc/real/signing.key", t / "etc/signing.key");
    const auto m = key_hiding_mounts(t / "etc/signing.key", "", work);
    // etc/ holds other.conf: the file; etc/real holds the key alone: that directory.
    REQUIRE(m.size() == 1);
    CHECK(m[0].target == (t / "etc/real").string());
    CHECK(!m[0].file);
    spit(t / "etc/real/else", "x");
    const auto m2 = key_hiding_mounts(t / "etc/signing.key", "", work);
    REQUIRE(m2.size() == 1);
    CHECK(m2[0].target == (t / "etc/real/signing.key").string());
    CHECK(m2[0].file);
  }
  SECTION("the build's own directory is never hidden") {
    spit(fs::path(work) / "key", "k");
    const auto m = key_hiding_mounts(fs::path(work) / "key", "", work);
    REQUIRE(m.size() == 1);
    CHECK(m[0].file);
    CHECK(m[0].target == work + "/key");
    spit(t / "key", "k");
    const auto m2 = key_hiding_mounts(t / "key", "", work);  // t holds work
    REQUIRE(m2.size() == 1);
    CHECK(m2[0].file);
  }
}

TEST_CASE("mask_option_values: --signing-key's value out of the process's arguments") {
  std::string a0 = "agent", a1 = "--signing-key", a2 = "/etc/k/key", a3 = "--signing-cert", a4 = "/etc/k/crt",
              a5 = "--signing-key=/x/key", a6 = "--signing-keys", a7 = "v";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), a5.data(), a6.data(), a7.data(), nullptr};
  mask_option_values(8, argv, "--signing-key");
  CHECK(std::string(argv[1]) == "--signing-key");
  CHECK(std::string(argv[2]) == "**********");
  CHECK(std::string(argv[4]) == "/etc/k/crt");
  CHECK(std::string(argv[5]) == "--signing-key=******");
  CHECK(std::string(argv[6]) == "--signing-keys");
  CHECK(std::string(argv[7]) == "v");
  // The option last, with no value: nothing to mask, nothing read past the end.
  std::string b1 = "--signing-key";
  char* argv2[] = {a0.data(), b1.data(), nullptr};
  mask_option_values(2, argv2, "--signing-key");
  CHECK(std::string(argv2[1]) == "--signing-key");
}
