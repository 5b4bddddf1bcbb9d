// One test per loadability rule (DESIGN.md, "The loadability rules"), with the errno the
// kernel's init_module() returns. Kernels are built by hand; modules by hand or from fixtures.
#include "kabi/rules.h"

#include <cerrno>

#include "catch2_compat.h"

#include "btf_builder.h"
#include "kabi/btf.h"
#include "kabi/signature.h"
#include "test_util.h"

using namespace agent::kabi;
using Catch::Matchers::Contains;
using kabi_test::fixture;

namespace {

constexpr const char* kVermagic61 = "6.1.0-56-amd64 SMP preempt mod_unload modversions ";

// Debian 6.1.0-56's exports, the ones the tests use.
constexpr const char* kSymvers61 =
    "0x6d4c2fd1\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x15ba50a6\tjiffies\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x2a0e6b6e\tdma_buf_get\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\n"
    "0x4b1d0a3c\tgpl_only_fn\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
    "0x7f2a1c00\tgpl_future_fn\tvmlinux\tEXPORT_SYMBOL_GPL_FUTURE\t\n"
    "0x1c3a7b21\tdrm_dev_register\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL\t\n"
    "0x3e1f7a10\tdrm_kms_helper_poll_init\tdrivers/gpu/drm/drm_kms_helper\tEXPORT_SYMBOL_GPL\t\n"
    "0x5a5a5a5a\torphan_fn\tdrivers/misc/orphan\tEXPORT_SYMBOL\t\n";

KernelModel kernel61() {
  KernelModel k;
  k.release = "6.1.0-56-amd64";
  k.vermagic = kVermagic61;
  k.symvers_source = "test:Module.symvers";
  auto sv = parse_symvers(kSymvers61, k.symvers_source);
  REQUIRE(sv);
  k.symvers = std::move(*sv);
  k.modversions = true;
  k.version_major = 6;
  k.version_minor = 1;
  k.this_module_size = 1280;
  k.in_tree["drm"] = InTreeModule{"drm", "/lib/modules/6.1.0-56-amd64/kernel/drivers/gpu/drm/drm.ko", {}};
  k.in_tree["drm_kms_helper"] =
      InTreeModule{"drm_kms_helper", "/lib/modules/6.1.0-56-amd64/kernel/drivers/gpu/drm/drm_kms_helper.ko", {"drm"}};
  return k;
}

// A GPL module built for that kernel, importing `imports` with the kernel's own CRCs.
ModuleInfo module(const std::string& name, std::vector<std::string> imports = {"_printk"}) {
  ModuleInfo m;
  m.path = "/opt/lib/modules/6.1.0-56-amd64/" + name + ".ko";
  m.name = name;
  m.compression = "none";
  m.vermagic = kVermagic61;
  m.license = "GPL";
  m.modinfo = {{"intree", "Y"}, {"retpoline", "Y"}};  // built in the kernel's tree: no taint
  m.has_versions = true;
  m.versions_alloc = true;
  m.this_module_size = 1280;
  const Symvers sv = parse_symvers(kSymvers61, "t").value();
  m.versions.push_back({"module_layout", sv.find("module_layout")->crc});
  for (const auto& s : imports) {
    m.undefined.push_back({s, false});
    if (const SymversEntry* e = sv.find(s)) m.versions.push_back({s, e->crc});
    if (const SymversEntry* e = sv.find(s); e && !e->ns.empty()) m.import_ns.push_back(e->ns);
  }
  return m;
}

VersionEntry* version(ModuleInfo& m, const std::string& sym) {
  for (auto& v : m.versions)
    if (v.name == sym) return &v;
  FAIL("no version entry " << sym);
  return nullptr;
}

ModuleVerdict one(const ModuleInfo& m, const KernelModel& k) {
  Evaluation ev = evaluate({m}, k);
  REQUIRE(ev.modules.size() == 1);
  return ev.modules[0];
}

const Reason* find_reason(const ModuleVerdict& v, const std::string& code) {
  for (const auto& r : v.reasons)
    if (r.code == code) return &r;
  return nullptr;
}

const ModuleVerdict& by_name(const Evaluation& ev, const std::string& name) {
  for (const auto& m : ev.modules)
    if (m.name == name) return m;
  FAIL("no verdict for " << name);
  return ev.modules.front();
}

size_t fatal_count(const ModuleVerdict& v) {
  size_t n = 0;
  for (const auto& r : v.reasons) n += r.fatal;
  return n;
}

std::string codes(const ModuleVerdict& v) {
  std::string s;
  for (const auto& r : v.reasons) s += r.code + (r.symbol.empty() ? "" : "(" + r.symbol + ")") + " ";
  return s;
}

#define REQUIRE_LOADABLE(v)                    \
  do {                                         \
    INFO("reasons: " << codes(v));             \
    REQUIRE((v).verdict == Verdict::Loadable); \
    REQUIRE((v).err == 0);                     \
  } while (0)

#define REQUIRE_REFUSED(v, errno_value)         \
  do {                                          \
    INFO("reasons: " << codes(v));              \
    REQUIRE((v).verdict == Verdict::Refused);   \
    REQUIRE(errno_name((v).err) == errno_name(errno_value)); \
  } while (0)

}  // namespace

// ---- the baseline --------------------------------------------------------------------------

TEST_CASE("rules: a module built for the kernel loads", "[rules]") {
  auto v = one(module("i915", {"_printk", "jiffies", "drm_dev_register"}), kernel61());
  REQUIRE_LOADABLE(v);
  CHECK(v.reasons.empty());
  CHECK(v.name == "i915");
  CHECK(v.path == "/opt/lib/modules/6.1.0-56-amd64/i915.ko");
  CHECK(v.load_after == std::vector<std::string>{"drm"});
}

TEST_CASE("rules: the basic fixture against a kernel built from the same tree", "[rules][fixtures]") {
  auto m = read_module(fixture("basic.ko"));
  REQUIRE(m);
  auto v = one(*m, kernel61());
  REQUIRE_LOADABLE(v);
  // kabi_optional_hook is weak and nowhere: fine. dma_buf_get's namespace is imported.
  CHECK(v.reasons.empty());
  CHECK(v.load_after == std::vector<std::string>{"drm"});
}

// ---- module_layout -------------------------------------------------------------------------

TEST_CASE("rules: module_layout CRC differs -> ENOEXEC, before vermagic", "[rules]") {
  ModuleInfo m = module("i915");
  version(m, "module_layout")->crc = 0x11111111;
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);
  const Reason* r = nullptr;
  for (const auto& x : v.reasons)
    if (x.symbol == "module_layout") r = &x;
  REQUIRE(r);
  CHECK(r->fatal);
  CHECK(r->err == ENOEXEC);
  CHECK(r->expected_crc == 0x6d4c2fd1u);
  CHECK(r->found_crc == 0x11111111u);
  CHECK_THAT(r->message, Contains("disagrees about version of symbol module_layout"));
  CHECK(r->code == reason::kModuleLayout);

  // Also refused for vermagic: module_layout is reported first, as the kernel checks it first.
  m.vermagic = "6.1.0-47-amd64 SMP preempt_rt mod_unload modversions ";
  auto both = one(m, kernel61());
  REQUIRE_REFUSED(both, ENOEXEC);
  REQUIRE(both.reasons.size() == 2);
  CHECK(both.reasons[0].symbol == "module_layout");
  CHECK(both.reasons[1].code == reason::kVermagic);
}

TEST_CASE("rules: module_layout missing from __versions, strict policy -> ENOEXEC", "[rules]") {
  ModuleInfo m = module("i915");
  m.versions.erase(m.versions.begin());  // drop module_layout
  auto v = one(m, kernel61());
  // check_modstruct_version() failing makes load_module() return -ENOEXEC whatever the reason.
  REQUIRE_REFUSED(v, ENOEXEC);
}

TEST_CASE("rules: module_layout missing from __versions, upstream policy -> warning", "[rules]") {
  ModuleInfo m = module("i915");
  m.versions.erase(m.versions.begin());
  KernelModel k = kernel61();
  k.policy = MissingVersionPolicy::Upstream;
  auto v = one(m, k);
  REQUIRE_LOADABLE(v);
  REQUIRE(find_reason(v, reason::kNoSymbolVersionWarn));
  CHECK_FALSE(find_reason(v, reason::kNoSymbolVersionWarn)->fatal);
}

// ---- vermagic ------------------------------------------------------------------------------

TEST_CASE("rules: vermagic differs beyond the release word -> ENOEXEC", "[rules]") {
  ModuleInfo m = module("i915");
  m.vermagic = "6.1.0-56-amd64 SMP preempt_dynamic mod_unload modversions ";
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);
  const Reason* r = find_reason(v, reason::kVermagic);
  REQUIRE(r);
  CHECK(r->err == ENOEXEC);
  CHECK_THAT(r->message, Contains("version magic '6.1.0-56-amd64 SMP preempt_dynamic mod_unload modversions ' "
                                  "should be '6.1.0-56-amd64 SMP preempt mod_unload modversions '"));
}

TEST_CASE("rules: only the release word differs: accepted with CRCs", "[rules]") {
  ModuleInfo m = module("i915", {"_printk", "drm_dev_register"});
  m.vermagic = "6.1.0-55-amd64 SMP preempt mod_unload modversions ";
  auto v = one(m, kernel61());
  REQUIRE_LOADABLE(v);
  CHECK_FALSE(find_reason(v, reason::kVermagic));
}

TEST_CASE("rules: only the release word differs: refused without an SHF_ALLOC __versions", "[rules]") {
  SECTION("no __versions at all") {
    ModuleInfo m = module("i915");
    m.vermagic = "6.1.0-55-amd64 SMP preempt mod_unload modversions ";
    m.has_versions = false;
    m.versions_alloc = false;
    m.versions.clear();
    auto v = one(m, kernel61());
    REQUIRE_REFUSED(v, ENOEXEC);
    CHECK(find_reason(v, reason::kVermagic));
  }
  SECTION("__versions present but not SHF_ALLOC (fixture)") {
    auto m = read_module(fixture("nonalloc.ko"));
    REQUIRE(m);
    m->vermagic = "6.1.0-55-amd64 SMP preempt mod_unload modversions ";
    auto v = one(*m, kernel61());
    REQUIRE_REFUSED(v, ENOEXEC);
    CHECK(find_reason(v, reason::kVermagic));
  }
  SECTION("the same vermagic: the non-SHF_ALLOC fixture is a forced load") {
    auto m = read_module(fixture("nonalloc.ko"));
    REQUIRE(m);
    auto v = one(*m, kernel61());
    REQUIRE_LOADABLE(v);
    CHECK(find_reason(v, reason::kNoVersionsTable));
  }
}

TEST_CASE("rules: no vermagic at all is a forced load; an empty one is compared", "[rules]") {
  // check_modinfo(): no "vermagic=" -> try_to_force_load("bad vermagic"), which a kernel with
  // MODULE_FORCE_LOAD (Debian 6.1, 6.12) accepts with a taint; "vermagic=" with nothing after
  // it is a vermagic, and it does not match.
  ModuleInfo m = module("i915");
  m.vermagic.clear();
  m.has_vermagic = false;
  auto v = one(m, kernel61());
  REQUIRE_LOADABLE(v);
  const Reason* r = find_reason(v, reason::kNoVermagic);
  REQUIRE(r);
  CHECK_FALSE(r->fatal);
  CHECK(r->message == "i915: bad vermagic: kernel tainted.");
  CHECK_FALSE(find_reason(v, reason::kVermagic));

  m.has_vermagic = true;  // "vermagic="
  auto e = one(m, kernel61());
  REQUIRE_REFUSED(e, ENOEXEC);
  CHECK(find_reason(e, reason::kVermagic));
}

// ---- elf_validity_check --------------------------------------------------------------------

TEST_CASE("rules: a module for another machine -> ENOEXEC", "[rules]") {
  ModuleInfo m = module("i915");
  m.elf_machine = 183;  // EM_AARCH64 on x86-64
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);
  const Reason* r = find_reason(v, reason::kElfMachine);
  REQUIRE(r);
  CHECK(r->message == "Invalid architecture in ELF header: 183");
}

TEST_CASE("rules: a wrong e_shentsize -> ENOEXEC", "[rules]") {
  ModuleInfo m = module("i915");
  m.elf_shentsize = 8;
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);
  const Reason* r = find_reason(v, reason::kElfShentsize);
  REQUIRE(r);
  CHECK_THAT(r->message, Contains("Invalid ELF section header size"));
}

TEST_CASE("rules: symbol tables: none -> ENOEXEC; two -> the first on 6.1, ENOEXEC from 6.4", "[rules]") {
  ModuleInfo m = module("i915");
  KernelModel k = kernel61();
  m.symtab_count = 0;
  auto none = one(m, k);
  REQUIRE_REFUSED(none, ENOEXEC);
  CHECK(find_reason(none, reason::kNoSymbolTable)->message == "i915: module has no symbols (stripped?)");

  m.symtab_count = 2;
  auto v61 = one(m, k);
  REQUIRE_LOADABLE(v61);
  CHECK_FALSE(find_reason(v61, reason::kMultipleSymbolTablesUnchecked)->fatal);
  k.version_minor = 12;
  auto v612 = one(m, k);
  REQUIRE_REFUSED(v612, ENOEXEC);
  CHECK_THAT(find_reason(v612, reason::kMultipleSymbolTables)->message,
             Contains("i915: module has no symbols (stripped?)"));
  k.version_minor = 4;
  REQUIRE_REFUSED(one(m, k), ENOEXEC);
  k.version_minor = 3;
  REQUIRE_LOADABLE(one(m, k));
}

TEST_CASE("rules: ELF problems read from real bytes, end to end", "[rules][fixtures]") {
  const std::string basic = kabi_test::slurp(fixture("basic.ko"));
  std::string b = basic;
  b[18] = static_cast<char>(183);  // e_machine, little-endian low byte (62 -> 183)
  auto arm = parse_module(b, "arm64.ko");
  REQUIRE(arm);
  REQUIRE_REFUSED(one(*arm, kernel61()), ENOEXEC);
  b = basic;
  b[0x3a] = 8;  // e_shentsize 64 -> 8
  auto shent = parse_module(b, "shentsize.ko");
  REQUIRE(shent);
  auto v = one(*shent, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);
  CHECK(find_reason(v, reason::kElfShentsize));
  auto good = parse_module(basic, "basic.ko");
  REQUIRE(good);
  CHECK_FALSE(find_reason(one(*good, kernel61()), reason::kElfMachine));
  CHECK_FALSE(find_reason(one(*good, kernel61()), reason::kElfShentsize));
}

// ---- struct module size (6.12+) -------------------------------------------------------------

TEST_CASE("rules: .gnu.linkonce.this_module size differs -> ENOEXEC on 6.12+, ignored before", "[rules]") {
  ModuleInfo m = module("i915");
  m.this_module_size = 1344;
  KernelModel k = kernel61();
  REQUIRE_LOADABLE(one(m, k));
  k.version_minor = 12;
  auto v = one(m, k);
  REQUIRE_REFUSED(v, ENOEXEC);
  CHECK(find_reason(v, reason::kModuleStructSize));
  k.version_major = 7;
  k.version_minor = 0;
  REQUIRE_REFUSED(one(m, k), ENOEXEC);
  k.this_module_size = 0;  // unknown: nothing to compare
  REQUIRE_LOADABLE(one(m, k));
}

// ---- already loaded ------------------------------------------------------------------------

TEST_CASE("rules: a live module of the same name -> EEXIST", "[rules]") {
  KernelModel k = kernel61();
  k.live = {"i915", "drm"};
  auto v = one(module("i915"), k);
  REQUIRE_REFUSED(v, EEXIST);
  CHECK(find_reason(v, reason::kAlreadyLoaded));
  REQUIRE_LOADABLE(one(module("xe"), k));
}

TEST_CASE("rules: the same name twice in one set -> EEXIST for the second", "[rules]") {
  // i915.ko and i915.ko.xz inserted one after the other: the second finds the first live
  // (add_unformed_module; early_mod_check on 6.4+), after the vermagic check.
  ModuleInfo a = module("i915");
  ModuleInfo b = module("i915");
  b.path += ".xz";
  Evaluation ev = evaluate({a, b}, kernel61());
  REQUIRE(ev.modules.size() == 2);
  CHECK(ev.modules[0].path == a.path);
  REQUIRE_LOADABLE(ev.modules[0]);
  REQUIRE_REFUSED(ev.modules[1], EEXIST);
  CHECK(find_reason(ev.modules[1], reason::kDuplicateInSet));
  CHECK_FALSE(ev.all_loadable());

  SECTION("a vermagic problem comes first") {
    ModuleInfo bad = b;
    bad.vermagic = "6.1.0-56-amd64 SMP preempt_rt mod_unload modversions ";
    REQUIRE_REFUSED(evaluate({a, bad}, kernel61()).modules[1], ENOEXEC);
  }
  SECTION("the first refused: the second loads") {
    ModuleInfo bad = a;
    bad.vermagic = "6.1.0-56-amd64 SMP preempt_rt mod_unload modversions ";
    Evaluation e = evaluate({bad, b}, kernel61());
    REQUIRE_REFUSED(e.modules[0], ENOEXEC);
    REQUIRE_LOADABLE(e.modules[1]);
  }
  SECTION("a user of the name sees it loaded, whatever the copy's verdict") {
    ModuleInfo drm = module("drm", {"_printk"});
    drm.exports.push_back({"drm_dev_register", 0x1c3a7b21u, false, ""});
    ModuleInfo drm2 = drm;
    drm2.path += ".xz";
    ModuleInfo user = module("i915", {"drm_dev_register"});
    Evaluation e = evaluate({drm, drm2, user}, kernel61());
    REQUIRE_LOADABLE(by_name(e, "i915"));
  }
}

// ---- symbols -------------------------------------------------------------------------------

// ---- duplicate exports (verify_exported_symbols) and built-ins (mod_sysfs_init) ---------------

ModuleInfo exporting(const std::string& name, const std::vector<std::string>& exports) {
  ModuleInfo m = module(name);
  for (const auto& e : exports) m.exports.push_back({e, std::nullopt, false, ""});
  return m;
}

TEST_CASE("rules: exporting a symbol vmlinux exports -> ENOEXEC, owned by kernel", "[rules]") {
  KernelModel k = kernel61();
  REQUIRE(k.symvers.find("jiffies"));
  REQUIRE(k.symvers.find("jiffies")->owner == "vmlinux");
  auto v = one(exporting("helper", {"helper_fn", "jiffies"}), k);
  REQUIRE_REFUSED(v, ENOEXEC);
  const Reason* r = find_reason(v, reason::kDuplicateExport);
  REQUIRE(r);
  CHECK(r->symbol == "jiffies");
  CHECK(r->message == "helper: exports duplicate symbol jiffies (owned by kernel)");
  REQUIRE_LOADABLE(one(exporting("helper", {"helper_fn"}), k));
}

TEST_CASE("rules: an in-tree module's export collides only while that module is loaded", "[rules]") {
  KernelModel k = kernel61();
  REQUIRE(k.symvers.find("drm_dev_register")->owner == "drivers/gpu/drm/drm");
  const ModuleInfo copy = exporting("drm_copy", {"drm_dev_register"});
  // Offline nothing is loaded that the set does not load.
  REQUIRE_LOADABLE(one(copy, k));
  SECTION("live: refused naming it") {
    k.live = {"drm"};
    auto v = one(copy, k);
    REQUIRE_REFUSED(v, ENOEXEC);
    CHECK_THAT(find_reason(v, reason::kDuplicateExport)->message, Contains("(owned by drm)"));
  }
  SECTION("pulled in as an in-tree dependency of the module itself") {
    ModuleInfo m = copy;
    m.undefined.push_back({"drm_kms_helper_poll_init", false});  // drm_kms_helper -> drm
    m.versions.push_back({"drm_kms_helper_poll_init", k.symvers.find("drm_kms_helper_poll_init")->crc});
    auto v = one(m, k);
    REQUIRE_REFUSED(v, ENOEXEC);
    CHECK_THAT(find_reason(v, reason::kDuplicateExport)->message, Contains("(owned by drm)"));
  }
  SECTION("pulled in by an earlier member of the set") {
    // (not a user of drm_dev_register: the set's own export would serve it, loaded first)
    ModuleInfo user = module("user", {"drm_kms_helper_poll_init"});
    Evaluation ev = evaluate({user, copy}, k);
    REQUIRE(by_name(ev, "user").load_after == std::vector<std::string>{"drm", "drm_kms_helper"});
    REQUIRE_LOADABLE(by_name(ev, "user"));
    REQUIRE_REFUSED(by_name(ev, "drm_copy"), ENOEXEC);
  }
  SECTION("a set that replaces the in-tree module (same name) exports its symbols legitimately") {
    // (a live in-tree copy is unloaded first by the entrypoint, else already_loaded)
    REQUIRE_LOADABLE(one(exporting("drm", {"drm_dev_register"}), k));
    ModuleInfo user = module("user", {"drm_dev_register"});
    Evaluation ev = evaluate({exporting("drm", {"drm_dev_register"}), user}, k);
    CHECK(ev.all_loadable());
  }
}

TEST_CASE("rules: a symbol an earlier module of the set exports -> ENOEXEC naming it", "[rules]") {
  // drm_display_helper, then a renamed copy with the same exports.
  const ModuleInfo a = exporting("dh", {"dh_fn"});
  const ModuleInfo b = exporting("dh_copy", {"dh_fn"});
  Evaluation ev = evaluate({a, b}, kernel61());
  REQUIRE_LOADABLE(ev.modules[0]);
  REQUIRE_REFUSED(ev.modules[1], ENOEXEC);
  CHECK(find_reason(ev.modules[1], reason::kDuplicateExport)->message ==
        "dh_copy: exports duplicate symbol dh_fn (owned by dh)");
  SECTION("the first refused: nothing to collide with") {
    ModuleInfo bad = a;
    bad.vermagic = "6.1.0-56-amd64 SMP preempt_rt mod_unload modversions ";
    Evaluation e = evaluate({bad, b}, kernel61());
    REQUIRE_REFUSED(e.modules[0], ENOEXEC);
    REQUIRE_LOADABLE(e.modules[1]);
  }
}

TEST_CASE("rules: live modules outside the symvers: their read exports, or a warning", "[rules]") {
  KernelModel k = kernel61();
  k.live = {"oot"};
  k.live_exports = {{"oot_fn", "oot"}};
  auto v = one(exporting("helper", {"oot_fn"}), k);
  REQUIRE_REFUSED(v, ENOEXEC);
  CHECK_THAT(find_reason(v, reason::kDuplicateExport)->message, Contains("(owned by oot)"));
  k.live_exports.clear();
  k.live_exports_unknown = {"oot"};
  v = one(exporting("helper", {"oot_fn"}), k);
  REQUIRE_LOADABLE(v);
  const Reason* w = find_reason(v, reason::kLiveExportsUnread);
  REQUIRE(w);
  CHECK_FALSE(w->fatal);
  CHECK_THAT(w->message, Contains("oot"));
  CHECK_FALSE(find_reason(one(module("noexports"), k), reason::kLiveExportsUnread));
}

TEST_CASE("rules: a built-in with /sys/module of that name -> EINVAL; without, a warning", "[rules]") {
  KernelModel k = kernel61();
  k.builtin_sysfs = {"i8042"};
  k.builtin = {"crc32c_intel"};
  auto v = one(module("i8042"), k);
  REQUIRE_REFUSED(v, EINVAL);
  CHECK_THAT(find_reason(v, reason::kBuiltinModule)->message, Contains("i8042: module is already loaded"));
  CHECK_FALSE(find_reason(v, reason::kAlreadyLoaded));
  v = one(module("crc32c_intel"), k);
  REQUIRE_LOADABLE(v);
  CHECK(find_reason(v, reason::kBuiltinSameName));
  SECTION("exports come first: ENOEXEC before sysfs") {
    REQUIRE_REFUSED(one(exporting("i8042", {"jiffies"}), k), ENOEXEC);
  }
  SECTION("built-ins not read: a warning, never a silent pass") {
    k.builtins_unread = "modules.builtin: No such file";
    v = one(module("other"), k);
    REQUIRE_LOADABLE(v);
    CHECK_THAT(find_reason(v, reason::kBuiltinsUnknown)->message, Contains("modules.builtin: No such file"));
  }
}

TEST_CASE("rules: an unknown symbol -> ENOENT, named", "[rules]") {
  ModuleInfo m = module("i915", {"_printk", "drm_gem_renamed"});
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOENT);
  const Reason* r = find_reason(v, reason::kUnknownSymbol);
  REQUIRE(r);
  CHECK(r->symbol == "drm_gem_renamed");
  CHECK(r->err == ENOENT);
  CHECK_THAT(r->message, Contains("Unknown symbol drm_gem_renamed (err -2)"));
  CHECK(fatal_count(v) == 1);
}

TEST_CASE("rules: a weak undefined symbol nobody exports is fine", "[rules]") {
  ModuleInfo m = module("i915");
  m.undefined.push_back({"optional_hook", true});
  REQUIRE_LOADABLE(one(m, kernel61()));
  // A weak reference to a GPL-only symbol from a non-GPL module resolves to 0 too.
  ModuleInfo p = module("blob", {"_printk"});
  p.license = "Proprietary";
  p.undefined.push_back({"gpl_only_fn", true});
  REQUIRE_LOADABLE(one(p, kernel61()));
}

TEST_CASE("rules: symbols from a proprietary module (inherit_taint)", "[rules]") {
  // Messages: kernel/module/main.c inherit_taint() (6.1.192, 6.12.118, 7.2.13 alike).
  KernelModel k = kernel61();
  k.live = {"drm"};
  REQUIRE(k.symvers.find("drm_dev_register"));
  REQUIRE(owner_module_name(k.symvers.find("drm_dev_register")->owner) == "drm");
  REQUIRE(is_gpl_only(k.symvers.find("gpl_only_fn")->type));
  REQUIRE_LOADABLE(one(module("i915", {"gpl_only_fn", "drm_dev_register"}), k));  // drm not P: fine
  k.live_proprietary = {"drm"};

  SECTION("after a GPL-only symbol: ENOENT") {
    auto v = one(module("i915", {"gpl_only_fn", "drm_dev_register"}), k);
    REQUIRE_REFUSED(v, ENOENT);
    const Reason* r = find_reason(v, reason::kProprietaryProvider);
    REQUIRE(r);
    CHECK(r->symbol == "drm_dev_register");
    CHECK(r->message ==
          "i915: module using GPL-only symbols uses symbols drm_dev_register from proprietary module drm.");
  }
  SECTION("before any: the taint is inherited, and GPL-only symbols after it are not found") {
    auto v = one(module("i915", {"drm_dev_register", "gpl_only_fn"}), k);
    REQUIRE_REFUSED(v, ENOENT);
    const Reason* w = find_reason(v, reason::kInheritsProprietaryTaint);
    REQUIRE(w);
    CHECK_FALSE(w->fatal);
    CHECK(w->message == "i915: module uses symbols drm_dev_register from proprietary module drm, inheriting taint.");
    const Reason* g = find_reason(v, reason::kGplOnlySymbol);
    REQUIRE(g);
    CHECK(g->symbol == "gpl_only_fn");
    CHECK_FALSE(find_reason(v, reason::kProprietaryProvider));
  }
  SECTION("no GPL-only symbol at all: loads, tainted") {
    auto v = one(module("i915", {"_printk", "drm_dev_register"}), k);
    REQUIRE_LOADABLE(v);
    CHECK(find_reason(v, reason::kInheritsProprietaryTaint));
  }
  SECTION("a module proprietary by its licence inherits nothing") {
    ModuleInfo m = module("blob", {"drm_dev_register"});
    m.license = "Proprietary";
    auto v = one(m, k);
    REQUIRE_LOADABLE(v);
    CHECK_FALSE(find_reason(v, reason::kInheritsProprietaryTaint));
  }
  SECTION("a set member with a non-GPL licence is a proprietary provider") {
    ModuleInfo provider = module("blob_helper", {"_printk"});
    provider.license = "Proprietary";
    provider.exports.push_back({"blob_fn", 0x11112222u, false, ""});
    ModuleInfo user = module("i915", {"gpl_only_fn"});
    user.undefined.push_back({"blob_fn", false});
    user.versions.push_back({"blob_fn", 0x11112222u});
    Evaluation e = evaluate({provider, user}, kernel61());
    REQUIRE(e.modules.size() == 2);
    REQUIRE_LOADABLE(e.modules[0]);
    REQUIRE_REFUSED(e.modules[1], ENOENT);
    CHECK(find_reason(e.modules[1], reason::kProprietaryProvider)->symbol == "blob_fn");
    provider.license = "GPL";
    REQUIRE(evaluate({provider, user}, kernel61()).all_loadable());
  }
}

TEST_CASE("rules: stages after the symbols settle in the kernel's order", "[rules]") {
  // load_module(): complete_formation (duplicate exports, ENOEXEC) -> parse_args (EINVAL) ->
  // mod_sysfs_setup (a built-in's name, EINVAL) -> do_init_module (nomodeset, ENODEV).
  KernelModel k = kernel61();
  ModuleInfo m = exporting("i915", {"jiffies"});
  m.modinfo.push_back({"parmtype", "enable_guc:int"});
  k.params["i915"] = {ModuleParam{"enable_guc", std::string("notanumber"), "/etc/modprobe.d/i915.conf:1"}};
  auto v = one(m, k);
  REQUIRE(find_reason(v, reason::kParameterInvalid));
  REQUIRE(find_reason(v, reason::kDuplicateExport));
  CHECK(v.err == ENOEXEC);
  // Without the duplicate: the parameter's EINVAL; with a built-in's name and nomodeset
  // (6.12 code) the sysfs EINVAL comes before the init's ENODEV.
  ModuleInfo x = module("xe");
  k.nomodeset = true;
  REQUIRE(one(x, k).err == ENODEV);
  k.builtin_sysfs.insert("xe");
  auto b = one(x, k);
  REQUIRE(find_reason(b, reason::kNomodesetInitFails));
  CHECK(b.err == EINVAL);
}

TEST_CASE("rules: an unsafe parameter taints, a hardware one is refused under lockdown", "[rules]") {
  // kernel/params.c param_check_unsafe(), reached from parse_one() once the word has a value
  // (or the type takes none).
  KernelModel k = kernel61();
  ModuleInfo m = module("i915");
  m.modinfo.push_back({"parmtype", "enable_guc:int"});
  m.modinfo.push_back({"parmtype", "io:ulong"});
  m.unsafe_params = {"enable_guc"};
  m.hw_params = {"io"};
  k.params["i915"] = {ModuleParam{"enable_guc", std::string("3"), "/etc/modprobe.d/i915.conf:1"},
                      ModuleParam{"io", std::string("0x300"), "/proc/cmdline"}};
  auto v = one(m, k);
  REQUIRE_LOADABLE(v);
  const Reason* u = find_reason(v, reason::kParameterUnsafe);
  REQUIRE(u);
  CHECK_FALSE(u->fatal);
  CHECK(u->message == "Setting dangerous option enable_guc - tainting kernel (from /etc/modprobe.d/i915.conf:1)");
  CHECK_FALSE(find_reason(v, reason::kParameterLockedDown));
  k.lockdown = true;
  auto locked = one(m, k);
  REQUIRE_REFUSED(locked, EPERM);
  CHECK(find_reason(locked, reason::kParameterLockedDown)->symbol == "io");
  // parse_args()'s line as the kernel printed it for parport_pc's io=0x378 under lockdown
  // (tests/e2e/README.md): "parport_pc: `0x378' invalid for parameter `io'".
  CHECK_THAT(find_reason(locked, reason::kParameterLockedDown)->message, Contains("i915: `0x300' invalid for parameter `io'"));
  // No value for an int: EINVAL before the unsafe check, no taint.
  k.lockdown = false;
  k.params["i915"] = {ModuleParam{"enable_guc", std::nullopt, "/proc/cmdline"}};
  auto novalue = one(m, k);
  CHECK_FALSE(find_reason(novalue, reason::kParameterUnsafe));
}

TEST_CASE("rules: a weak symbol that resolves must still match its CRC", "[rules]") {
  // resolve_symbol() returns ERR_PTR(-EINVAL), not NULL, so the weak binding does not help.
  ModuleInfo m = module("i915", {"drm_dev_register"});
  m.undefined[0].weak = true;
  version(m, "drm_dev_register")->crc = 0x1;
  REQUIRE_REFUSED(one(m, kernel61()), EINVAL);
}

TEST_CASE("rules: a weak symbol of an in-tree module the tree lacks is fine", "[rules]") {
  // No module provides it at load time, so the weak reference resolves to 0 as for any
  // missing weak symbol.
  ModuleInfo m = module("i915", {"_printk"});
  m.undefined.push_back({"orphan_fn", true});
  m.versions.push_back({"orphan_fn", 0x5a5a5a5a});
  REQUIRE_LOADABLE(one(m, kernel61()));
}

TEST_CASE("rules: a GPL-only symbol in a non-GPL module -> ENOENT", "[rules]") {
  ModuleInfo m = module("blob", {"_printk", "gpl_only_fn"});
  m.license = "Proprietary";
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOENT);
  const Reason* r = find_reason(v, reason::kGplOnlySymbol);
  REQUIRE(r);
  CHECK(r->symbol == "gpl_only_fn");
  CHECK_THAT(r->message, Contains("Unknown symbol gpl_only_fn (err -2)"));

  // Every licence string license_is_gpl_compatible() accepts.
  for (const char* ok : {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}) {
    INFO(ok);
    m.license = ok;
    REQUIRE_LOADABLE(one(m, kernel61()));
  }
  for (const char* bad : {"", "MIT", "BSD", "GPLv2", "gpl"}) {
    INFO(bad);
    m.license = bad;
    REQUIRE_REFUSED(one(m, kernel61()), ENOENT);
  }
  // GPL_FUTURE exports are not GPL-only.
  ModuleInfo f = module("blob", {"gpl_future_fn"});
  f.license = "Proprietary";
  REQUIRE_LOADABLE(one(f, kernel61()));
}

TEST_CASE("rules: a CRC mismatch -> EINVAL with both CRCs", "[rules]") {
  ModuleInfo m = module("i915", {"_printk", "drm_dev_register"});
  version(m, "drm_dev_register")->crc = 0xdeadbeef;
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, EINVAL);
  const Reason* r = find_reason(v, reason::kCrcMismatch);
  REQUIRE(r);
  CHECK(r->symbol == "drm_dev_register");
  CHECK(r->expected_crc == 0x1c3a7b21u);
  CHECK(r->found_crc == 0xdeadbeefu);
  CHECK(r->err == EINVAL);
  CHECK_THAT(r->message, Contains("i915: disagrees about version of symbol drm_dev_register"));
}

TEST_CASE("rules: a CRC is compared in all 32 bits", "[rules]") {
  // The kernel compares the whole unsigned long; CRCs that differ in one bit of either half differ.
  for (const uint32_t flip : {0x00010000u, 0x80000000u, 0x00000001u}) {
    ModuleInfo m = module("i915", {"_printk", "drm_dev_register"});
    version(m, "drm_dev_register")->crc = 0x1c3a7b21u ^ flip;
    INFO("the module's CRC 0x" << std::hex << (0x1c3a7b21u ^ flip) << ", the kernel's 0x1c3a7b21");
    auto v = one(m, kernel61());
    REQUIRE_REFUSED(v, EINVAL);
    CHECK(find_reason(v, reason::kCrcMismatch));
  }
}

TEST_CASE("rules: a symbol without a __versions entry", "[rules]") {
  ModuleInfo m = module("i915", {"_printk", "jiffies"});
  m.versions.erase(m.versions.begin() + 2);  // jiffies
  REQUIRE_FALSE(m.find_version("jiffies"));
  SECTION("strict (Debian) -> EINVAL") {
    auto v = one(m, kernel61());
    REQUIRE_REFUSED(v, EINVAL);
    const Reason* r = find_reason(v, reason::kNoSymbolVersion);
    REQUIRE(r);
    CHECK(r->symbol == "jiffies");
    CHECK(r->fatal);
    CHECK_THAT(r->message, Contains("no symbol version for jiffies"));
  }
  SECTION("upstream -> a warning, accepted") {
    KernelModel k = kernel61();
    k.policy = MissingVersionPolicy::Upstream;
    auto v = one(m, k);
    REQUIRE_LOADABLE(v);
    const Reason* r = find_reason(v, reason::kNoSymbolVersionWarn);
    REQUIRE(r);
    CHECK(r->symbol == "jiffies");
    CHECK_FALSE(r->fatal);
  }
}

TEST_CASE("rules: a namespaced symbol not imported -> EINVAL", "[rules]") {
  ModuleInfo m = module("i915", {"_printk", "dma_buf_get"});
  REQUIRE_LOADABLE(one(m, kernel61()));
  m.import_ns.clear();
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, EINVAL);
  const Reason* r = find_reason(v, reason::kNamespaceNotImported);
  REQUIRE(r);
  CHECK(r->symbol == "dma_buf_get");
  CHECK_THAT(r->message, Contains("module uses symbol (dma_buf_get) from namespace DMA_BUF, but does not import it."));
  m.import_ns = {"SOME_OTHER_NS"};
  REQUIRE_REFUSED(one(m, kernel61()), EINVAL);
}

TEST_CASE("rules: the errno is the last failing symbol's", "[rules]") {
  // simplify_symbols() reports every bad symbol but keeps only the last one's error.
  ModuleInfo crc_then_unknown = module("i915", {"drm_dev_register", "no_such_symbol"});
  version(crc_then_unknown, "drm_dev_register")->crc = 1;
  auto a = one(crc_then_unknown, kernel61());
  REQUIRE_REFUSED(a, ENOENT);
  CHECK(fatal_count(a) == 2);

  ModuleInfo unknown_then_crc = module("i915", {"no_such_symbol", "drm_dev_register"});
  version(unknown_then_crc, "drm_dev_register")->crc = 1;
  auto b = one(unknown_then_crc, kernel61());
  REQUIRE_REFUSED(b, EINVAL);
  CHECK(fatal_count(b) == 2);

  // A later good symbol does not clear the error.
  ModuleInfo bad_then_good = module("i915", {"no_such_symbol", "_printk"});
  REQUIRE_REFUSED(one(bad_then_good, kernel61()), ENOENT);

  // Namespace last: EINVAL.
  ModuleInfo ns_last = module("i915", {"no_such_symbol", "dma_buf_get"});
  ns_last.import_ns.clear();
  REQUIRE_REFUSED(one(ns_last, kernel61()), EINVAL);
}

TEST_CASE("rules: an earlier stage's errno wins over the symbols'", "[rules]") {
  KernelModel k = kernel61();
  k.live = {"i915"};
  ModuleInfo m = module("i915", {"no_such_symbol"});
  auto v = one(m, k);
  REQUIRE_REFUSED(v, EEXIST);
  // ... but the report still names everything that would need fixing.
  CHECK(find_reason(v, reason::kUnknownSymbol));
}

TEST_CASE("rules: a symbol of an in-tree module the tree lacks -> ENOENT", "[rules]") {
  ModuleInfo m = module("i915", {"orphan_fn"});
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOENT);
  const Reason* r = find_reason(v, reason::kMissingDependency);
  REQUIRE(r);
  CHECK(r->symbol == "orphan_fn");
}

TEST_CASE("rules: in-tree dependencies are listed with theirs", "[rules]") {
  auto v = one(module("i915", {"drm_kms_helper_poll_init"}), kernel61());
  REQUIRE_LOADABLE(v);
  CHECK(v.load_after == std::vector<std::string>{"drm", "drm_kms_helper"});
}

// ---- no versions table, no modversions -----------------------------------------------------

TEST_CASE("rules: a module without __versions on a modversions kernel is a forced load", "[rules]") {
  ModuleInfo m = module("i915", {"_printk", "drm_dev_register", "jiffies"});
  m.has_versions = false;
  m.versions_alloc = false;
  m.versions.clear();
  auto v = one(m, kernel61());
  REQUIRE_LOADABLE(v);
  size_t warnings = 0;
  for (const auto& r : v.reasons) {
    CHECK_FALSE(r.fatal);
    warnings += r.code == reason::kNoVersionsTable;
  }
  CHECK(warnings == 1);  // once per module, as the kernel taints once
}

TEST_CASE("rules: a kernel without MODVERSIONS checks no CRCs but the whole vermagic", "[rules]") {
  KernelModel k;
  k.release = "7.2.13-amd64";
  k.vermagic = "7.2.13-amd64 SMP preempt mod_unload ";
  k.symvers = read_symvers(kabi_test::source_fixture("Module.symvers.nomodversions")).value();
  REQUIRE_FALSE(k.symvers.modversions);
  k.modversions = false;
  k.version_major = 7;
  k.version_minor = 2;

  SECTION("the fixture built for it") {
    auto m = read_module(fixture("noversions.ko"));
    REQUIRE(m);
    auto v = one(*m, k);
    REQUIRE_LOADABLE(v);
    REQUIRE(find_reason(v, reason::kNoModversions));
    CHECK_FALSE(find_reason(v, reason::kNoModversions)->fatal);
    CHECK_FALSE(find_reason(v, reason::kNoVersionsTable));
  }
  SECTION("CRCs in the module mean nothing") {
    ModuleInfo m = module("i915", {"_printk", "dma_buf_get"});
    m.vermagic = k.vermagic;
    for (auto& e : m.versions) e.crc = 0x12345678;
    REQUIRE_LOADABLE(one(m, k));
  }
  SECTION("another release word is refused, CRCs or not") {
    ModuleInfo m = module("i915");
    m.vermagic = "7.2.12-amd64 SMP preempt mod_unload ";
    REQUIRE_REFUSED(one(m, k), ENOEXEC);
  }
  SECTION("symbols must still exist, with their namespaces") {
    ModuleInfo m = module("i915", {"no_such_symbol"});
    m.vermagic = k.vermagic;
    REQUIRE_REFUSED(one(m, k), ENOENT);
    ModuleInfo n = module("i915", {"dma_buf_get"});
    n.vermagic = k.vermagic;
    n.import_ns.clear();
    REQUIRE_REFUSED(one(n, k), EINVAL);
  }
}

// ---- extended modversions (6.14+) ----------------------------------------------------------

namespace {
// A 6.<minor> kernel whose exports are the kabi fixtures' Module.symvers (ext.ko's imports).
KernelModel kernel6x_fixtures(int minor) {
  KernelModel k = kernel61();
  k.release = "6." + std::to_string(minor) + ".0-1-amd64";
  k.vermagic = k.release + " SMP preempt mod_unload modversions ";
  k.version_minor = minor;
  k.this_module_size = 1344;
  k.symvers = read_symvers(kabi_test::source_fixture("Module.symvers")).value();
  return k;
}
}  // namespace

TEST_CASE("rules: extended modversions are checked and __versions ignored", "[rules][fixtures]") {
  KernelModel k = kernel6x_fixtures(14);
  auto m = read_module(fixture("ext.ko"));
  REQUIRE(m);
  auto v = one(*m, k);
  REQUIRE_LOADABLE(v);  // __versions' stale _printk CRC (0x11111111) is not consulted

  m->ext_versions[1].crc = 0x22222222;  // _printk
  auto bad = one(*m, k);
  REQUIRE_REFUSED(bad, EINVAL);
  REQUIRE(find_reason(bad, reason::kCrcMismatch));
  CHECK(find_reason(bad, reason::kCrcMismatch)->found_crc == 0x22222222u);
}

TEST_CASE("rules: a missing extended version is a warning on 6.14+, whatever the policy (H7)", "[rules][fixtures]") {
  KernelModel k = kernel6x_fixtures(14);
  REQUIRE(k.policy == MissingVersionPolicy::Strict);
  auto m = read_module(fixture("ext.ko"));
  REQUIRE(m);
  const std::string long_name = "kabi_a_symbol_name_much_longer_than_the_fifty_six_bytes_of_modversion_info";
  REQUIRE(m->ext_versions.size() == 3);
  REQUIRE(m->ext_versions[2].name == long_name);
  REQUIRE(k.symvers.find(long_name));
  m->ext_versions.pop_back();
  // version.c check_version(): pr_warn_once("%s: no extended symbol version for %s"), return 1.
  auto v = one(*m, k);
  REQUIRE_LOADABLE(v);
  const Reason* r = find_reason(v, reason::kNoExtSymbolVersionWarn);
  REQUIRE(r);
  CHECK_FALSE(r->fatal);
  CHECK(r->message == "kabi_ext: no extended symbol version for " + long_name);
  CHECK_FALSE(find_reason(v, reason::kNoSymbolVersion));
}

TEST_CASE("rules: kernels before 6.14 read only __versions, not the extended tables", "[rules][fixtures]") {
  KernelModel k = kernel6x_fixtures(12);
  auto m = read_module(fixture("ext.ko"));
  REQUIRE(m);
  REQUIRE(m->has_ext_versions);
  REQUIRE(m->versions.size() == 1);  // the stale _printk 0x11111111, no module_layout
  auto v = one(*m, k);
  // check_modstruct_version(): module_layout not in __versions (Debian: refused, ENOEXEC), and
  // the stale _printk CRC disagrees.
  REQUIRE_REFUSED(v, ENOEXEC);
  REQUIRE(find_reason(v, reason::kModuleLayout) == nullptr);
  const Reason* layout = find_reason(v, reason::kNoSymbolVersion);
  REQUIRE(layout);
  CHECK(layout->symbol == "module_layout");
  const Reason* crc = find_reason(v, reason::kCrcMismatch);
  REQUIRE(crc);
  CHECK(crc->symbol == "_printk");
  CHECK(crc->found_crc == 0x11111111u);
}

TEST_CASE("rules: only a basic __versions skips the vermagic release word, extended tables do not (D3)",
          "[rules][fixtures]") {
  KernelModel k = kernel61();
  k.release = "6.14.0-2-amd64";
  k.vermagic = "6.14.0-2-amd64 SMP preempt mod_unload modversions ";  // another release
  k.version_minor = 14;
  k.this_module_size = 1344;
  k.symvers = read_symvers(kabi_test::source_fixture("Module.symvers")).value();
  auto m = read_module(fixture("ext.ko"));
  REQUIRE(m);
  REQUIRE(m->has_versions);
  REQUIRE(m->versions_alloc);
  REQUIRE_LOADABLE(one(*m, k));  // with __versions: release skipped, CRCs from the extended tables
  m->has_versions = false;       // extended tables only: check_modinfo's same_magic(.., info->index.vers)
  m->versions_alloc = false;
  m->versions.clear();
  auto v = one(*m, k);
  REQUIRE_REFUSED(v, ENOEXEC);
  REQUIRE(find_reason(v, reason::kVermagic));
  CHECK_FALSE(find_reason(v, reason::kNoVersionsTable));  // the CRCs are still checked
}

// ---- 7.x: __kflagstab, module namespaces (G1, G2, H9) -----------------------------------------

namespace {

// Debian 7.2.13's kernel (no MODVERSIONS), with two `module:` namespaced exports as its
// Module.symvers has them (kvm's users; kvm_fn and kvm_vendor_fn stand for real names).
KernelModel kernel72() {
  KernelModel k;
  k.release = "7.2.13+deb14-amd64";
  k.vermagic = "7.2.13+deb14-amd64 SMP preempt mod_unload ";
  k.symvers_source = "test:Module.symvers";
  k.symvers = parse_symvers("0x00000000\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n"
                            "0x00000000\tkvm_fn\tvmlinux\tEXPORT_SYMBOL_GPL\tmodule:kvm,kvm-amd,kvm-intel\n"
                            "0x00000000\tkvm_vendor_fn\tvmlinux\tEXPORT_SYMBOL_GPL\tmodule:kvm_*\n",
                            k.symvers_source)
                  .value();
  k.modversions = false;
  k.version_major = 7;
  k.version_minor = 2;
  k.this_module_size = 1344;
  return k;
}

ModuleInfo module72(const std::string& name, std::vector<std::string> imports) {
  ModuleInfo m;
  m.path = "/opt/lib/modules/7.2.13+deb14-amd64/" + name + ".ko";
  m.name = name;
  m.compression = "none";
  m.vermagic = "7.2.13+deb14-amd64 SMP preempt mod_unload ";
  m.has_vermagic = true;
  m.license = "GPL";
  m.modinfo = {{"intree", "Y"}, {"retpoline", "Y"}};
  m.this_module_size = 1344;
  for (const auto& s : imports) m.undefined.push_back({s, false});
  return m;
}

}  // namespace

TEST_CASE("rules: a `module:` namespace needs no import by the modules it names, 6.16+ (H9)", "[rules]") {
  KernelModel k = kernel72();
  REQUIRE(k.symvers.find("kvm_fn")->ns == "module:kvm,kvm-amd,kvm-intel");
  REQUIRE(k.symvers.find("kvm_vendor_fn")->ns == "module:kvm_*");
  // verify_module_namespace(): each comma-separated name, '-' == '_', a trailing '*' a prefix.
  for (const char* name : {"kvm", "kvm_amd", "kvm_intel"}) {
    INFO(name);
    REQUIRE_LOADABLE(one(module72(name, {"_printk", "kvm_fn"}), k));
  }
  REQUIRE_LOADABLE(one(module72("kvm_intel", {"kvm_vendor_fn"}), k));
  REQUIRE_LOADABLE(one(module72("kvm_", {"kvm_vendor_fn"}), k));
  for (const char* name : {"kvmx", "kv", "kvm_intel2", "xkvm"}) {
    INFO(name);
    auto v = one(module72(name, {"_printk", "kvm_fn"}), k);
    REQUIRE_REFUSED(v, EINVAL);
    const Reason* r = find_reason(v, reason::kNamespaceNotImported);
    REQUIRE(r);
    CHECK(r->message == std::string(name) + ": module uses symbol (kvm_fn) from namespace module:kvm,kvm-amd,kvm-intel, but does not import it.");
  }
  REQUIRE_REFUSED(one(module72("kvm", {"kvm_vendor_fn"}), k), EINVAL);  // "kvm_*" needs the '_'
  // Before 6.16 the namespace is an ordinary one: even kvm must import it.
  k.version_major = 6;
  k.version_minor = 15;
  REQUIRE_REFUSED(one(module72("kvm", {"kvm_fn"}), k), EINVAL);
  k.version_minor = 16;
  REQUIRE_LOADABLE(one(module72("kvm", {"kvm_fn"}), k));
}

TEST_CASE("rules: importing a `module:` namespace -> EPERM on 6.16+ (G2)", "[rules]") {
  KernelModel k = kernel72();
  ModuleInfo m = module72("kvm", {"_printk", "kvm_fn"});
  const std::string ns = "module:kvm,kvm-amd,kvm-intel";
  REQUIRE(k.symvers.find("kvm_fn")->ns == ns);
  m.import_ns = {"DMA_BUF", ns};
  m.modinfo.push_back({"import_ns", "DMA_BUF"});
  m.modinfo.push_back({"import_ns", ns});
  // setup_modinfo(): pr_err("%s: module tries to import module namespace: %s"), -EPERM.
  auto v = one(m, k);
  REQUIRE_REFUSED(v, EPERM);
  const Reason* r = find_reason(v, reason::kImportModuleNamespace);
  REQUIRE(r);
  CHECK(r->message == "kvm: module tries to import module namespace: " + ns);
  k.version_minor = 1;  // 7.1: still 6.16+
  REQUIRE_REFUSED(one(m, k), EPERM);
  k.version_major = 6;
  k.version_minor = 12;  // an ordinary namespace name there, and the import of kvm_fn's is right
  v = one(m, k);
  REQUIRE_LOADABLE(v);
  CHECK_FALSE(find_reason(v, reason::kImportModuleNamespace));
}

TEST_CASE("rules: 7.2 exports need __kflagstab, which says GPL-only (G1)", "[rules][fixtures]") {
  KernelModel k = kernel72();
  auto flags = read_module(fixture("flags.ko"));
  auto noflags = read_module(fixture("noflags.ko"));
  REQUIRE(flags);
  REQUIRE(noflags);
  REQUIRE(flags->exports.size() == 2);
  REQUIRE(noflags->exports.size() == 2);
  REQUIRE(flags->has_kflagstab);
  REQUIRE_FALSE(noflags->has_kflagstab);
  REQUIRE_LOADABLE(one(*flags, k));
  // check_export_symbol_sections(): pr_err("%s: no flags for exported symbols"), -ENOEXEC.
  auto v = one(*noflags, k);
  REQUIRE_REFUSED(v, ENOEXEC);
  const Reason* r = find_reason(v, reason::kNoExportFlags);
  REQUIRE(r);
  CHECK(r->message == "kabi_flags: no flags for exported symbols");
  k.version_minor = 1;  // not established before 7.2: not refused
  REQUIRE_LOADABLE(one(*noflags, k));
  k.version_minor = 2;

  SECTION("flg_gpl's flag makes it GPL-only to a non-GPL user") {
    ModuleInfo user = module72("blob", {"flg_gpl"});
    user.license = "Proprietary";
    auto e = evaluate({*flags, user}, k);
    const ModuleVerdict& u = by_name(e, "blob");
    REQUIRE_REFUSED(u, ENOENT);
    REQUIRE(find_reason(u, reason::kGplOnlySymbol));
    ModuleInfo plain_user = module72("blob", {"flg_plain"});
    plain_user.license = "Proprietary";
    REQUIRE_LOADABLE(by_name(evaluate({*flags, plain_user}, k), "blob"));
  }
  SECTION("a 6.x module: __ksymtab_gpl is ignored (a warning), its __ksymtab exports refused") {
    auto provider = read_module(fixture("provider.ko"));
    REQUIRE(provider);
    REQUIRE(provider->has_ksymtab_gpl);
    REQUIRE(provider->has_kcrctab_gpl);
    auto p = one(*provider, k);
    REQUIRE_REFUSED(p, ENOEXEC);
    REQUIRE(find_reason(p, reason::kNoExportFlags));
    size_t obsolete = 0;
    for (const auto& w : p.reasons)
      if (w.code == reason::kObsoleteExportSection) {
        CHECK_FALSE(w.fatal);
        ++obsolete;
      }
    CHECK(obsolete == 2);  // "ignoring obsolete section __ksymtab_gpl", "... __kcrctab_gpl"
    // The GPL-only export is not exported at all on 7.2: a user finds nothing.
    ModuleInfo user = module72("user", {"prov_gpl"});
    ModuleInfo fixed = *provider;
    fixed.has_kflagstab = true;  // as if it had flags: still only prov_plain is exported
    fixed.vermagic = k.vermagic;
    fixed.this_module_size = k.this_module_size;
    auto e = evaluate({fixed, user}, k);
    REQUIRE_LOADABLE(by_name(e, "kabi_provider"));
    REQUIRE_REFUSED(by_name(e, "user"), ENOENT);
  }
}

// ---- bundles -------------------------------------------------------------------------------

TEST_CASE("rules: bundle modules resolve against each other in dependency order", "[rules][fixtures]") {
  auto provider = read_module(fixture("provider.ko"));
  auto consumer = read_module(fixture("consumer.ko"));
  REQUIRE(provider);
  REQUIRE(consumer);
  // Given in the wrong order: the evaluation puts the provider first.
  Evaluation ev = evaluate({*consumer, *provider}, kernel61());
  REQUIRE(ev.modules.size() == 2);
  CHECK(ev.modules[0].name == "kabi_provider");
  CHECK(ev.modules[1].name == "kabi_consumer");
  REQUIRE_LOADABLE(ev.modules[0]);
  REQUIRE_LOADABLE(ev.modules[1]);
  CHECK(ev.modules[1].load_after == std::vector<std::string>{"kabi_provider"});
  CHECK(ev.all_loadable());

  SECTION("alone, the consumer misses the provider's symbols") {
    auto v = one(*consumer, kernel61());
    REQUIRE_REFUSED(v, ENOENT);
    CHECK(find_reason(v, reason::kUnknownSymbol));
  }
  SECTION("a CRC that disagrees with the bundle's export") {
    ModuleInfo c = *consumer;
    version(c, "prov_plain")->crc = 0x0;
    Evaluation e = evaluate({*provider, c}, kernel61());
    REQUIRE_REFUSED(e.modules[1], EINVAL);
    CHECK(find_reason(e.modules[1], reason::kCrcMismatch)->expected_crc == 0xc0ffee02u);
    CHECK_FALSE(e.all_loadable());
  }
  SECTION("a bundle export's GPL-only flag applies") {
    ModuleInfo c = *consumer;
    c.license = "Proprietary";
    Evaluation e = evaluate({*provider, c}, kernel61());
    REQUIRE_REFUSED(e.modules[1], ENOENT);
    CHECK(find_reason(e.modules[1], reason::kGplOnlySymbol)->symbol == "prov_gpl");
  }
  SECTION("ordering by imported symbols alone, without depends=") {
    ModuleInfo c = *consumer;
    c.depends.clear();
    Evaluation e = evaluate({c, *provider}, kernel61());
    CHECK(e.modules[0].name == "kabi_provider");
    REQUIRE_LOADABLE(e.modules[1]);
  }
}

TEST_CASE("rules: a bundle module replaces the in-tree module of the same name", "[rules]") {
  // The bundle ships its own drm: its exports, not the kernel's symvers entry, count.
  ModuleInfo drm = module("drm", {"_printk"});
  drm.exports.push_back({"drm_dev_register", 0x99999999u, false, ""});
  ModuleInfo i915 = module("i915", {"drm_dev_register"});
  Evaluation ev = evaluate({i915, drm}, kernel61());
  REQUIRE(ev.modules.size() == 2);
  CHECK(ev.modules[0].name == "drm");
  REQUIRE_REFUSED(ev.modules[1], EINVAL);  // built against the kernel's drm CRC
  version(i915, "drm_dev_register")->crc = 0x99999999u;
  Evaluation ok = evaluate({i915, drm}, kernel61());
  REQUIRE_LOADABLE(ok.modules[1]);
  CHECK(ok.modules[1].load_after == std::vector<std::string>{"drm"});

  // A replaced module's symbol the bundle copy no longer exports is unknown.
  ModuleInfo helper_user = module("i915", {"drm_kms_helper_poll_init"});
  ModuleInfo helper = module("drm_kms_helper", {"_printk"});
  Evaluation gone = evaluate({helper_user, helper}, kernel61());
  REQUIRE_REFUSED(by_name(gone, "i915"), ENOENT);
  CHECK(find_reason(by_name(gone, "i915"), reason::kUnknownSymbol));
}

TEST_CASE("rules: a module whose bundle dependency is refused is refused", "[rules][fixtures]") {
  auto provider = read_module(fixture("provider.ko"));
  auto consumer = read_module(fixture("consumer.ko"));
  REQUIRE(provider);
  REQUIRE(consumer);
  provider->vermagic = "6.1.0-56-amd64 SMP preempt_rt mod_unload modversions ";
  Evaluation ev = evaluate({*provider, *consumer}, kernel61());
  REQUIRE(ev.modules.size() == 2);
  REQUIRE_REFUSED(ev.modules[0], ENOEXEC);
  REQUIRE_REFUSED(ev.modules[1], ENOENT);
  const Reason* r = find_reason(ev.modules[1], reason::kDependencyRefused);
  REQUIRE(r);
  CHECK_THAT(r->message, Contains("kabi_provider"));
  CHECK(ev.modules[1].load_after == std::vector<std::string>{"kabi_provider"});
}

// ---- signatures ----------------------------------------------------------------------------

TEST_CASE("rules: signature states and the kernel's signing policy", "[rules][signature]") {
  KernelModel k = kernel61();
  k.module_sig = true;
  k.certificates_known = true;
  ModuleInfo m = module("i915");
  using S = Signature::State;
  using KC = Signature::KeyCheck;

  SECTION("a kernel without CONFIG_MODULE_SIG ignores signatures entirely") {
    k.module_sig = false;
    m.signature.state = S::Malformed;
    auto v = one(m, k);
    REQUIRE_LOADABLE(v);
    CHECK(v.reasons.empty());
  }
  SECTION("unsigned, not enforced: accepted, taints") {
    auto v = one(m, k);
    REQUIRE_LOADABLE(v);
    REQUIRE(find_reason(v, reason::kUnsignedAccepted));
    CHECK_FALSE(find_reason(v, reason::kUnsignedAccepted)->fatal);
  }
  SECTION("unsigned under sig_enforce -> EKEYREJECTED") {
    k.sig_enforce = true;
    auto v = one(m, k);
    REQUIRE_REFUSED(v, EKEYREJECTED);
    REQUIRE(find_reason(v, reason::kUnsignedEnforced));
    CHECK_THAT(find_reason(v, reason::kUnsignedEnforced)->message, Contains("Loading of unsigned module is rejected"));
  }
  SECTION("unsigned under lockdown -> EPERM") {
    k.lockdown = true;
    auto v = one(m, k);
    REQUIRE_REFUSED(v, EPERM);
    CHECK(find_reason(v, reason::kUnsignedEnforced));
  }
  SECTION("unsigned under both: sig_enforce decides (EKEYREJECTED)") {
    k.lockdown = true;
    k.sig_enforce = true;
    REQUIRE_REFUSED(one(m, k), EKEYREJECTED);
  }
  SECTION("verified: nothing to say") {
    m.signature.state = S::Present;
    m.signature.key_check = KC::Verified;
    k.sig_enforce = true;
    k.lockdown = true;
    auto v = one(m, k);
    REQUIRE_LOADABLE(v);
    CHECK(v.reasons.empty());
  }
  SECTION("a bad signature is fatal even unenforced -> EKEYREJECTED") {
    m.signature.state = S::Present;
    m.signature.key_check = KC::BadSignature;
    auto v = one(m, k);
    REQUIRE_REFUSED(v, EKEYREJECTED);
    REQUIRE(find_reason(v, reason::kSignatureRejected));
    CHECK_THAT(find_reason(v, reason::kSignatureRejected)->message, Contains("Key was rejected by service"));
  }
  SECTION("a malformed signature is fatal even unenforced -> EBADMSG") {
    auto bad = read_module(fixture("badsig.ko"));
    REQUIRE(bad);
    auto v = one(*bad, k);
    REQUIRE_REFUSED(v, EBADMSG);
    CHECK(find_reason(v, reason::kSignatureMalformed));
  }
  SECTION("an unknown key, not enforced: accepted, taints") {
    m.signature.state = S::Present;
    m.signature.key_check = KC::UnknownKey;
    auto v = one(m, k);
    REQUIRE_LOADABLE(v);
    CHECK(find_reason(v, reason::kUnknownKeyAccepted));
  }
  SECTION("an unknown key under sig_enforce -> EKEYREJECTED") {
    m.signature.state = S::Present;
    m.signature.key_check = KC::UnknownKey;
    k.sig_enforce = true;
    auto v = one(m, k);
    REQUIRE_REFUSED(v, EKEYREJECTED);
    REQUIRE(find_reason(v, reason::kUnknownKeyEnforced));
    CHECK_THAT(find_reason(v, reason::kUnknownKeyEnforced)->message,
               Contains("Loading of module with unavailable key is rejected"));
  }
  SECTION("an unknown key under lockdown -> EPERM") {
    m.signature.state = S::Present;
    m.signature.key_check = KC::UnknownKey;
    k.lockdown = true;
    REQUIRE_REFUSED(one(m, k), EPERM);
  }
  SECTION("a signer that may be a run-time keyring's key: not verified, whatever the node enforces") {
    m.signature.state = S::Present;
    m.signature.signer = "CN = Cluster GPU signer";
    m.signature.key_id = "0e01";
    m.signature.key_check = KC::KeyringKey;
    m.signature.keyring_key = ".machine: Cluster GPU signer: a1b2";
    for (auto [enforce, lockdown] : {std::pair{false, false}, {true, false}, {false, true}}) {
      k.sig_enforce = enforce;
      k.lockdown = lockdown;
      auto v = one(m, k);
      REQUIRE_LOADABLE(v);
      REQUIRE(v.reasons.size() == 1);
      CHECK(v.reasons[0].code == reason::kSignatureNotVerified);
      CHECK_FALSE(v.reasons[0].fatal);
      CHECK_THAT(v.reasons[0].message, Contains(".machine: Cluster GPU signer: a1b2"));
      // the same signer found on no keyring is refused there
      m.signature.key_check = KC::UnknownKey;
      if (enforce || lockdown) CHECK(one(m, k).verdict == Verdict::Refused);
      m.signature.key_check = KC::KeyringKey;
    }
  }
  SECTION("signed, certificates unknown: a warning that nothing was verified") {
    auto s = read_module(fixture("signed.ko"));
    REQUIRE(s);
    k.certificates_known = false;
    auto v = one(*s, k);
    REQUIRE_LOADABLE(v);
    REQUIRE(v.reasons.size() == 1);
    CHECK_FALSE(v.reasons[0].fatal);
    CHECK_THAT(v.reasons[0].message, Contains("kabi unit test signing key"));
  }
  SECTION("the signature is checked first: its errno wins") {
    m.signature.state = S::Present;
    m.signature.key_check = KC::BadSignature;
    m.vermagic = "5.10.0 SMP mod_unload ";
    m.undefined.push_back({"no_such_symbol", false});
    auto v = one(m, k);
    REQUIRE_REFUSED(v, EKEYREJECTED);
    CHECK(fatal_count(v) == 3);
  }
}

TEST_CASE("rules: signatures verified against the fixture key, end to end", "[rules][signature][fixtures]") {
  const std::vector<std::string> certs{kabi_test::slurp(fixture("signing_cert.der"))};
  KernelModel k = kernel61();
  k.module_sig = true;
  k.sig_enforce = true;
  k.certificates_known = true;
  auto good = read_module(fixture("signed.ko.zst"), {.trusted_certs = &certs});
  REQUIRE(good);
  auto v = one(*good, k);
  REQUIRE_LOADABLE(v);
  CHECK(v.reasons.empty());

  std::string bytes = kabi_test::slurp(fixture("signed.ko"));
  bytes[bytes.find("license=GPL") + 8] = 'g';  // "gPL": still signed, no longer matching
  auto tampered = parse_module(bytes, "tampered.ko", {.trusted_certs = &certs});
  REQUIRE(tampered);
  k.sig_enforce = false;  // a bad signature is fatal regardless
  auto t = one(*tampered, k);
  REQUIRE_REFUSED(t, EKEYREJECTED);
  CHECK(find_reason(t, reason::kSignatureRejected));
  // ... and the licence change is reported too: gpl_only dma_buf_get is now unknown.
  CHECK(find_reason(t, reason::kGplOnlySymbol));
}

TEST_CASE("rules: signed attributes or another content type -> EKEYREJECTED whatever the key", "[rules][signature]") {
  KernelModel k = kernel61();
  k.module_sig = true;
  k.certificates_known = true;
  ModuleInfo m = module("i915");
  m.signature.state = Signature::State::Present;
  for (auto kc : {Signature::KeyCheck::Verified, Signature::KeyCheck::UnknownKey, Signature::KeyCheck::NotChecked}) {
    m.signature.key_check = kc;
    m.signature.signed_attributes = false;
    m.signature.content_type.clear();
    k.certificates_known = kc != Signature::KeyCheck::NotChecked;
    REQUIRE_LOADABLE(one(m, k));  // the same module without them loads
    m.signature.signed_attributes = true;
    for (bool enforce : {false, true}) {
      k.sig_enforce = enforce;
      auto v = one(m, k);
      REQUIRE_REFUSED(v, EKEYREJECTED);
      REQUIRE(find_reason(v, reason::kSignatureAuthattrs));
      CHECK_THAT(find_reason(v, reason::kSignatureAuthattrs)->message, Contains("Invalid module sig (has authattrs)"));
    }
    k.sig_enforce = false;
    // The content type is checked first, as pkcs7_verify() does (msIndirectData: the one type
    // besides data that the parser takes).
    m.signature.content_type = "1.3.6.1.4.1.311.2.1.4";
    auto v = one(m, k);
    REQUIRE_REFUSED(v, EKEYREJECTED);
    CHECK(find_reason(v, reason::kSignatureNotData));
    CHECK_FALSE(find_reason(v, reason::kSignatureAuthattrs));
  }
}

TEST_CASE("rules: a digest the kernel's PKCS#7 parser does not know is 'unsupported crypto'", "[rules][signature]") {
  KernelModel k = kernel61();
  k.module_sig = true;
  k.certificates_known = true;
  ModuleInfo m = module("i915");
  m.signature.state = Signature::State::Present;
  m.signature.key_check = Signature::KeyCheck::UnknownKey;
  m.signature.hash_algo = "MD5";
  auto v = one(m, k);  // 6.1 parses md5: the unknown key decides
  REQUIRE_LOADABLE(v);
  REQUIRE(find_reason(v, reason::kUnknownKeyAccepted));
  CHECK_FALSE(find_reason(v, reason::kUnsupportedSigAccepted));
  k.version_minor = 12;  // 6.12 does not
  v = one(m, k);
  REQUIRE_LOADABLE(v);
  REQUIRE(find_reason(v, reason::kUnsupportedSigAccepted));
  k.sig_enforce = true;
  v = one(m, k);
  REQUIRE_REFUSED(v, EKEYREJECTED);
  REQUIRE(find_reason(v, reason::kUnsupportedSigEnforced));
  CHECK_THAT(find_reason(v, reason::kUnsupportedSigEnforced)->message,
             Contains("Loading of module with unsupported crypto is rejected"));
  // Known to both: sha256 and, from 6.12, sha3-256.
  m.signature.hash_algo = "SHA3-256";
  REQUIRE(find_reason(one(m, k), reason::kUnknownKeyEnforced));
  k.version_minor = 1;
  REQUIRE(find_reason(one(m, k), reason::kUnsupportedSigEnforced));
}

TEST_CASE("rules: a well-signed module whose hash is on .blacklist -> EKEYREJECTED on 6.x", "[rules][signature]") {
  KernelModel k = kernel61();
  k.module_sig = true;
  k.certificates_known = true;
  ModuleInfo m = module("i915");
  m.signature.state = Signature::State::Present;
  m.signature.key_check = Signature::KeyCheck::Verified;
  const std::string hash(64, 'a');
  m.signature.module_sha256 = hash;
  k.blacklist_known = true;
  k.blacklisted_hashes = {std::string(64, 'b')};
  REQUIRE_LOADABLE(one(m, k));  // another hash listed
  k.blacklisted_hashes.insert(hash);
  auto v = one(m, k);
  REQUIRE_REFUSED(v, EKEYREJECTED);
  REQUIRE(find_reason(v, reason::kModuleHashBlacklisted));
  CHECK_THAT(find_reason(v, reason::kModuleHashBlacklisted)->message, Contains("Module hash " + hash + " is blacklisted"));
  k.version_minor = 12;  // Debian's 6.12 has it too
  REQUIRE_REFUSED(one(m, k), EKEYREJECTED);
  k.version_major = 7;  // gone in 7.x
  k.version_minor = 2;
  REQUIRE_LOADABLE(one(m, k));
  k.version_major = 6;
  // Only after a good signature: an unknown key is ENOKEY first, the hash is never looked at.
  m.signature.key_check = Signature::KeyCheck::UnknownKey;
  v = one(m, k);
  REQUIRE_LOADABLE(v);
  CHECK_FALSE(find_reason(v, reason::kModuleHashBlacklisted));
}

TEST_CASE("rules: a signature that is not PKCS#7 is 'unsupported crypto', not fatal unenforced",
          "[rules][signature]") {
  // mod_check_sig() returns -ENOPKG for id_type != PKEY_ID_PKCS7, and module_sig_check() treats
  // ENOPKG like ENODATA/ENOKEY: "Loading of module with unsupported crypto is rejected" only
  // under sig_enforce (EKEYREJECTED) or lockdown (EPERM); otherwise the module loads, tainted.
  std::string bytes = kabi_test::slurp(fixture("signed.ko"));
  bytes[bytes.size() - kSignatureMagic.size() - 12 + 2] = 1;  // struct module_signature.id_type
  auto m = parse_module(bytes, "x509-id-type.ko");
  REQUIRE(m);
  REQUIRE(m->signature.state == Signature::State::Unsupported);
  KernelModel k = kernel61();
  k.module_sig = true;
  m->name = "kabi_basic";
  auto v = one(*m, k);
  REQUIRE_LOADABLE(v);
  k.sig_enforce = true;
  REQUIRE_REFUSED(one(*m, k), EKEYREJECTED);
}

TEST_CASE("rules: an oversized trailer that is not PKCS#7 is malformed (EBADMSG), not unsupported",
          "[rules][signature]") {
  // mod_check_sig() checks sig_len >= file_len - 12 before the id_type.
  std::string bytes = kabi_test::slurp(fixture("basic.ko"));
  const auto sig_len = static_cast<uint32_t>(bytes.size());
  std::string ms(12, '\0');
  ms[2] = 1;  // PKEY_ID_PGP
  for (int i = 0; i < 4; ++i) ms[8 + i] = static_cast<char>(sig_len >> (24 - 8 * i));
  bytes += ms + std::string(kSignatureMagic);
  auto m = parse_module(bytes, "oversized.ko");
  REQUIRE(m);
  REQUIRE(m->signature.state == Signature::State::Malformed);
  KernelModel k = kernel61();
  k.module_sig = true;
  m->name = "kabi_basic";
  auto v = one(*m, k);
  REQUIRE_REFUSED(v, EBADMSG);
  CHECK(find_reason(v, reason::kSignatureMalformed));
}

// ---- names ---------------------------------------------------------------------------------

TEST_CASE("rules: errno names", "[rules]") {
  CHECK(errno_name(0).empty());
  CHECK(errno_name(ENOEXEC) == "ENOEXEC");
  CHECK(errno_name(ENOENT) == "ENOENT");
  CHECK(errno_name(EINVAL) == "EINVAL");
  CHECK(errno_name(EEXIST) == "EEXIST");
  CHECK(errno_name(EPERM) == "EPERM");
  CHECK(errno_name(EKEYREJECTED) == "EKEYREJECTED");
  CHECK(errno_name(EBADMSG) == "EBADMSG");
  CHECK(errno_name(ENOKEY) == "ENOKEY");
}

// ---- files that are not loadable modules; W+X sections; bad symbols (issue 16 item 4) -------

namespace {

ReadOptions keep() { return {.trusted_certs = nullptr, .sha256 = false, .keep_unreadable = true}; }

KernelModel at_version(int major, int minor) {
  KernelModel k = kernel61();
  k.version_major = major;
  k.version_minor = minor;
  return k;
}

}  // namespace

TEST_CASE("rules: a file that is no ELF module is refused with the kernel's message", "[rules][elf]") {
  std::string b = kabi_test::slurp(fixture("basic.ko"));
  REQUIRE(parse_module(b, "x.ko", keep())->elf_refusal[0] == std::nullopt);  // the data is a module
  b[16] = 3;  // ET_DYN
  auto m = parse_module(b, "/bundle/shared.ko", keep());
  REQUIRE(m);
  for (auto [major, minor] : std::vector<std::pair<int, int>>{{6, 1}, {6, 12}, {7, 2}}) {
    auto v = one(*m, at_version(major, minor));
    REQUIRE_REFUSED(v, ENOEXEC);
    CHECK(v.path == "/bundle/shared.ko");
    CHECK(v.name == "shared");
    REQUIRE(v.reasons.size() == 1);  // the ELF check, nothing after it
    CHECK(v.reasons[0].code == reason::kElfType);
    CHECK(v.reasons[0].message == "Invalid ELF header type: 3 != 1");
  }
  // Enforced signatures come first (module_sig_check): EKEYREJECTED, the ELF problem still named.
  KernelModel k = kernel61();
  k.module_sig = true;
  k.sig_enforce = true;
  auto v = one(*m, k);
  REQUIRE_REFUSED(v, EKEYREJECTED);
  CHECK(find_reason(v, reason::kElfType));
}

TEST_CASE("rules: a module that depends on an unreadable file -> dependency_refused", "[rules][elf]") {
  auto consumer = read_module(fixture("consumer.ko"));
  REQUIRE(consumer);
  REQUIRE(consumer->depends == std::vector<std::string>{"kabi_provider"});
  std::string p = kabi_test::slurp(fixture("provider.ko"));
  p.resize(p.size() / 3);  // truncated
  auto provider = parse_module(p, "/bundle/kabi_provider.ko", keep());
  REQUIRE(provider);
  REQUIRE(provider->unreadable);
  Evaluation ev = evaluate({*consumer, *provider}, kernel61());
  REQUIRE(ev.modules.size() == 2);
  const ModuleVerdict& bad = by_name(ev, "kabi_provider");
  REQUIRE_REFUSED(bad, ENOEXEC);
  CHECK(find_reason(bad, reason::kElfSectionTable));
  const ModuleVerdict& user = by_name(ev, "kabi_consumer");
  REQUIRE_REFUSED(user, ENOENT);
  const Reason* r = find_reason(user, reason::kDependencyRefused);
  REQUIRE(r);
  CHECK_THAT(r->message, Contains("kabi_provider"));
  CHECK_FALSE(find_reason(user, reason::kUnknownSymbol));
}

TEST_CASE("rules: structure refused by some generations only (C5, C7, C10)", "[rules][elf]") {
  ModuleInfo m = module("i915");
  m.elf_refusal[1] = m.elf_refusal[2] = ElfRefusal{reason::kModinfoDuplicate, "Only one .modinfo section must exist."};
  REQUIRE_LOADABLE(one(m, at_version(6, 1)));
  auto v = one(m, at_version(6, 12));
  REQUIRE_REFUSED(v, ENOEXEC);
  CHECK(find_reason(v, reason::kModinfoDuplicate)->message == "Only one .modinfo section must exist.");
  REQUIRE_REFUSED(one(m, at_version(7, 2)), ENOEXEC);
  // A refusal the existing checks make from the fields is not reported twice.
  m.elf_refusal[1] = ElfRefusal{reason::kMultipleSymbolTables, "i915: module has no symbols (stripped?)"};
  m.symtab_count = 2;
  v = one(m, at_version(6, 12));
  size_t n = 0;
  for (const auto& r : v.reasons) n += r.code == reason::kMultipleSymbolTables;
  CHECK(n == 1);
}

TEST_CASE("rules: a .modinfo without SHF_ALLOC is ignored by 6.1, read by 6.4+ (C6)", "[rules][elf]") {
  ModuleInfo m = module("i915", {"_printk", "dma_buf_get"});  // dma_buf_get is GPL-only
  REQUIRE_LOADABLE(one(m, at_version(6, 1)));
  m.modinfo_alloc = false;
  auto v = one(m, at_version(6, 1));
  REQUIRE_REFUSED(v, ENOENT);  // no licence: GPL-only symbols are unknown
  CHECK(find_reason(v, reason::kModinfoIgnored));
  CHECK(find_reason(v, reason::kNoVermagic));  // a forced load, not a refusal
  CHECK(find_reason(v, reason::kGplOnlySymbol));
  REQUIRE_LOADABLE(one(m, at_version(6, 12)));
}

TEST_CASE("rules: a WRITE|EXEC section -> ENOEXEC; 6.1 checks it before the name (E1)", "[rules][elf]") {
  ModuleInfo m = module("i915");
  REQUIRE_LOADABLE(one(m, kernel61()));
  m.write_exec_section = std::make_pair(std::string(".data"), size_t{7});
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);
  CHECK(find_reason(v, reason::kWriteExecSection)->message == "i915: section .data (index 7) has invalid WRITE|EXEC flags");
  // With the name live too, the order decides the errno.
  KernelModel k = kernel61();
  k.live = {"i915"};
  REQUIRE_REFUSED(one(m, k), ENOEXEC);
  k.version_minor = 12;
  REQUIRE_REFUSED(one(m, k), EEXIST);
}

TEST_CASE("rules: SHN_COMMON and out-of-range st_shndx -> ENOEXEC, last failing symbol's errno (H1, H2)",
          "[rules][elf]") {
  ModuleInfo m = module("i915", {"_printk", "no_such_symbol"});
  m.undefined[0].index = 3;
  m.undefined[1].index = 9;
  REQUIRE_REFUSED(one(m, kernel61()), ENOENT);
  m.shnum = 40;
  m.bad_symbols.push_back({"tmp_buf", 12, 0xfff2, true});
  auto v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOEXEC);  // after no_such_symbol in the table
  CHECK(find_reason(v, reason::kCommonSymbol)->message == "i915: please compile with -fno-common [tmp_buf]");
  m.bad_symbols = {{"helper", 5, 44, false}};
  v = one(m, kernel61());
  REQUIRE_REFUSED(v, ENOENT);  // before it: the unknown symbol's errno stands
  CHECK(find_reason(v, reason::kSymbolSectionIndex)->message ==
        "i915: Symbol helper has an invalid section index 44 (max 39)");
}

TEST_CASE("rules: .BTF that does not parse on the kernel's BTF: 7.2 refuses, 6.x warn (K2)", "[rules][btf]") {
  // Base: [1] int, strings "\0int\0"; the module's [2] typedef names offset 5 + own 2 = 7.
  kabi_test::BtfBuilder base;
  base.type(base.name("int"), kabi_test::kBtfInt, 0, 4, {32});
  kabi_test::BtfBuilder good;
  good.name("t");
  good.type(6, kabi_test::kBtfTypedef, 0, 1);
  kabi_test::BtfBuilder bad;
  bad.name("t");
  bad.type(8, kabi_test::kBtfTypedef, 0, 1);  // past the base's 5 and its own 3 bytes
  auto parsed = parse_base_btf(base.bytes(), "test:vmlinux");
  REQUIRE(parsed);
  auto kernel_at = [&](int major, int minor) {
    KernelModel k = kernel61();
    k.version_major = major;
    k.version_minor = minor;
    k.btf = *parsed;
    return k;
  };
  ModuleInfo m = module("btfmod");
  m.btf = good.bytes();
  for (auto [major, minor] : {std::pair{6, 1}, std::pair{6, 12}, std::pair{7, 2}}) {
    const ModuleVerdict v = one(m, kernel_at(major, minor));
    INFO(major << "." << minor << ": " << codes(v));
    REQUIRE_LOADABLE(v);
    CHECK_FALSE(find_reason(v, reason::kModuleBtfInvalid));
    CHECK_FALSE(find_reason(v, reason::kModuleBtfMismatch));
  }
  m.btf = bad.bytes();
  const ModuleVerdict v72 = one(m, kernel_at(7, 2));
  CHECK(v72.verdict == Verdict::Refused);
  CHECK(v72.err == EINVAL);
  REQUIRE(find_reason(v72, reason::kModuleBtfInvalid));
  CHECK_THAT(find_reason(v72, reason::kModuleBtfInvalid)->message,
             Contains("failed to validate module [btfmod] BTF: -22 ([2] Invalid name_offset:8"));
  const ModuleVerdict v612 = one(m, kernel_at(6, 12));
  REQUIRE_LOADABLE(v612);
  REQUIRE(find_reason(v612, reason::kModuleBtfMismatch));
  CHECK_FALSE(find_reason(v612, reason::kModuleBtfMismatch)->fatal);
  CHECK_THAT(find_reason(v612, reason::kModuleBtfMismatch)->message, Contains("Kernel module BTF mismatch detected"));
  const ModuleVerdict v61 = one(m, kernel_at(6, 1));
  REQUIRE_LOADABLE(v61);
  REQUIRE(find_reason(v61, reason::kModuleBtfMismatch));
  CHECK_THAT(find_reason(v61, reason::kModuleBtfMismatch)->message, Contains("failed to validate module [btfmod] BTF: -22"));

  // The kernel's BTF unknown: 7.2 could refuse, 6.x could warn: a warning says it was not checked.
  KernelModel unknown = kernel_at(7, 2);
  unknown.btf.reset();
  unknown.btf_unread = "no --kernel-btf";
  const ModuleVerdict u72 = one(m, unknown);
  REQUIRE_LOADABLE(u72);
  REQUIRE(find_reason(u72, reason::kModuleBtfUnchecked));
  CHECK_THAT(find_reason(u72, reason::kModuleBtfUnchecked)->message, Contains("no --kernel-btf"));
  unknown.version_major = 6;
  unknown.version_minor = 12;
  const ModuleVerdict u612 = one(m, unknown);
  REQUIRE_LOADABLE(u612);
  REQUIRE(find_reason(u612, reason::kModuleBtfUnchecked));
  CHECK_THAT(find_reason(u612, reason::kModuleBtfUnchecked)->message, Contains("loads either way"));
  // No .BTF: nothing to parse (btf_data_size == 0).
  m.btf.clear();
  const ModuleVerdict none = one(m, kernel_at(7, 2));
  for (const char* code : {reason::kModuleBtfInvalid, reason::kModuleBtfMismatch, reason::kModuleBtfUnchecked})
    CHECK_FALSE(find_reason(none, code));
}
