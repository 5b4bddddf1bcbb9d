// The project's one error model: a value, or {errno, message, path}.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace agent {

struct Error {
  int code = 0;          // an errno value (EINVAL for malformed input, ENOENT, EIO, ...)
  std::string message;   // what is wrong, for a person
  std::string path;      // the file it is about, if any

  // "path: message" (or the message alone), the form every caller prints.
  [[nodiscard]] std::string what() const { return path.empty() ? message : path + ": " + message; }
};

template <class T>
using Result = tl::expected<T, Error>;

[[nodiscard]] inline tl::unexpected<Error> fail(int code, std::string message, std::string path = {}) {
  return tl::unexpected<Error>(Error{code, std::move(message), std::move(path)});
}

}  // namespace agent
