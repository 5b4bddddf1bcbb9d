// The release pipeline's question for each kernel: reuse the bundle as built, rebuild it, or a
// rebuild of these sources cannot help. Pure functions over evaluations (rules.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kabi/kernel_model.h"
#include "kabi/rules.h"
#include "kabi/stablelist.h"

namespace agent::kabi {

// Reuse: every module would load (the rules of `kabi check`). Rebuild: some would not, and a
// build of the same sources against this kernel fixes it (CRCs, module_layout, vermagic, struct
// module size, a missing __versions entry, a signature). Impossible: a build of these sources
// cannot succeed or cannot load (a symbol the kernel no longer exports or whose module is not
// in its tree, a GPL-only symbol for a non-GPL module, a namespace the sources do not import).
enum class Plan { Reuse, Rebuild, Impossible };

[[nodiscard]] std::string plan_name(Plan p);  // "reuse", "rebuild", "impossible"
// What one fatal reason asks for; warnings ask for nothing (Reuse).
[[nodiscard]] Plan plan_of(const Reason& r);

struct ModulePlan {
  std::string name;
  std::string path;
  Plan plan = Plan::Reuse;
  int err = 0;                         // errno init_module would return
  std::map<std::string, size_t> counts;  // fatal reason code -> how many
  // At most `max_reasons` fatal ones: those that decide `plan` first, each kind in check order.
  std::vector<Reason> first_reasons;
};

struct KernelPlan {
  std::string kernel;        // the path as given on the command line
  std::string name;          // NAME of a NAME=PATH argument; "" otherwise
  std::string release;       // as its own files say it (settle_release); "" when not established
  std::string release_from;  // "vermagic", "utsrelease.h", ""
  std::string symvers;       // where its CRCs came from
  bool kernel_is_symvers = false;  // `kernel` names that file itself
  Plan verdict = Plan::Reuse;
  std::vector<ModulePlan> modules;  // load order
  std::vector<std::string> notes;   // what this kernel's inputs could not show
  std::string fingerprint;          // what the bundle depends on in it (see bundle_fingerprint)
  size_t group = 0;                 // index into MatrixReport::groups
};

[[nodiscard]] ModulePlan plan_module(const ModuleVerdict& v, size_t max_reasons = 5);
[[nodiscard]] KernelPlan plan_kernel(const Evaluation& ev, size_t max_reasons = 5);

// Everything of a kernel that decides whether a bundle built against it loads: for each symbol
// the bundle imports, whether the kernel has it, its CRC, export type, namespace; module_layout;
// the vermagic without its release word; sizeof(struct module). Two kernels with the same
// fingerprint take the same image: one build serves both.
[[nodiscard]] std::string bundle_fingerprint(const std::vector<std::string>& imports, const KernelModel& k);

struct KernelGroup {
  std::vector<size_t> kernels;  // indexes into MatrixReport::kernels, in command-line order
  Plan verdict = Plan::Reuse;   // theirs (one fingerprint, one verdict)
};

struct MatrixReport {
  std::string bundle;
  size_t bundle_modules = 0;
  size_t imports = 0;
  std::vector<KernelPlan> kernels;
  std::vector<KernelGroup> groups;  // first appearance order
  std::optional<StablelistCoverage> stablelist;
};

// Groups the kernels by fingerprint and sets each KernelPlan::group.
void group_kernels(MatrixReport& report);

inline constexpr int kMatrixSchema = 1;
// {"schema": 1, "bundle": ..., "kernels": [{"kernel", "release", "release_from", "verdict",
//  "name", "modules": [...]}], "groups": [...], "stablelist": ...}; "name" is the text's
// (kernel_display_name), "kernel" the path given.
[[nodiscard]] nlohmann::json matrix_json(const MatrixReport& r);
// Kernels named by release (their path where it is not established), never shortened.
[[nodiscard]] std::string matrix_text(const MatrixReport& r);
// A kernel argument: NAME=PATH names the kernel (NAME non-empty, without '/'); anything else is
// a path, unnamed.
struct KernelArg {
  std::string name;
  std::string path;
};
[[nodiscard]] KernelArg parse_kernel_arg(const std::string& arg);
// How the text names a kernel: the name given, else its release, else the path given.
[[nodiscard]] std::string kernel_display_name(const KernelPlan& k);
// What follows that name: "given as ARG; CRCs from PATH", without what would repeat the name
// ("release unknown" when the name is the path).
[[nodiscard]] std::string kernel_origin(const std::string& given, const std::string& release, const std::string& symvers,
                                        bool given_is_symvers);

[[nodiscard]] nlohmann::json stablelist_json(const StablelistCoverage& c);
[[nodiscard]] std::string stablelist_text(const StablelistCoverage& c, size_t max_listed = 20);

}  // namespace agent::kabi
