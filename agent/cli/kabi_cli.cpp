#include "agent/cli/kabi_cli.h"

#include <CLI/CLI.hpp>

namespace agent {

KabiPipelineCli::KabiPipelineCli(CLI::App& kabi) {
  diff_ = kabi.add_subcommand("diff", "What changed between two kernels' CRC tables (all, or what a bundle imports)");
  diff_->fallthrough();
  diff_->add_option("old", diff_options_.old_kernel,
                    "Old kernel: Module.symvers (any compression), module tree, or a directory holding both (its links "
                    "resolved inside it)")
      ->required();
  diff_->add_option("new", diff_options_.new_kernel, "New kernel, as OLD")->required();
  diff_->add_option("--bundle", diff_options_.bundle, "Only what these modules import (a directory, or one module), per module");
  diff_->add_option("--stablelist", diff_options_.stablelist, "kABI stablelist (RHEL kabi_stablelist_<arch>, or one symbol a line)");
  diff_->add_flag("--json", diff_options_.json, "JSON output (schema 1)");

  matrix_ = kabi.add_subcommand("matrix", "Per kernel: reuse the bundle, rebuild it, or a rebuild cannot help");
  matrix_->fallthrough();
  matrix_->add_option("--bundle", matrix_options_.bundle, "The shipped modules (a directory, or one module)")->required();
  matrix_->add_option("--stablelist", matrix_options_.stablelist, "kABI stablelist: how much of the bundle's imports it covers");
  matrix_->add_option("--policy", matrix_policy_, "Missing __versions entry: strict (refuse, Debian) or upstream (warn)")
      ->check(CLI::IsMember({"strict", "upstream"}));
  matrix_->add_flag("--json", matrix_options_.json, "JSON output (schema 1), for a CI build matrix");
  matrix_->add_option("kernels", matrix_options_.kernels,
                      "Kernels: Module.symvers, module tree, or a directory holding both (unpacked image + headers); "
                      "links resolved inside each, named by release; NAME=PATH names one")
      ->required();

  explain_ = kabi.add_subcommand("explain", "Why a symbol's CRC changed: its DWARF type expansion in two builds");
  explain_->fallthrough();
  explain_->add_option("symbol", explain_options_.symbol, "The exported symbol")->required();
  explain_->add_option("--old", explain_options_.old_debug, "Old build's object with DWARF (.o, .ko, .debug, vmlinux)")->required();
  explain_->add_option("--new", explain_options_.new_debug, "New build's object with DWARF")->required();
  explain_->add_flag("--json", explain_options_.json, "JSON output (schema 1)");
}

std::optional<int> KabiPipelineCli::run(std::ostream& out, std::ostream& err, bool verbose) const {
  if (diff_->parsed()) {
    KabiDiffOptions o = diff_options_;
    o.verbose = verbose;
    return run_kabi_diff(o, out, err);
  }
  if (matrix_->parsed()) {
    KabiMatrixOptions o = matrix_options_;
    o.policy = matrix_policy_ == "upstream" ? kabi::MissingVersionPolicy::Upstream : kabi::MissingVersionPolicy::Strict;
    return run_kabi_matrix(o, out, err);
  }
  if (explain_->parsed()) return run_kabi_explain(explain_options_, out, err);
  return std::nullopt;
}

}  // namespace agent
