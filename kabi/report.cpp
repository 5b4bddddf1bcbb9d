#include "kabi/report.h"

#include <cstdio>
#include <sstream>

namespace agent::kabi {

std::string crc_hex(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", crc);
  return buf;
}

std::string verdict_name(Verdict v) { return v == Verdict::Loadable ? "loadable" : "refused"; }

nlohmann::json module_verdict_json(const ModuleVerdict& v) {
  nlohmann::json reasons = nlohmann::json::array();
  for (const auto& r : v.reasons) {
    reasons.push_back({
        {"code", r.code},
        {"symbol", r.symbol.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.symbol)},
        {"expected_crc", r.expected_crc ? nlohmann::json(crc_hex(*r.expected_crc)) : nlohmann::json(nullptr)},
        {"found_crc", r.found_crc ? nlohmann::json(crc_hex(*r.found_crc)) : nlohmann::json(nullptr)},
        {"message", r.message},
        {"fatal", r.fatal},
    });
  }
  return {
      {"path", v.path},
      {"name", v.name},
      {"verdict", verdict_name(v.verdict)},
      {"errno", v.err},
      {"errno_name", errno_name(v.err)},
      {"reasons", reasons},
      {"load_after", v.load_after},
  };
}

nlohmann::json kernel_json(const KernelModel& k) {
  return {
      {"release", k.release},
      {"vermagic", k.vermagic},
      {"modversions", k.modversions},
      {"symvers", k.symvers_source},
      {"module_sig", k.module_sig},
      {"kernel_image", k.certificates_known ? nlohmann::json(k.kernel_image) : nlohmann::json(nullptr)},
  };
}

nlohmann::json evaluation_json(const Evaluation& ev, const KernelModel& k) {
  nlohmann::json mods = nlohmann::json::array();
  for (const auto& m : ev.modules) mods.push_back(module_verdict_json(m));
  return {{"schema", kReportSchema}, {"kernel", kernel_json(k)}, {"modules", mods}};
}

namespace {

// Wraps `text` at 80 columns with `indent` spaces on continuation lines.
void wrap(std::ostringstream& out, const std::string& first, const std::string& text, size_t indent) {
  std::string line = first;
  std::istringstream words(text);
  std::string w;
  bool empty = true;
  while (words >> w) {
    if (!empty && line.size() + 1 + w.size() > 80) {
      out << line << '\n';
      line = std::string(indent, ' ');
      empty = true;
    }
    line += (empty ? "" : " ") + w;
    empty = false;
  }
  out << line << '\n';
}

}  // namespace

std::string evaluation_text(const Evaluation& ev, const KernelModel& k, bool verbose) {
  std::ostringstream out;
  out << "kernel  " << k.release << (k.modversions ? "  (modversions)" : "  (no modversions)") << '\n';
  out << "crcs    " << k.symvers_source << '\n' << '\n';
  char row[128];
  std::snprintf(row, sizeof row, "%-24s %-9s %-13s %s\n", "MODULE", "VERDICT", "ERRNO", "REASONS");
  out << row;
  for (const auto& m : ev.modules) {
    size_t fatal = 0, warn = 0;
    for (const auto& r : m.reasons) (r.fatal ? fatal : warn)++;
    std::string summary = std::to_string(fatal) + " fatal";
    if (warn) summary += ", " + std::to_string(warn) + " warning" + (warn > 1 ? "s" : "");
    std::string name = m.name.size() > 24 ? m.name.substr(0, 23) + "~" : m.name;
    std::snprintf(row, sizeof row, "%-24s %-9s %-13s %s\n", name.c_str(), verdict_name(m.verdict).c_str(),
                  m.err ? errno_name(m.err).c_str() : "-", summary.c_str());
    out << row;
  }
  constexpr size_t kShown = 20;
  for (const auto& m : ev.modules) {
    size_t shown = 0, total = 0;
    for (const auto& r : m.reasons) total += (r.fatal || verbose);
    if (total == 0) continue;
    // The path on a line of its own: a KMM image path alone is ~75 columns.
    out << '\n' << m.name << ":\n  " << m.path << '\n';
    for (const auto& r : m.reasons) {
      if (!r.fatal && !verbose) continue;
      if (++shown > kShown && !verbose) {
        out << "  ... and " << (total - kShown) << " more (--json or --verbose lists all)\n";
        break;
      }
      std::string text = r.message;
      if (r.expected_crc && r.found_crc)
        text += " (kernel " + crc_hex(*r.expected_crc) + ", module " + crc_hex(*r.found_crc) + ")";
      wrap(out, "  " + std::string(r.fatal ? "" : "warning: ") + r.code + ": ", text, 4);
    }
  }
  return out.str();
}

}  // namespace agent::kabi
