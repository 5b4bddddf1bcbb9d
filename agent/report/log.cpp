#include "agent/report/log.h"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_sinks.h>

#include "agent/base/clock.h"
#include "kabi/text.h"

namespace agent {
namespace {
LogFormat g_format = LogFormat::Text;
}

void setup_logging(LogFormat format, spdlog::level::level_enum level) {
  g_format = format;
  auto logger = spdlog::stderr_logger_mt("agent-run");
  // The line is made whole by log_line (time included) so both formats share one path.
  logger->set_pattern("%v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

void log_line(spdlog::level::level_enum level, std::string_view phase, std::string_view message) {
  if (!spdlog::default_logger()->should_log(level)) return;
  const auto lv = spdlog::level::to_string_view(level);
  if (g_format == LogFormat::Json) {
    nlohmann::json j = {{"time", utc_now()}, {"level", std::string(lv.data(), lv.size())}, {"msg", std::string(message)}};
    if (!phase.empty()) j["phase"] = std::string(phase);
    spdlog::log(level, "{}", safe_dump(j, -1));
    return;
  }
  spdlog::log(level, "{} {} {}{}", utc_now(), std::string_view(lv.data(), lv.size()),
              phase.empty() ? std::string() : "[" + std::string(phase) + "] ", printable(message));
}

}  // namespace agent
