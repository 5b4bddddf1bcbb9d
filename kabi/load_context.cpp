#include "kabi/load_context.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <limits>

namespace agent::kabi {
namespace {

bool space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string underscores(std::string_view s) {
  std::string n(s);
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

// lib/cmdline.c next_arg(): one word, '=' splitting name and value, quotes grouping.
struct Word {
  std::string name;
  std::optional<std::string> value;
};
std::vector<Word> kernel_words(std::string_view s) {
  std::vector<Word> out;
  size_t i = 0;
  while (true) {
    while (i < s.size() && space(s[i])) ++i;
    if (i >= s.size()) break;
    bool quoted = false, in_quote = false;
    if (s[i] == '"') {
      ++i;
      quoted = in_quote = true;
    }
    const size_t start = i;
    size_t equals = 0;
    for (; i < s.size(); ++i) {
      if (space(s[i]) && !in_quote) break;
      if (equals == 0 && s[i] == '=') equals = i - start;
      if (s[i] == '"') in_quote = !in_quote;
    }
    std::string arg(s.substr(start, i - start));
    if (quoted && !arg.empty() && arg.back() == '"') arg.pop_back();
    Word w;
    if (equals == 0) {
      w.name = arg;
    } else {
      w.name = arg.substr(0, equals);
      std::string v = arg.substr(std::min(equals + 1, arg.size()));
      if (!v.empty() && v.front() == '"') {
        v.erase(0, 1);
        if (!v.empty() && v.back() == '"') v.pop_back();
      }
      w.value = std::move(v);
    }
    out.push_back(std::move(w));
  }
  return out;
}

// lib/kstrtox.c: base 0 ("0x" hex, "0" octal, else decimal), at least one digit, one trailing
// newline allowed; 0, EINVAL or ERANGE (the value does not fit 64 bits).
int parse_u64(std::string_view s, uint64_t& out) {
  unsigned base = 10;
  if (s.size() >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && std::isxdigit(static_cast<unsigned char>(s[2]))) {
    base = 16;
    s.remove_prefix(2);
  } else if (!s.empty() && s[0] == '0') {
    base = 8;
  }
  uint64_t v = 0;
  size_t n = 0;
  bool overflow = false;
  for (; n < s.size(); ++n) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[n])));
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else break;
    if (d >= base) break;
    if (v > (std::numeric_limits<uint64_t>::max() - d) / base) overflow = true;
    v = v * base + d;
  }
  if (n == 0) return EINVAL;
  s.remove_prefix(n);
  if (!s.empty() && s[0] == '\n') s.remove_prefix(1);
  if (!s.empty()) return EINVAL;
  if (overflow) return ERANGE;
  out = v;
  return 0;
}

// kstrtou8/u16/uint/ul/ull ('+' allowed) and kstrtos16/int/l/ll ('-' too), by width.
int parse_integer(std::string_view s, bool is_signed, int bits) {
  bool negative = false;
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  else if (is_signed && !s.empty() && s[0] == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  uint64_t v = 0;
  if (int e = parse_u64(s, v)) return e;
  if (!is_signed) return bits < 64 && v > (uint64_t{1} << bits) - 1 ? ERANGE : 0;
  const uint64_t limit = (uint64_t{1} << (bits - 1)) - (negative ? 0 : 1);
  return v > limit ? ERANGE : 0;
}

// lib/kstrtox.c kstrtobool(): the first character decides (y/t/e/1, n/f/d/0 in either case,
// on/off).
bool kernel_bool(std::string_view s) {
  if (s.empty()) return false;
  switch (s[0]) {
    case 'y': case 'Y': case 't': case 'T': case 'e': case 'E': case '1':
    case 'n': case 'N': case 'f': case 'F': case 'd': case 'D': case '0':
      return true;
    case 'o': case 'O':
      return s.size() > 1 && (s[1] == 'n' || s[1] == 'N' || s[1] == 'f' || s[1] == 'F');
    default:
      return false;
  }
}

std::optional<int> scalar_errno(std::string_view type, std::string_view v) {
  struct Int {
    std::string_view type;
    bool is_signed;
    int bits;
  };
  static constexpr Int ints[] = {{"byte", false, 8},  {"short", true, 16}, {"ushort", false, 16},
                                 {"int", true, 32},   {"uint", false, 32}, {"long", true, 64},
                                 {"ulong", false, 64}, {"ullong", false, 64}, {"hexint", false, 32}};
  for (const auto& i : ints)
    if (type == i.type) return parse_integer(v, i.is_signed, i.bits);
  if (type == "bool" || type == "invbool" || type == "bint") return kernel_bool(v) ? 0 : EINVAL;
  if (type == "charp") return v.size() > 1024 ? ENOSPC : 0;  // param_set_charp(): maxlen 1024
  if (type == "string") return 0;  // module_param_string: its length is not in modinfo
  return std::nullopt;
}

}  // namespace

std::vector<ModuleParam> parse_module_params(std::string_view params, const std::string& source) {
  std::vector<ModuleParam> out;
  for (auto& w : kernel_words(params)) out.push_back({std::move(w.name), std::move(w.value), source});
  return out;
}

void apply_kernel_cmdline(KernelModel& kernel, std::string_view cmdline, const std::string& source) {
  for (auto& w : kernel_words(cmdline)) {
    if (w.name == "--" && !w.value) break;
    if (w.name == "module_blacklist" && w.value) {
      std::string_view list = *w.value;
      while (!list.empty()) {
        const size_t comma = list.find(',');
        if (comma != 0) kernel.module_blacklist.insert(std::string(list.substr(0, comma)));
        list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
      }
    } else if (w.name == "nomodeset") {
      kernel.nomodeset = true;
    } else if (const size_t dot = w.name.find('.'); dot != std::string::npos && dot > 0 && dot + 1 < w.name.size()) {
      kernel.params[underscores(w.name.substr(0, dot))].push_back({w.name.substr(dot + 1), std::move(w.value), source});
    }
  }
}

std::optional<int> param_value_errno(std::string_view type, const std::optional<std::string>& value) {
  // parse_one(): no value is EINVAL unless the ops take none (bool, invbool, bint).
  const bool noarg = type == "bool" || type == "invbool" || type == "bint";
  if (!value) return noarg ? std::optional<int>(0) : (scalar_errno(type, "").has_value() || type.starts_with("array of ")
                                                            ? std::optional<int>(EINVAL)
                                                            : std::nullopt);
  if (type.starts_with("array of ")) {
    // param_array(): each comma-separated element through the element's setter.
    const std::string_view elem = type.substr(9);
    std::string_view rest = *value;
    while (true) {
      const size_t comma = rest.find(',');
      auto e = scalar_errno(elem, rest.substr(0, comma));
      if (!e) return std::nullopt;
      if (*e) return e;
      if (comma == std::string_view::npos) return 0;
      rest.remove_prefix(comma + 1);
    }
  }
  return scalar_errno(type, *value);
}

std::optional<std::string> param_type(const ModuleInfo& m, std::string_view name) {
  const std::string want = underscores(name);
  for (const auto& [key, value] : m.modinfo) {
    if (key != "parmtype") continue;
    const size_t colon = value.find(':');
    if (colon != std::string::npos && underscores(value.substr(0, colon)) == want) return value.substr(colon + 1);
  }
  return std::nullopt;
}

}  // namespace agent::kabi
