// The release pipeline's engine: kernel inputs (symvers, tree, both), the symvers diff, the
// stablelist, the reuse/rebuild/impossible plan and its grouping, and the DWARF explanation.
#include "catch2_compat.h"

#include <algorithm>
#include <fstream>

#include "kabi/dwarf_types.h"
#include "kabi/kernel_source.h"
#include "kabi/matrix.h"
#include "kabi/stablelist.h"
#include "kabi/symvers_diff.h"
#include "test_util.h"

using namespace agent::kabi;
using kabi_test::fixture;
using kabi_test::source_fixture;
using kabi_test::spit;
using kabi_test::slurp;
using kabi_test::TempDir;
namespace fs = std::filesystem;

namespace {

Symvers table(const std::string& text) {
  auto sv = parse_symvers(text, "test.symvers");
  REQUIRE(sv);
  return *sv;
}

const SymbolChange* find_change(const std::vector<SymbolChange>& v, const std::string& s) {
  auto it = std::find_if(v.begin(), v.end(), [&](const SymbolChange& c) { return c.symbol == s; });
  return it == v.end() ? nullptr : &*it;
}

std::vector<ModuleInfo> provider_consumer() {
  auto b = read_bundle(fixture("provider.ko"));
  auto c = read_bundle(fixture("consumer.ko"));
  REQUIRE(b);
  REQUIRE(c);
  b->push_back(c->front());
  return *b;
}

// The fixture symvers with `edit` applied to its lines.
fs::path symvers_with(const TempDir& tmp, const std::string& name, const std::string& from, const std::string& to) {
  std::string s = slurp(source_fixture("Module.symvers"));
  if (!from.empty()) {
    const auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    s.replace(pos, from.size(), to);
  }
  spit(tmp.path() / name, s);
  return tmp.path() / name;
}

}  // namespace

TEST_CASE("diff_symvers: CRC, added, removed, moved, export type and namespace changes") {
  const Symvers a = table(
      "0x00000001\tsame\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000002\tcrc\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000003\tgone\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000004\tmover\tdrivers/a/a\tEXPORT_SYMBOL\t\n"
      "0x00000005\tgpl\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000006\tns\tvmlinux\tEXPORT_SYMBOL\t\n");
  const Symvers b = table(
      "0x00000001\tsame\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000022\tcrc\tvmlinux\tEXPORT_SYMBOL\t\n"
      "0x00000004\tmover\tdrivers/b/b\tEXPORT_SYMBOL\t\n"
      "0x00000005\tgpl\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
      "0x00000006\tns\tvmlinux\tEXPORT_SYMBOL\tDMA_BUF\n"
      "0x00000007\tnew\tvmlinux\tEXPORT_SYMBOL\t\n");
  const auto d = diff_symvers(a, b);
  REQUIRE(d.size() == 6);
  CHECK(find_change(d, "same") == nullptr);
  CHECK(find_change(d, "crc")->kinds() == std::vector<std::string>{"crc"});
  CHECK(find_change(d, "gone")->removed());
  CHECK(find_change(d, "new")->added());
  CHECK(find_change(d, "mover")->kinds() == std::vector<std::string>{"moved"});
  CHECK(find_change(d, "gpl")->kinds() == std::vector<std::string>{"export_type"});
  CHECK(find_change(d, "ns")->kinds() == std::vector<std::string>{"namespace"});
  CHECK(symbol_change_text(*find_change(d, "crc")) == "crc: crc 0x00000002 -> 0x00000022");
  CHECK(symbol_change_text(*find_change(d, "mover")) == "mover: moved drivers/a/a -> drivers/b/b");
  const auto j = symbol_change_json(*find_change(d, "gpl"));
  CHECK(j["old"]["export_type"] == "EXPORT_SYMBOL");
  CHECK(j["new"]["export_type"] == "EXPORT_SYMBOL_GPL");
  // Sorted by name; `only` restricts.
  CHECK(std::is_sorted(d.begin(), d.end(), [](const auto& x, const auto& y) { return x.symbol < y.symbol; }));
  const SymbolSet only{"crc", "same"};
  CHECK(diff_symvers(a, b, &only).size() == 1);
}

TEST_CASE("diff_symvers: a derived table's unknown export facts are not differences") {
  Symvers a = table("0x00000001\tsym\tvmlinux\tEXPORT_SYMBOL\t\n");
  Symvers b = table("0x00000001\tsym\tdrivers/x/x\tEXPORT_SYMBOL_GPL\tNS\n");
  b.find("sym")->type_known = false;
  b.find("sym")->ns_known = false;
  CHECK(diff_symvers(a, b).empty());
  b.find("sym")->crc = 2;
  CHECK(diff_symvers(a, b).size() == 1);
}

TEST_CASE("diff_for_bundle: only the bundle's imports, per module, plus module_layout") {
  const auto bundle = provider_consumer();
  // prov_* come from the bundle itself: not imports; module_layout is a __versions entry only.
  CHECK(bundle_imports(bundle) == std::vector<std::string>{"_printk"});
  const Symvers a = table(slurp(source_fixture("Module.symvers")));
  Symvers b = a;
  b.find("_printk")->crc = 0x11111111;
  b.find("module_layout")->crc = 0x22222222;
  b.find("jiffies")->crc = 0x33333333;  // not imported by the bundle
  const auto changes = diff_symvers(a, b);
  CHECK(changes.size() == 3);
  const BundleDiff d = diff_for_bundle(changes, bundle);
  REQUIRE(d.module_layout);
  CHECK(d.module_layout->crc);
  REQUIRE(d.modules.size() == 2);
  CHECK(d.modules[0].name == "kabi_provider");
  CHECK(d.modules[1].name == "kabi_consumer");
  for (const auto& m : d.modules) {
    CHECK(m.imports == 1);
    REQUIRE(m.changes.size() == 1);
    CHECK(m.changes[0].symbol == "_printk");
  }
  CHECK(d.imports == 1);
  CHECK(d.changed == 1);
}

TEST_CASE("stablelist: RHEL's sectioned format and a plain list") {
  auto rhel = parse_stablelist("[rhel9_x86_64_stablelist]\n\t_printk\n\tjiffies\n\n[rhel9_extra]\n\tkmalloc_caches\n", "kabi_stablelist_x86_64");
  REQUIRE(rhel);
  CHECK(rhel->sections == std::vector<std::string>{"rhel9_x86_64_stablelist", "rhel9_extra"});
  CHECK(rhel->symbols.size() == 3);
  auto plain = parse_stablelist("# our guarantee\n_printk\r\nmodule_layout\n", "list.txt");
  REQUIRE(plain);
  CHECK(plain->symbols.count("module_layout") == 1);
  const auto c = stablelist_coverage(*rhel, {"_printk", "drm_dev_register", "jiffies", "module_layout"});
  CHECK(c.imports == 4);
  CHECK(c.covered == std::vector<std::string>{"_printk", "jiffies"});
  CHECK(c.not_covered == std::vector<std::string>{"drm_dev_register", "module_layout"});
  CHECK(stablelist_text(c).find("covers 2 of the bundle's 4 imports") != std::string::npos);
}

TEST_CASE("stablelist: bad input names the file and the line") {
  auto bad = parse_stablelist("[sec]\n\tgood_symbol\n\tnot a symbol\n", "kabi_stablelist_x86_64");
  REQUIRE(!bad);
  CHECK(bad.error().path == "kabi_stablelist_x86_64");
  CHECK(bad.error().message.find("line 3") != std::string::npos);
  CHECK(!parse_stablelist("", "empty"));
  CHECK(!parse_stablelist("[only a header]\n", "h"));
  CHECK(!parse_stablelist(std::string("sym\0bol\n", 8), "bin"));
  CHECK(!parse_stablelist("[unterminated\n", "u"));
  auto missing = read_stablelist("/nonexistent/kabi_stablelist");
  REQUIRE(!missing);
  CHECK(missing.error().path == "/nonexistent/kabi_stablelist");
}

TEST_CASE("plan_of: what a rebuild fixes and what it cannot") {
  Reason r;
  for (const char* c : {reason::kCrcMismatch, reason::kModuleLayout, reason::kVermagic, reason::kModuleStructSize,
                        reason::kNoSymbolVersion, reason::kDependencyRefused, reason::kUnsignedEnforced}) {
    r.code = c;
    CHECK(plan_of(r) == Plan::Rebuild);
  }
  for (const char* c : {reason::kUnknownSymbol, reason::kMissingDependency, reason::kGplOnlySymbol,
                        reason::kNamespaceNotImported}) {
    r.code = c;
    CHECK(plan_of(r) == Plan::Impossible);
  }
  r.code = reason::kUnknownSymbol;
  r.fatal = false;
  CHECK(plan_of(r) == Plan::Reuse);
}

TEST_CASE("load_kernel + evaluate + plan: a symvers alone gives reuse, rebuild, impossible") {
  TempDir tmp;
  const auto bundle = provider_consumer();
  auto plan_on = [&](const fs::path& symvers) {
    auto src = locate_kernel(symvers);
    REQUIRE(src);
    CHECK(src->module_dir.empty());
    auto k = load_kernel(*src, bundle);
    REQUIRE(k);
    CHECK(!k->vermagic_known);
    KernelPlan p = plan_kernel(evaluate(bundle, k->model));
    p.fingerprint = bundle_fingerprint(bundle_imports(bundle), k->model);
    return p;
  };
  const KernelPlan same = plan_on(symvers_with(tmp, "same.symvers", "", ""));
  CHECK(same.verdict == Plan::Reuse);
  const KernelPlan crc = plan_on(symvers_with(tmp, "crc.symvers", "0x92997ed8\t_printk", "0x12345678\t_printk"));
  CHECK(crc.verdict == Plan::Rebuild);
  REQUIRE(crc.modules.size() == 2);
  CHECK(crc.modules[0].counts.at("crc_mismatch") == 1);
  CHECK(crc.modules[0].first_reasons.front().symbol == "_printk");
  const KernelPlan layout = plan_on(symvers_with(tmp, "layout.symvers", "0x6d4c2fd1\tmodule_layout", "0x00000001\tmodule_layout"));
  CHECK(layout.verdict == Plan::Rebuild);
  CHECK(layout.modules[0].first_reasons.front().code == "module_layout_crc");
  const KernelPlan gone = plan_on(symvers_with(tmp, "gone.symvers", "0x92997ed8\t_printk", "0x92997ed8\t_printk_renamed"));
  CHECK(gone.verdict == Plan::Impossible);
  CHECK(gone.modules[0].counts.at("unknown_symbol") == 1);

  // Grouping: kernels whose needed CRCs agree share one image.
  MatrixReport r;
  r.bundle = "b";
  for (const auto* p : {&same, &crc, &same, &gone, &layout}) r.kernels.push_back(*p);
  r.kernels[3].fingerprint = same.fingerprint + "x";  // as if another kernel
  group_kernels(r);
  REQUIRE(r.groups.size() == 4);
  CHECK(r.groups[0].kernels == std::vector<size_t>{0, 2});
  CHECK(r.kernels[2].group == 0);
  CHECK(r.groups[1].verdict == Plan::Rebuild);
  const auto j = matrix_json(r);
  CHECK(j["schema"] == 1);
  CHECK(j["bundle"] == "b");
  CHECK(j["kernels"][1]["verdict"] == "rebuild");
  CHECK(j["kernels"][1]["modules"][0]["counts"]["crc_mismatch"] == 1);
  CHECK(j["groups"][0]["kernels"].size() == 2);
  const std::string text = matrix_text(r);
  CHECK(text.find("the bundle as built serves these 2 kernels") != std::string::npos);
  CHECK(text.find("one image rebuilt for any of them serves this kernel") != std::string::npos);
}

TEST_CASE("bundle_fingerprint: the same needed CRCs give the same fingerprint, another CRC another") {
  const auto bundle = provider_consumer();
  const auto imports = bundle_imports(bundle);
  KernelModel a;
  a.symvers = table(slurp(source_fixture("Module.symvers")));
  a.vermagic = "6.1.0-56-amd64 SMP preempt mod_unload modversions ";
  KernelModel b = a;
  b.vermagic = "6.1.0-55-amd64 SMP preempt mod_unload modversions ";  // release word only
  b.symvers.find("jiffies")->crc = 1;                                  // not needed
  CHECK(bundle_fingerprint(imports, a) == bundle_fingerprint(imports, b));
  b.symvers.find("_printk")->crc = 1;
  CHECK(bundle_fingerprint(imports, a) != bundle_fingerprint(imports, b));
  KernelModel c = a;
  c.vermagic = "6.1.0-56-amd64 SMP mod_unload modversions ";
  CHECK(bundle_fingerprint(imports, a) != bundle_fingerprint(imports, c));
  // A provider module missing from one kernel's tree: not the same kernel for the bundle.
  KernelModel d = a, e = a;
  const std::vector<std::string> drm = {"drm_dev_register"};
  d.in_tree["drm"] = InTreeModule{"drm", "kernel/drivers/gpu/drm/drm.ko", {}};
  e.in_tree["loop"] = InTreeModule{"loop", "kernel/drivers/block/loop.ko", {}};
  CHECK(bundle_fingerprint(drm, d) != bundle_fingerprint(drm, e));
  CHECK(bundle_fingerprint(drm, d) == bundle_fingerprint(drm, a));  // no tree: not known
}

TEST_CASE("locate_kernel: a symvers, a tree, a directory holding both, an unpacked package") {
  TempDir tmp;
  const fs::path t = fs::canonical(tmp.path());
  const std::string symvers = slurp(source_fixture("Module.symvers"));
  // The cache layout: <dir>/Module.symvers + <dir>/modules
  spit(t / "cache/Module.symvers", symvers);
  spit(t / "cache/modules/modules.dep", "");
  auto a = locate_kernel(t / "cache");
  REQUIRE(a);
  CHECK(a->symvers == "/Module.symvers");
  CHECK(a->display(a->symvers) == (t / "cache/Module.symvers").string());
  CHECK(a->display(a->module_dir) == (t / "cache/modules").string());
  CHECK(a->headers_release.empty());
  // An unpacked image + headers package.
  spit(t / "pkg/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers", symvers);
  spit(t / "pkg/usr/src/linux-headers-6.1.0-56-common/Makefile", "");
  spit(t / "pkg/lib/modules/6.1.0-56-amd64/kernel/x.ko", "");
  auto b = locate_kernel(t / "pkg");
  REQUIRE(b);
  CHECK(b->display(b->symvers) == (t / "pkg/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers").string());
  CHECK(b->display(b->module_dir) == (t / "pkg/lib/modules/6.1.0-56-amd64").string());
  // A tree alone, with its RHEL-style symvers.gz beside it.
  auto c = locate_kernel(t / "pkg/lib/modules/6.1.0-56-amd64");
  REQUIRE(c);
  CHECK(c->symvers.empty());
  CHECK(c->module_dir == "/");
  spit(t / "pkg/lib/modules/6.1.0-56-amd64/symvers.gz", "");
  auto c2 = locate_kernel(t / "pkg/lib/modules/6.1.0-56-amd64");
  REQUIRE(c2);
  CHECK(c2->display(c2->symvers) == (t / "pkg/lib/modules/6.1.0-56-amd64/symvers.gz").string());
  // Two kernels in one directory: name one.
  fs::remove(t / "pkg/lib/modules/6.1.0-56-amd64/symvers.gz");
  spit(t / "pkg/usr/src/linux-headers-6.1.0-55-amd64/Module.symvers", symvers);
  auto two = locate_kernel(t / "pkg");
  REQUIRE(!two);
  CHECK(two.error().message.find("more than one Module.symvers") != std::string::npos);
  // ... unless the tree's build link names its headers (inside the directory).
  fs::create_symlink("/usr/src/linux-headers-6.1.0-56-amd64", t / "pkg/lib/modules/6.1.0-56-amd64/build");
  auto by_link = locate_kernel(t / "pkg");
  REQUIRE(by_link);
  CHECK(by_link->symvers == "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers");
  // A kernel build tree: kernel/ (sources) beside its Module.symvers is no module tree.
  spit(t / "linux/Module.symvers", symvers);
  fs::create_directories(t / "linux/kernel");
  auto build = locate_kernel(t / "linux");
  REQUIRE(build);
  CHECK(build->display(build->symvers) == (t / "linux/Module.symvers").string());
  CHECK(build->module_dir.empty());
  CHECK(!locate_kernel(t / "nothing"));
  fs::create_directories(t / "empty");
  CHECK(!locate_kernel(t / "empty"));
}

TEST_CASE("locate_kernel: every link of a given tree resolves inside it, never on this machine") {
  TempDir tmp;
  const fs::path t = fs::canonical(tmp.path());
  const std::string symvers = slurp(source_fixture("Module.symvers"));
  // "This machine": a decoy at the absolute path the trees' build links name.
  const fs::path machine_headers = t / "machine/usr/src/linux-headers-6.1.0-56-amd64";
  spit(machine_headers / "Module.symvers", "0x00000001\tdecoy\tvmlinux\tEXPORT_SYMBOL\t\n");
  spit(machine_headers / "include/generated/utsrelease.h", "#define UTS_RELEASE \"9.9.9-decoy\"\n");
  REQUIRE(fs::is_regular_file(machine_headers / "Module.symvers"));

  // A module tree given alone, its build link absolute: not followed out of the tree.
  const fs::path tree = t / "tree/lib/modules/6.1.0-56-amd64";
  spit(tree / "modules.dep", "");
  fs::create_symlink(machine_headers, tree / "build");
  REQUIRE(fs::is_regular_file(tree / "build/Module.symvers"));  // the OS would follow it
  auto a = locate_kernel(tree);
  REQUIRE(a);
  CHECK(a->symvers.empty());
  CHECK(a->headers_release.empty());
  REQUIRE(a->notes.size() == 1);
  CHECK(a->notes[0].find("build -> " + machine_headers.string()) != std::string::npos);
  CHECK(a->notes[0].find("not inside " + tree.string()) != std::string::npos);

  // An unpacked root: the same absolute link text names the root's own headers.
  const fs::path root = t / "root";
  const fs::path inside = root / machine_headers.relative_path();
  spit(inside / "Module.symvers", symvers);
  spit(inside / "include/generated/utsrelease.h", "#define UTS_RELEASE \"6.1.0-56-amd64\"\n");
  spit(root / "usr/lib/modules/6.1.0-56-amd64/modules.dep", "");
  fs::create_symlink(machine_headers, root / "usr/lib/modules/6.1.0-56-amd64/build");
  fs::create_symlink("/usr/lib", root / "lib");  // usr-merged, absolute: /usr/lib of the root
  auto b = locate_kernel(root);
  REQUIRE(b);
  CHECK(b->module_dir == "/usr/lib/modules/6.1.0-56-amd64");
  CHECK(b->symvers == machine_headers.string() + "/Module.symvers");
  CHECK(b->display(b->symvers) == (inside / "Module.symvers").string());
  CHECK(b->headers_release == "6.1.0-56-amd64");
  auto sv = read_kernel_symvers(*b);
  REQUIRE(sv);
  CHECK(sv->find("_printk"));
  CHECK(!sv->find("decoy"));
  // The same through a tree dir whose `lib` would lead to this machine's /usr/lib.
  CHECK(b->notes.empty());

  // A Module.symvers given as a file: its headers' release beside it.
  auto c = locate_kernel(inside / "Module.symvers");
  REQUIRE(c);
  CHECK(c->symvers == "/Module.symvers");
  CHECK(c->headers_release == "6.1.0-56-amd64");
}

TEST_CASE("parse_utsrelease and settle_release: the release from the kernel's own files, or a note") {
  CHECK(parse_utsrelease("#define UTS_RELEASE \"6.1.0-56-amd64\"\n") == "6.1.0-56-amd64");
  CHECK(parse_utsrelease("/* x */\n#define UTS_RELEASE \"6.12.118+deb13-amd64\"\n") == "6.12.118+deb13-amd64");
  CHECK(parse_utsrelease("#define UTS_RELEASE \"\"\n").empty());
  CHECK(parse_utsrelease("#define UTS_RELEASE \"6.1 bad\"\n").empty());
  CHECK(parse_utsrelease("#define UTS_RELEASE \"6.1.0").empty());
  CHECK(parse_utsrelease("#define UTS_VERSION \"#1 SMP\"\n").empty());
  CHECK(parse_utsrelease("#define UTS_RELEASE \"" + std::string(65, '1') + "\"\n").empty());

  auto r = settle_release({.vermagic_release = "6.1.0-56-amd64", .headers_release = "6.1.0-56-amd64",
                           .tree_dir = "/x/lib/modules/6.1.0-56-amd64", .headers_dir = ""});
  CHECK(r.release == "6.1.0-56-amd64");
  CHECK(r.from == "vermagic");
  CHECK(r.notes.empty());
  // The headers of another kernel, a tree directory named otherwise: said, the vermagic wins.
  r = settle_release({.vermagic_release = "6.1.0-56-amd64", .headers_release = "6.1.0-55-amd64",
                      .tree_dir = "/x/lib/modules/6.1.0-55-amd64", .headers_dir = ""});
  CHECK(r.release == "6.1.0-56-amd64");
  REQUIRE(r.notes.size() == 2);
  CHECK(r.notes[0].find("utsrelease.h says 6.1.0-55-amd64") != std::string::npos);
  CHECK(r.notes[1].find("/x/lib/modules/6.1.0-55-amd64, not named after its release") != std::string::npos);
  // A tree copied anywhere else: its directory name is no claim.
  CHECK(settle_release({.vermagic_release = "6.1.0-56-amd64", .headers_release = "", .tree_dir = "/tmp/mytree", .headers_dir = ""}).notes.empty());
  r = settle_release({.vermagic_release = "", .headers_release = "6.12.118+deb13-amd64", .tree_dir = "", .headers_dir = ""});
  CHECK(r.release == "6.12.118+deb13-amd64");
  CHECK(r.from == "utsrelease.h");
  r = settle_release({});
  CHECK(r.release.empty());
  CHECK(r.from.empty());
  REQUIRE(r.notes.size() == 1);
  CHECK(r.notes[0].find("kernel release not established") != std::string::npos);
}

TEST_CASE("matrix_text: kernels named by release in full, by path when it is not established") {
  MatrixReport r;
  r.bundle = "b";
  KernelPlan a, b;
  a.kernel = "/srv/k/6.12.107/usr/src/linux-headers-6.12.107+deb13-amd64/Module.symvers";
  a.release = "6.12.107+deb13-amd64";
  a.symvers = a.kernel;
  b.kernel = "/srv/a/very/long/path/to/kernels/6.12.118+deb13-amd64/Module.symvers";
  b.symvers = b.kernel;
  b.notes.push_back("kernel release not established: ...");
  r.kernels = {a, b};
  r.kernels[1].fingerprint = "other";
  group_kernels(r);
  const std::string text = matrix_text(r);
  CHECK(text.find("\n1     6.12.107+deb13-amd64 ") != std::string::npos);
  CHECK(text.find("\n2     " + b.kernel + " ") != std::string::npos);
  CHECK(text.find('~') == std::string::npos);
  CHECK(text.find("6.12.107+deb13-amd64" + std::string(b.kernel.size() - 20, ' ') + "  given as " + a.kernel +
                  "; CRCs from " + a.symvers + "\n") != std::string::npos);
  CHECK(text.find(b.kernel + "  release unknown; CRCs from " + b.kernel + "\n") != std::string::npos);
  // Given as the file itself: the path once.
  CHECK(kernel_origin("k/Module.symvers", "", "/abs/k/Module.symvers", true) == "release unknown");
  CHECK(kernel_origin("k/Module.symvers", "6.1.0-56-amd64", "/abs/k/Module.symvers", true) ==
        "CRCs from /abs/k/Module.symvers");
  CHECK(kernel_origin("k", "6.1.0-56-amd64", "/abs/k/Module.symvers", false) == "given as k; CRCs from /abs/k/Module.symvers");
  CHECK(matrix_json(r)["kernels"][0]["release_from"].is_null());
}

TEST_CASE("kernel release: the headers' directory name, when nothing in the kernel's files says it") {
  CHECK(release_of_headers_dir("/srv/k/usr/src/linux-headers-6.1.0-47-amd64") == "6.1.0-47-amd64");
  CHECK(release_of_headers_dir("/srv/k/usr/src/kernels/5.14.0-427.el9.x86_64") == "5.14.0-427.el9.x86_64");
  CHECK(release_of_headers_dir("/srv/k/usr/src/linux-headers-").empty());
  CHECK(release_of_headers_dir("/srv/k/headers").empty());
  CHECK(release_of_headers_dir("/srv/k/linux-headers-6.1 bad").empty());
  auto r = settle_release({.vermagic_release = "", .headers_release = "", .tree_dir = "",
                           .headers_dir = "/srv/k/usr/src/linux-headers-6.1.0-47-amd64"});
  CHECK(r.release == "6.1.0-47-amd64");
  CHECK(r.from == "headers directory");
  // The kernel's own words win over a directory name.
  r = settle_release({.vermagic_release = "", .headers_release = "6.1.0-56-amd64", .tree_dir = "",
                      .headers_dir = "/srv/k/usr/src/linux-headers-6.1.0-47-amd64"});
  CHECK(r.release == "6.1.0-56-amd64");
  CHECK(r.from == "utsrelease.h");
  // Located: a Module.symvers alone in a Debian headers directory, no utsrelease.h beside it.
  TempDir tmp;
  const fs::path headers = tmp.path() / "linux-headers-6.1.0-47-amd64";
  fs::create_directories(headers);
  std::ofstream(headers / "Module.symvers") << "0x12345678\tsym\tvmlinux\tEXPORT_SYMBOL\t\n";
  auto src = locate_kernel(headers / "Module.symvers");
  REQUIRE(src);
  REQUIRE(src->headers_release.empty());
  auto release = kernel_release(*src);
  REQUIRE(release);
  CHECK(release->release == "6.1.0-47-amd64");
  CHECK(release->from == "headers directory");
}

TEST_CASE("matrix: NAME=PATH names a kernel; the path stays in the JSON") {
  CHECK(parse_kernel_arg("deb12-47=/srv/k/Module.symvers").name == "deb12-47");
  CHECK(parse_kernel_arg("deb12-47=/srv/k/Module.symvers").path == "/srv/k/Module.symvers");
  for (const std::string plain : {"/srv/k/Module.symvers", "/srv/a=b/Module.symvers", "=x", "x=", "x"}) {
    INFO(plain);
    CHECK(parse_kernel_arg(plain).name.empty());
    CHECK(parse_kernel_arg(plain).path == plain);
  }
  MatrixReport r;
  r.bundle = "b";
  KernelPlan a, b;
  a.kernel = "/srv/k/6.1.0-47/Module.symvers";
  a.name = "bookworm-47";
  a.release = "6.1.0-47-amd64";
  a.symvers = a.kernel;
  b.kernel = "/srv/k/x/Module.symvers";
  b.name = "x";
  b.symvers = b.kernel;
  r.kernels = {a, b};
  group_kernels(r);
  const std::string text = matrix_text(r);
  CHECK(text.find("\n1     bookworm-47 ") != std::string::npos);
  CHECK(text.find("bookworm-47  release 6.1.0-47-amd64, given as " + a.kernel + "; CRCs from " + a.symvers + "\n") !=
        std::string::npos);
  CHECK(text.find("x            release unknown, given as " + b.kernel) != std::string::npos);
  const auto j = matrix_json(r);
  CHECK(j["kernels"][0]["name"] == "bookworm-47");
  CHECK(j["kernels"][0]["kernel"] == a.kernel);
  CHECK(j["kernels"][0]["release"] == "6.1.0-47-amd64");
  a.name.clear();
  CHECK(kernel_display_name(a) == "6.1.0-47-amd64");
}

TEST_CASE("read_tree_symvers: a tree's own exports and __versions make a partial table") {
  TempDir tmp;
  const fs::path tree = tmp.path() / "lib/modules/6.1.0-56-amd64";
  fs::create_directories(tree / "kernel/drivers/kabi");
  fs::copy_file(fixture("provider.ko"), tree / "kernel/drivers/kabi/kabi_provider.ko");
  fs::copy_file(fixture("consumer.ko"), tree / "kernel/drivers/kabi/kabi_consumer.ko");
  auto sv = read_tree_symvers(tree);
  REQUIRE(sv);
  const SymversEntry* gpl = sv->find("prov_gpl");
  REQUIRE(gpl);
  CHECK(gpl->crc == 0xc0ffee01u);
  CHECK(gpl->owner == "drivers/kabi/kabi_provider");
  CHECK(gpl->type == ExportType::Gpl);
  const SymversEntry* printk = sv->find("_printk");
  REQUIRE(printk);
  CHECK(printk->crc == 0x92997ed8u);
  CHECK(printk->owner == "vmlinux");
  CHECK(!printk->type_known);
  CHECK(sv->modversions);
  // As a kernel of the matrix: reuse, with the tree's vermagic.
  auto src = locate_kernel(tree);
  REQUIRE(src);
  auto k = load_kernel(*src, provider_consumer());
  REQUIRE(k);
  CHECK(k->symvers_partial);
  CHECK(k->model.release == "6.1.0-56-amd64");
  CHECK(plan_kernel(evaluate(provider_consumer(), k->model)).verdict == Plan::Reuse);
}

TEST_CASE("read_bundle: a directory of modules, one module, bad input named") {
  TempDir tmp;
  fs::create_directories(tmp.path() / "b/sub");
  fs::copy_file(fixture("provider.ko"), tmp.path() / "b/sub/provider.ko");
  fs::copy_file(fixture("consumer.ko"), tmp.path() / "b/consumer.ko");
  spit(tmp.path() / "b/README", "not a module");
  auto b = read_bundle(tmp.path() / "b");
  REQUIRE(b);
  CHECK(b->size() == 2);
  fs::create_directories(tmp.path() / "none");
  auto none = read_bundle(tmp.path() / "none");
  REQUIRE(!none);
  CHECK(none.error().path == (tmp.path() / "none").string());
  // A file that is no module is kept for the rules to refuse (the kernel's ENOEXEC), named.
  spit(tmp.path() / "bad/x.ko", "garbage");
  auto bad = read_bundle(tmp.path() / "bad");
  REQUIRE(bad);
  REQUIRE(bad->size() == 1);
  CHECK((*bad)[0].unreadable);
  CHECK((*bad)[0].path == (tmp.path() / "bad/x.ko").string());
}

TEST_CASE("explain: the first member that differs, a prototype, an unchanged symbol") {
  auto old_reg = expand_symbol(fixture("explain_old.o"), "kabi_dev_register");
  auto new_reg = expand_symbol(fixture("explain_new.o"), "kabi_dev_register");
  REQUIRE(old_reg);
  REQUIRE(new_reg);
  CHECK(old_reg->declaration == "int kabi_dev_register(struct kabi_dev *, int)");
  // Every named type it reaches: the struct, its typedef, enum, ops (and back to the struct).
  std::vector<std::string> keys;
  for (const auto& t : old_reg->types) keys.push_back(t.key);
  CHECK(keys == std::vector<std::string>{"struct kabi_dev", "typedef kabi_id_t", "enum kabi_state", "struct kabi_ops"});
  CHECK(old_reg->types[0].members ==
        std::vector<std::string>{"kabi_id_t id", "enum kabi_state state", "const struct kabi_ops * ops",
                                 "struct { int irq; char[16] name; } res"});
  CHECK(old_reg->types[2].members == std::vector<std::string>{"KABI_IDLE = 0", "KABI_READY = 4"});
  CHECK(old_reg->types[3].members[0] == "int (*)(struct kabi_dev *, const char *) probe");
  auto d = first_difference(*old_reg, *new_reg);
  REQUIRE(d);
  CHECK(d->where == "struct kabi_dev");
  CHECK(d->what == "member 2 added");
  // The compiler's own spelling of the base type: gcc "long unsigned int", clang "unsigned long".
  CHECK(d->new_text.find("long") != std::string::npos);
  CHECK(d->new_text.ends_with(" flags"));

  auto old_count = expand_symbol(fixture("explain_old.o"), "kabi_dev_count");
  auto new_count = expand_symbol(fixture("explain_new.o"), "kabi_dev_count");
  REQUIRE(old_count);
  REQUIRE(new_count);
  auto dc = first_difference(*old_count, *new_count);
  REQUIRE(dc);
  CHECK(dc->where == "declaration");
  CHECK(dc->old_text == "int kabi_dev_count(void)");
  CHECK(dc->new_text == "int kabi_dev_count(int)");

  auto old_v = expand_symbol(fixture("explain_old.o"), "kabi_version");
  auto new_v = expand_symbol(fixture("explain_new.o"), "kabi_version");
  REQUIRE(old_v);
  REQUIRE(new_v);
  CHECK(!first_difference(*old_v, *new_v));

  // A variable whose type reaches the changed struct through a function pointer.
  auto old_ops = expand_symbol(fixture("explain_old.o"), "kabi_default_ops");
  auto new_ops = expand_symbol(fixture("explain_new.o"), "kabi_default_ops");
  REQUIRE(old_ops);
  REQUIRE(new_ops);
  CHECK(old_ops->declaration == "struct kabi_ops kabi_default_ops");
  auto dv = first_difference(*old_ops, *new_ops);
  REQUIRE(dv);
  CHECK(dv->where == "struct kabi_dev");
}

TEST_CASE("explain: no DWARF, no symbol, no file are errors naming the file") {
  auto nodebug = expand_symbol(fixture("explain_nodebug.o"), "kabi_dev_register");
  REQUIRE(!nodebug);
  CHECK(nodebug.error().path == fixture("explain_nodebug.o").string());
  auto nosym = expand_symbol(fixture("explain_old.o"), "no_such_symbol");
  REQUIRE(!nosym);
  CHECK(nosym.error().code == ENOENT);
  auto nofile = expand_symbol("/nonexistent.o", "x");
  REQUIRE(!nofile);
  CHECK(nofile.error().path == "/nonexistent.o");
  auto notelf = expand_symbol(source_fixture("Module.symvers"), "x");
  REQUIRE(!notelf);
}
