#include "kabi/dwarf_types.h"

#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <map>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include "kabi/fd.h"
#include "kabi/file_io.h"
#include "kabi/handles.h"

namespace agent::kabi {
namespace {

using DwflHandle = CHandle<Dwfl, dwfl_end>;

// The file given is the one holding the DWARF: no search for separate debug files.
int no_debuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*, GElf_Word, char**) { return -1; }

const Dwfl_Callbacks kOffline = {
    .find_elf = nullptr,
    .find_debuginfo = no_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = nullptr,
};

constexpr size_t kMaxDepth = 64;    // a type chain deeper than this is not from a compiler
constexpr size_t kMaxTypes = 20000;  // a kernel symbol reaches a few thousand at most

std::string die_name(Dwarf_Die* d) {
  const char* n = dwarf_diename(d);
  return n ? n : "";
}

bool type_of(Dwarf_Die* d, Dwarf_Die* out) {
  Dwarf_Attribute a;
  return dwarf_attr_integrate(d, DW_AT_type, &a) && dwarf_formref_die(&a, out);
}

bool flag(Dwarf_Die* d, unsigned attr) {
  Dwarf_Attribute a;
  bool v = false;
  return dwarf_attr_integrate(d, attr, &a) && dwarf_formflag(&a, &v) == 0 && v;
}

class Expander {
 public:
  explicit Expander(TypeExpansion& out) : out_(out) {}

  // The C spelling of a type, queueing every named aggregate and typedef for expansion.
  std::string name(Dwarf_Die* t, size_t depth = 0) {
    if (depth > kMaxDepth) return "<too deep>";
    Dwarf_Die inner;
    switch (dwarf_tag(t)) {
      case DW_TAG_base_type:
      case DW_TAG_unspecified_type: return die_name(t);
      case DW_TAG_pointer_type:
      case DW_TAG_reference_type: {
        if (!type_of(t, &inner)) return "void *";
        if (dwarf_tag(&inner) == DW_TAG_subroutine_type) return subroutine(&inner, depth, "(*)");
        return name(&inner, depth + 1) + " *";
      }
      case DW_TAG_const_type: return "const " + (type_of(t, &inner) ? name(&inner, depth + 1) : "void");
      case DW_TAG_volatile_type: return "volatile " + (type_of(t, &inner) ? name(&inner, depth + 1) : "void");
      case DW_TAG_restrict_type: return (type_of(t, &inner) ? name(&inner, depth + 1) : "void") + " restrict";
      case DW_TAG_atomic_type: return "_Atomic " + (type_of(t, &inner) ? name(&inner, depth + 1) : "void");
      case DW_TAG_typedef: {
        const std::string n = die_name(t);
        want("typedef " + n, t);
        return n;
      }
      case DW_TAG_structure_type:
      case DW_TAG_union_type:
      case DW_TAG_enumeration_type: {
        const std::string kw = keyword(t);
        const std::string n = die_name(t);
        // An anonymous aggregate has no definition of its own: spelled out where it is used.
        if (n.empty()) return kw + " { " + body_inline(t, depth) + "}";
        want(kw + " " + n, t);
        return kw + " " + n;
      }
      case DW_TAG_array_type: {
        std::string s = type_of(t, &inner) ? name(&inner, depth + 1) : "?";
        Dwarf_Die sub;
        if (dwarf_child(t, &sub) == 0) {
          do {
            if (dwarf_tag(&sub) != DW_TAG_subrange_type) continue;
            Dwarf_Attribute a;
            Dwarf_Word v = 0;
            if (dwarf_attr_integrate(&sub, DW_AT_count, &a) && dwarf_formudata(&a, &v) == 0)
              s += "[" + std::to_string(v) + "]";
            else if (dwarf_attr_integrate(&sub, DW_AT_upper_bound, &a) && dwarf_formudata(&a, &v) == 0)
              s += "[" + std::to_string(v + 1) + "]";
            else
              s += "[]";
          } while (dwarf_siblingof(&sub, &sub) == 0);
        }
        return s;
      }
      case DW_TAG_subroutine_type: return subroutine(t, depth, "");
      default: return "<tag " + std::to_string(dwarf_tag(t)) + ">";
    }
  }

  // "ret NAME(params)": a function or a function type.
  std::string subroutine(Dwarf_Die* f, size_t depth, const std::string& label) {
    Dwarf_Die ret;
    std::string s = type_of(f, &ret) ? name(&ret, depth + 1) : "void";
    s += " " + label + "(";
    Dwarf_Die p;
    bool first = true, any = false;
    if (dwarf_child(f, &p) == 0) {
      do {
        const int tag = dwarf_tag(&p);
        if (tag == DW_TAG_formal_parameter) {
          Dwarf_Die pt;
          s += (first ? "" : ", ") + (type_of(&p, &pt) ? name(&pt, depth + 1) : "?");
          first = false;
          any = true;
        } else if (tag == DW_TAG_unspecified_parameters) {
          s += first ? "..." : ", ...";
          first = false;
          any = true;
        }
      } while (dwarf_siblingof(&p, &p) == 0);
    }
    if (!any && flag(f, DW_AT_prototyped)) s += "void";
    return s + ")";
  }

  // Expands every queued type, breadth first (each once).
  void drain() {
    while (!queue_.empty() && out_.types.size() < kMaxTypes) {
      auto [key, die] = queue_.front();
      queue_.pop_front();
      out_.types.push_back(define(key, &die));
    }
  }

 private:
  static std::string keyword(Dwarf_Die* t) {
    switch (dwarf_tag(t)) {
      case DW_TAG_structure_type: return "struct";
      case DW_TAG_union_type: return "union";
      default: return "enum";
    }
  }

  void want(const std::string& key, Dwarf_Die* d) {
    if (!seen_.insert(key).second) return;
    queue_.emplace_back(key, *d);
  }

  std::vector<std::string> members(Dwarf_Die* t, size_t depth) {
    std::vector<std::string> out;
    Dwarf_Die c;
    if (dwarf_child(t, &c) != 0) return out;
    do {
      const int tag = dwarf_tag(&c);
      if (tag == DW_TAG_member) {
        Dwarf_Die mt;
        std::string m = type_of(&c, &mt) ? name(&mt, depth + 1) : "?";
        const std::string n = die_name(&c);
        if (!n.empty()) m += " " + n;
        Dwarf_Attribute a;
        Dwarf_Word bits = 0;
        if (dwarf_attr_integrate(&c, DW_AT_bit_size, &a) && dwarf_formudata(&a, &bits) == 0)
          m += " : " + std::to_string(bits);
        out.push_back(std::move(m));
      } else if (tag == DW_TAG_enumerator) {
        Dwarf_Attribute a;
        Dwarf_Sword v = 0;
        std::string m = die_name(&c);
        if (dwarf_attr_integrate(&c, DW_AT_const_value, &a) && dwarf_formsdata(&a, &v) == 0) m += " = " + std::to_string(v);
        out.push_back(std::move(m));
      }
    } while (dwarf_siblingof(&c, &c) == 0);
    return out;
  }

  std::string body_inline(Dwarf_Die* t, size_t depth) {
    std::string s;
    for (const auto& m : members(t, depth + 1)) s += m + "; ";
    return s;
  }

  TypeDefinition define(const std::string& key, Dwarf_Die* d) {
    TypeDefinition def;
    def.key = key;
    if (dwarf_tag(d) == DW_TAG_typedef) {
      Dwarf_Die t;
      def.head = "typedef " + (type_of(d, &t) ? name(&t) : std::string("void")) + " " + die_name(d);
      return def;
    }
    // genksyms sees only a declaration ("UNKNOWN") where the definition is not in scope: a
    // classic cause of a CRC change with no real change.
    if (flag(d, DW_AT_declaration)) {
      def.head = key + " (declaration only)";
      return def;
    }
    def.head = key + " {";
    def.members = members(d, 0);
    return def;
  }

  TypeExpansion& out_;
  std::set<std::string> seen_;
  std::deque<std::pair<std::string, Dwarf_Die>> queue_;
};

// The external definition of `symbol` among the compile units' top-level DIEs; a declaration
// if there is no definition.
bool find_symbol(Dwarf* dw, const std::string& symbol, Dwarf_Die* out) {
  bool have_decl = false;
  Dwarf_Off off = 0, next = 0;
  size_t hsize = 0;
  while (dwarf_nextcu(dw, off, &next, &hsize, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu, c;
    if (dwarf_offdie(dw, off + hsize, &cu) && dwarf_child(&cu, &c) == 0) {
      do {
        const int tag = dwarf_tag(&c);
        if ((tag != DW_TAG_subprogram && tag != DW_TAG_variable) || die_name(&c) != symbol) continue;
        if (!flag(&c, DW_AT_external)) continue;
        if (!flag(&c, DW_AT_declaration)) {
          *out = c;
          return true;
        }
        if (!have_decl) {
          *out = c;
          have_decl = true;
        }
      } while (dwarf_siblingof(&c, &c) == 0);
    }
    off = next;
  }
  return have_decl;
}

}  // namespace

Result<TypeExpansion> expand_symbol(const std::filesystem::path& file, const std::string& symbol) {
  const std::string path = file.string();
  // Typed before it is opened for reading: a FIFO or a device is an error, never opened.
  Fd path_fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!path_fd) return fail(errno, std::string("cannot open: ") + std::strerror(errno), path);
  auto fd = open_regular(path_fd, path);
  if (!fd) return tl::unexpected(fd.error());
  DwflHandle dwfl(dwfl_begin(&kOffline));
  if (!dwfl) return fail(ENOMEM, std::string("libdwfl: ") + dwfl_errmsg(-1), path);
  // libdwfl owns the descriptor from here (closed by dwfl_end, or at once if it fails).
  Dwfl_Module* mod = dwfl_report_offline(dwfl.get(), file.filename().c_str(), path.c_str(), fd->release());
  if (!mod) return fail(EINVAL, std::string("not an ELF object: ") + dwfl_errmsg(-1), path);
  if (dwfl_report_end(dwfl.get(), nullptr, nullptr) != 0)
    return fail(EINVAL, std::string("libdwfl: ") + dwfl_errmsg(-1), path);
  Dwarf_Addr bias = 0;
  Dwarf* dw = dwfl_module_getdwarf(mod, &bias);
  if (!dw) return fail(ENODATA, "no DWARF debug information (build with -g, or give the debug package's file)", path);
  Dwarf_Die die;
  if (!find_symbol(dw, symbol, &die)) return fail(ENOENT, "no external function or variable " + symbol + " in its DWARF", path);
  TypeExpansion e;
  e.file = path;
  e.symbol = symbol;
  Expander x(e);
  if (dwarf_tag(&die) == DW_TAG_subprogram) {
    e.declaration = x.subroutine(&die, 0, symbol);
  } else {
    Dwarf_Die t;
    e.declaration = (type_of(&die, &t) ? x.name(&t) : std::string("?")) + " " + symbol;
  }
  x.drain();
  return e;
}

std::optional<TypeDifference> first_difference(const TypeExpansion& a, const TypeExpansion& b) {
  if (a.declaration != b.declaration) return TypeDifference{"declaration", "prototype changed", a.declaration, b.declaration};
  std::map<std::string, const TypeDefinition*> in_b;
  for (const auto& t : b.types) in_b.emplace(t.key, &t);
  std::set<std::string> in_a;
  for (const auto& ta : a.types) {
    in_a.insert(ta.key);
    auto it = in_b.find(ta.key);
    if (it == in_b.end()) return TypeDifference{ta.key, "no longer reached", ta.head, ""};
    const TypeDefinition& tb = *it->second;
    if (ta.head != tb.head) return TypeDifference{ta.key, "definition changed", ta.head, tb.head};
    const size_t n = std::max(ta.members.size(), tb.members.size());
    for (size_t i = 0; i < n; ++i) {
      if (i < ta.members.size() && i < tb.members.size() && ta.members[i] == tb.members[i]) continue;
      const std::string idx = "member " + std::to_string(i + 1);
      if (i >= ta.members.size()) return TypeDifference{ta.key, idx + " added", "", tb.members[i]};
      if (i >= tb.members.size()) return TypeDifference{ta.key, idx + " removed", ta.members[i], ""};
      // One inserted member shifts the rest: say "added" when the old one follows it.
      if (i + 1 < tb.members.size() && tb.members[i + 1] == ta.members[i])
        return TypeDifference{ta.key, idx + " added", "", tb.members[i]};
      if (i + 1 < ta.members.size() && ta.members[i + 1] == tb.members[i])
        return TypeDifference{ta.key, idx + " removed", ta.members[i], ""};
      return TypeDifference{ta.key, idx + " changed", ta.members[i], tb.members[i]};
    }
  }
  for (const auto& tb : b.types)
    if (!in_a.count(tb.key)) return TypeDifference{tb.key, "newly reached", "", tb.head};
  return std::nullopt;
}

std::string expansion_text(const TypeExpansion& e) {
  std::string s = e.declaration + ";\n";
  for (const auto& t : e.types) {
    s += t.head + '\n';
    for (const auto& m : t.members) s += "    " + m + ";\n";
    if (!t.members.empty() || t.head.ends_with("{")) s += "};\n";
  }
  return s;
}

nlohmann::json expansion_json(const TypeExpansion& e) {
  nlohmann::json types = nlohmann::json::array();
  for (const auto& t : e.types) types.push_back({{"key", t.key}, {"head", t.head}, {"members", t.members}});
  return {{"file", e.file}, {"symbol", e.symbol}, {"declaration", e.declaration}, {"types", types}};
}

}  // namespace agent::kabi
