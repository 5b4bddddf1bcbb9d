// The `agent kabi check` output contract: JSON schema 1 as issue 2 specifies it, and a human
// form with one reason a line (wrapped only at a terminal's width) and a summary line.
#include "../test_lines.h"
#include "kabi/report.h"

#include <cerrno>
#include <set>
#include <sstream>
#include <vector>

#include "catch2_compat.h"

#include "test_util.h"

using agent::test::lines_with;

using namespace agent::kabi;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

std::set<std::string> keys(const json& j) {
  std::set<std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it) out.insert(it.key());
  return out;
}

// Every field issue 2 names is there. Additions are allowed (a consumer ignores fields it does
// not know), so the contract is "at least these".
void check_has_fields(const json& j, const std::set<std::string>& required) {
  REQUIRE(j.is_object());
  const std::set<std::string> have = keys(j);
  for (const auto& k : required) {
    INFO("field '" << k << "' in " << j.dump());
    CHECK(have.count(k) == 1);
  }
}

KernelModel kernel() {
  KernelModel k;
  k.release = "6.1.0-56-amd64";
  k.vermagic = "6.1.0-56-amd64 SMP preempt mod_unload modversions ";
  k.modversions = true;
  k.symvers_source = "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers";
  return k;
}

Reason reason_of(const char* code, int err, std::string symbol, std::string message, bool fatal = true) {
  Reason r;
  r.code = code;
  r.err = err;
  r.symbol = std::move(symbol);
  r.message = std::move(message);
  r.fatal = fatal;
  return r;
}

// i915 refused for a CRC (with a warning), xe loadable: the shape of a real run.
Evaluation evaluation() {
  Evaluation ev;
  ModuleVerdict xe;
  xe.path = "/opt/lib/modules/6.1.0-55-amd64/updates/xe.ko.xz";
  xe.name = "xe";
  xe.load_after = {"drm", "drm_kms_helper"};
  ev.modules.push_back(xe);

  ModuleVerdict i915;
  i915.path = "/opt/lib/modules/6.1.0-55-amd64/updates/i915.ko";
  i915.name = "i915";
  i915.verdict = Verdict::Refused;
  i915.err = EINVAL;
  Reason crc = reason_of(reason::kCrcMismatch, EINVAL, "drm_dev_register", "i915: disagrees about version of symbol drm_dev_register");
  crc.expected_crc = 0x1c3a7b21u;
  crc.found_crc = 0xdeadbeefu;
  i915.reasons.push_back(crc);
  i915.reasons.push_back(reason_of(reason::kNoSymbolVersionWarn, 0, "jiffies", "i915: no symbol version for jiffies", false));
  i915.reasons.push_back(reason_of(reason::kVermagic, ENOEXEC, "",
                                   "i915: version magic '6.1.0-55-amd64 SMP preempt_rt mod_unload modversions ' should "
                                   "be '6.1.0-56-amd64 SMP preempt mod_unload modversions '"));
  i915.load_after = {"drm"};
  ev.modules.push_back(i915);
  return ev;
}

}  // namespace

TEST_CASE("report: CRCs are 0x and eight hex digits", "[report]") {
  CHECK(crc_hex(0) == "0x00000000");
  CHECK(crc_hex(0x1c3a7b21u) == "0x1c3a7b21");
  CHECK(crc_hex(0xffffffffu) == "0xffffffff");
  CHECK(verdict_name(Verdict::Loadable) == "loadable");
  CHECK(verdict_name(Verdict::Refused) == "refused");
}

TEST_CASE("report: JSON schema 1, field by field", "[report]") {
  const json j = evaluation_json(evaluation(), kernel());
  check_has_fields(j, {"schema", "kernel", "modules"});
  CHECK(j["schema"] == 1);
  CHECK(kReportSchema == 1);

  const json& k = j["kernel"];
  check_has_fields(k, {"release", "vermagic", "modversions", "symvers"});
  CHECK(k["release"] == "6.1.0-56-amd64");
  CHECK(k["vermagic"] == "6.1.0-56-amd64 SMP preempt mod_unload modversions ");
  CHECK(k["modversions"] == true);
  CHECK(k["symvers"] == "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers");

  REQUIRE(j["modules"].is_array());
  REQUIRE(j["modules"].size() == 2);
  const std::set<std::string> module_keys{"path", "name", "verdict", "errno", "errno_name", "reasons", "load_after"};
  for (const auto& m : j["modules"]) check_has_fields(m, module_keys);

  const json& xe = j["modules"][0];
  CHECK(xe["path"] == "/opt/lib/modules/6.1.0-55-amd64/updates/xe.ko.xz");
  CHECK(xe["name"] == "xe");
  CHECK(xe["verdict"] == "loadable");
  CHECK(xe["errno"] == 0);
  CHECK(xe["errno"].is_number_integer());
  CHECK(xe["errno_name"] == "");
  CHECK(xe["reasons"].is_array());
  CHECK(xe["reasons"].empty());
  CHECK(xe["load_after"] == json::array({"drm", "drm_kms_helper"}));

  const json& i915 = j["modules"][1];
  CHECK(i915["verdict"] == "refused");
  CHECK(i915["errno"] == EINVAL);
  CHECK(i915["errno_name"] == "EINVAL");
  CHECK(i915["load_after"] == json::array({"drm"}));
  REQUIRE(i915["reasons"].size() == 3);

  // Issue 2: reasons [{"code","symbol","expected_crc","found_crc","message"}], plus "fatal",
  // which tells warnings from refusals.
  for (const auto& r : i915["reasons"]) {
    check_has_fields(r, {"code", "symbol", "expected_crc", "found_crc", "message", "fatal"});
    CHECK(r["code"].is_string());
    CHECK(r["message"].is_string());
    CHECK((r["symbol"].is_string() || r["symbol"].is_null()));
    CHECK(r["fatal"].is_boolean());
  }
  CHECK(i915["reasons"][0]["fatal"] == true);
  CHECK(i915["reasons"][1]["fatal"] == false);
  const json& crc = i915["reasons"][0];
  CHECK(crc["code"] == "crc_mismatch");
  CHECK(crc["symbol"] == "drm_dev_register");
  CHECK(crc["expected_crc"] == "0x1c3a7b21");
  CHECK(crc["found_crc"] == "0xdeadbeef");
  CHECK(crc["message"] == "i915: disagrees about version of symbol drm_dev_register");

  const json& warn = i915["reasons"][1];
  CHECK(warn["code"] == "no_symbol_version_warning");
  CHECK(warn["expected_crc"].is_null());
  CHECK(warn["found_crc"].is_null());

  const json& magic = i915["reasons"][2];
  CHECK(magic["code"] == "vermagic_mismatch");
  CHECK(magic["symbol"].is_null());  // no symbol: null, not ""
  CHECK(magic["expected_crc"].is_null());
}

TEST_CASE("report: JSON round-trips through text", "[report]") {
  const json j = evaluation_json(evaluation(), kernel());
  CHECK(json::parse(j.dump()) == j);
  const json empty = evaluation_json(Evaluation{}, kernel());
  CHECK(empty["modules"].is_array());
  CHECK(empty["modules"].empty());
}

TEST_CASE("report: JSON of a real evaluation of the fixtures", "[report][fixtures]") {
  auto provider = read_module(kabi_test::fixture("provider.ko"));
  auto consumer = read_module(kabi_test::fixture("consumer.ko"));
  REQUIRE(provider);
  REQUIRE(consumer);
  KernelModel k = kernel();
  k.symvers = read_symvers(kabi_test::source_fixture("Module.symvers")).value();
  consumer->versions[2].crc = 0x01020304;  // prov_gpl
  const json j = evaluation_json(evaluate({*consumer, *provider}, k), k);
  REQUIRE(j["modules"].size() == 2);
  CHECK(j["modules"][0]["name"] == "kabi_provider");
  CHECK(j["modules"][0]["verdict"] == "loadable");
  CHECK(j["modules"][1]["verdict"] == "refused");
  CHECK(j["modules"][1]["errno_name"] == "EINVAL");
  CHECK(j["modules"][1]["reasons"][0]["expected_crc"] == "0xc0ffee01");
  CHECK(j["modules"][1]["reasons"][0]["found_crc"] == "0x01020304");
  CHECK(j["modules"][1]["path"] == kabi_test::fixture("consumer.ko").string());
}

namespace {

void check_fits_80(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    INFO("line " << n << ": " << line);
    CHECK(line.size() <= 80);
    CHECK(line.find('\t') == std::string::npos);
  }
}

}  // namespace

TEST_CASE("report: the text form: a table, then every reason, one a line", "[report]") {
  const std::string text = evaluation_text(evaluation(), kernel());
  CHECK_THAT(text, Contains("6.1.0-56-amd64"));
  CHECK_THAT(text, Contains("MODULE"));
  CHECK_THAT(text, Contains("VERDICT"));
  CHECK_THAT(text, Contains("ERRNO"));
  CHECK_THAT(text, Contains("EINVAL"));
  CHECK_THAT(text, Contains("refused"));
  CHECK_THAT(text, Contains("loadable"));
  CHECK_THAT(text, Contains("0 fatal"));  // xe
  CHECK_THAT(text, Contains("2 fatal, 1 warning"));  // i915
  // Not wrapped: the kernel's whole message on the reason's line, as grep finds it.
  const std::string vermagic = "i915: version magic '6.1.0-55-amd64 SMP preempt_rt mod_unload modversions ' should "
                               "be '6.1.0-56-amd64 SMP preempt mod_unload modversions '";
  REQUIRE(vermagic.size() > 80);
  CHECK(lines_with(text, vermagic) == std::vector<std::string>{"  vermagic_mismatch: " + vermagic});
  CHECK(lines_with(text, "drm_dev_register") ==
        std::vector<std::string>{"  crc_mismatch: i915: disagrees about version of symbol drm_dev_register (kernel "
                                 "0x1c3a7b21, module 0xdeadbeef)"});
  // Warnings are shown without --verbose, marked.
  CHECK(lines_with(text, "jiffies") ==
        std::vector<std::string>{"  warning: no_symbol_version_warning: i915: no symbol version for jiffies"});
  // xe has no reason: no section of its own.
  CHECK(lines_with(text, "xe.ko.xz").empty());
}

TEST_CASE("report: wrapped at a terminal's width, never cut", "[report]") {
  const std::string text = evaluation_text(evaluation(), kernel(), {.verbose = false, .width = 80, .hints = {}});
  check_fits_80(text);
  // The vermagic message runs over more than one line.
  const auto start = lines_with(text, "version magic '6.1.0-55-amd64");
  REQUIRE(start.size() == 1);
  CHECK_THAT(start[0], !Contains("should be '6.1.0-56-amd64 SMP preempt mod_unload modversions '"));
  CHECK_THAT(text, Contains("preempt_rt"));
  CHECK_THAT(text, Contains("'6.1.0-56-amd64"));
  // Continuation lines, indented by four: the vermagic message and the CRC line each run over.
  size_t continued = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) continued += line.rfind("    ", 0) == 0 ? 1 : 0;
  CHECK(continued >= 2);
}

TEST_CASE("report: the summary line", "[report]") {
  CHECK(evaluation_counts(evaluation()) == "1/2 refused (EINVAL)");
  CHECK(warning_count(evaluation()) == 1);
  CHECK(evaluation_summary(evaluation(), kernel()) == "1/2 refused (EINVAL) on 6.1.0-56-amd64, 1 warning");

  Evaluation one;
  ModuleVerdict m;
  m.name = "i915";
  m.verdict = Verdict::Refused;
  m.err = ENOEXEC;
  m.reasons.push_back(reason_of(reason::kModuleLayout, ENOEXEC, "module_layout", "i915: disagrees about version of symbol module_layout"));
  one.modules.push_back(m);
  CHECK(evaluation_summary(one, kernel()) == "1/1 refused (ENOEXEC) on 6.1.0-56-amd64");
  // Each errno once, in load order.
  ModuleVerdict a = m, b = m;
  a.name = "a";
  a.err = EINVAL;
  b.name = "b";
  one.modules.push_back(a);
  one.modules.push_back(b);
  CHECK(evaluation_summary(one, kernel()) == "3/3 refused (ENOEXEC, EINVAL) on 6.1.0-56-amd64");

  Evaluation ok;
  ModuleVerdict x;
  x.name = "xe";
  ok.modules = {x, x};
  CHECK(evaluation_summary(ok, kernel()) == "2/2 loadable on 6.1.0-56-amd64");
  ok.modules[0].reasons.push_back(reason_of(reason::kUnsignedAccepted, 0, "", "xe: module verification failed", false));
  ok.modules[1].reasons.push_back(reason_of(reason::kUnsignedAccepted, 0, "", "xe: module verification failed", false));
  CHECK(evaluation_summary(ok, kernel()) == "2/2 loadable on 6.1.0-56-amd64, 2 warnings");
}

TEST_CASE("report: a hint is shown when, and only when, its reason is", "[report]") {
  TextOptions o;
  o.hints[reason::kNoSymbolVersionWarn] = "a hint for the missing versions";
  o.hints[reason::kSignatureNotVerified] = "a hint for unverified signatures";
  const std::string text = evaluation_text(evaluation(), kernel(), o);
  CHECK(lines_with(text, "a hint for the missing versions") == std::vector<std::string>{"hint: a hint for the missing versions"});
  CHECK_THAT(text, !Contains("a hint for unverified signatures"));
}

TEST_CASE("report: long names, many reasons and long words stay within 80 columns", "[report]") {
  Evaluation ev;
  ModuleVerdict m;
  m.name = "a_module_name_that_is_much_longer_than_the_column";
  m.path = "/opt/m/long.ko";
  m.verdict = Verdict::Refused;
  m.err = EKEYREJECTED;
  for (int i = 0; i < 30; ++i) {
    Reason r = reason_of(reason::kCrcMismatch, EINVAL, "sym" + std::to_string(i),
                         m.name + ": disagrees about version of symbol drm_gem_object_release_and_more_words_" +
                             std::to_string(i));
    r.expected_crc = static_cast<uint32_t>(i);
    r.found_crc = static_cast<uint32_t>(i + 1);
    m.reasons.push_back(r);
  }
  ev.modules.push_back(m);
  const std::string text = evaluation_text(ev, kernel(), {.verbose = false, .width = 80, .hints = {}});
  CHECK_THAT(text, Contains("EKEYREJECTED"));
  CHECK_THAT(text, Contains("... and 10 more"));
  CHECK_THAT(text, Contains("a_module_name_that_is_m~"));  // the table truncates the name
  check_fits_80(text);
  const std::string verbose = evaluation_text(ev, kernel(), {.verbose = true, .width = 80, .hints = {}});
  CHECK_THAT(verbose, !Contains("more (--json"));
}

TEST_CASE("report: a realistic KMM image path fits 80 columns", "[report]") {
  // /opt/lib/modules/<kver>/... is the layout KMM and the driver image use.
  Evaluation ev;
  ModuleVerdict m;
  m.name = "i915";
  m.path = "/opt/lib/modules/6.12.94+deb13-amd64/kernel/drivers/gpu/drm/i915/i915.ko.xz";
  m.verdict = Verdict::Refused;
  m.err = EINVAL;
  m.reasons.push_back(reason_of(reason::kCrcMismatch, EINVAL, "x", "i915: disagrees about version of symbol x"));
  ev.modules.push_back(m);
  check_fits_80(evaluation_text(ev, kernel(), {.verbose = false, .width = 80, .hints = {}}));
}
