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

// For a long-lived process whose stderr may be a logger's pipe (s6-log
// under s6): from now on a line waits at most half a second for room there,
// and none waits while the log is known not to drain; what cannot be written
// is dropped and counted in a warning once the pipe takes lines again. A
// logger that stops reading (its service down, s6-log -b on a full disk)
// then cannot hold up a stop that was asked for past the supervisor's
// timeout-kill. Writes go through a descriptor of their own, opened
// non-blocking on the same pipe, so that stderr's own flags, which others
// share, stay as they are. Nothing changes when stderr is not a pipe or
// FIFO (a terminal, a file) or cannot be reopened.
void never_block_on_a_pipe();

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
