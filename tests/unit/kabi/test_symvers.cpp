#include "kabi/symvers.h"

#include <cerrno>

#include "catch2_compat.h"

#include "test_util.h"

using namespace agent::kabi;
using Catch::Matchers::Contains;
using kabi_test::TempDir;

TEST_CASE("symvers: 5-column lines (namespace last) as 5.10+ writes them", "[symvers]") {
  const std::string text =
      "0x6d4c2fd1\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x2a0e6b6e\tdma_buf_get\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\n"
      "0x1c3a7b21\tdrm_dev_register\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL\t\n";
  auto sv = parse_symvers(text, "Module.symvers");
  REQUIRE(sv);
  CHECK(sv->source == "Module.symvers");
  REQUIRE(sv->entries.size() == 3);
  CHECK(sv->modversions);

  const SymversEntry* ml = sv->find("module_layout");
  REQUIRE(ml);
  CHECK(ml->crc == 0x6d4c2fd1u);
  CHECK(ml->owner == "vmlinux");
  CHECK(ml->type == ExportType::Plain);
  CHECK(ml->ns.empty());

  const SymversEntry* dbg = sv->find("dma_buf_get");
  REQUIRE(dbg);
  CHECK(dbg->type == ExportType::Gpl);
  CHECK(dbg->ns == "DMA_BUF");

  const SymversEntry* drm = sv->find("drm_dev_register");
  REQUIRE(drm);
  CHECK(drm->owner == "drivers/gpu/drm/drm");
  CHECK(owner_module_name(drm->owner) == "drm");

  // File order is kept.
  CHECK(sv->entries[0].name == "module_layout");
  CHECK(sv->entries[2].name == "drm_dev_register");
  CHECK(sv->find("not_there") == nullptr);
}

TEST_CASE("symvers: the 4-column form of kernels before 5.4 and every export type", "[symvers]") {
  auto sv = read_symvers(kabi_test::source_fixture("Module.symvers.4col"));
  REQUIRE(sv);
  REQUIRE(sv->entries.size() == 6);
  for (const auto& e : sv->entries) CHECK(e.ns.empty());
  CHECK(sv->find("printk")->type == ExportType::Plain);
  CHECK(sv->find("printk")->crc == 0x92997ed8u);
  CHECK(sv->find("old_gpl_future")->type == ExportType::GplFuture);
  CHECK(sv->find("old_unused")->type == ExportType::Unused);
  CHECK(sv->find("old_unused")->owner == "drivers/misc/legacy");
  CHECK(sv->find("old_unused_gpl")->type == ExportType::UnusedGpl);
}

TEST_CASE("symvers: export type names and which are GPL-only", "[symvers]") {
  CHECK(export_type_name(ExportType::Plain) == "EXPORT_SYMBOL");
  CHECK(export_type_name(ExportType::Gpl) == "EXPORT_SYMBOL_GPL");
  CHECK(export_type_name(ExportType::GplFuture) == "EXPORT_SYMBOL_GPL_FUTURE");
  CHECK(export_type_name(ExportType::Unused) == "EXPORT_UNUSED_SYMBOL");
  CHECK(export_type_name(ExportType::UnusedGpl) == "EXPORT_UNUSED_SYMBOL_GPL");
  CHECK_FALSE(is_gpl_only(ExportType::Plain));
  CHECK(is_gpl_only(ExportType::Gpl));
  // GPL_FUTURE symbols were usable by any module (the kernel only warned).
  CHECK_FALSE(is_gpl_only(ExportType::GplFuture));
  CHECK_FALSE(is_gpl_only(ExportType::Unused));
  CHECK(is_gpl_only(ExportType::UnusedGpl));
}

TEST_CASE("symvers: every export type parses in the 5-column form", "[symvers]") {
  const std::string text =
      "0x00000001\ta\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000002\tb\tvmlinux\tEXPORT_SYMBOL_GPL\tNS_B\n"
      "0x00000003\tc\tvmlinux\tEXPORT_SYMBOL_GPL_FUTURE\t\n"
      "0x00000004\td\tvmlinux\tEXPORT_UNUSED_SYMBOL\t\n"
      "0x00000005\te\tvmlinux\tEXPORT_UNUSED_SYMBOL_GPL\t\n";
  auto sv = parse_symvers(text, "t");
  REQUIRE(sv);
  CHECK(sv->find("a")->type == ExportType::Plain);
  CHECK(sv->find("b")->type == ExportType::Gpl);
  CHECK(sv->find("b")->ns == "NS_B");
  CHECK(sv->find("c")->type == ExportType::GplFuture);
  CHECK(sv->find("d")->type == ExportType::Unused);
  CHECK(sv->find("e")->type == ExportType::UnusedGpl);
}

TEST_CASE("symvers: CRC spellings", "[symvers]") {
  auto sv = parse_symvers("0XABCDEF01\tup\tvmlinux\tEXPORT_SYMBOL\n0x1\tshort\tvmlinux\tEXPORT_SYMBOL\n", "t");
  REQUIRE(sv);
  CHECK(sv->find("up")->crc == 0xabcdef01u);
  CHECK(sv->find("short")->crc == 1u);
  CHECK_FALSE(parse_symvers("0x123456789\ttoo_wide\tvmlinux\tEXPORT_SYMBOL\n", "t"));
  CHECK_FALSE(parse_symvers("12345678\tno_prefix\tvmlinux\tEXPORT_SYMBOL\n", "t"));
  CHECK_FALSE(parse_symvers("0xzz\tnot_hex\tvmlinux\tEXPORT_SYMBOL\n", "t"));
  CHECK_FALSE(parse_symvers("0x\tempty\tvmlinux\tEXPORT_SYMBOL\n", "t"));
}

TEST_CASE("symvers: all-zero CRCs mean a kernel built without MODVERSIONS", "[symvers]") {
  auto sv = read_symvers(kabi_test::source_fixture("Module.symvers.nomodversions"));
  REQUIRE(sv);
  CHECK_FALSE(sv->modversions);
  CHECK(sv->entries.size() == 3);
  CHECK(sv->find("dma_buf_get")->ns == "DMA_BUF");

  // One non-zero CRC is enough to say the kernel has modversions.
  auto mixed = parse_symvers("0x00000000\ta\tvmlinux\tEXPORT_SYMBOL\t\n0x00000001\tb\tvmlinux\tEXPORT_SYMBOL\t\n", "t");
  REQUIRE(mixed);
  CHECK(mixed->modversions);
}

TEST_CASE("symvers: CRLF line ends, blank lines and a missing final newline", "[symvers]") {
  const std::string text =
      "0x6d4c2fd1\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\r\n"
      "\r\n"
      "\n"
      "0x2a0e6b6e\tdma_buf_get\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\r\n"
      "0x00000001\tlast\tvmlinux\tEXPORT_SYMBOL";
  auto sv = parse_symvers(text, "crlf.symvers");
  REQUIRE(sv);
  REQUIRE(sv->entries.size() == 3);
  CHECK(sv->find("module_layout")->ns.empty());
  CHECK(sv->find("dma_buf_get")->ns == "DMA_BUF");  // no '\r' left on the last column
  CHECK(sv->find("last")->type == ExportType::Plain);
}

TEST_CASE("symvers: a later duplicate overrides the earlier one", "[symvers]") {
  auto sv = parse_symvers("0x00000001\tdup\tvmlinux\tEXPORT_SYMBOL\t\n"
                          "0x00000002\tother\tvmlinux\tEXPORT_SYMBOL\t\n"
                          "0x00000003\tdup\tdrivers/x/y\tEXPORT_SYMBOL_GPL\t\n",
                          "t");
  REQUIRE(sv);
  REQUIRE(sv->entries.size() == 2);
  CHECK(sv->find("dup")->crc == 3u);
  CHECK(sv->find("dup")->owner == "drivers/x/y");
  CHECK(sv->find("other")->crc == 2u);
}

TEST_CASE("symvers: a malformed line is an error naming the file and the line number", "[symvers]") {
  const std::string good = "0x6d4c2fd1\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n";
  struct Case {
    const char* line;
    const char* says;
  };
  const Case cases[] = {
      {"0x00000001 spaces not tabs vmlinux EXPORT_SYMBOL", "columns"},
      {"0x00000001\tsym\tvmlinux", "columns"},
      {"0x00000001\tsym\tvmlinux\tEXPORT_SYMBOL\tNS\textra", "columns"},
      {"crc\tsym\tvmlinux\tEXPORT_SYMBOL", "bad CRC"},
      {"0x00000001\t\tvmlinux\tEXPORT_SYMBOL", "empty symbol name"},
      {"0x00000001\tsym\t\tEXPORT_SYMBOL", "empty owner"},
      {"0x00000001\tsym\tvmlinux\tEXPORT_SOMETHING", "unknown export type"},
  };
  for (const auto& c : cases) {
    INFO(c.line);
    const std::string text = good + "\n" + good + c.line + "\n" + good;
    auto sv = parse_symvers(text, "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers");
    REQUIRE_FALSE(sv);
    CHECK(sv.error().code == EINVAL);
    CHECK(sv.error().path == "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers");
    // Line 4: the blank line counts, as an editor counts it.
    CHECK_THAT(sv.error().message, Contains("line 4"));
    CHECK_THAT(sv.error().message, Contains(c.says));
    CHECK_THAT(sv.error().what(), Contains("/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers: line 4"));
  }
}

TEST_CASE("symvers: empty input is an error, not an empty table", "[symvers]") {
  for (const char* text : {"", "\n", "\r\n\r\n"}) {
    auto sv = parse_symvers(text, "empty.symvers");
    REQUIRE_FALSE(sv);
    CHECK(sv.error().code == EINVAL);
    CHECK(sv.error().path == "empty.symvers");
  }
  TempDir tmp;
  kabi_test::spit(tmp / "Module.symvers", "");
  auto sv = read_symvers(tmp / "Module.symvers");
  REQUIRE_FALSE(sv);
  CHECK(sv.error().path == (tmp / "Module.symvers").string());
}

TEST_CASE("symvers: read_symvers reads plain, gzip, xz and zstd files alike", "[symvers]") {
  auto plain = read_symvers(kabi_test::source_fixture("Module.symvers"));
  REQUIRE(plain);
  CHECK(plain->entries.size() == 7);
  CHECK(plain->modversions);
  for (const char* ext : {".gz", ".xz", ".zst"}) {
    INFO(ext);
    // Copied under another name: the format is told by its magic, not by the file name.
    TempDir tmp;
    kabi_test::spit(tmp / "symvers-6.1.0-56-amd64", kabi_test::slurp(kabi_test::fixture(std::string("Module.symvers") + ext)));
    auto sv = read_symvers(tmp / "symvers-6.1.0-56-amd64");
    REQUIRE(sv);
    CHECK(sv->source == (tmp / "symvers-6.1.0-56-amd64").string());
    REQUIRE(sv->entries.size() == plain->entries.size());
    for (size_t i = 0; i < sv->entries.size(); ++i) {
      CHECK(sv->entries[i].name == plain->entries[i].name);
      CHECK(sv->entries[i].crc == plain->entries[i].crc);
      CHECK(sv->entries[i].ns == plain->entries[i].ns);
    }
  }
}

TEST_CASE("symvers: unreadable, truncated or binary files are errors naming the file", "[symvers]") {
  TempDir tmp;
  SECTION("missing file") {
    auto sv = read_symvers(tmp / "nope.symvers");
    REQUIRE_FALSE(sv);
    CHECK(sv.error().code == ENOENT);
    CHECK(sv.error().path == (tmp / "nope.symvers").string());
  }
  SECTION("truncated gzip") {
    std::string gz = kabi_test::slurp(kabi_test::fixture("Module.symvers.gz"));
    kabi_test::spit(tmp / "symvers.gz", gz.substr(0, gz.size() / 2));
    auto sv = read_symvers(tmp / "symvers.gz");
    REQUIRE_FALSE(sv);
    CHECK(sv.error().path == (tmp / "symvers.gz").string());
  }
  SECTION("truncated xz") {
    std::string xz = kabi_test::slurp(kabi_test::fixture("Module.symvers.xz"));
    kabi_test::spit(tmp / "symvers.xz", xz.substr(0, xz.size() - 20));
    auto sv = read_symvers(tmp / "symvers.xz");
    REQUIRE_FALSE(sv);
    CHECK(sv.error().path == (tmp / "symvers.xz").string());
  }
  SECTION("an ELF file given as symvers") {
    kabi_test::spit(tmp / "Module.symvers", kabi_test::slurp(kabi_test::fixture("basic.ko")));
    auto sv = read_symvers(tmp / "Module.symvers");
    REQUIRE_FALSE(sv);
    CHECK(sv.error().code == EINVAL);
    CHECK(sv.error().path == (tmp / "Module.symvers").string());
  }
  SECTION("text that is not a symvers file") {
    kabi_test::spit(tmp / "Module.symvers", "# a comment\nhello world\n");
    auto sv = read_symvers(tmp / "Module.symvers");
    REQUIRE_FALSE(sv);
    CHECK_THAT(sv.error().what(), Contains("line 1"));
  }
}

TEST_CASE("symvers: owner paths to module names", "[symvers]") {
  CHECK(owner_module_name("vmlinux") == "vmlinux");
  CHECK(owner_module_name("drivers/gpu/drm/drm") == "drm");
  CHECK(owner_module_name("drivers/gpu/drm/drm_kms_helper") == "drm_kms_helper");
  CHECK(owner_module_name("drivers/net/ethernet/intel/e1000e/e1000e") == "e1000e");
  CHECK(owner_module_name("sound/core/snd-pcm") == "snd_pcm");  // dashes fold as the kernel's do
}

TEST_CASE("symvers: with a wanted set, exactly the wanted symbols are kept and every line is validated",
          "[symvers]") {
  // Names that share length, first, middle and last character with a wanted one (the
  // fingerprint the parser turns names away with) must still be decided by the set.
  const SymbolSet only = {"a", "drm_dp_aux_x", "drm_dp_bux_x", "module_layout", "absent"};
  std::string text;
  for (const char* name : {"a", "b", "drm_dp_aux_x", "drm_dp_cux_x", "drm_dp_bux_x", "drm_xp_aux_x", "module_layout"})
    text += std::string("0x0000000") + "1\t" + name + "\tvmlinux\tEXPORT_SYMBOL\n";
  auto sv = parse_symvers(text, "t", &only);
  REQUIRE(sv);
  std::vector<std::string> kept;
  for (const auto& e : sv->entries) kept.push_back(e.name);
  CHECK(kept == std::vector<std::string>{"a", "drm_dp_aux_x", "drm_dp_bux_x", "module_layout"});
  CHECK(sv->find("drm_dp_cux_x") == nullptr);
  CHECK(sv->modversions);
  // A malformed line is an error even when its symbol is not wanted.
  auto bad = parse_symvers(text + "0xq\tunwanted\tvmlinux\tEXPORT_SYMBOL\n", "t", &only);
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Contains("line 8"));
}
