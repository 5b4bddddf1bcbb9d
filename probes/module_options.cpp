#include "probes/module_options.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace agent::probes {
namespace {

std::string module_name(std::string_view s) {
  std::string n(s);
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= line.size()) break;
    std::string w;
    bool quoted = false;
    for (; i < line.size() && (quoted || !std::isspace(static_cast<unsigned char>(line[i]))); ++i) {
      if (line[i] == '"') quoted = !quoted;  // kept: the kernel's parser takes quotes too
      w += line[i];
    }
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace

std::string ModuleOptions::of(std::string_view module) const {
  auto it = by_module.find(module_name(module));
  return it == by_module.end() ? std::string() : it->second;
}

std::vector<std::pair<std::string, std::string>> parse_modprobe_options(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& l : parse_modprobe_conf(text, ""))
    if (l.kind == "options") out.emplace_back(std::move(l.module), std::move(l.rest));
  return out;
}

std::vector<ModprobeLine> parse_modprobe_conf(std::string_view text, const std::string& path) {
  std::vector<ModprobeLine> out;
  std::string logical;
  size_t lineno = 0, start = 0;
  auto finish = [&] {
    const auto w = words(logical);
    logical.clear();
    if (w.size() < 2 || (w[0] != "options" && w[0] != "blacklist" && w[0] != "install")) return;
    if (w[0] == "options" && w.size() < 3) return;
    std::string rest;
    for (size_t i = 2; i < w.size(); ++i) rest += (rest.empty() ? "" : " ") + w[i];
    out.push_back({w[0], module_name(w[1]), std::move(rest), path + ":" + std::to_string(start)});
  };
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (logical.empty()) {
      const auto first = line.find_first_not_of(" \t");
      if (first == std::string_view::npos || line[first] == '#') continue;
      start = lineno;
    }
    if (!line.empty() && line.back() == '\\') {
      logical += std::string(line.substr(0, line.size() - 1)) + " ";
      continue;
    }
    logical += line;
    finish();
  }
  if (!logical.empty()) finish();
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_cmdline_options(std::string_view cmdline) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& w : words(cmdline)) {
    if (w == "--") break;
    const size_t eq = w.find('=');
    const size_t dot = w.find('.');
    if (dot == std::string::npos || dot == 0 || (eq != std::string::npos && dot > eq) || dot + 1 == w.size()) continue;
    out.emplace_back(module_name(w.substr(0, dot)), w.substr(dot + 1));
  }
  return out;
}

ModuleOptions probe_module_options(const HostRoot& root) {
  ModuleOptions o;
  std::map<std::string, std::string> files;  // file name -> the path that wins
  for (const std::string dir : {"/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/lib/modprobe.d",
                                "/usr/lib/modprobe.d"}) {
    if (!root.is_directory(dir)) continue;
    auto names = root.list_dir(dir);
    if (!names) {
      o.problems.push_back(names.error());
      continue;
    }
    for (const auto& n : *names)
      if (n.size() > 5 && n.ends_with(".conf")) files.emplace(n, dir + "/" + n);
  }
  auto add = [&](const std::vector<std::pair<std::string, std::string>>& opts) {
    for (const auto& [name, params] : opts) {
      std::string& cur = o.by_module[name];
      cur += (cur.empty() ? "" : " ") + params;
    }
  };
  for (const auto& [name, path] : files) {
    auto text = root.read_text(path);
    if (!text) {
      o.problems.push_back(text.error());
      continue;
    }
    o.sources.push_back(path);
    add(parse_modprobe_options(*text));
    for (auto& l : parse_modprobe_conf(*text, path)) o.lines.push_back(std::move(l));
  }
  if (auto cmdline = root.read_text("/proc/cmdline")) {
    o.sources.push_back("/proc/cmdline");
    add(parse_cmdline_options(*cmdline));
  } else {
    o.problems.push_back(cmdline.error());
  }
  return o;
}

}  // namespace agent::probes
