#include "agent/base/json_input.h"

#include <cerrno>

namespace agent {

using nlohmann::json;

namespace {
// "an object", "a string": a value's type as an error says it.
std::string kind(const json& v) {
  const std::string t = v.type_name();
  return (t == "object" || t == "array" ? "an " : "a ") + t;
}
}  // namespace

Result<json> parse_json_object(std::string_view text, const std::string& file, int max_depth) {
  bool too_deep = false;
  // The parser itself is iterative; what recurses is copying and walking the tree it builds,
  // so a value deeper than the limit is never kept.
  json::parser_callback_t keep = [&](int depth, json::parse_event_t event, json&) {
    if (depth > max_depth && (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start)) {
      too_deep = true;
      return false;
    }
    return !too_deep;
  };
  json j = json::parse(text.begin(), text.end(), keep, false);
  if (too_deep) return fail(EINVAL, "nested deeper than " + std::to_string(max_depth) + " levels", file);
  if (j.is_discarded()) return fail(EINVAL, "not JSON", file);
  if (!j.is_object()) return fail(EINVAL, std::string("not a JSON object (") + j.type_name() + ")", file);
  return j;
}

JsonFields::JsonFields(const json& object, std::string file, std::string where)
    : object_(object), file_(std::move(file)), where_(std::move(where)) {}

std::string JsonFields::field(const std::string& key) const { return where_.empty() ? key : where_ + "." + key; }

Error JsonFields::error(const std::string& key, const std::string& problem) const {
  return Error{EINVAL, "'" + field(key) + "' " + problem, file_};
}

const json* JsonFields::find(const char* key) const {
  if (!object_.is_object()) return nullptr;
  auto it = object_.find(key);
  return it == object_.end() || it->is_null() ? nullptr : &*it;
}

Result<std::string> JsonFields::string(const char* key) const {
  const json* v = find(key);
  if (!v) return tl::unexpected(error(key, "is missing"));
  if (!v->is_string()) return tl::unexpected(error(key, "is " + kind(*v) + ", not a string"));
  return v->get<std::string>();
}

Result<std::string> JsonFields::string_or(const char* key, std::string fallback) const {
  if (!find(key)) return fallback;
  return string(key);
}

Result<std::optional<std::string>> JsonFields::optional_string(const char* key) const {
  if (!find(key)) return std::optional<std::string>();
  auto s = string(key);
  if (!s) return tl::unexpected(s.error());
  return std::optional<std::string>(std::move(*s));
}

Result<long long> JsonFields::integer_or(const char* key, long long fallback) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_number_integer()) return tl::unexpected(error(key, "is " + kind(*v) + ", not an integer"));
  return v->get<long long>();
}

Result<double> JsonFields::number_or(const char* key, double fallback) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_number()) return tl::unexpected(error(key, "is " + kind(*v) + ", not a number"));
  return v->get<double>();
}

Result<const json*> JsonFields::array(const char* key, bool of_objects, bool required) const {
  static const json kEmpty = json::array();
  const json* v = find(key);
  if (!v) {
    if (required) return tl::unexpected(error(key, "is missing"));
    return &kEmpty;
  }
  if (!v->is_array()) return tl::unexpected(error(key, "is " + kind(*v) + ", not an array"));
  if (of_objects)
    for (size_t i = 0; i < v->size(); ++i)
      if (!(*v)[i].is_object())
        return tl::unexpected(error(std::string(key) + "[" + std::to_string(i) + "]",
                                    "is " + kind((*v)[i]) + ", not an object"));
  return v;
}

Result<const json*> JsonFields::object(const char* key, bool required) const {
  static const json kEmpty = json::object();
  const json* v = find(key);
  if (!v) {
    if (required) return tl::unexpected(error(key, "is missing"));
    return &kEmpty;
  }
  if (!v->is_object()) return tl::unexpected(error(key, "is " + kind(*v) + ", not an object"));
  return v;
}

}  // namespace agent
