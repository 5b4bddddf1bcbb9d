#include "kabi/report.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "kabi/text.h"

namespace agent::kabi {

std::string crc_hex(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", crc);
  return buf;
}

std::string verdict_name(Verdict v) { return v == Verdict::Loadable ? "loadable" : "refused"; }

nlohmann::json reason_json(const Reason& r) {
  return {
      {"code", r.code},
      {"symbol", r.symbol.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.symbol)},
      {"expected_crc", r.expected_crc ? nlohmann::json(crc_hex(*r.expected_crc)) : nlohmann::json(nullptr)},
      {"found_crc", r.found_crc ? nlohmann::json(crc_hex(*r.found_crc)) : nlohmann::json(nullptr)},
      {"message", r.message},
      {"fatal", r.fatal},
  };
}

nlohmann::json module_verdict_json(const ModuleVerdict& v) {
  nlohmann::json reasons = nlohmann::json::array();
  for (const auto& r : v.reasons) reasons.push_back(reason_json(r));
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

// One reason: on one line, or wrapped at `width` with `indent` spaces on continuation lines.
void put(std::ostringstream& out, const std::string& first, const std::string& text, size_t width, size_t indent) {
  if (width == 0) {
    out << first << text << '\n';
    return;
  }
  std::string line = first;
  std::istringstream words(text);
  std::string w;
  bool empty = true;
  while (words >> w) {
    if (!empty && line.size() + 1 + w.size() > width) {
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

std::string evaluation_counts(const Evaluation& ev) {
  size_t refused = 0;
  std::vector<std::string> errnos;
  for (const auto& m : ev.modules) {
    if (m.verdict != Verdict::Refused) continue;
    ++refused;
    const std::string e = m.err ? errno_name(m.err) : std::string("no errno");
    if (std::find(errnos.begin(), errnos.end(), e) == errnos.end()) errnos.push_back(e);
  }
  const std::string total = std::to_string(ev.modules.size());
  if (refused == 0) return total + "/" + total + " loadable";
  std::string list;
  for (const auto& e : errnos) list += (list.empty() ? "" : ", ") + e;
  return std::to_string(refused) + "/" + total + " refused (" + list + ")";
}

size_t warning_count(const Evaluation& ev) {
  size_t n = 0;
  for (const auto& m : ev.modules)
    for (const auto& r : m.reasons) n += r.fatal ? 0 : 1;
  return n;
}

std::string evaluation_summary(const Evaluation& ev, const KernelModel& k) {
  const size_t warnings = warning_count(ev);
  return evaluation_counts(ev) + " on " + k.release + (warnings ? ", " + counted(warnings, "warning") : "");
}

std::string evaluation_text(const Evaluation& ev, const KernelModel& k, const TextOptions& o) {
  std::ostringstream out;
  if (o.header) {
    out << "kernel  " << k.release << (k.modversions ? "  (modversions)" : "  (no modversions)") << '\n';
    out << "crcs    " << k.symvers_source << '\n' << '\n';
  }
  char row[128];
  std::snprintf(row, sizeof row, "%-24s %-9s %-13s %s\n", "MODULE", "VERDICT", "ERRNO", "REASONS");
  out << row;
  for (const auto& m : ev.modules) {
    size_t fatal = 0, warn = 0;
    for (const auto& r : m.reasons) (r.fatal ? fatal : warn)++;
    std::string summary = std::to_string(fatal) + " fatal";
    if (warn) summary += ", " + counted(warn, "warning");
    std::string name = m.name.size() > 24 ? m.name.substr(0, 23) + "~" : m.name;
    std::snprintf(row, sizeof row, "%-24s %-9s %-13s %s\n", name.c_str(), verdict_name(m.verdict).c_str(),
                  m.err ? errno_name(m.err).c_str() : "-", summary.c_str());
    out << row;
  }
  constexpr size_t kShown = 20;
  std::vector<std::string> seen_codes;
  for (const auto& m : ev.modules) {
    if (m.reasons.empty()) continue;
    // The path on a line of its own: a KMM image path alone is ~75 columns.
    out << '\n' << m.name << ":\n  " << m.path << '\n';
    size_t shown = 0;
    for (const auto& r : m.reasons) {
      if (++shown > kShown && !o.verbose) {
        out << "  ... and " << (m.reasons.size() - kShown) << " more (--json or --verbose lists all)\n";
        break;
      }
      if (std::find(seen_codes.begin(), seen_codes.end(), r.code) == seen_codes.end()) seen_codes.push_back(r.code);
      std::string text = r.message;
      if (r.expected_crc && r.found_crc)
        text += " (kernel " + crc_hex(*r.expected_crc) + ", module " + crc_hex(*r.found_crc) + ")";
      put(out, "  " + std::string(r.fatal ? "" : "warning: ") + r.code + ": ", text, o.width, 4);
    }
  }
  bool first = true;
  for (const auto& code : seen_codes) {
    auto h = o.hints.find(code);
    if (h == o.hints.end()) continue;
    out << (first ? "\n" : "");
    first = false;
    put(out, "hint: ", h->second, o.width, 6);
  }
  return out.str();
}

}  // namespace agent::kabi
