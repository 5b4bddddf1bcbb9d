// The command lines of `agent kabi diff`, `agent kabi matrix` and `agent kabi explain`,
// registered on the `kabi` subcommand; main() runs whichever was parsed.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

#include "agent/cli/kabi_pipeline.h"

namespace CLI {
class App;
}

namespace agent {

class KabiPipelineCli {
 public:
  explicit KabiPipelineCli(CLI::App& kabi);
  // The exit code of the command that was parsed, or nullopt if none of these was.
  [[nodiscard]] std::optional<int> run(std::ostream& out, std::ostream& err, bool verbose) const;

 private:
  CLI::App* diff_ = nullptr;
  CLI::App* matrix_ = nullptr;
  CLI::App* explain_ = nullptr;
  KabiDiffOptions diff_options_;
  KabiMatrixOptions matrix_options_;
  KabiExplainOptions explain_options_;
  std::string matrix_policy_ = "strict";
};

}  // namespace agent
