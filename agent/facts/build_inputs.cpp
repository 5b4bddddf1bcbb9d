#include "agent/facts/build_inputs.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <map>

#include "kabi/module.h"
#include "kabi/text.h"

namespace agent {
namespace {

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool name_char(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

// Unquotes and expands a shell word; nullopt when it is not a plain value (command
// substitution, an unknown variable, an unterminated quote, several words).
std::optional<std::string> expand_word(std::string_view w, const std::map<std::string, std::string>& vars) {
  std::string out;
  char quote = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const char c = w[i];
    if (quote == '\'') {
      if (c == '\'') quote = 0;
      else out += c;
      continue;
    }
    if (c == '\'' && !quote) { quote = '\''; continue; }
    if (c == '"') { quote = quote == '"' ? 0 : '"'; continue; }
    if (c == '\\' && i + 1 < w.size()) { out += w[++i]; continue; }
    if (c == '`') return std::nullopt;
    if (c == '$') {
      if (i + 1 < w.size() && w[i + 1] == '(') return std::nullopt;
      std::string name;
      if (i + 1 < w.size() && w[i + 1] == '{') {
        const size_t end = w.find('}', i + 2);
        if (end == std::string_view::npos) return std::nullopt;
        name = std::string(w.substr(i + 2, end - i - 2));
        i = end;
      } else {
        size_t j = i + 1;
        while (j < w.size() && name_char(w[j])) ++j;
        name = std::string(w.substr(i + 1, j - i - 1));
        i = j - 1;
      }
      auto it = vars.find(name);
      if (name.empty() || it == vars.end()) return std::nullopt;
      out += it->second;
      continue;
    }
    if (!quote && (c == ' ' || c == '\t' || c == ';' || c == '#')) {
      // The rest must be a comment or nothing: `X="a" # why` is fine, `X=a b` is not a value.
      const auto rest = trim_ws(w.substr(i));
      if (rest.empty() || rest.front() == '#') break;
      return std::nullopt;
    }
    out += c;
  }
  if (quote) return std::nullopt;
  return out;
}

}  // namespace

Result<DkmsPackage> parse_dkms_conf(std::string_view text, const std::string& kernelver, const std::string& path) {
  std::map<std::string, std::string> vars{{"kernelver", kernelver}};
  std::map<unsigned, std::string> built, location, dest;
  std::map<unsigned, std::string> unexpanded;  // BUILT_MODULE_NAME[i] that is not a plain value
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = trim_ws(text.substr(pos, eol - pos));
    pos = eol + 1;
    size_t n = 0;
    while (n < line.size() && name_char(line[n])) ++n;
    if (n == 0 || (line[0] >= '0' && line[0] <= '9')) continue;
    const std::string name(line.substr(0, n));
    std::optional<unsigned> index;
    size_t eq = n;
    if (eq < line.size() && line[eq] == '[') {
      const size_t close = line.find(']', eq);
      if (close == std::string_view::npos) continue;
      unsigned v = 0;
      const auto idx = line.substr(eq + 1, close - eq - 1);
      auto [p, ec] = std::from_chars(idx.data(), idx.data() + idx.size(), v);
      if (ec != std::errc() || p != idx.data() + idx.size()) continue;
      index = v;
      eq = close + 1;
    }
    if (eq >= line.size() || line[eq] != '=') continue;
    const auto value = expand_word(line.substr(eq + 1), vars);
    if (!index) {
      if (value) vars[name] = *value;
      else vars.erase(name);
      continue;
    }
    if (name == "BUILT_MODULE_NAME") {
      if (value) { built[*index] = *value; unexpanded.erase(*index); }
      else unexpanded[*index] = std::string(line);
    } else if (name == "BUILT_MODULE_LOCATION" && value) {
      location[*index] = *value;
    } else if (name == "DEST_MODULE_NAME" && value) {
      dest[*index] = *value;
    }
  }
  DkmsPackage p;
  auto get = [&](const char* key) -> Result<std::string> {
    auto it = vars.find(key);
    if (it == vars.end() || it->second.empty())
      return fail(EINVAL, std::string(key) + " is missing or not a plain value", path);
    return it->second;
  };
  auto name = get("PACKAGE_NAME");
  if (!name) return tl::unexpected(name.error());
  auto version = get("PACKAGE_VERSION");
  if (!version) return tl::unexpected(version.error());
  p.name = *name;
  p.version = *version;
  if (!unexpanded.empty())
    return fail(EINVAL, "not a plain value (the modules a build must produce are named literally): " +
                            unexpanded.begin()->second, path);
  if (built.empty()) return fail(EINVAL, "no BUILT_MODULE_NAME", path);
  for (const auto& [i, m] : built) {
    if (m.empty() || m.find('/') != std::string::npos)
      return fail(EINVAL, "BUILT_MODULE_NAME[" + std::to_string(i) + "] is not a module name", path);
    DkmsModule d;
    d.name = m;
    if (auto it = location.find(i); it != location.end()) d.location = it->second;
    d.dest_name = m;
    if (auto it = dest.find(i); it != dest.end() && !it->second.empty()) d.dest_name = it->second;
    p.modules.push_back(std::move(d));
  }
  return p;
}

std::optional<unsigned> cpu_max_limit(std::string_view s) {
  s = trim_ws(s);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  const size_t sp = s.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  const auto q = s.substr(0, sp), per = trim_ws(s.substr(sp + 1));
  unsigned long quota = 0, period = 0;
  if (q == "max") return std::nullopt;
  auto r1 = std::from_chars(q.data(), q.data() + q.size(), quota);
  auto r2 = std::from_chars(per.data(), per.data() + per.size(), period);
  if (r1.ec != std::errc() || r1.ptr != q.data() + q.size() || r2.ec != std::errc() ||
      r2.ptr != per.data() + per.size() || period == 0 || quota == 0)
    return std::nullopt;
  return static_cast<unsigned>((quota + period - 1) / period);
}

unsigned build_jobs(unsigned affinity_cpus, const std::vector<std::string>& cpu_max_values) {
  unsigned jobs = affinity_cpus == 0 ? 1 : affinity_cpus;
  for (const auto& v : cpu_max_values)
    if (auto limit = cpu_max_limit(v)) jobs = std::min(jobs, *limit);
  return std::max(jobs, 1u);
}

namespace {

// Appends tag:length:value; no two values run together.
void put_field(std::string& buf, std::string_view tag, std::string_view value) {
  buf += tag;
  buf += ':';
  buf += std::to_string(value.size());
  buf += ':';
  buf += value;
  buf += '\n';
}

void put_sources(std::string& buf, std::vector<std::pair<std::string, std::string>> sources) {
  std::sort(sources.begin(), sources.end());
  put_field(buf, "sources", std::to_string(sources.size()));
  for (const auto& [path, digest] : sources) {
    put_field(buf, "path", path);
    put_field(buf, "sha256", digest);
  }
}

}  // namespace

std::string sources_digest(const std::vector<std::pair<std::string, std::string>>& sources) {
  std::string buf;
  put_sources(buf, sources);
  return kabi::sha256_hex(buf);
}

std::string cache_key(const CacheKeyInputs& in) {
  std::string buf;
  auto put = [&](std::string_view tag, std::string_view value) { put_field(buf, tag, value); };
  put("schema", "1");
  put("release", in.release);
  put("proc_version", in.proc_version);
  put("symvers", in.symvers_sha256);
  put("compiler", in.compiler_version);
  put("signing_key", in.signing_key_id);
  put_sources(buf, in.sources);
  return kabi::sha256_hex(buf);
}

const char* build_outcome_name(BuildOutcome o) noexcept {
  switch (o) {
    case BuildOutcome::Built: return "built";
    case BuildOutcome::Cached: return "cached";
    case BuildOutcome::Failed: break;
  }
  return "failed";
}

nlohmann::json build_result_json(const BuildResult& r) {
  nlohmann::json j;
  j["schema"] = 1;
  j["result"] = build_outcome_name(r.result);
  j["kernel"] = r.kernel;
  j["key"] = r.key;
  j["log"] = r.log;
  j["modules"] = nlohmann::json::array();
  for (const auto& m : r.modules) j["modules"].push_back({{"name", m.name}, {"path", m.path}, {"sha256", m.sha256}});
  if (!r.entry.empty()) j["entry"] = r.entry;
  if (!r.signer.empty()) j["signer"] = {{"name", r.signer}, {"key_id", r.signing_key_id}};
  if (!r.reason.empty()) j["reason"] = r.reason;
  if (!r.detail.empty()) j["detail"] = r.detail;
  j["headers"] = r.headers;
  j["packages"] = r.packages;
  j["compiler"] = {{"used", r.compiler},
                   {"kernel", r.kernel_compiler},
                   {"matches_kernel", !r.compiler.empty() && r.compiler == r.kernel_compiler}};
  j["jobs"] = r.jobs;
  j["build_seconds"] = r.build_seconds;
  j["total_seconds"] = r.total_seconds;
  return j;
}

std::string build_result_text(const BuildResult& r) {
  std::string s = build_outcome_name(r.result) + std::string(": ") + join(r.packages) + " for " + r.kernel;
  if (!r.key.empty()) s += " (key " + r.key.substr(0, 16) + ")";
  s += "\n";
  if (!r.detail.empty()) s += "  " + r.detail + "\n";
  for (const auto& m : r.modules) s += "  " + m.name + ": " + m.path + "\n";
  if (!r.signer.empty()) s += "  signed by: " + r.signer + " (key " + r.signing_key_id + ")\n";
  if (!r.headers.empty()) s += "  headers: " + r.headers + "\n";
  if (!r.compiler.empty() && r.compiler != r.kernel_compiler)
    s += "  compiler: " + r.compiler + " (the kernel was built with " +
         (r.kernel_compiler.empty() ? std::string("an unknown compiler") : r.kernel_compiler) + ")\n";
  if (!r.log.empty()) s += "  log: " + r.log + "\n";
  char times[96];
  std::snprintf(times, sizeof times, "  build %.1f s, total %.1f s, -j%u\n", r.build_seconds, r.total_seconds, r.jobs);
  s += times;
  return s;
}

std::string compiler_from_proc_version(std::string_view v) {
  // "Linux version <release> (<builder>) (<compiler>, <linker>) #..." : the second group.
  size_t p = v.find(") (");
  if (p == std::string_view::npos) return {};
  p += 3;
  int depth = 1;
  size_t i = p;
  for (; i < v.size() && depth > 0; ++i) {
    if (v[i] == '(') ++depth;
    else if (v[i] == ')') --depth;
    else if (v[i] == ',' && depth == 1) break;
  }
  if (i >= v.size()) return {};
  return std::string(trim_ws(v.substr(p, i - p)));
}

std::string cc_version_text(std::string_view config) {
  static constexpr std::string_view kKey = "CONFIG_CC_VERSION_TEXT=\"";
  size_t p = config.find(kKey);
  if (p == std::string_view::npos || (p > 0 && config[p - 1] != '\n')) return {};
  p += kKey.size();
  const size_t end = config.find('"', p);
  if (end == std::string_view::npos) return {};
  return std::string(config.substr(p, end - p));
}

std::string compiler_from_kernelvariables(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const auto line = trim_ws(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (line.rfind("CC =", 0) != 0 && line.rfind("CC=", 0) != 0) continue;
    // "CC = $(if ...)$(CROSS_COMPILE)gcc-12": the word after the last ')' or space.
    size_t start = line.find_last_of(") =");
    auto cc = line.substr(start == std::string_view::npos ? 0 : start + 1);
    if (cc.empty() || cc.find('$') != std::string_view::npos) return {};
    return std::string(cc);
  }
  return {};
}

}  // namespace agent
