// Logging to stderr, one write(2) per line so that lines from the outer
// process, the warden and the services never interleave mid-line. Under s6
// stderr is the service's log pipe; s6-log adds the timestamps.
#pragma once

#include <fmt/core.h>

#include <string_view>

namespace vmwarden::log {

enum class Level { debug, info, warning, error };

// The prefix of every line, e.g. "vmwarden" or "vmwarden[work/warden]".
void set_prefix(std::string_view prefix);
std::string_view prefix();
void set_min_level(Level level);
bool enabled(Level level);

void write(Level level, std::string_view message);

template <typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::warning)) write(Level::warning, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
  write(Level::error, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace vmwarden::log
