// JSON the agent reads back from disk (its journal, build cache entries, the status): parsed with
// a nesting limit (a file nested 100,000 levels deep is an error, not a stack overflow in a
// recursive copy) and read through typed accessors, so a field of the wrong type is that file's
// error naming the field, never an exception that reaches main.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kabi/result.h"

namespace agent {

inline constexpr int kMaxJsonDepth = 16;

// Parses `text` (the contents of `file`); an error naming `file` when it is not JSON, nests
// deeper than `max_depth`, or its top level is not an object.
[[nodiscard]] Result<nlohmann::json> parse_json_object(std::string_view text, const std::string& file,
                                                       int max_depth = kMaxJsonDepth);

// Typed reads of one JSON object's fields; `where` names it in errors ("inserted[2]").
// Each returns an error naming the file and the field when it is of another type; optional
// fields absent (or null) give their fallback.
class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string file, std::string where = "");

  [[nodiscard]] Result<std::string> string(const char* key) const;                      // required
  [[nodiscard]] Result<std::string> string_or(const char* key, std::string fallback) const;
  [[nodiscard]] Result<std::optional<std::string>> optional_string(const char* key) const;  // null/absent: none
  [[nodiscard]] Result<long long> integer_or(const char* key, long long fallback) const;
  [[nodiscard]] Result<double> number_or(const char* key, double fallback) const;
  // An array (absent: empty), of objects when `of_objects`.
  [[nodiscard]] Result<const nlohmann::json*> array(const char* key, bool of_objects, bool required = false) const;
  [[nodiscard]] Result<const nlohmann::json*> object(const char* key, bool required = false) const;

  [[nodiscard]] Error error(const std::string& key, const std::string& problem) const;
  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] std::string field(const std::string& key) const;  // "inserted[2].name"

 private:
  const nlohmann::json* find(const char* key) const;
  const nlohmann::json& object_;
  std::string file_, where_;
};

}  // namespace agent
