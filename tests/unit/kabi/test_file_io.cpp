#include "kabi/file_io.h"

#include <cerrno>

#include "catch2_compat.h"

#include "test_util.h"

using namespace agent::kabi;
using kabi_test::fixture;
using kabi_test::slurp;
using kabi_test::TempDir;

TEST_CASE("file_io: compression is told by magic bytes", "[file_io]") {
  CHECK(detect_compression("") == Compression::None);
  CHECK(detect_compression("\x7f" "ELF") == Compression::None);
  CHECK(detect_compression("\x1f") == Compression::None);
  CHECK(detect_compression("\x1f\x8b") == Compression::Gzip);
  CHECK(detect_compression(std::string_view("\xfd" "7zXZ\0", 6)) == Compression::Xz);
  CHECK(detect_compression("\xfd" "7zXZ") == Compression::None);  // magic cut short
  CHECK(detect_compression("\x28\xb5\x2f\xfd") == Compression::Zstd);
  CHECK(detect_compression(slurp(fixture("basic.ko"))) == Compression::None);
  CHECK(detect_compression(slurp(fixture("basic.ko.gz"))) == Compression::Gzip);
  CHECK(detect_compression(slurp(fixture("basic.ko.xz"))) == Compression::Xz);
  CHECK(detect_compression(slurp(fixture("basic.ko.zst"))) == Compression::Zstd);

  CHECK(compression_name(Compression::None) == "none");
  CHECK(compression_name(Compression::Gzip) == "gzip");
  CHECK(compression_name(Compression::Xz) == "xz");
  CHECK(compression_name(Compression::Zstd) == "zstd");
}

TEST_CASE("file_io: read_file returns the bytes as stored", "[file_io]") {
  auto raw = read_file(fixture("basic.ko.xz"));
  REQUIRE(raw);
  CHECK(*raw == slurp(fixture("basic.ko.xz")));

  TempDir tmp;
  kabi_test::spit(tmp / "empty", "");
  auto empty = read_file(tmp / "empty");
  REQUIRE(empty);
  CHECK(empty->empty());

  std::string binary("a\0b\0\xff", 5);
  kabi_test::spit(tmp / "binary", binary);
  CHECK(read_file(tmp / "binary").value() == binary);
}

TEST_CASE("file_io: a file that cannot be opened is an error naming it", "[file_io]") {
  TempDir tmp;
  auto r = read_file(tmp / "does-not-exist.ko");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ENOENT);
  CHECK(r.error().path == (tmp / "does-not-exist.ko").string());
  CHECK(r.error().what().find((tmp / "does-not-exist.ko").string()) == 0);

  auto d = read_decompressed(tmp / "does-not-exist.ko.xz");
  REQUIRE_FALSE(d);
  CHECK(d.error().code == ENOENT);
}

TEST_CASE("file_io: a directory is not a file", "[file_io]") {
  TempDir tmp;
  auto r = read_file(tmp.path());
  REQUIRE_FALSE(r);
  CHECK(r.error().path == tmp.path().string());
}

TEST_CASE("file_io: every compression decompresses to the original", "[file_io]") {
  const std::string original = slurp(fixture("basic.ko"));
  for (const char* ext : {".gz", ".xz", ".zst"}) {
    INFO(ext);
    auto via_path = read_decompressed(fixture(std::string("basic.ko") + ext));
    REQUIRE(via_path);
    CHECK(*via_path == original);
    auto via_bytes = decompress(slurp(fixture(std::string("basic.ko") + ext)), "x");
    REQUIRE(via_bytes);
    CHECK(*via_bytes == original);
  }
  // Uncompressed input comes back unchanged, including empty input.
  CHECK(decompress(original, "x").value() == original);
  CHECK(decompress("", "x").value().empty());
  CHECK(read_decompressed(fixture("basic.ko")).value() == original);
}

TEST_CASE("file_io: truncated compressed data is an error at every cut, never a crash", "[file_io]") {
  for (const char* ext : {".gz", ".xz", ".zst"}) {
    const std::string whole = slurp(fixture(std::string("signed.ko") + ext));
    INFO(ext << " (" << whole.size() << " bytes)");
    // Cuts at every length, including inside the magic (which makes it "not compressed").
    for (size_t len = 1; len < whole.size(); ++len) {
      auto r = decompress(whole.substr(0, len), "cut" + std::string(ext));
      if (detect_compression(whole.substr(0, len)) == Compression::None) {
        CHECK(r);
        continue;
      }
      if (r) FAIL_CHECK("a cut at " << len << " of " << whole.size() << " decompressed without error");
      else if (r.error().path != "cut" + std::string(ext)) FAIL_CHECK("error does not name the input: " << r.error().what());
      else if (r.error().code != EINVAL) FAIL_CHECK("unexpected errno " << r.error().code << ": " << r.error().what());
    }
  }
}

TEST_CASE("file_io: garbage behind a compression magic is an error", "[file_io]") {
  const std::string garbage(200, '\x55');
  for (const std::string& magic : {std::string("\x1f\x8b"), std::string("\xfd" "7zXZ\0", 6), std::string("\x28\xb5\x2f\xfd")}) {
    auto r = decompress(magic + garbage, "garbage.bin");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == EINVAL);
    CHECK(r.error().path == "garbage.bin");
  }
  // A valid stream with its payload bytes flipped: the checksum catches it.
  for (const char* ext : {".gz", ".xz", ".zst"}) {
    INFO(ext);
    std::string bytes = slurp(fixture(std::string("basic.ko") + ext));
    for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 8; ++i) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    auto r = decompress(bytes, "flipped");
    CHECK_FALSE(r);
  }
}

TEST_CASE("file_io: read_decompressed on a truncated file names the file", "[file_io]") {
  TempDir tmp;
  const std::string xz = slurp(fixture("basic.ko.xz"));
  kabi_test::spit(tmp / "i915.ko.xz", xz.substr(0, xz.size() / 2));
  auto r = read_decompressed(tmp / "i915.ko.xz");
  REQUIRE_FALSE(r);
  CHECK(r.error().path == (tmp / "i915.ko.xz").string());
  CHECK(r.error().code == EINVAL);
}

namespace {
// A source that hands out its bytes `block` at a time, as a file read in blocks does.
class BlockSource final : public ByteSource {
 public:
  BlockSource(std::string bytes, size_t block) : bytes_(std::move(bytes)), block_(block) {}
  bool at_end() const override { return pos_ >= bytes_.size(); }
  agent::Result<std::string_view> next() override {
    const std::string_view b = std::string_view(bytes_).substr(pos_, block_);
    pos_ += b.size();
    return b;
  }

 private:
  std::string bytes_;
  size_t block_, pos_ = 0;
};

// A sink that keeps what it is given, offering `room` bytes at a time; done once it has `enough`.
class CollectSink final : public ByteSink {
 public:
  explicit CollectSink(size_t room, size_t enough = SIZE_MAX) : buf_(room, '\0'), enough_(enough) {}
  std::span<char> space() override { return {buf_.data(), buf_.size()}; }
  void commit(size_t n) override { out.append(buf_.data(), n); }
  uint64_t total() const override { return out.size(); }
  bool done() const override { return out.size() >= enough_; }
  std::string out;

 private:
  std::string buf_;
  size_t enough_;
};

std::string outcome(const agent::Result<bool>& r) {
  return r ? (*r ? "end of data" : "stopped early") : "error: " + r.error().what();
}
}  // namespace

TEST_CASE("file_io: decompress_stream reads one stream or all, in any block size", "[file_io]") {
  const std::string original = slurp(fixture("basic.ko"));
  for (const char* ext : {".xz", ".zst"}) {
    INFO(ext);
    const std::string one = slurp(fixture(std::string("basic.ko") + ext));
    const Compression c = detect_compression(one);
    for (size_t block : {size_t{1}, size_t{7}, size_t{4096}, one.size() * 2}) {
      INFO("block " << block);
      // A whole file of two streams/frames: both.
      BlockSource both(one + one, block);
      CollectSink all(61);
      REQUIRE(outcome(decompress_stream(c, both, all, {.concatenated = true}, "two")) == "end of data");
      CHECK(all.out == original + original);
      // A payload followed by other bytes: the first stream only, the rest ignored.
      BlockSource trailer(one + "\x10\x20\x30\x40", block);
      CollectSink first(61);
      REQUIRE(outcome(decompress_stream(c, trailer, first, {.concatenated = false}, "payload")) == "end of data");
      CHECK(first.out == original);
    }
  }
  // decompress() on a whole file: every xz stream, every zstd frame, the first gzip member.
  CHECK(decompress(slurp(fixture("basic.ko.xz")) + slurp(fixture("basic.ko.xz")), "x").value() == original + original);
  CHECK(decompress(slurp(fixture("basic.ko.zst")) + slurp(fixture("basic.ko.zst")), "x").value() == original + original);
  CHECK(decompress(slurp(fixture("basic.ko.gz")) + slurp(fixture("basic.ko.gz")), "x").value() == original);
}

TEST_CASE("file_io: decompress_stream stops when the sink is done, refuses output past the limit", "[file_io]") {
  const std::string original = slurp(fixture("basic.ko"));
  REQUIRE(original.size() > 4096);
  for (const char* ext : {".gz", ".xz", ".zst"}) {
    INFO(ext);
    const std::string bytes = slurp(fixture(std::string("basic.ko") + ext));
    const Compression c = detect_compression(bytes);
    BlockSource in(bytes, 512);
    CollectSink early(256, 1024);
    REQUIRE(outcome(decompress_stream(c, in, early, {}, "early")) == "stopped early");
    CHECK(early.out.size() < original.size());
    CHECK(early.out == original.substr(0, early.out.size()));

    BlockSource again(bytes, 512);
    CollectSink capped(256);
    auto r = decompress_stream(c, again, capped, {.max_output = 2048}, "bomb.bin");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == EFBIG);
    CHECK(r.error().path == "bomb.bin");
  }
  BlockSource plain(original, 512);
  CollectSink sink(256);
  auto r = decompress_stream(Compression::None, plain, sink, {}, "plain.ko");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == EINVAL);
}

TEST_CASE("file_io: decompress caps its output and checks a magic", "[file_io]") {
  const std::string original = slurp(fixture("basic.ko"));
  for (const char* ext : {".xz", ".zst", ".gz"}) {
    INFO(ext);
    const std::string packed = slurp(fixture(std::string("basic.ko") + ext));
    CHECK(decompress(packed, "x", original.size(), std::string_view("\x7f" "ELF", 4)).value() == original);
    auto small = decompress(packed, "x", original.size() - 1);
    REQUIRE_FALSE(small);
    CHECK(small.error().code == EFBIG);
    auto other = decompress(packed, "x", original.size(), "MZ");
    REQUIRE_FALSE(other);
    CHECK(other.error().code == ENOEXEC);
  }
  // Uncompressed input is held to the same cap.
  CHECK(decompress(original, "x", original.size() - 1).error().code == EFBIG);
}
