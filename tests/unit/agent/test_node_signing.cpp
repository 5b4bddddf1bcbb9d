// agent/facts/node_signing: the kernel image's certificates read through a host root, kept in
// the certificate cache and used again only for the same image; a cache that cannot be used is
// a warning and a new scan, never a crash or other certificates.
#include "agent/facts/node_signing.h"

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../temp_dir.h"
#include "../test_certs.h"
#include "catch2_compat.h"
#include "kabi/kernel_keys.h"
#include "kabi/module.h"
#include "probes/host_root.h"

using namespace agent;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

std::string cert(const char* cn, long serial) {
  const test::Key key = test::ec_key();
  const test::Cert c = test::make_cert(key.get(), {.cn = cn, .o = "agent test", .serial = serial});
  return test::der_of(c.get());
}

void write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// An uncompressed vmlinux (the scanner takes an ELF as it is) with the certificates in it, each
// followed by 2 MiB (more than the scan's 1 MiB chunk, so that a scan can stop after one).
std::string vmlinux_with(const std::vector<std::string>& certs) {
  std::string v = "\x7f" "ELF" + std::string(4096, '\x11');
  for (const auto& c : certs) v += c + std::string(size_t{2} << 20, '\x22');
  return v;
}

}  // namespace

TEST_CASE("kernel_image_certificates: scanned once, then from the cache while the image is the same") {
  const test::TempDir tmp;
  const fs::path root_dir = tmp / "host";
  const std::string a = cert("build key", 0x1a2b), b = cert("other key", 0x3c4d);
  const std::string image = "/boot/vmlinuz-6.1.0-test";
  write(root_dir / image.substr(1), vmlinux_with({a}));
  auto root = probes::HostRoot::open(root_dir).value();
  const std::string cache = "/var/lib/intel-gpu-driver/kernel-certificates";
  const std::vector<std::string> foreign{"0badc0de"};  // a signer the image lacks: the whole image is read

  auto first = kernel_image_certificates(root, image, foreign, cache);
  INFO((first ? std::string() : first.error().what()));
  REQUIRE(first);
  CHECK(!first->from_cache);
  CHECK(first->warnings.empty());
  CHECK(first->scan.certificates == std::vector<std::string>{a});
  CHECK(first->scan.extent == kabi::KernelCertificates::Extent::WholeImage);
  // Named by the image's SHA-256 (of the bytes as the test reads them).
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(root_dir / cache.substr(1))) files.push_back(e.path());
  REQUIRE(files.size() == 1);
  CHECK(files[0].filename() == kabi::sha256_hex(read(root_dir / image.substr(1))) + ".certs");

  auto second = kernel_image_certificates(root, image, foreign, cache);
  REQUIRE(second);
  CHECK(second->from_cache);
  CHECK(second->warnings.empty());
  CHECK(second->scan.certificates == first->scan.certificates);

  SECTION("another image at the same path is scanned, not answered from the cache") {
    write(root_dir / image.substr(1), vmlinux_with({a, b}));
    auto other = kernel_image_certificates(root, image, foreign, cache);
    REQUIRE(other);
    CHECK(!other->from_cache);
    CHECK(other->scan.certificates == std::vector<std::string>{a, b});
  }
  SECTION("a corrupt cache file: a warning naming it, a new scan, the file written again") {
    std::string text = read(files[0]);
    text[text.size() / 2] ^= 1;
    write(files[0], text);
    auto again = kernel_image_certificates(root, image, foreign, cache);
    REQUIRE(again);
    CHECK(!again->from_cache);
    REQUIRE(again->warnings.size() == 1);
    CHECK(again->warnings[0].code == EINVAL);
    CHECK_THAT(again->warnings[0].what(), Contains(files[0].filename().string()) && Contains("scanning the image again"));
    CHECK(again->scan.certificates == std::vector<std::string>{a});
    auto healed = kernel_image_certificates(root, image, foreign, cache);
    REQUIRE(healed);
    CHECK(healed->from_cache);
  }
  SECTION("a scan that stopped at the signers answers only for signers it holds") {
    const std::string a_serial = kabi::certificate_key_ids(a).at(0);
    fs::remove_all(root_dir / cache.substr(1));
    write(root_dir / image.substr(1), vmlinux_with({a, b}));
    auto early = kernel_image_certificates(root, image, {a_serial}, cache);
    REQUIRE(early);
    CHECK(early->scan.extent == kabi::KernelCertificates::Extent::Signers);
    CHECK(early->scan.certificates == std::vector<std::string>{a});
    auto same = kernel_image_certificates(root, image, {a_serial}, cache);
    REQUIRE(same);
    CHECK(same->from_cache);
    auto wider = kernel_image_certificates(root, image, foreign, cache);
    REQUIRE(wider);
    CHECK(!wider->from_cache);
    CHECK(wider->scan.certificates == std::vector<std::string>{a, b});
  }
  SECTION("a cache directory that cannot be made: a warning, the certificates all the same") {
    fs::remove_all(root_dir / "var");
    write(root_dir / "var", "a file where the directory would be");
    auto blocked = kernel_image_certificates(root, image, foreign, cache);
    REQUIRE(blocked);
    CHECK(!blocked->from_cache);
    REQUIRE(blocked->warnings.size() == 1);
    CHECK_THAT(blocked->warnings[0].what(), Contains("not kept"));
    CHECK(blocked->scan.certificates == std::vector<std::string>{a});
  }
  SECTION("no cache directory: nothing written") {
    fs::remove_all(root_dir / "var");
    auto none = kernel_image_certificates(root, image, foreign, "");
    REQUIRE(none);
    CHECK(!none->from_cache);
    CHECK(!fs::exists(root_dir / "var"));
  }
}
