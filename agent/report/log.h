// The entrypoint's log: one line per phase and per action, for a person reading `kubectl logs`
// (text) or for a log pipeline (--log-format json: one JSON object per line).
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace agent {

enum class LogFormat { Text, Json };

// Configures the default spdlog logger (stderr) once, from main.
void setup_logging(LogFormat format, spdlog::level::level_enum level);

// One line; `phase` may be empty. Text: "2026-11-29T22:04:45.123Z info [ready] message".
void log_line(spdlog::level::level_enum level, std::string_view phase, std::string_view message);

}  // namespace agent
